"""64-bit perceptual hash (pHash) of remote-sensing tiles, bit-identical to ``imagehash.phash``.

Why a module of our own: tiles come as (C, H, W) arrays of any dtype and band set, so they first need one
deterministic 8-bit grey "canonical view"; and hashing millions of tiles one PIL/scipy call at a time is slow,
so :func:`phash_batch` does the DCT of a whole batch as two matrix products. imagehash stays the reference
definition: every hash produced here equals ``int(str(imagehash.phash(Image.fromarray(gray))), 16)``.
See docs/dedup.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from rscurate.percentiles import percentiles
from rscurate.pil_resize import resize_stack

HASH_SIZE = 8
"""Side of the low-frequency DCT block: 8 x 8 = 64 bits."""
IMG_SIZE = 32
"""imagehash's pHash resizes to hash_size * highfreq_factor = 32 pixels square."""
STACK_PIXELS = 1 << 20  # grey pixels per pair of PIL calls: 16 tiles of 256 px (16x as many ran slower in a unit)
LOW_TEXTURE_STD = 2.0
"""Default :func:`is_low_texture` threshold: std (grey levels) of the 32 x 32 image pHash sees."""
STRETCH_PERCENTILES = (2.0, 98.0)
"""Robust per-tile stretch for non-uint8 data: these percentiles of valid pixels map to 0 and 255."""

# Names (case-insensitive) that identify the visible bands. Sentinel-2 (B04/B03/B02) and Landsat 8/9 OLI
# (B4/B3/B2, Collection-2 SR_B4/SR_B3/SR_B2) number red/green/blue the same way. Landsat 4-7 TM/ETM+
# (red = B3) is deliberately not recognised: its B4 is near-infrared.
RGB_NAMES: dict[str, frozenset[str]] = {
    "red": frozenset({"red", "r", "b04", "b4", "sr_b4"}),
    "green": frozenset({"green", "g", "b03", "b3", "sr_b3"}),
    "blue": frozenset({"blue", "b", "b02", "b2", "sr_b2"}),
}

# Type-II DCT matrix with scipy.fftpack's default (unnormalised) scaling:
# y[k] = 2 * sum_n x[n] * cos(pi * k * (2n + 1) / (2N)); only the first HASH_SIZE rows are needed.
_N = np.arange(IMG_SIZE)
DCT_LOW = 2.0 * np.cos(np.pi * np.arange(HASH_SIZE)[:, None] * (2 * _N[None, :] + 1) / (2 * IMG_SIZE))
# Float differences between the matrix product and scipy's FFT-based DCT are ~1e-9 at most for 8-bit input
# (values up to ~1e6); a coefficient closer than this to the median is recomputed with scipy itself.
_TIE_TOL = 1e-6
_U64 = np.dtype(np.uint64)


def _rgb_indices(bands: Sequence[str] | None, n_bands: int, dtype: np.dtype) -> tuple[int, int, int] | None:
    """Indices of (red, green, blue), or None when the tile is not treated as colour."""
    if bands is None:
        return (0, 1, 2) if n_bands == 3 and dtype == np.uint8 else None
    names = [str(b).strip().lower() for b in bands]
    found = []
    for colour in ("red", "green", "blue"):
        idx = next((i for i, n in enumerate(names) if n in RGB_NAMES[colour]), None)
        if idx is None:
            return None
        found.append(idx)
    return found[0], found[1], found[2]


def _stretch(gray: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Map the 2nd..98th percentile of valid pixels to 0..255 (uint8); invalid pixels become 0."""
    out = np.zeros(gray.shape, dtype=np.uint8)
    vals = gray[ok]
    if vals.size == 0:
        return out
    lo, hi = percentiles(vals, STRETCH_PERCENTILES)
    if not hi > lo:
        return out
    scaled = np.clip((vals - lo) * (255.0 / (hi - lo)), 0.0, 255.0)
    out[ok] = np.rint(scaled).astype(np.uint8)
    return out


def canonical_view(
    tile: np.ndarray, bands: Sequence[str] | None = None, valid: np.ndarray | None = None
) -> np.ndarray:
    """One 8-bit grey (H, W) view of a (C, H, W) tile: the image that is hashed.

    Colour tiles (red/green/blue found by name, or an unnamed 3-band uint8 tile) use ITU-R 601-2 luma exactly
    as PIL's ``convert('L')``; other tiles use the mean of their bands. uint8 data is used as is, so an 8-bit
    RGB tile gives PIL's grey image bit for bit. Other dtypes are combined first and then stretched per tile
    (2nd..98th percentile of valid pixels -> 0..255): pHash ignores positive affine intensity changes, so a
    uint16 scene and an 8-bit rendering of it made with one linear scale hash (nearly) the same.
    Pixels that are invalid (``valid`` False, or non-finite) are 0, as in an 8-bit export with black nodata.
    """
    arr = np.asarray(tile)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] < 1:
        raise ValueError(f"tile must be (C, H, W) or (H, W), got shape {arr.shape}")
    n_bands, height, width = arr.shape
    if bands is not None and len(bands) != n_bands:
        raise ValueError(f"{len(bands)} band names for a tile with {n_bands} bands")
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (height, width):
            raise ValueError(f"valid mask shape {valid.shape} does not match tile {(height, width)}")
    rgb = _rgb_indices(bands, n_bands, arr.dtype)

    if arr.dtype == np.uint8:
        if rgb is not None:
            # PIL's convert('L') itself, on planes it reads in place: about twice as fast as its fixed-point
            # formula (libImaging/Convert.c) in numpy uint32 arithmetic.
            planes = [Image.frombuffer("L", (width, height), np.ascontiguousarray(arr[i]), "raw", "L", 0, 1)
                      for i in rgb]
            gray = np.array(Image.merge("RGB", planes).convert("L"))
        else:
            total = arr.astype(np.uint32).sum(axis=0)
            gray = ((total + n_bands // 2) // n_bands).astype(np.uint8)
        return gray * valid if valid is not None else gray

    used = arr[list(rgb)] if rgb is not None else arr
    if used.dtype.kind in "ui" and used.itemsize <= 2:
        # integers of at most 16 bits: all finite, and float64 holds them and their band sums exactly, so the
        # grey is computed from them directly (what the float64 copy below gives, without the copy); the grey of
        # an invalid pixel is never read (_stretch), so it needs no zeroing either
        ok = np.ones((height, width), bool) if valid is None else valid
        if rgb is not None:
            combined = 0.299 * used[0] + 0.587 * used[1] + 0.114 * used[2]
        else:
            combined = used.sum(axis=0, dtype=np.int64) / n_bands
        return _stretch(combined, ok)
    data = used.astype(np.float64)
    ok = np.all(np.isfinite(data), axis=0)
    if valid is not None:
        ok &= valid
    data = np.where(ok, data, 0.0)
    if rgb is not None:
        combined = 0.299 * data[0] + 0.587 * data[1] + 0.114 * data[2]
    else:
        combined = data.mean(axis=0)
    return _stretch(combined, ok)


def _as_gray_list(grays: Sequence[np.ndarray] | np.ndarray) -> list[np.ndarray]:
    if isinstance(grays, np.ndarray) and grays.ndim == 2:
        raise ValueError("phash_batch takes a batch: a list of (H, W) arrays or a (B, H, W) array")
    return list(grays)


def resize_batch(grays: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """(B, 32, 32) float64: each uint8 grey image resized with PIL LANCZOS, exactly as imagehash does.

    PIL does the resize because its fixed-point resampler defines the reference hash (images of one shape in two
    PIL calls per STACK_PIXELS, bit for bit PIL's result for each: pil_resize); everything after it (DCT, median,
    packing) is vectorised over the batch.
    """
    items = [np.asarray(g) for g in _as_gray_list(grays)]
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for k, g in enumerate(items):
        if g.dtype != np.uint8 or g.ndim != 2 or min(g.shape) < 1:
            raise TypeError(f"item {k}: expected a non-empty 2-D uint8 array, got {g.dtype} {g.shape}")
        by_shape.setdefault(g.shape, []).append(k)
    out = np.empty((len(items), IMG_SIZE, IMG_SIZE), dtype=np.float64)
    for (h, w), ks in by_shape.items():
        step = max(1, STACK_PIXELS // (h * w))
        for i in range(0, len(ks), step):
            chunk = ks[i : i + step]
            out[chunk] = resize_stack(np.stack([items[k] for k in chunk]), (IMG_SIZE, IMG_SIZE),
                                      Image.Resampling.LANCZOS)
    return out


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """(B, 64) bool -> uint64, first bit most significant (the order of imagehash's hex string)."""
    packed = np.packbits(bits.reshape(len(bits), 64), axis=1)  # (B, 8) big-endian bytes
    return packed.view(">u8").reshape(-1).astype(_U64)


def _reference_dct(img: np.ndarray) -> np.ndarray:
    """The 2-D DCT exactly as imagehash computes it (scipy's FFT-based DCT). Imported on first use: it is
    needed only for near-ties (flat tiles) and would add a quarter second to every worker's start-up."""
    import scipy.fftpack

    return scipy.fftpack.dct(scipy.fftpack.dct(img, axis=0), axis=1)


def _hash_resized(small: np.ndarray) -> np.ndarray:
    """pHash bits of (B, 32, 32) resized images: DCT as two matrix products, exact fallback on ties."""
    low = np.matmul(np.matmul(DCT_LOW, small), DCT_LOW.T)  # (B, 8, 8): rows = axis 0, cols = axis 1
    flat = low.reshape(len(low), -1)
    med = np.median(flat, axis=1, keepdims=True)
    bits = flat > med
    # A coefficient within float noise of the median could compare differently in scipy's FFT DCT (e.g. a
    # flat tile, whose AC terms are all ~0): recompute those few exactly as imagehash does.
    tied = np.flatnonzero(np.min(np.abs(flat - med), axis=1) <= _TIE_TOL)
    for k in tied:
        block = _reference_dct(small[k].astype(np.uint8))[:HASH_SIZE, :HASH_SIZE]
        bits[k] = (block > np.median(block)).reshape(-1)
    return pack_bits(bits)


def phash_batch(grays: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """uint64 pHash of each uint8 (H, W) image, equal to imagehash.phash bit for bit; vectorised DCT."""
    items = _as_gray_list(grays)
    if not items:
        return np.zeros(0, dtype=_U64)
    return _hash_resized(resize_batch(items))


def phash_gray(gray: np.ndarray) -> int:
    """64-bit pHash of one uint8 (H, W) image, as ``int(str(imagehash.phash(Image.fromarray(gray))), 16)``."""
    return int(phash_batch([gray])[0])


def texture_score(gray: np.ndarray) -> float:
    """Std (grey levels) of the 32 x 32 LANCZOS image that pHash sees.

    Near 0 for flat tiles (open water, thick cloud, flat desert, nodata fill): their hash bits come from
    rounding noise or from one shared shape, so unrelated flat tiles collide. See docs/dedup.md.
    """
    return float(resize_batch([gray])[0].std())


def is_low_texture(gray: np.ndarray, threshold: float = LOW_TEXTURE_STD) -> bool:
    """True when the tile is too flat for its pHash to identify it (keep it out of near-duplicate search)."""
    return texture_score(gray) < threshold


def tile_phash(tile: np.ndarray, bands: Sequence[str] | None = None, valid: np.ndarray | None = None) -> int:
    """pHash of a (C, H, W) tile: ``phash_gray(canonical_view(tile, bands, valid))``."""
    return phash_gray(canonical_view(tile, bands, valid))


def signatures_batch(grays: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 pHash, float64 texture score) of each uint8 (H, W) image, from one resize per image."""
    items = _as_gray_list(grays)
    if not items:
        return np.zeros(0, dtype=_U64), np.zeros(0)
    small = resize_batch(items)
    return _hash_resized(small), small.std(axis=(1, 2))


def tile_signature(
    tile: np.ndarray, bands: Sequence[str] | None = None, valid: np.ndarray | None = None
) -> tuple[int, float]:
    """(pHash, texture score) of a tile from one resize, for pipelines that store both."""
    hashes, scores = signatures_batch([canonical_view(tile, bands, valid)])
    return int(hashes[0]), float(scores[0])


def hamming(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    """Bitwise Hamming distance of uint64 hashes (broadcasting), as uint8."""
    x = np.asarray(a, dtype=_U64) ^ np.asarray(b, dtype=_U64)
    return np.bitwise_count(x)
