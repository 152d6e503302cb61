"""Per-band statistics: computed once per tile on the worker, merged exactly per source, band group and name.

A tile's band group is its stored dtype and band count (`uint8x3`). Within a source, band names only name the
same data inside one group: default names b1..bN of a 1-band and a 3-band file, or of 8-bit and 16-bit files,
do not. So a source whose kept tiles come in more than one group keeps one statistic per group, under
`name@group` keys (`b1@uint8x3`); a source with one group keeps plain band-name keys.

Each tile carries, per band, its valid-pixel moments and a sparse histogram with fixed bins, so
shard tasks merge statistics of the kept tiles without decoding them again, in any order:
- integer data of at most 16 bits: one bin per integer value (exact percentiles and moments);
- other data (floats, 32- and 64-bit ints): one bin per float64 value cut to 12 significant bits (sign, the full
  11-bit exponent and the top 11 mantissa bits), so a bin's value is within a relative 2**-11 of every pixel in it,
  at any magnitude (float16 bins, used before, overflowed above 65504); their moments are computed in float64.
  These histograms are sparse (only the bins seen), as 2**23 bins are too many to hold densely per band.
Only finite values are counted: quality.tile_stats leaves out NaN, infinity and nodata per band.
A percentile is the smallest value whose cumulative count reaches p% of the pixels
(numpy's method="inverted_cdf").
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
from PIL import Image

SPARSE = "float64/12bit"  # bin kind of data that is not integer of at most 16 bits
_CUT = 41  # float64 bits dropped from a value's bit pattern: 64 - 41 = 23 kept (sign, exponent, 11 mantissa bits)


def _sparse_keys(f: np.ndarray) -> np.ndarray:
    """Bin of each float64 value: its bit pattern cut to the top 23 bits (the value truncated towards zero)."""
    return (np.ascontiguousarray(f).view(np.uint64) >> np.uint64(_CUT)).astype(np.uint32)


def sparse_counts(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(keys, return_counts=True) of uint32 bin keys. A tile's values usually span a few binades, so
    their keys fall in a short range: counted there by np.bincount, about 6-10x faster than unique's sort (a
    14-band MODIS chip has 14 such bands); a wide range falls back to the sort, so memory stays bounded."""
    lo = keys.min()
    span = int(keys.max()) - int(lo) + 1
    if span > 4 * keys.size + 65536:
        return np.unique(keys, return_counts=True)
    dense = np.bincount(keys - lo, minlength=span)
    found = np.flatnonzero(dense)
    return found.astype(np.uint32) + lo, dense[found]


def _sparse_values(keys: np.ndarray) -> np.ndarray:
    return (keys.astype(np.uint64) << np.uint64(_CUT)).view(np.float64)


# Cached: called per band of every tile, and np.iinfo is slow next to a 256-bin histogram.
@cache
def _offset(kind: str) -> int:
    return -int(np.iinfo(np.dtype(kind)).min)


@cache
def _nbins(kind: str) -> int:
    return int(np.iinfo(np.dtype(kind)).max) + _offset(kind) + 1


@cache
def _bin_values(kind: str) -> np.ndarray:
    """The value of each bin of an integer kind (read-only: shared by all callers)."""
    values = np.arange(_nbins(kind), dtype=np.float64) - _offset(kind)
    values.flags.writeable = False
    return values


def _dense_counts(values: np.ndarray, kind: str, where: np.ndarray | None = None) -> np.ndarray:
    """Pixel count of every bin (bin = value + offset) of an integer band of at most 16 bits, as np.bincount gives,
    over the pixels where the same-shaped bool `where` is True (all when None).

    8-bit data is counted by PIL's histogram, which reads the bytes (and the mask) in place: about twice as fast as
    np.bincount, which first copies them to a 64-bit index array, and no masked copy of the band is made."""
    offset = _offset(kind)
    if values.itemsize == 1:
        raw = np.ascontiguousarray(values).view(np.uint8).reshape(1, -1)
        mask = None if where is None else _grey(np.ascontiguousarray(where).view(np.uint8).reshape(1, -1))
        dense = np.array(_grey(raw).histogram(mask), dtype=np.intp)
        return np.roll(dense, offset) if offset else dense  # int8: byte b holds b - 256 when b >= 128
    picked = (values if where is None else values[where]).ravel()
    return np.bincount(picked.astype(np.int32) + offset if offset else picked, minlength=_nbins(kind))


def _grey(row: np.ndarray) -> Image.Image:
    """A (1, N) uint8 array as a 1-row PIL image sharing its memory."""
    return Image.frombuffer("L", (row.shape[1], 1), row, "raw", "L", 0, 1)


@dataclass
class BandTileStats:
    """One band of one tile: valid-pixel moments and its sparse histogram."""

    count: int
    mean: float
    std: float
    min: float
    max: float
    kind: str
    keys: np.ndarray  # bin indices
    counts: np.ndarray


def dense_kind(dtype: np.dtype) -> bool:
    """Integers of at most 16 bits: one histogram bin per value."""
    return dtype.kind in "ui" and dtype.itemsize <= 2


def masked_band_stats(band: np.ndarray, where: np.ndarray | None, nodata: float | None) -> BandTileStats:
    """band_tile_stats of an integer band (dense_kind) over the pixels where `where` is True and the value is not
    `nodata` (a value the dtype holds): the histogram is counted under the mask and the nodata bin emptied, with no
    masked copy of the band."""
    kind = band.dtype.name
    dense = _dense_counts(band, kind, where)
    if nodata is not None and not np.isnan(nodata):
        dense[int(np.asarray(nodata).astype(band.dtype)) + _offset(kind)] = 0
    return dense_band_stats(dense, kind)


def dense_band_stats(dense: np.ndarray, kind: str) -> BandTileStats:
    """A tile band's moments and sparse histogram from its dense counts (NaN moments when empty)."""
    keys = np.flatnonzero(dense != 0)  # same keys as flatnonzero(dense), ~6x faster on 65536 int64 bins
    counts = dense[keys]
    n = int(counts.sum())
    if n == 0:
        nan = float("nan")
        return BandTileStats(0, nan, nan, nan, nan, SPARSE, np.zeros(0, np.uint32), np.zeros(0, np.intp))
    v = _bin_values(kind)[keys]
    mean = float((v * counts).sum() / n)
    var = float(((v - mean) ** 2 * counts).sum() / n)
    return BandTileStats(n, mean, var**0.5, float(v[0]), float(v[-1]), kind, keys.astype(np.uint16), counts)


def band_tile_stats(values: np.ndarray) -> BandTileStats:
    """Moments and histogram of one band's valid pixels (1-D, finite; NaN moments when empty)."""
    dtype = values.dtype
    if values.size == 0:
        nan = float("nan")
        return BandTileStats(0, nan, nan, nan, nan, SPARSE, np.zeros(0, np.uint32), np.zeros(0, np.intp))
    if dense_kind(dtype):
        return dense_band_stats(_dense_counts(values, dtype.name), dtype.name)
    f = values.astype(np.float64)
    keys, counts = sparse_counts(_sparse_keys(f))
    mean = float(f.mean())
    return BandTileStats(f.size, mean, float(f.std()), float(f.min()), float(f.max()), SPARSE, keys, counts)


@dataclass
class SparseHist:
    """Counts of sparse bins: sorted unique keys with their counts, plus added parts not yet folded in.

    Parts are folded once they outnumber the folded keys, so adding tile after tile costs about
    O(n log n) in all rather than a sort per tile."""

    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint32))
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    parts: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    pending: int = 0

    def add(self, keys: np.ndarray, counts: np.ndarray) -> None:
        self.parts.append((keys, counts))
        self.pending += len(keys)
        if self.pending > max(len(self.keys), 1 << 16):
            self.folded()

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """All keys seen (sorted, unique) and their counts."""
        if self.parts:
            keys = np.concatenate([self.keys, *(k for k, _ in self.parts)])
            counts = np.concatenate([self.counts, *(c for _, c in self.parts)]).astype(np.int64)
            self.keys, inverse = np.unique(keys, return_inverse=True)
            self.counts = np.zeros(len(self.keys), np.int64)
            np.add.at(self.counts, inverse, counts)
            self.parts, self.pending = [], 0
        return self.keys, self.counts


@dataclass
class BandAccumulator:
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    min: float = np.inf
    max: float = -np.inf
    dtypes: set[str] = field(default_factory=set)
    hists: dict[str, np.ndarray] = field(default_factory=dict)  # integer bin kind -> dense counts
    sparse: SparseHist = field(default_factory=SparseHist)  # SPARSE bins
    scalings: set[tuple[float, float]] = field(default_factory=set)  # (scale, offset) of the tiles' band

    def add(self, s: BandTileStats, dtype: str, scaling: tuple[float, float] = (1.0, 0.0)) -> None:
        """Add one tile's band, stored * scale + offset being its physical value."""
        if s.count == 0:
            return
        self.scalings.add(scaling)
        self.count += s.count
        self.total += s.count * s.mean
        self.total_sq += s.count * (s.std * s.std + s.mean * s.mean)
        self.min = min(self.min, s.min)
        self.max = max(self.max, s.max)
        self.dtypes.add(dtype)
        if s.kind == SPARSE:
            self.sparse.add(s.keys, s.counts)
            return
        dense = self.hists.get(s.kind)
        if dense is None:
            dense = self.hists[s.kind] = np.zeros(_nbins(s.kind), np.int64)
        dense[s.keys] += s.counts  # keys are unique within a tile

    def merge(self, other: BandAccumulator) -> None:
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.dtypes |= other.dtypes
        self.scalings |= other.scalings
        for kind, h in other.hists.items():
            self.hists[kind] = self.hists[kind] + h if kind in self.hists else h.copy()
        if other.sparse.pending or len(other.sparse.keys):
            self.sparse.add(*other.sparse.folded())

    def percentile(self, p: float) -> float:
        keys, cnts = self.sparse.folded()
        values, counts = [_sparse_values(keys)], [cnts]
        for kind, h in self.hists.items():
            nz = np.flatnonzero(h)
            values.append(_bin_values(kind)[nz])
            counts.append(h[nz])
        if not sum(len(v) for v in values):
            return float("nan")
        vals, cnts = np.concatenate(values), np.concatenate(counts)
        order = np.argsort(vals, kind="stable")
        cum = np.cumsum(cnts[order])
        k = int(np.searchsorted(cum, p / 100.0 * cum[-1], side="left"))
        return float(vals[order][min(k, len(vals) - 1)])

    def summary(self) -> dict[str, float | int | str]:
        n = self.count
        mean = self.total / n if n else float("nan")
        var = max(self.total_sq / n - mean * mean, 0.0) if n else float("nan")
        return {
            "count": n,
            "mean": mean,
            "std": float(np.sqrt(var)),
            "min": self.min if n else float("nan"),
            "max": self.max if n else float("nan"),
            "p1": self.percentile(1),
            "p99": self.percentile(99),
            "dtype": ",".join(sorted(self.dtypes)),
            # statistics are in stored units; null when the tiles under this key declare different scalings
            "scale": next(iter(self.scalings))[0] if len(self.scalings) == 1 else None,
            "offset": next(iter(self.scalings))[1] if len(self.scalings) == 1 else None,
        }


BandParts = dict[tuple[str, str, str], BandAccumulator]  # (source, band group, band name) -> accumulator


def group_key(dtype: str, channels: int) -> str:
    """A tile's band group: its stored dtype and band count, e.g. `uint8x3`."""
    return f"{dtype}x{channels}"


def band_key(name: str, group: str) -> str:
    """The statistics key of a band in a source that mixes band groups, e.g. `b1@uint8x3`."""
    return f"{name}@{group}"


def accumulate(sources: Sequence[str], bands: Sequence[Sequence[str]], dtypes: Sequence[str],
               per_tile: Sequence[Sequence[BandTileStats]], scales: Sequence[Sequence[float] | None] | None = None,
               offsets: Sequence[Sequence[float] | None] | None = None) -> BandParts:
    """Per (source, band group, band name) accumulators of some tiles, given each tile's source, band names,
    dtype and per-band statistics, and optionally each tile's per-band scale and offset (default 1 and 0)."""
    acc: BandParts = {}
    for t, (source, names, dtype, stats) in enumerate(zip(sources, bands, dtypes, per_tile, strict=True)):
        group = group_key(dtype, len(names))
        scale = (scales[t] if scales else None) or [1.0] * len(names)
        offset = (offsets[t] if offsets else None) or [0.0] * len(names)
        for name, band, sc, off in zip(names, stats, scale, offset, strict=True):
            acc.setdefault((source, group, name), BandAccumulator()).add(band, dtype, (sc, off))
    return acc


def mixed_sources(parts: BandParts) -> set[str]:
    """Sources whose tiles come in more than one band group."""
    groups: dict[str, set[str]] = defaultdict(set)
    for source, group, _ in parts:
        groups[source].add(group)
    return {source for source, found in groups.items() if len(found) > 1}


def summarise(parts: BandParts) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per-source and all-source summaries (stats.json's `sources.*.bands` and `bands`) of merged parts.

    Keys are band names, or `name@group` in sources that mix band groups; `bands` merges equal keys."""
    mixed = mixed_sources(parts)
    per_source: dict[str, dict[str, BandAccumulator]] = {}
    overall: dict[str, BandAccumulator] = {}
    for (src, group, name), acc in sorted(parts.items()):
        key = band_key(name, group) if src in mixed else name
        per_source.setdefault(src, {})[key] = acc
        overall.setdefault(key, BandAccumulator()).merge(acc)
    return ({src: {n: a.summary() for n, a in bands.items()} for src, bands in per_source.items()},
            {n: a.summary() for n, a in sorted(overall.items())})


def band_groups(sources: Sequence[str], scenes: Sequence[str], dtypes: Sequence[str],
                bands: Sequence[Sequence[str]], examples: int = 3) -> dict[str, dict[str, dict]]:
    """Per source and band group of some tiles: the group's dtype, band names, tile count and first few scenes
    (what stats.json and the build log show for the `mixed_sources`)."""
    found: dict[str, dict[str, dict]] = defaultdict(dict)
    for source, scene, dtype, names in zip(sources, scenes, dtypes, bands, strict=True):
        group = found[source].setdefault(group_key(dtype, len(names)), {
            "dtype": dtype, "channels": len(names), "bands": list(names), "tiles": 0, "examples": []})
        group["tiles"] += 1
        if len(group["examples"]) < examples and scene not in group["examples"]:
            group["examples"].append(scene)
    return {source: dict(sorted(groups.items())) for source, groups in sorted(found.items())}
