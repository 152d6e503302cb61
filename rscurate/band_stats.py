"""Per-band statistics by band name, accumulated shard by shard and merged exactly.

mean/std/min/max come from exact running sums over valid pixels. Percentiles come from fixed-bin
histograms, so partial results merge by addition whatever the shard order:
- integer data of at most 16 bits: one bin per integer value (exact percentiles);
- other data (floats, 32-bit ints): one bin per float16 value, i.e. exact to a relative 2**-11.
A percentile is the smallest value whose cumulative count reaches p% of the pixels
(numpy's method="inverted_cdf").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_F16_VALUES = np.arange(65536, dtype=np.uint16).view(np.float16).astype(np.float64)


def _bins(dtype: np.dtype) -> tuple[str, int, int] | None:
    """(histogram key, bin count, value offset) for integer data of at most 16 bits, else None."""
    if dtype.kind in "ui" and dtype.itemsize <= 2:
        offset = -int(np.iinfo(dtype).min)
        return dtype.name, int(np.iinfo(dtype).max) + offset + 1, offset
    return None


def _bin_values(key: str, size: int) -> np.ndarray:
    if key == "float16":
        return _F16_VALUES
    return np.arange(size, dtype=np.float64) + float(np.iinfo(np.dtype(key)).min)


@dataclass
class BandAccumulator:
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    min: float = np.inf
    max: float = -np.inf
    dtypes: set[str] = field(default_factory=set)
    hists: dict[str, np.ndarray] = field(default_factory=dict)  # key: stored dtype, or float16 for the rest

    def add(self, values: np.ndarray) -> None:
        """Add a band's valid pixels (1-D array)."""
        if values.size == 0:
            return
        self.count += int(values.size)
        self.total += float(values.sum(dtype=np.float64))
        f = values.astype(np.float64)
        self.total_sq += float(np.dot(f, f))
        self.dtypes.add(values.dtype.name)
        self.min = min(self.min, float(values.min()))
        self.max = max(self.max, float(values.max()))
        bins = _bins(values.dtype)
        if bins is not None:
            key, size, offset = bins
            idx = values.astype(np.int32) + offset if offset else values
        else:
            key, size, idx = "float16", 65536, values.astype(np.float16).view(np.uint16)
        h = np.bincount(idx, minlength=size)
        self.hists[key] = self.hists[key] + h if key in self.hists else h

    def merge(self, other: BandAccumulator) -> None:
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.dtypes |= other.dtypes
        for key, h in other.hists.items():
            self.hists[key] = self.hists[key] + h if key in self.hists else h

    def percentile(self, p: float) -> float:
        if not self.hists:
            return float("nan")
        values, counts = [], []
        for key, h in self.hists.items():
            nz = np.nonzero(h)[0]
            vals = _bin_values(key, len(h))[nz]
            keep = ~np.isnan(vals)
            values.append(vals[keep])
            counts.append(h[nz][keep])
        vals, cnts = np.concatenate(values), np.concatenate(counts)
        order = np.argsort(vals, kind="stable")
        cum = np.cumsum(cnts[order])
        k = int(np.searchsorted(cum, p / 100.0 * cum[-1], side="left"))
        return float(vals[order][min(k, len(vals) - 1)])

    def summary(self) -> dict[str, float | int | str]:
        mean = self.total / self.count if self.count else float("nan")
        var = max(self.total_sq / self.count - mean * mean, 0.0) if self.count else float("nan")
        return {
            "count": self.count,
            "mean": mean,
            "std": float(np.sqrt(var)),
            "min": self.min if self.count else float("nan"),
            "max": self.max if self.count else float("nan"),
            "p1": self.percentile(1),
            "p99": self.percentile(99),
            "dtype": ",".join(sorted(self.dtypes)),
        }


def accumulate_tile(
    acc: dict[tuple[str, str], BandAccumulator], source: str, tile: np.ndarray, bands: list[str], nodata: float | None
) -> None:
    """Add one (C, H, W) tile's valid pixels (not all bands nodata, not NaN), keyed by (source, band name)."""
    valid = np.ones(tile.shape[1:], dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= ~np.all(tile == np.asarray(nodata).astype(tile.dtype), axis=0)
    if tile.dtype.kind == "f":
        valid &= ~np.any(np.isnan(tile), axis=0)
    for name, band in zip(bands, tile, strict=True):
        acc.setdefault((source, name), BandAccumulator()).add(band[valid] if not valid.all() else band.ravel())
