"""Tile byte encodings: lossless, self-describing, decodable without rscurate.

Two encodings exist, named in each row's `encoding` column:

- ``npy.zst``: the tile as a (C, H, W) ``.npy`` file compressed with Zstandard. Any dtype and
  band count; decode with ``numpy.load(io.BytesIO(zstandard.decompress(b)))``.
- ``png`` / ``jpeg`` / ``tiff``: the original file bytes of a chip that was kept whole and
  unchanged, so its fidelity is exactly the source's. Kept only when Pillow decodes them to exactly the
  array GDAL read (the one `sha256` and the statistics describe): JPEG decoders differ where chroma is
  subsampled, so such a chip is stored as ``npy.zst`` of GDAL's decode instead.

A validity mask that one nodata value cannot express (alpha, GDAL internal masks) is stored beside the
tile as ``npy.zst`` of a (1, H, W) bool array, True where the pixel holds data.
"""

from __future__ import annotations

import io
import threading

import numpy as np
import zstandard

NPY_ZSTD = "npy.zst"
ORIGINAL_ENCODINGS = ("png", "jpeg", "tiff")
# File signatures: the encoding of kept bytes is what the bytes are, never what the file name says.
_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpeg"), (b"II*\x00", "tiff"), (b"MM\x00*", "tiff"),
          (b"II+\x00", "tiff"), (b"MM\x00+", "tiff"))
MAGIC_BYTES = max(len(m) for m, _ in _MAGIC)
# Level 1 (within ~5 % of level 3 in size on imagery, about twice as fast) with the 7-byte minimum match that
# zstd's level 1 uses for inputs over 256 KB and a 4096-entry hash table: on real 8-bit Landsat tiles ~20 %
# faster than plain level 1 for ~1 % more bytes (16-bit tiles: ~15 % faster, +0.2 %).
_ZSTD_PARAMS = zstandard.ZstdCompressionParameters.from_level(1, hash_log=12, min_match=7)
_local = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor: a new one per tile re-allocates its context, and one compressor must not be
    used by two threads at once. One-shot compress() resets it, so each frame is as from a fresh compressor."""
    compressor = getattr(_local, "zstd", None)
    if compressor is None:
        compressor = _local.zstd = zstandard.ZstdCompressor(compression_params=_ZSTD_PARAMS)
    return compressor


def encode_array(tile: np.ndarray) -> bytes:
    """Encode a (C, H, W) array losslessly as zstd-compressed .npy bytes."""
    if tile.ndim != 3:
        raise ValueError(f"tiles are (C, H, W) arrays, got shape {tile.shape}")
    arr = np.ascontiguousarray(tile)
    if arr.dtype.hasobject:
        raise ValueError("object arrays cannot be stored as .npy without pickle")
    # The bytes np.save writes (a version 1.0 header, as np.save picks for numeric dtypes, then the C-order
    # data), with one copy of the pixels where np.save makes several.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(arr))
    return _compressor().compress(header.getvalue() + arr.data)


_HEADERS: dict[bytes, tuple[tuple[int, ...], np.dtype, int] | None] = {}
"""Parsed .npy headers by their bytes (a corpus has a few tile shapes, each header parsed once; np.load parses
every one with ast.literal_eval): shape, dtype, data offset; None where np.load must decide (Fortran order,
Python objects, a malformed header)."""
_MAX_HEADERS = 4096


def _npy_layout(raw: bytes) -> tuple[tuple[int, ...], np.dtype, int] | None:
    version = raw[6:8]
    if raw[:6] != b"\x93NUMPY" or version not in (b"\x01\x00", b"\x02\x00") or len(raw) < 12:
        return None  # version 3.0 (utf-8 field names) and anything else: np.load
    size = 10 + int.from_bytes(raw[8:10], "little") if version[0] == 1 else 12 + int.from_bytes(raw[8:12], "little")
    key = raw[:size]
    if key not in _HEADERS:
        if len(_HEADERS) >= _MAX_HEADERS:
            _HEADERS.clear()
        fp = io.BytesIO(key[8:])
        read = np.lib.format.read_array_header_1_0 if version[0] == 1 else np.lib.format.read_array_header_2_0
        try:
            shape, fortran, dtype = read(fp)  # np.load's limit on header size too
            _HEADERS[key] = None if fortran or dtype.hasobject or fp.tell() + 8 != size else (shape, dtype, size)
        except ValueError:
            _HEADERS[key] = None
    return _HEADERS[key]


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor: a new one per tile allocates its context again."""
    decompressor = getattr(_local, "unzstd", None)
    if decompressor is None:
        decompressor = _local.unzstd = zstandard.ZstdDecompressor()
    return decompressor


def decode(data: bytes, encoding: str) -> np.ndarray:
    """Decode stored tile bytes to a (C, H, W) array of the stored dtype (writable, as np.load gives it)."""
    if encoding == NPY_ZSTD:
        raw = _decompressor().decompress(data)
        layout = _npy_layout(raw)
        if layout is None or len(raw) < layout[2] + layout[1].itemsize * int(np.prod(layout[0])):
            return np.load(io.BytesIO(raw), allow_pickle=False)  # and its error where the bytes are short or odd
        shape, dtype, offset = layout
        return np.frombuffer(raw, dtype, count=int(np.prod(shape)), offset=offset).reshape(shape).copy()
    if encoding in ORIGINAL_ENCODINGS:
        return _decode_image_file(data)
    raise ValueError(f"unknown tile encoding {encoding!r}; expected {NPY_ZSTD!r} or one of {ORIGINAL_ENCODINGS}")


def _decode_image_file(data: bytes) -> np.ndarray:
    from rasterio.io import MemoryFile

    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read()


def sniff_encoding(head: bytes) -> str | None:
    """The image format of a file from its first MAGIC_BYTES bytes (png, jpeg, tiff), or None."""
    return next((name for magic, name in _MAGIC if head.startswith(magic)), None)


def pillow_decode(data: bytes) -> np.ndarray | None:
    """Image file bytes decoded by Pillow as (C, H, W), or None where Pillow cannot read them."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            arr = np.asarray(img)
    except Exception:  # any Pillow failure: the bytes are not portable, and the caller re-encodes
        return None
    return arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)


def encode_mask(valid: np.ndarray) -> bytes:
    """An (H, W) validity mask as npy.zst bytes of a (1, H, W) bool array."""
    return encode_array(valid[None].astype(bool, copy=False))


def decode_mask(data: bytes | None) -> np.ndarray | None:
    """The (H, W) bool validity mask stored with a tile, or None when the row stores none."""
    return None if data is None else decode(data, NPY_ZSTD)[0]
