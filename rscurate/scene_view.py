"""A scene's decimated view assembled from the pixels the tile pass reads, so no scene is decoded twice.

The whole-scene signature (scene_hash) hashes a view of at most SCENE_VIEW_SIDE pixels a side. A file without
overviews can only give that view by decoding every pixel, which the tile pass does anyway; so each unit adds
the windows it reads (and the first unit of a scene the margins no window covers) to a ViewSum: per view cell,
the sum of the valid pixels under it and their count. Overlapping windows add only the part no earlier window
covers (coverage.owned_parts), so each pixel is added once and the view is the scene's own, whatever the
stride. A scene whose windows span several units is assembled from each unit's part after the tile stage.
A cell is the mean of the valid pixels under it, each weighted by its area inside the cell (a pixel on a
cell edge is shared by area): a box average, which GDAL's average resampling also gives at integer ratios.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rscurate.readers import SceneReader

log = logging.getLogger("rscurate")

SCENE_VIEW_SIDE = 256
"""Longer side (pixels) of the decimated view a scene signature is computed from."""
MARGIN_STRIP_BYTES = 64 * 2**20  # decoded bytes per read of a margin: memory stays bounded on any scene


def view_shape(width: int, height: int, max_side: int = SCENE_VIEW_SIDE) -> tuple[int, int]:
    """(rows, cols) of a width x height scene shrunk so its longer side is at most `max_side` (never enlarged)."""
    scale = max(width, height) / max_side
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


@dataclass(frozen=True)
class _Bins:
    """How source pixels start..start+n-1 of an axis fall into view cells (see _binned); parts in one row or column
    of windows share it, hence cached."""

    cells: int
    first: int  # first cell touched
    size: int  # cells touched
    runs: np.ndarray  # where the cell of each pixel's left edge changes
    split: np.ndarray  # pixels that straddle a cell edge (local index), the cell past the edge, and how much of
    after: np.ndarray  # each lies past it
    moved: np.ndarray
    weights: np.ndarray  # (size,) weight of every pixel in each cell: what a full-valid part adds to counts
    cell: np.ndarray  # per pixel (view_kernel): its first cell (local), its weight there, and in the next cell
    w0: np.ndarray
    w1: np.ndarray


@lru_cache(maxsize=4096)
def _bins(start: int, n: int, full: int, cells: int) -> _Bins:
    q = np.arange(start, start + n, dtype=np.int64)
    left, right = q * cells // full, ((q + 1) * cells - 1) // full  # cells of each pixel's first and last unit
    first = int(left[0])
    runs = np.flatnonzero(np.diff(left, prepend=-1))
    split = np.flatnonzero(right != left)
    moved = (q[split] + 1) * cells - right[split] * full
    weights = np.zeros(int(right[-1]) - first + 1, np.int64)
    weights[: len(runs)] = np.diff(runs, append=n) * cells
    weights[right[split] - first] += moved
    weights[right[split] - first - 1] -= moved
    w0, w1 = np.full(n, cells, np.int64), np.zeros(n, np.int64)
    w0[split] -= moved
    w1[split] = moved
    per_pixel = [left - first, w0, w1]
    for a in per_pixel:
        a.flags.writeable = False  # cached and shared: the kernel's signatures take them read-only
    return _Bins(cells, first, len(weights), runs, split, right[split] - first, moved, weights, *per_pixel)


def exact_ints(dtype: np.dtype, width: int, height: int) -> bool:
    """Whether a view's sums of `dtype` pixels stay exact integers in float64 (below 2^53) in any order of addition:
    integer bands of at most 16 bits; a cell's weights add up to height x width (see _binned), so its sum is at
    most that times the largest value."""
    return dtype.kind in "ui" and dtype.itemsize <= 2 and 2**16 * width * height < 2**53


def _binned(a: np.ndarray, axis: int, bins: _Bins, dtype: type) -> np.ndarray:
    """Sums of `a` along `axis` per view cell, each source pixel weighted by how much of it lies in the cell. On a
    scale of 1/cells of a pixel, pixel q spans [q * cells, (q + 1) * cells) and cell c spans [c * full, (c + 1) *
    full), so every weight is an integer (exact sums of integer pixels, in any order) and a pixel that straddles a
    cell edge is shared between the two cells by area: views of one ground at two resolutions then cover the same
    ground cell by cell. A pixel spans at most two cells (cells <= full), and no two straddle one edge."""
    shape = list(a.shape)
    shape[axis] = bins.size
    out = np.zeros(shape, dtype)
    head = [slice(None)] * a.ndim
    head[axis] = slice(0, len(bins.runs))
    out[tuple(head)] = np.add.reduceat(a, bins.runs, axis=axis, dtype=dtype) * bins.cells
    if len(bins.split):  # move the part of each straddling pixel past the edge to the next cell
        weight = bins.moved.reshape([-1 if k == axis else 1 for k in range(a.ndim)])
        moved = np.take(a, bins.split, axis=axis).astype(dtype) * weight
        at = [slice(None)] * a.ndim
        at[axis] = bins.after
        out[tuple(at)] += moved
        at[axis] = bins.after - 1
        out[tuple(at)] -= moved
    return out


# Compiled sums for exact integers (view_kernel: 6-11x numpy's per tile, bench/view_binning.py) cost a process
# ~0.4 s to load numba and the cached code, more than a small build's whole view; so a process bins with numpy
# until its estimated numpy time reaches that cost, then loads the kernel (rent until renting has cost the price:
# never worse than twice the best choice made in hindsight). Exact sums are equal either way, so which one ran
# never shows in the output.
KERNEL_AFTER_S = 0.4
# numpy's time per part added, and per run of pixels summed into one cell along a row (add.reduceat's calls),
# fitted on 64-256 px parts of 300-7,681 px scenes (bench/view_binning.py times the two paths)
_NUMPY_PART_S, _NUMPY_RUN_S = 30e-6, 25e-9
_numpy_estimate = 0.0
_kernel: Callable[..., None] | None = None
# A build's client knows every scene's view before the tile stage, so it tells each worker its share of numpy's
# binning (plan_views): a share above what the kernel costs in all (its load, measured 0.44 s by
# bench/view_binning.py, and a sixth of numpy's time to run) loads it before the first part; a smaller one keeps
# numpy, where renting up to KERNEL_AFTER_S would load it after most of the work is done, unless the share proves
# larger than planned.
KERNEL_LOAD_S = 0.45
_KERNEL_SPEEDUP = 6
_rent_until = KERNEL_AFTER_S  # numpy's estimated time at which this process loads the kernel


def numpy_view_seconds(width: int, height: int, bands: int, dtype: str, windows: int) -> float:
    """Estimated seconds numpy's binning spends on a width x height scene's view assembled from `windows` tile
    windows (each pixel added once: about `height` rows, each summed in as many runs as the view has columns);
    0 for views the kernel never bins (not exact_ints)."""
    rows, cols = view_shape(width, height)
    if not exact_ints(np.dtype(dtype), cols, rows):
        return 0.0
    return _NUMPY_PART_S * windows + _NUMPY_RUN_S * bands * height * cols


def worth_compiling(numpy_seconds: float) -> bool:
    """Whether a process that will bin views worth `numpy_seconds` of numpy should load the kernel first."""
    return numpy_seconds * (1 - 1 / _KERNEL_SPEEDUP) > KERNEL_LOAD_S


def plan_views(numpy_seconds: float) -> None:
    """This process's share of a build's views, in numpy's estimated seconds (run on each worker by the client):
    the next exact part loads the kernel when it is worth_compiling, else numpy bins until the share proves larger
    than planned and the rental has cost the price. A process where the kernel failed to load keeps numpy."""
    global _rent_until
    if _numpy_estimate != float("-inf"):
        _rent_until = _numpy_estimate + (0.0 if worth_compiling(numpy_seconds)
                                         else max(KERNEL_AFTER_S, numpy_seconds))


def _compiled() -> Callable[..., None] | None:
    """view_kernel.bin_sums, loaded on first use; None (numpy then bins everything) where numba cannot load or
    compile it, e.g. with no writable cache directory: a slower build, not a failed one."""
    global _kernel, _numpy_estimate
    if _kernel is None:
        try:
            from rscurate.view_kernel import bin_sums  # lazily: numba is only worth loading for large views
        except Exception as err:  # numba's errors have no common base
            log.warning("scene views binned with numpy: the compiled kernel did not load (%s); set NUMBA_CACHE_DIR "
                        "to a writable folder if numba could not cache it", err)
            _numpy_estimate = float("-inf")
            return None
        _kernel = bin_sums
    return _kernel


def _area_sums(data: np.ndarray, rows: _Bins, cols: _Bins, exact: bool, dtype: type) -> np.ndarray:
    """The (C, rows.size, cols.size) area-weighted sums of (C, h, w) pixels (see _binned): compiled when exact (and
    in native byte order, the kernel's types) and worth loading, else numpy's, in the order of additions that float
    rounding depends on."""
    global _numpy_estimate
    if (exact and data.dtype.isnative and (_kernel is not None or _numpy_estimate >= _rent_until)
            and (bin_sums := _compiled()) is not None):
        sums = np.zeros((data.shape[0], rows.size + 1, cols.size + 1), np.int64)
        bin_sums(data, rows.cell, rows.w0, rows.w1, cols.cell, cols.w0, cols.w1, sums)
        return sums[:, :-1, :-1]
    if exact:
        _numpy_estimate += _NUMPY_PART_S + _NUMPY_RUN_S * data.shape[0] * data.shape[1] * len(cols.runs)
    return _binned(_binned(data, 2, cols, dtype), 1, rows, dtype)


@dataclass
class ViewSum:
    """Per view cell, the sum of each data band's valid pixels (float64: exact for any integer tile) and their
    count; `windows` tile windows and (with `margins`) the rest of the scene have been added; `failed`: a read
    under it did not decode, so the scene goes unsigned (its tiles record the error)."""

    source: str
    scene: str
    width: int
    height: int
    dtype: str
    bands: tuple[str, ...]
    sums: np.ndarray  # (bands, rows, cols)
    counts: np.ndarray  # (rows, cols)
    windows: int = 0
    margins: bool = False
    failed: bool = False

    @classmethod
    def empty(cls, source: str, scene: str, reader: SceneReader) -> ViewSum:
        shape = view_shape(reader.width, reader.height)
        names = tuple(b.name for b in reader.data_bands)
        return cls(source, scene, reader.width, reader.height, reader.dtype, names,
                   np.zeros((len(names), *shape)), np.zeros(shape, np.int64))

    def add(self, x: int, y: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Add the (C, h, w) pixels read at column x, row y, area-weighted (see _binned)."""
        ok = valid & np.isfinite(data).all(axis=0) if data.dtype.kind == "f" else valid
        rows = _bins(y, data.shape[1], self.height, self.sums.shape[1])
        cols = _bins(x, data.shape[2], self.width, self.sums.shape[2])
        full = bool(ok.all())
        masked = data if full else np.where(ok, data, 0)
        exact = exact_ints(data.dtype, self.width, self.height)
        sums = _area_sums(masked, rows, cols, exact, np.float64)
        self.sums[:, rows.first : rows.first + rows.size, cols.first : cols.first + cols.size] += sums
        if full:  # every pixel counts: the cells' areas
            counts = np.outer(rows.weights, cols.weights)
        else:
            counts = _area_sums(ok.view(np.uint8)[None], rows, cols, True, np.int64)[0]
        self.counts[rows.first : rows.first + rows.size, cols.first : cols.first + cols.size] += counts

    def add_parts(self, window: tuple[int, int, int, int], parts: list[tuple[int, int, int, int]],
                  data: np.ndarray, valid: np.ndarray) -> None:
        """Add the `parts` (x, y, w, h inside `window`) of the pixels read for `window`."""
        for x, y, w, h in parts:
            dx, dy = x - window[0], y - window[1]
            self.add(x, y, data[:, dy : dy + h, dx : dx + w], valid[dy : dy + h, dx : dx + w])

    def merge(self, other: ViewSum) -> None:
        """Add another unit's part of the same scene."""
        self.sums += other.sums
        self.counts += other.counts
        self.windows += other.windows
        self.margins |= other.margins
        self.failed |= other.failed

    # counts are in units of 1 / (rows x cols) of a pixel (see _binned): a whole cell is width x height of them

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """The view as (data in the scene's dtype, valid): each cell the area-weighted mean of its valid pixels."""
        mean = self.sums / np.maximum(self.counts, 1)
        dtype = np.dtype(self.dtype)
        if dtype.kind in "ui":  # rounded and clamped, as GDAL writes an averaged integer band
            info = np.iinfo(dtype)
            mean = np.clip(np.rint(mean), info.min, info.max)
        return mean.astype(dtype), self.counts > 0


def strips(window: tuple[int, int, int, int], pixel_bytes: int) -> Iterator[tuple[int, int, int, int]]:
    """A margin window cut into full-width strips of at most MARGIN_STRIP_BYTES decoded bytes (at least one row)."""
    x, y, w, h = window
    rows = max(1, MARGIN_STRIP_BYTES // max(1, pixel_bytes * w))
    for top in range(y, y + h, rows):
        yield x, top, w, min(rows, y + h - top)


def view_path(work: Path, source: str, scene: str) -> Path:
    """Where a build keeps the view a scene was signed from (under its `_work/`), for the scene-pair pixel check."""
    digest = hashlib.sha256(f"{source}\0{scene}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
    return work / "views" / f"{digest}.npz"


def save_view(path: Path, data: np.ndarray, valid: np.ndarray) -> None:
    """Write a view (atomically: a killed write leaves no file, and the check then reads the scene's overview)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        np.savez(fh, data=data, valid=valid)
    tmp.replace(path)


def load_view(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """A view saved by save_view, or None when the scene has none (signed from overviews, or never assembled)."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return f["data"], f["valid"]
    except FileNotFoundError:
        return None
