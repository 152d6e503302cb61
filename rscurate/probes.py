"""Probe hashes: find an eval chip inside training tiles at any offset and at modest rescaling.

A whole-tile pHash finds a chip only when it lines up with a tile: a 2 px shift of a 128 px window already moves
its pHash by about 4 bits, 4 px by 8 (bench/dedup_quality.py). So both sides are hashed in windows, and one side
is dense enough that some pair of windows shows the same ground within ~1.5 % of a window's side and ~2 % of scale:
- each training tile gets 74 probes: pHash-style hashes of windows of half and of a quarter of the tile at a step
  of 1/8 of its side (PROBE_LEVELS), so any eval region at least half a tile wide holds one of them whole;
- each eval chip gets dense probes: for every window side on a geometric ladder (ratio SCALE_STEP) spanning the
  training probes' sides times 0.7..1.5, the chip is resized once so that side becomes 32 px and every 32 x 32
  block at a 1-pixel step is hashed (a step of 1/32 of the window) with a sliding DCT.
A probe hash is imagehash's pHash recipe (8 x 8 lowest DCT frequencies of a 32 x 32 image, median threshold)
applied to a block of an area-averaged resized image rather than to a resized block: equal up to resampling at
block edges, and the same recipe on both sides. Matches are voted into a placement (offset, scale) and then
checked on the pixels (pixel_check.placed); see probe_leaks and docs/dedup.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from rscurate.phash import DCT_LOW, IMG_SIZE, LOW_TEXTURE_STD, pack_bits

PROBE_LEVELS = ((64, 5), (128, 7))
"""Training probes: the tile resized to G x G and its 32 x 32 blocks at a step of 16 (a (G/32 - 1) * 2 + 1 grid
a side): windows of half the tile (25 probes) and of a quarter of it (49 probes)."""
SCALE_RANGE = (0.7, 1.5)
"""Rescaling between an eval chip and the training imagery that the search covers (chip px per training px)."""
SCALE_STEP = 1.04
"""Ratio between consecutive eval probe sides: a centred 2 % scale error moves a probe hash by about 3 bits."""
MAX_STEP = 4
"""Largest step (resized pixels, 1/32 of a window) between eval probes, in chips much larger than a window."""
MIN_PROBE_SIDE = 16
"""Eval windows smaller than this (eval pixels) carry too little to hash."""
PROBE_FRACTIONS = tuple(IMG_SIZE / grid for grid, _ in PROBE_LEVELS)
"""Training probe sides as fractions of the tile side (1/2, 1/4)."""


def _resize(gray: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average resize (both sides use it; LANCZOS, pHash's own filter, costs 3x as much per tile here)."""
    img = Image.fromarray(np.ascontiguousarray(gray))
    return np.asarray(img.resize((width, height), Image.Resampling.BOX), dtype=np.float64)


def _block_hashes(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 hash, texture = std) of (B, 32, 32) blocks by the pHash recipe (no exact-tie fallback)."""
    low = np.matmul(np.matmul(DCT_LOW, blocks), DCT_LOW.T).reshape(len(blocks), -1)
    bits = low > np.median(low, axis=1, keepdims=True)
    return pack_bits(bits), blocks.std(axis=(1, 2))


def _level_windows(grid: int, per_axis: int) -> np.ndarray:
    """(per_axis**2, 4) windows (x, y, w, h) of one level in units of the resized grid, row-major."""
    step = (grid - IMG_SIZE) // (per_axis - 1)
    ys, xs = np.divmod(np.arange(per_axis * per_axis), per_axis)
    return np.stack([xs * step, ys * step, np.full_like(xs, IMG_SIZE), np.full_like(xs, IMG_SIZE)], axis=1) / grid


_UNIT_WINDOWS = np.concatenate([_level_windows(g, n) for g, n in PROBE_LEVELS]).astype(np.float32)


def tile_probes(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probes of one training tile's grey view: (hashes, textures, windows) with windows as (x, y, w, h) in tile
    pixels (float), level by level (PROBE_LEVELS), row-major from the top-left. Any region of at least half a
    tile's side, anywhere in the scene, holds one quarter-tile window whole (the step is 1/8 of the tile)."""
    h, w = gray.shape
    fine = _resize(gray, PROBE_LEVELS[-1][0], PROBE_LEVELS[-1][0])
    blocks = []
    for grid, per_axis in PROBE_LEVELS:
        f = fine.shape[0] // grid  # coarser levels by block means of the finest: one resize per tile
        small = fine.reshape(grid, f, grid, f).mean(axis=(1, 3)) if f > 1 else fine
        step = (grid - IMG_SIZE) // (per_axis - 1)
        blocks.append(sliding_window_view(small, (IMG_SIZE, IMG_SIZE))[::step, ::step].reshape(-1, IMG_SIZE, IMG_SIZE))
    hashes, textures = _block_hashes(np.concatenate(blocks))
    return hashes, textures, _UNIT_WINDOWS * np.array([w, h, w, h], np.float32)


def probe_sides(train_sides: Iterable[float]) -> tuple[int, ...]:
    """Eval window sides (eval pixels) that cover the training probe sides (PROBE_FRACTIONS of the tile sides)
    rescaled by SCALE_RANGE, on a geometric ladder of ratio SCALE_STEP."""
    probes = sorted({s * f for s in train_sides if s > 0 for f in PROBE_FRACTIONS})
    if not probes:
        return ()
    lo, hi = probes[0] * SCALE_RANGE[0], probes[-1] * SCALE_RANGE[1]
    steps = math.ceil(math.log(hi / lo) / math.log(SCALE_STEP))
    sides = {max(MIN_PROBE_SIDE, round(lo * SCALE_STEP**k)) for k in range(steps + 1)}
    return tuple(sorted(sides))


def chip_sides(chip: int, sides: tuple[int, ...]) -> list[int]:
    """The probe sides an eval chip needs: those from a quarter to half of its side. Whatever its scale, a chip
    covers a region twice as wide as the largest training probe level that it must hold whole (a window plus the
    gap between tiles), so that level appears in the chip at between chip/4 and chip/2. A chip larger than every
    level takes the largest octave of sides that fit in it."""
    fitting = [s for s in sides if s <= chip]
    wanted = [s for s in fitting if chip / 4 <= s <= chip / 2]
    if wanted or not fitting:
        return wanted
    return [s for s in fitting if s >= fitting[-1] / 2]


def _block_std(img: np.ndarray, step: int) -> np.ndarray:
    """(ny, nx) std of every IMG_SIZE x IMG_SIZE block at a step of `step`, from integral images."""
    def block_sums(a: np.ndarray) -> np.ndarray:
        c = np.pad(a.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        n = IMG_SIZE
        return (c[n:, n:] - c[:-n, n:] - c[n:, :-n] + c[:-n, :-n])[::step, ::step]

    area = IMG_SIZE * IMG_SIZE
    mean = block_sums(img) / area
    return np.sqrt(np.maximum(block_sums(img * img) / area - mean * mean, 0.0))


def chip_probes(gray: np.ndarray, sides: tuple[int, ...],
                min_texture: float = LOW_TEXTURE_STD) -> tuple[np.ndarray, np.ndarray]:
    """Dense probes of an eval chip's grey view: (hashes, windows (x, y, w, h) in chip pixels), textured windows
    only, for every side that fits in the chip. The step is one resized pixel (1/32 of a window) while the chip
    holds at most two windows a side; in a larger chip several training probes fall inside it at different
    phases, so the step grows with chip / side (at most MAX_STEP) and the probe count stays bounded."""
    h, w = gray.shape
    hashes, windows = [], []
    for side in chip_sides(min(h, w), sides):
        step = int(np.clip(round(min(h, w) / side / 2), 1, MAX_STEP))
        f = IMG_SIZE / side  # resized pixels per chip pixel
        rw, rh = max(IMG_SIZE, round(w * f)), max(IMG_SIZE, round(h * f))
        small = _resize(gray, rw, rh)
        rows = (sliding_window_view(small, IMG_SIZE, axis=1)[:, ::step] @ DCT_LOW.T)  # (rh, nx, 8): DCT along x
        cols = sliding_window_view(rows, IMG_SIZE, axis=0)[::step]  # (ny, nx, 8, 32)
        coeffs = np.einsum("ui,yxvi->yxuv", DCT_LOW, cols, optimize=True)
        ny, nx = coeffs.shape[:2]
        flat = coeffs.reshape(ny * nx, -1)
        bits = flat > np.median(flat, axis=1, keepdims=True)
        keep = _block_std(small, step).reshape(-1) >= min_texture
        ys, xs = np.divmod(np.flatnonzero(keep), nx)
        sx, sy = w / rw, h / rh  # chip pixels per resized pixel, each axis
        hashes.append(pack_bits(bits[keep]))
        windows.append(np.stack([xs * step * sx, ys * step * sy, np.full(len(xs), IMG_SIZE * sx),
                                 np.full(len(xs), IMG_SIZE * sy)], axis=1).astype(np.float32))
    if not hashes:
        return np.zeros(0, np.uint64), np.zeros((0, 4), np.float32)
    return np.concatenate(hashes), np.concatenate(windows)


PROBE_SCHEMA = pa.schema([("row", pa.int32()), ("x", pa.float32()), ("y", pa.float32()), ("w", pa.float32()),
                          ("h", pa.float32()), ("phash", pa.uint64())])
"""A unit's probes: the candidate's row in the unit, the window (x, y, w, h) in the tile's pixels, its hash."""


def probe_table(rows: list[np.ndarray], hashes: list[np.ndarray], windows: list[np.ndarray]) -> pa.Table:
    """One table of the probes of several tiles (per-tile arrays of rows, hashes and (n, 4) windows)."""
    win = np.concatenate(windows) if windows else np.zeros((0, 4), np.float32)
    return pa.table({
        "row": np.concatenate(rows) if rows else np.zeros(0, np.int32),
        **{c: win[:, k] for k, c in enumerate("xywh")},
        "phash": np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
    }, schema=PROBE_SCHEMA)
