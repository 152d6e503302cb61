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

_INT_OFFSET = 32768
_INT_BINS = 32768 + 65536  # int16 min .. uint16 max
_F16_BINS = 65536
_F16_VALUES = np.arange(_F16_BINS, dtype=np.uint16).view(np.float16).astype(np.float64)


def _exact_int(dtype: np.dtype) -> bool:
    return dtype.kind in "ui" and dtype.itemsize <= 2


@dataclass
class BandAccumulator:
    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    min: float = np.inf
    max: float = -np.inf
    dtypes: set[str] = field(default_factory=set)
    int_hist: np.ndarray | None = None
    f16_hist: np.ndarray | None = None

    def add(self, values: np.ndarray) -> None:
        """Add a band's valid pixels (1-D array)."""
        if values.size == 0:
            return
        self.dtypes.add(values.dtype.name)
        v = values.astype(np.float64)
        self.count += int(v.size)
        self.total += float(v.sum())
        self.total_sq += float(np.square(v).sum())
        self.min = min(self.min, float(v.min()))
        self.max = max(self.max, float(v.max()))
        if _exact_int(values.dtype):
            h = np.bincount(values.astype(np.int64) + _INT_OFFSET, minlength=_INT_BINS)
            self.int_hist = h if self.int_hist is None else self.int_hist + h
        else:
            bits = values.astype(np.float16).view(np.uint16)
            h = np.bincount(bits, minlength=_F16_BINS)
            self.f16_hist = h if self.f16_hist is None else self.f16_hist + h

    def merge(self, other: BandAccumulator) -> None:
        self.count += other.count
        self.total += other.total
        self.total_sq += other.total_sq
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.dtypes |= other.dtypes
        for name in ("int_hist", "f16_hist"):
            a, b = getattr(self, name), getattr(other, name)
            setattr(self, name, b if a is None else (a if b is None else a + b))

    def percentile(self, p: float) -> float:
        values, counts = [], []
        if self.int_hist is not None:
            nz = np.nonzero(self.int_hist)[0]
            values.append(nz.astype(np.float64) - _INT_OFFSET)
            counts.append(self.int_hist[nz])
        if self.f16_hist is not None:
            nz = np.nonzero(self.f16_hist)[0]
            keep = ~np.isnan(_F16_VALUES[nz])
            values.append(_F16_VALUES[nz][keep])
            counts.append(self.f16_hist[nz][keep])
        if not values:
            return float("nan")
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


def accumulate_tile(acc: dict[str, BandAccumulator], tile: np.ndarray, bands: list[str], nodata: float | None) -> None:
    """Add one (C, H, W) tile's valid pixels (not all bands equal to nodata, not NaN) per band name."""
    valid = np.ones(tile.shape[1:], dtype=bool)
    if nodata is not None and not np.isnan(nodata):
        valid &= ~np.all(tile == np.asarray(nodata).astype(tile.dtype), axis=0)
    if tile.dtype.kind == "f":
        valid &= ~np.any(np.isnan(tile), axis=0)
    for name, band in zip(bands, tile, strict=True):
        acc.setdefault(name, BandAccumulator()).add(band[valid] if not valid.all() else band.ravel())
