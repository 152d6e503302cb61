"""Tile byte encodings: lossless, self-describing, decodable without rscurate.

Two encodings exist, named in each row's `encoding` column:

- ``npy.zst``: the tile as a (C, H, W) ``.npy`` file compressed with Zstandard. Any dtype and
  band count; decode with ``numpy.load(io.BytesIO(zstandard.decompress(b)))``.
- ``png`` / ``jpeg`` / ``tiff``: the original file bytes of a chip that was kept whole and
  unchanged, so its fidelity is exactly the source's. Decode with any image library; arrays
  come back as (C, H, W).
"""

from __future__ import annotations

import io

import numpy as np
import zstandard

NPY_ZSTD = "npy.zst"
ORIGINAL_ENCODINGS = ("png", "jpeg", "tiff")
_ZSTD_LEVEL = 1  # level 1: within ~5 % of level 3 in size on imagery, about twice as fast


def encode_array(tile: np.ndarray) -> bytes:
    """Encode a (C, H, W) array losslessly as zstd-compressed .npy bytes."""
    if tile.ndim != 3:
        raise ValueError(f"tiles are (C, H, W) arrays, got shape {tile.shape}")
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(tile), allow_pickle=False)
    return zstandard.ZstdCompressor(level=_ZSTD_LEVEL).compress(buf.getvalue())


def decode(data: bytes, encoding: str) -> np.ndarray:
    """Decode stored tile bytes to a (C, H, W) array of the stored dtype."""
    if encoding == NPY_ZSTD:
        raw = zstandard.ZstdDecompressor().decompress(data)
        return np.load(io.BytesIO(raw), allow_pickle=False)
    if encoding in ORIGINAL_ENCODINGS:
        return _decode_image_file(data)
    raise ValueError(f"unknown tile encoding {encoding!r}; expected {NPY_ZSTD!r} or one of {ORIGINAL_ENCODINGS}")


def _decode_image_file(data: bytes) -> np.ndarray:
    from rasterio.io import MemoryFile

    with MemoryFile(data) as mem, mem.open() as ds:
        return ds.read()
