"""Band statistics: exact for 16-bit integers, mergeable in any order, valid pixels only."""

from __future__ import annotations

import numpy as np
import pytest

from rscurate.band_stats import BandAccumulator, band_tile_stats
from rscurate.quality import tile_stats


def _accumulate(parts: list[np.ndarray]) -> BandAccumulator:
    merged = BandAccumulator()
    for part in reversed(parts):  # merge order must not matter
        acc = BandAccumulator()
        acc.add(band_tile_stats(part), part.dtype.name)
        merged.merge(acc)
    return merged


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int8"])
def test_integer_statistics_are_exact_after_merging(dtype: str) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    parts = [rng.integers(info.min, info.max, size=n, endpoint=True).astype(dtype) for n in (1000, 17, 5000)]
    merged = _accumulate(parts)
    ref = np.concatenate(parts).astype(np.float64)
    got = merged.summary()
    for p in (1, 50, 99):
        assert merged.percentile(p) == np.percentile(ref, p, method="inverted_cdf")
    assert got["mean"] == pytest.approx(ref.mean(), rel=1e-12) and got["std"] == pytest.approx(ref.std(), rel=1e-9)
    assert (got["min"], got["max"], got["count"]) == (ref.min(), ref.max(), ref.size)


def test_float_percentiles_within_float16_precision_and_exact_moments() -> None:
    rng = np.random.default_rng(1)
    parts = [rng.normal(0.2, 0.05, n).astype(np.float32) for n in (20000, 333)]
    merged = _accumulate(parts)
    ref = np.concatenate(parts).astype(np.float64)
    for p in (1, 99):
        assert merged.percentile(p) == pytest.approx(np.percentile(ref, p, method="inverted_cdf"), rel=2**-10)
    assert merged.summary()["mean"] == pytest.approx(ref.mean(), rel=1e-12)
    assert merged.summary()["std"] == pytest.approx(ref.std(), rel=1e-9)


def test_tile_stats_use_valid_pixels_only() -> None:
    tile = np.array([[[0, 5], [7, 0]], [[0, 6], [8, 1]]], dtype=np.uint16)
    valid = ~np.all(tile == 0, axis=0)
    stats = tile_stats(tile, valid)
    assert stats.valid_pixels == 3 and stats.nodata_fraction == 0.25
    assert stats.column("min") == [0.0, 1.0] and stats.column("max") == [7.0, 8.0]
    assert stats.bands[0].count == 3 and stats.column("mean")[1] == pytest.approx(5.0)
    empty = tile_stats(tile, np.zeros((2, 2), bool))
    assert empty.valid_pixels == 0 and empty.bands == []
