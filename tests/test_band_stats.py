"""Streaming band statistics: exact for 16-bit integers, mergeable in any order."""

from __future__ import annotations

import numpy as np
import pytest

from rscurate.band_stats import BandAccumulator, accumulate_tile


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16"])
def test_integer_percentiles_are_exact_after_merging(dtype: str) -> None:
    rng = np.random.default_rng(0)
    info = np.iinfo(dtype)
    parts = [rng.integers(info.min, info.max, size=n, endpoint=True).astype(dtype) for n in (1000, 17, 5000)]
    merged = BandAccumulator()
    for part in reversed(parts):
        acc = BandAccumulator()
        acc.add(part)
        merged.merge(acc)
    ref = np.concatenate(parts).astype(np.float64)
    got = merged.summary()
    for p in (1, 50, 99):
        assert merged.percentile(p) == np.percentile(ref, p, method="inverted_cdf")
    assert got["mean"] == pytest.approx(ref.mean()) and got["std"] == pytest.approx(ref.std())
    assert (got["min"], got["max"], got["count"]) == (ref.min(), ref.max(), ref.size)


def test_float_percentiles_within_float16_precision() -> None:
    ref = np.random.default_rng(1).normal(0.2, 0.05, 20000).astype(np.float32)
    acc = BandAccumulator()
    acc.add(ref)
    for p in (1, 99):
        assert acc.percentile(p) == pytest.approx(np.percentile(ref, p, method="inverted_cdf"), rel=2**-10)


def test_nodata_and_nan_pixels_are_left_out() -> None:
    tile = np.array([[[0, 5], [7, 0]], [[0, 6], [8, 1]]], dtype=np.uint16)  # (2, 2, 2); pixel (0,0) all nodata
    acc: dict[tuple[str, str], BandAccumulator] = {}
    accumulate_tile(acc, "s", tile, ["a", "b"], nodata=0)
    assert acc["s", "a"].count == 3 and acc["s", "b"].summary()["min"] == 1
    f = np.array([[[np.nan, 1.0]]], dtype=np.float32)
    accumulate_tile(acc, "s", f, ["c"], nodata=None)
    assert acc["s", "c"].count == 1
