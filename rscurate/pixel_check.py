"""Pixels decide: the check every duplicate or leak candidate must pass after a hash or a footprint proposed it.

pHash is tolerant by design: two acquisitions of one place weeks apart (seasonal change, new buildings) hash
within the radius as easily as a re-encoded copy. So a candidate pair is compared on its pixels, over the ground
both show, on a common grid of at most GRID cells a side (coarse enough that JPEG noise, resampling and a pixel of
misregistration wash out, fine enough that real change shows):
- structure: Pearson correlation of the two canonical grey views over cells valid in both (a re-encode, a resample
  or an 8-bit rendering of the same acquisition keeps it near 1; different acquisitions lose it);
- radiometry: where both tiles hold a band of the same name in the same dtype (the same units), the RMS difference
  of that band over the pooled std; the median over shared bands is `change`. Two dates whose grey structure agrees
  still differ here (vegetation growth raises near-infrared by 20 %). The thresholds are fitted on real pairs
  (docs/dedup.md, section 8a) and asserted by tests/test_pixel_check.py.
How the two tiles are put on one grid depends on what is known: their georeference (same CRS), a placement found
by the eval-leak search (offset and scale), or nothing (whole views, with a small shift search).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from rscurate.codec import decode, decode_mask
from rscurate.footprints import same_frame
from rscurate.parquet_io import read_rows
from rscurate.phash import canonical_view
from rscurate.pil_resize import resize_stack
from rscurate.readers import valid_from_nodata

GRID = 64
"""Longer side (cells) of the common grid two tiles are compared on."""
MIN_CELL_PIXELS = 2
"""Smallest cell side (pixels of the compared part) of that grid."""
SHIFT_SEARCH = 2
"""Cells of shift tried each way when two views are aligned by their content only."""
GEO_SHIFT = 1
"""Cells of shift tried each way for georegistered tiles: georeferences of copies can disagree by a pixel (the
sample's rgbn_subb crop is 0.4 px off its parent's grid)."""
MIN_CORRELATION = 0.9
"""Structure: below this correlation of the grey views two tiles are different content."""
MAX_CHANGE = 0.6
"""Radiometry: above this median RMS difference / pooled std over shared bands (same units) they are different
acquisitions (near-identical clear days score 0.2-0.5, a month of growth 0.8-1.2; docs/dedup.md)."""
MIN_CELLS = 16
"""Fewer joint valid cells than this cannot decide anything: the pair is not confirmed."""


@dataclass(frozen=True)
class Pixels:
    """A decoded tile and what is needed to put it on a grid with another one."""

    data: np.ndarray  # (C, H, W), stored dtype
    valid: np.ndarray  # (H, W) bool
    bands: list[str]
    crs: str = ""
    bounds: tuple[float, float, float, float] | None = None  # minx, miny, maxx, maxy in crs
    # parts already put on a grid with their bands, by (rows, cols, shape): a tile checked against several
    # others (the dates of one place) is resampled once per part, not once per pair
    grids: dict[tuple[int, int, int, int, tuple[int, int]], _Grid] = field(default_factory=dict, compare=False,
                                                                          repr=False)

    @property
    def height(self) -> int:
        return int(self.data.shape[1])

    @property
    def width(self) -> int:
        return int(self.data.shape[2])


@dataclass(frozen=True)
class Similarity:
    """How alike two tiles are over the ground both show."""

    correlation: float  # of the canonical grey views; -1 when too few cells
    change: float | None  # median RMS difference / pooled std over shared same-unit bands; None without any
    cells: int  # joint valid cells on the common grid
    covered: tuple[float, float]  # fraction of each tile's valid pixels that lie on the other's valid pixels
    placement: tuple[float, float, float] | None = None  # placed(): the refined (x, y, scale) of the chip

    @property
    def same_content(self) -> bool:
        """True when the pixels confirm a copy: enough shared cells, same structure, no radiometric change."""
        if self.cells < MIN_CELLS or self.correlation < MIN_CORRELATION:
            return False
        return self.change is None or self.change <= MAX_CHANGE


NOT_COMPARABLE = Similarity(-1.0, None, 0, (0.0, 0.0))


# --- resampling on a grid -------------------------------------------------------------------------------


def _grid_shape(h: float, w: float) -> tuple[int, int]:
    """At most GRID cells a side and at least MIN_CELL_PIXELS pixels a cell (resampled copies differ pixel by
    pixel: the sample's rgbn_subb crop is resampled 0.4 px off its parent's grid)."""
    scale = min(1.0 / MIN_CELL_PIXELS, GRID / max(h, w, 1.0))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _resample(layers: Sequence[np.ndarray] | np.ndarray, valid: np.ndarray, shape: tuple[int, int],
              gray: np.ndarray | None = None) -> tuple[list[np.ndarray], np.ndarray]:
    """Valid-weighted box average of (h, w) layers onto `shape` (rows, cols); a cell is valid when at least
    half of the pixels under it are. Invalid pixels (NaN among them) count as 0; the layers are cast to float32 in
    place in the stack (64-bit integers through float64, so that they round once, as every other type does).
    `gray`: a float32 layer resampled first with them (each layer is resized alone: pil_resize)."""
    layers = np.asarray(layers)
    first = 1 if gray is None else 2
    stack = np.empty((len(layers) + first, *valid.shape), np.float32)
    stack[0] = valid
    if gray is not None:
        stack[1] = gray
    stack[first:] = layers.astype(np.float64) if layers.dtype.kind in "iu" and layers.dtype.itemsize == 8 else layers
    if not valid.all():
        stack[1:, ~valid] = 0.0
    resized = resize_stack(stack, shape, Image.Resampling.BOX)  # PIL's result, in two calls for all
    weight = resized[0]
    ok = weight >= 0.5
    return list(np.where(ok, resized[1:] / np.maximum(weight, 1e-6), 0.0)), ok


@dataclass(frozen=True)
class _Grid:
    """One tile's part on the common grid: grey view, raw bands by name, validity."""

    gray: np.ndarray
    bands: dict[str, np.ndarray]
    valid: np.ndarray
    dtype: str

    @cached_property
    def windows(self) -> _Windows:
        """The grey view's stable sort and its windows' statistics, made once per grid: a tile's grid serves all its
        pairs (Pixels.grids)."""
        return _Windows(self.gray)


def _gray(p: Pixels) -> np.ndarray:
    return canonical_view(p.data, p.bands, p.valid).astype(np.float32)


def _on_grid(p: Pixels, rows: slice, cols: slice, shape: tuple[int, int], gray: np.ndarray | None = None,
             with_bands: bool = True) -> _Grid:
    """p's part (rows, cols) on the grid; `gray`: p's whole grey view when already made (placement search),
    cropped rather than made again; without bands only the structure can be scored."""
    key = (rows.start, rows.stop, cols.start, cols.stop, shape)
    if gray is None and with_bands and key in p.grids:
        return p.grids[key]
    data, valid = p.data[:, rows, cols], p.valid[rows, cols]
    part = gray[rows, cols] if gray is not None else canonical_view(data, p.bands, valid).astype(np.float32)
    finite = np.all(np.isfinite(data), axis=0) & valid if with_bands and data.dtype.kind == "f" else valid
    if with_bands and (finite is valid or np.array_equal(finite, valid)):  # one validity: one stack for all
        (grid_gray, *layers), ok = _resample(data, valid, shape, gray=part)
    else:
        (grid_gray,), ok = _resample([part], valid, shape)
        layers = _resample(data, finite, shape)[0] if with_bands else []
    bands = dict(zip(p.bands, layers, strict=True)) if with_bands else {}
    grid = _Grid(grid_gray, bands, ok, p.data.dtype.name)
    if gray is None and with_bands:
        p.grids[key] = grid
    return grid


Centered = tuple[np.ndarray, np.floating]  # values less their mean, and the sum of their squares


def _centered(x: np.ndarray) -> Centered:
    x = x - x.mean()
    return x, (x * x).sum()


class _Windows:
    """What the correlations need of the cells a shift selects from one grid: their grey values and Spearman ranks,
    each centred, with its sum of squares. Ranks come from one sort of the grid instead of one per shift: a window's
    cells in row-major order keep the grid's row-major order, so their stable ranks are the grid's stable order
    counted over the selected cells (ties in the same order as a stable sort of the selection). A grid meets the same
    shifted windows in each of its pairs (a date against every other date of its place): fully valid ones are
    computed once (read-only)."""

    def __init__(self, gray: np.ndarray) -> None:
        self.gray = gray
        self.order = np.argsort(gray.ravel(), kind="stable")
        self.whole: dict[tuple[int | None, ...], tuple[Centered, Centered]] = {}

    def of(self, rows: slice, cols: slice, ok: np.ndarray) -> tuple[Centered, Centered]:
        """(grey values, ranks) of `gray[rows, cols][ok]`, centred."""
        if not ok.all():
            return _centered(self.gray[rows, cols][ok]), _centered(self.ranks(rows, cols, ok))
        key = (rows.start, rows.stop, cols.start, cols.stop)
        if key not in self.whole:
            found = self.whole[key] = _centered(self.gray[rows, cols][ok]), _centered(self.ranks(rows, cols, ok))
            for values, _ in found:
                values.flags.writeable = False
        return self.whole[key]

    def ranks(self, rows: slice, cols: slice, ok: np.ndarray) -> np.ndarray:
        """Ranks (0.0, 1.0, ...) of `gray[rows, cols][ok]`, in that order."""
        chosen = np.zeros(self.gray.shape, bool)
        chosen[rows, cols] = ok
        rank = np.empty(chosen.size)
        rank[self.order] = np.cumsum(chosen.ravel()[self.order]) - 1
        return rank.reshape(self.gray.shape)[rows, cols][ok]


def _pearson(x: Centered, y: Centered) -> float:
    den = np.sqrt(x[1] * y[1])
    return float((x[0] * y[0]).sum() / den) if den > 0 else -1.0


def _correlation(a: tuple[Centered, Centered], b: tuple[Centered, Centered]) -> float:
    """The larger of Pearson's and Spearman's correlation (Pearson's of the ranks) of two windows' (grey values,
    ranks): a linear rescaling keeps the first near 1, any monotonic rendering (a stretch with clipping, a gamma)
    the second, where Pearson's drops wherever one rendering saturates."""
    return max(_pearson(a[0], b[0]), _pearson(a[1], b[1]))


def _change(a: _Grid, b: _Grid, ok: np.ndarray) -> float | None:
    if a.dtype != b.dtype:
        return None  # other units (an 8-bit rendering of a 16-bit scene): structure alone decides
    shared = [n for n in a.bands if n in b.bands]
    if not shared:
        return None
    x, y = np.stack([a.bands[n][ok] for n in shared]), np.stack([b.bands[n][ok] for n in shared])  # (bands, cells)
    spread = np.sqrt(0.5 * (x.var(axis=1) + y.var(axis=1)))
    rms = np.sqrt(np.mean((x - y) ** 2, axis=1))
    keep = spread > 0
    return float(np.median(rms[keep] / spread[keep])) if keep.any() else None


def _score(a: _Grid, b: _Grid, covered: tuple[float, float], shift: int = 0) -> Similarity:
    """Best similarity of two grids over shifts of up to `shift` cells each way (0: as registered): the shift of
    the highest correlation (the first of equals), and the radiometric change there."""
    best: tuple[float, int, tuple[slice, slice, slice, slice], np.ndarray] | None = None
    h, w = a.valid.shape
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            ra, rb = slice(max(dy, 0), h + min(dy, 0)), slice(max(-dy, 0), h + min(-dy, 0))
            ca, cb = slice(max(dx, 0), w + min(dx, 0)), slice(max(-dx, 0), w + min(-dx, 0))
            ok = a.valid[ra, ca] & b.valid[rb, cb]
            cells = int(ok.sum())
            if cells < MIN_CELLS:
                continue
            corr = _correlation(a.windows.of(ra, ca, ok), b.windows.of(rb, cb, ok))
            if corr > (best[0] if best else NOT_COMPARABLE.correlation):
                best = corr, cells, (ra, ca, rb, cb), ok
    if best is None:
        return NOT_COMPARABLE
    corr, cells, (ra, ca, rb, cb), ok = best
    sub_a = _Grid(a.gray[ra, ca], {k: v[ra, ca] for k, v in a.bands.items()}, a.valid[ra, ca], a.dtype)
    sub_b = _Grid(b.gray[rb, cb], {k: v[rb, cb] for k, v in b.bands.items()}, b.valid[rb, cb], b.dtype)
    return Similarity(corr, _change(sub_a, sub_b, ok), cells, covered)


def _covered(p: Pixels, part: tuple[slice, slice], joint_cells: int, grid_cells: int) -> float:
    """Share of p's valid pixels that lie on joint valid cells (each cell stands for part-area / grid-cells
    pixels of p)."""
    total = int(p.valid.sum())
    part_pixels = (part[0].stop - part[0].start) * (part[1].stop - part[1].start)
    return min(1.0, joint_cells * part_pixels / grid_cells / total) if total else 0.0


def _shared_bands(a: Pixels, b: Pixels) -> tuple[Pixels, Pixels]:
    """Both tiles restricted to the bands they share by name, when their band sets differ but overlap (a band
    subset is compared on its own bands, not on a grey view of bands it lacks)."""
    shared = [n for n in a.bands if n in b.bands]
    if not shared or (shared == a.bands and shared == b.bands):
        return a, b

    def take(p: Pixels) -> Pixels:
        keep = [p.bands.index(n) for n in shared]
        return Pixels(p.data[keep], p.valid, shared, p.crs, p.bounds)

    return take(a), take(b)


def _compare_parts(a: Pixels, ra: tuple[slice, slice], b: Pixels, rb: tuple[slice, slice], shape: tuple[int, int],
                   shift: int, grays: tuple[np.ndarray, np.ndarray] | None = None) -> Similarity:
    """Similarity of a's part ra and b's part rb on a grid of `shape`. With `grays` (both tiles' whole grey
    views, bands already shared) only the structure is scored: the cheap step of a placement search."""
    if grays is None:
        a, b = _shared_bands(a, b)
    ga = _on_grid(a, *ra, shape, grays[0] if grays else None, with_bands=grays is None)
    gb = _on_grid(b, *rb, shape, grays[1] if grays else None, with_bands=grays is None)
    joint, cells = int((ga.valid & gb.valid).sum()), shape[0] * shape[1]
    return _score(ga, gb, (_covered(a, ra, joint, cells), _covered(b, rb, joint, cells)), shift)


# --- the three ways of registering two tiles ---------------------------------------------------------------


def _pixel_box(p: Pixels, box: tuple[float, float, float, float]) -> tuple[slice, slice] | None:
    """Rows and columns of p under a CRS box (minx, miny, maxx, maxy), at least one pixel each way."""
    assert p.bounds is not None
    minx, miny, maxx, maxy = p.bounds
    px, py = (maxx - minx) / p.width, (maxy - miny) / p.height
    c0, c1 = round((box[0] - minx) / px), round((box[2] - minx) / px)
    r0, r1 = round((maxy - box[3]) / py), round((maxy - box[1]) / py)
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, p.width), min(r1, p.height)
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(r0, r1), slice(c0, c1)


def _one_frame(a: Pixels, b: Pixels) -> bool:
    """Both tiles georeferenced, in one CRS however it is written (footprints.same_frame)."""
    if a.bounds is None or b.bounds is None:
        return False
    return same_frame(a.crs, b.crs, (a.bounds[0] + a.bounds[2]) / 2, (a.bounds[1] + a.bounds[3]) / 2)


def georegistered(a: Pixels, b: Pixels) -> Similarity:
    """Two tiles in one CRS, compared over the intersection of their footprints."""
    if not _one_frame(a, b):
        return NOT_COMPARABLE
    box = (max(a.bounds[0], b.bounds[0]), max(a.bounds[1], b.bounds[1]),
           min(a.bounds[2], b.bounds[2]), min(a.bounds[3], b.bounds[3]))
    if box[2] <= box[0] or box[3] <= box[1]:
        return NOT_COMPARABLE
    ra, rb = _pixel_box(a, box), _pixel_box(b, box)
    if ra is None or rb is None:
        return NOT_COMPARABLE
    rows = min(ra[0].stop - ra[0].start, rb[0].stop - rb[0].start)
    cols = min(ra[1].stop - ra[1].start, rb[1].stop - rb[1].start)
    return _compare_parts(a, ra, b, rb, _grid_shape(rows, cols), shift=GEO_SHIFT)


def whole_views(a: Pixels, b: Pixels) -> Similarity:
    """Two tiles known only to look alike (no common georeference): whole views on one grid, small shifts."""
    if abs(a.width / a.height - b.width / b.height) > 0.05 * (a.width / a.height):
        return NOT_COMPARABLE
    shape = _grid_shape(min(a.height, b.height), min(a.width, b.width))
    full_a = (slice(0, a.height), slice(0, a.width))
    full_b = (slice(0, b.height), slice(0, b.width))
    return _compare_parts(a, full_a, b, full_b, shape, shift=SHIFT_SEARCH)


REFINE_REACH = 0.1
"""How far (share of the chip's side, and of scale) the refinement may move a placement."""
START_SCALES = (0.92, 0.96, 1.0, 1.04, 1.08)
"""Scale corrections scanned before hill climbing."""
REFINE_STEPS = ((8.0, 1.04), (4.0, 1.02), (2.0, 1.01), (1.0, 1.005))
"""Hill-climbing steps (tile pixels, scale ratio) that refine a placement found by probe votes: on textured
imagery a 2 px or 4 % error already costs 0.1-0.3 of correlation."""


def _placed_once(chip: Pixels, tile: Pixels, x: float, y: float, scale: float,
                 grays: tuple[np.ndarray, np.ndarray] | None = None) -> Similarity:
    c0, r0 = max(0.0, x), max(0.0, y)
    c1, r1 = min(float(tile.width), x + chip.width * scale), min(float(tile.height), y + chip.height * scale)
    if c1 - c0 < 4 or r1 - r0 < 4:
        return NOT_COMPARABLE
    rt = (slice(round(r0), round(r1)), slice(round(c0), round(c1)))
    rc = (slice(round((r0 - y) / scale), round((r1 - y) / scale)),
          slice(round((c0 - x) / scale), round((c1 - x) / scale)))
    if rc[0].stop <= rc[0].start or rc[1].stop <= rc[1].start:
        return NOT_COMPARABLE
    return _compare_parts(chip, rc, tile, rt, _grid_shape(r1 - r0, c1 - c0), shift=0, grays=grays)


def placed(chip: Pixels, tile: Pixels, x: float, y: float, scale: float) -> Similarity:
    """A chip whose pixel (0, 0) lies at tile pixel (x, y), one chip pixel spanning `scale` tile pixels (the
    placement the eval-leak search found), compared where they overlap, after refining the placement by
    coordinate descent over the chip's centre and scale (REFINE_STEPS, structure only), within REFINE_REACH of
    where the votes put it: the check confirms that placement, it does not search the tile."""
    chip, tile = _shared_bands(chip, tile)
    grays = (_gray(chip), _gray(tile))
    cx0, cy0 = x + chip.width * scale / 2, y + chip.height * scale / 2
    reach = max(16.0, REFINE_REACH * max(chip.width, chip.height) * scale)

    def at(cx: float, cy: float, f: float, quick: bool = True) -> Similarity:
        if abs(cx - cx0) > reach or abs(cy - cy0) > reach or abs(np.log(f / scale)) > np.log(1 + REFINE_REACH):
            return NOT_COMPARABLE
        return _placed_once(chip, tile, cx - chip.width * f / 2, cy - chip.height * f / 2, f,
                            grays if quick else None)

    best, cx, cy, f = NOT_COMPARABLE, cx0, cy0, scale
    for m in START_SCALES:  # the votes' scale can be several percent off: start from the best of a coarse scan
        sim = at(cx0, cy0, scale * m)
        if sim.correlation > best.correlation:
            best, f = sim, scale * m
    for step, ratio in REFINE_STEPS:
        moved = True
        while moved:
            moved = False
            for dx, dy, m in ((step, 0, 1), (-step, 0, 1), (0, step, 1), (0, -step, 1), (0, 0, ratio),
                              (0, 0, 1 / ratio)):
                sim = at(cx + dx, cy + dy, f * m)
                if sim.correlation > best.correlation + 1e-4:
                    best, cx, cy, f, moved = sim, cx + dx, cy + dy, f * m, True
    if not best.cells:
        return NOT_COMPARABLE
    final = at(cx, cy, f, quick=False)
    return replace(final, placement=(cx - chip.width * f / 2, cy - chip.height * f / 2, f))


def compare(a: Pixels, b: Pixels) -> Similarity:
    """Georegistered when both tiles are in one CRS with overlapping footprints, else by whole views."""
    if _one_frame(a, b):
        return georegistered(a, b)
    return whole_views(a, b)


# --- tasks over staged tiles (run on Dask workers) ---------------------------------------------------------

STAGED_COLUMNS = ["image", "encoding", "bands", "nodata", "crs", "minx", "miny", "maxx", "maxy", "valid_mask"]
Where = tuple[str, int]  # (staged parquet file relative to the corpus folder, row)


def staged_pixels(row: dict) -> Pixels:
    """A staged tile (a row with STAGED_COLUMNS) as Pixels."""
    data = decode(row["image"], row["encoding"])
    bounds = None if row["minx"] is None else (row["minx"], row["miny"], row["maxx"], row["maxy"])
    mask = decode_mask(row["valid_mask"])
    valid = valid_from_nodata(data, row["nodata"]) if mask is None else mask
    return Pixels(data, valid, list(row["bands"]), row["crs"] or "", bounds)


def check_tiles(root: str, pairs: list[tuple[Where, Where]]) -> list[Similarity]:
    """compare() of each pair of staged tiles under the corpus folder `root` (a Dask task)."""
    tiles = _staged_tiles(root, [w for pair in pairs for w in pair])
    return [compare(tiles[a], tiles[b]) for a, b in pairs]


def _staged_tiles(root: str, where: list[Where]) -> dict[Where, Pixels]:
    """Each distinct staged tile decoded once (a tile is in several of a task's pairs)."""
    distinct = list(dict.fromkeys(where))
    return {w: staged_pixels(row) for w, row in zip(distinct, read_rows(Path(root), distinct, STAGED_COLUMNS),
                                                    strict=True)}


def check_placements(root: str, items: list[tuple[Where, Where, float, float, float]]) -> list[Similarity]:
    """placed() of each (eval chip, training tile, x, y, scale) of staged tiles (a Dask task)."""
    tiles = _staged_tiles(root, [w for item in items for w in item[:2]])
    return [placed(tiles[chip], tiles[tile], *rest) for chip, tile, *rest in items]
