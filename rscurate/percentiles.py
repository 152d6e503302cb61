"""`np.percentile` (method "linear") of a tile's valid grey values, bit for bit, from a partial selection.

Why: the canonical view of every non-8-bit tile is stretched between its 2nd and 98th percentiles (phash._stretch),
and np.percentile partitions all 65,536 values of a 256 px tile around six ranks (0.5 ms a real Landsat tile, 0.9 a
random one; this 0.3). The four order statistics it interpolates between are found here among the values that a
sorted 1/61 sample brackets around each rank (about 3,000), after checking by counting that the brackets hold the
ranks; where they do not (a sample that misled), the whole array is partitioned as numpy would. The
interpolation repeats numpy's formulas; a first call checks them against np.percentile, and on any difference
(another numpy) every call is np.percentile's own.
"""

from __future__ import annotations

import numpy as np

_SAMPLE_EVERY = 61  # one value in this many: a prime, so the sample does not fall in a few image columns (a stride
# of 64 took columns 0, 64, 128, 192 of every 256 px row, and on real Landsat tiles missed a quarter of the brackets)
_MARGIN = 24  # sample positions added each side of a rank's estimate: ~5 sampling standard deviations at 65k
_MIN_SIZE = 4096  # below this, partitioning everything is as fast
_agrees: bool | None = None  # whether percentiles() gives np.percentile's bits (checked on first use)


def _order_statistics(values: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """values sorted, at `ranks` (ascending): each run of consecutive ranks from the values between two sample
    values that bracket it. Every value below the lower bracket sorts first, so sorted position `below + i` holds
    the i-th smallest value inside the brackets."""
    n = len(values)
    if n < _MIN_SIZE:
        return np.partition(values, ranks)[ranks]
    sample = np.sort(values[::_SAMPLE_EVERY])
    scale = len(sample) / n
    found = []
    for run in np.split(ranks, np.flatnonzero(np.diff(ranks) > 1) + 1):
        first, last = int(run[0]), int(run[-1])
        lo_at, hi_at = int(first * scale) - _MARGIN, int(last * scale) + _MARGIN + 1
        lo = sample[lo_at] if lo_at > 0 else -np.inf
        hi = sample[hi_at] if hi_at < len(sample) else np.inf
        below = int(np.count_nonzero(values < lo))
        inside = values[(values >= lo) & (values <= hi)]
        if not below <= first <= last < below + len(inside):  # the sample misled: select from everything
            return np.partition(values, ranks)[ranks]
        found.append(np.sort(inside)[run - below])
    return np.concatenate(found)


def _linear(values: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """np.percentile's "linear" method: order statistics at floor((n - 1) q), linearly interpolated."""
    n = len(values)
    q = np.true_divide(np.asarray(qs, np.float64), 100)
    virtual = (n - 1) * q
    previous = np.floor(virtual)
    above = virtual >= n - 1  # numpy takes the last value for both
    previous[above] = n - 1
    following = np.minimum(previous + 1, n - 1)
    gamma = virtual - np.where(above, -1.0, previous)
    ranks = np.unique(np.concatenate((previous, following)).astype(np.intp))
    stats = _order_statistics(values, ranks)
    a, b = stats[np.searchsorted(ranks, previous)], stats[np.searchsorted(ranks, following)]
    diff = b - a
    result = a + diff * gamma
    return np.where(gamma >= 0.5, b - diff * (1 - gamma), result)


def percentiles(values: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """np.percentile(values, qs) of a non-empty 1-D float64 array of finite values, bit for bit (but for the sign of
    a zero, which partitions place either way)."""
    global _agrees
    if _agrees is None:
        rng = np.random.default_rng(0)
        probes = [rng.normal(size=n) * 1e3 for n in (1, 2, 3, 97, 5000, 70001)]
        probes.append(np.round(rng.normal(size=9000)) + 0.0)  # ties (+ 0.0: no negative zeros)
        _agrees = all(np.array_equal(_linear(p, qs), np.percentile(p, qs)) for p in probes)
    if not _agrees:
        return np.percentile(values, qs)
    return _linear(values, qs)
