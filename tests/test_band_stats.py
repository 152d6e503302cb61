"""Band statistics: exact for 16-bit integers, mergeable in any order, valid pixels only."""

from __future__ import annotations

import numpy as np
import pytest

from rscurate.band_stats import BandAccumulator, band_tile_stats
from rscurate.quality import tile_stats
from rscurate.readers import valid_from_nodata


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


def _reference_tile_stats(data: np.ndarray, valid: np.ndarray) -> list[tuple]:
    """The definition the fast paths must reproduce bit for bit: np.bincount over data[:, valid], moments from the
    histogram (integers of at most 16 bits); float64 values cut to their top 23 bits and float64 moments otherwise."""
    out = []
    for values in data[:, valid]:
        if values.dtype.kind in "ui" and values.itemsize <= 2:
            info = np.iinfo(values.dtype)
            offset = -int(info.min)
            dense = np.bincount(values.astype(np.int64) + offset, minlength=int(info.max) + offset + 1)
            keys = np.flatnonzero(dense)
            counts = dense[keys]
            v = keys.astype(np.float64) - offset
            n = int(counts.sum())
            mean = float((v * counts).sum() / n)
            var = float(((v - mean) ** 2 * counts).sum() / n)
            kind, keys = values.dtype.name, keys.astype(np.uint16)
            out.append((n, mean, var**0.5, float(v[0]), float(v[-1]), kind, keys, counts))
        else:
            f = values.astype(np.float64)
            keys, counts = np.unique((f.view(np.uint64) >> np.uint64(41)).astype(np.uint32), return_counts=True)
            moments = (f.size, float(f.mean()), float(f.std()), float(f.min()), float(f.max()))
            out.append((*moments, "float64/12bit", keys, counts))
    return out


def _assert_same_as_reference(data: np.ndarray, valid: np.ndarray) -> None:
    got = tile_stats(data, valid)
    assert got.valid_pixels == int(valid.sum())
    for band, ref in zip(got.bands, _reference_tile_stats(data, valid), strict=True):
        fields = (band.count, band.mean, band.std, band.min, band.max, band.kind)
        assert fields == ref[:6]  # exact: the same float operations in the same order
        assert band.keys.dtype == ref[6].dtype and np.array_equal(band.keys, ref[6])
        assert band.counts.dtype == ref[7].dtype and np.array_equal(band.counts, ref[7])


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "int32", "float32"])
def test_tile_stats_equal_the_reference_with_and_without_invalid_pixels(dtype: str) -> None:
    rng = np.random.default_rng(7)
    for k in range(6):
        if dtype.startswith("float"):
            data = rng.normal(0.2, 0.05, (4, 48, 40)).astype(dtype)
        else:
            info = np.iinfo(dtype)
            data = rng.integers(info.min, info.max, (4, 48, 40), endpoint=True).astype(dtype)
            if k % 2:  # few distinct values, as in flat or dark areas
                data = (data // 37).astype(dtype)
        valid = np.ones((48, 40), bool) if k < 2 else rng.random((48, 40)) > 0.4
        _assert_same_as_reference(data, valid)
        _assert_same_as_reference(data[:, ::2, 1::3], valid[::2, 1::3])  # non-contiguous bands


def test_tile_stats_equal_the_reference_on_real_landsat(sample_dir) -> None:
    import rasterio

    with rasterio.open(sample_dir / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF") as ds:
        scene = ds.read()
    assert scene.dtype == np.uint16
    valid_scene = scene.any(axis=0)
    # An 8-bit rendering of the same scene (as the throughput benchmark feeds the build).
    lo, hi = np.percentile(scene[:, valid_scene], (2, 98))
    scene8 = np.clip((scene - lo) / (hi - lo) * 254 + 1, 1, 255).astype(np.uint8) * valid_scene
    _, h, w = scene.shape
    kinds = set()
    for y in range(0, h - 255, 200):
        for x in range(0, w - 255, 200):
            valid = valid_scene[y:y + 256, x:x + 256]
            if valid.any():
                kinds.add(bool(valid.all()))
                for data in (scene, scene8, scene.astype(np.int16)):
                    _assert_same_as_reference(data[:, y:y + 256, x:x + 256], valid)
    assert kinds == {True, False}  # full tiles and tiles with nodata


def test_nan_in_one_band_stays_out_of_that_band_only() -> None:
    """Issue 9.1: a NaN in one band (the other band has data there) used to make that band's mean NaN."""
    tile = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    tile[0, 1, 2] = np.nan
    tile[1, 3, 3] = np.inf
    stats = tile_stats(tile, valid_from_nodata(tile, None))
    assert stats.valid_pixels == 16 and [b.count for b in stats.bands] == [15, 15]
    ref = tile[0].ravel()[np.isfinite(tile[0].ravel())]
    assert stats.bands[0].mean == pytest.approx(ref.mean()) and stats.bands[0].min == 0.0
    assert np.isfinite(stats.column("mean") + stats.column("std") + stats.column("min") + stats.column("max")).all()
    all_nan = np.full((1, 4, 4), np.nan, np.float32)
    assert valid_from_nodata(np.concatenate([tile, all_nan]), None).all()
    empty = tile_stats(np.concatenate([tile, all_nan]), np.ones((4, 4), bool)).bands[2]
    assert empty.count == 0 and np.isnan(empty.mean)


def test_fill_in_one_band_stays_out_of_that_band_when_nodata_is_declared() -> None:
    """Issue 9.2: with nodata 0, a band's 0 at a pixel where another band has data is fill, not data."""
    tile = np.array([[[0, 5], [7, 0]], [[0, 6], [8, 1]]], dtype=np.uint16)
    stats = tile_stats(tile, valid_from_nodata(tile, 0), nodata=0)
    assert stats.valid_pixels == 3 and [b.count for b in stats.bands] == [2, 3]
    assert stats.column("min") == [5.0, 1.0] and stats.bands[0].mean == 6.0


@pytest.mark.parametrize(("dtype", "lo", "hi"), [
    ("float32", 0.0, 8e4), ("float32", -3e38, 3e38), ("float64", 1e-300, 1e150), ("float32", 1e-30, 1e-20),
    ("uint32", 0, 2**32 - 1), ("int32", -(2**31), 2**31 - 1), ("int64", -(2**62), 2**62), ("uint64", 0, 2**63)])
def test_float_and_wide_integer_percentiles_within_2_to_the_minus_11(dtype: str, lo: float, hi: float) -> None:
    """Issue 9.3: float16 bins overflowed (float32 up to 8e4 gave p99 = inf; uint32 gave p1 = p99 = inf)."""
    rng = np.random.default_rng(3)
    if np.dtype(dtype).kind == "f" and lo > 0:  # spread over every octave between lo and hi
        parts = [np.exp(rng.uniform(np.log(lo), np.log(hi), n)).astype(dtype) for n in (5000, 77, 3000)]
    else:
        parts = [rng.uniform(lo, hi, n).astype(dtype) for n in (5000, 77, 3000)]
    merged = _accumulate(parts)
    ref = np.concatenate(parts)
    for p in (0.1, 1, 50, 99, 100):
        want = float(np.percentile(ref, p, method="inverted_cdf"))
        got = merged.percentile(p)
        assert np.isfinite(got) and abs(got - want) <= 2**-11 * abs(want)
    assert merged.summary()["max"] == float(ref.max())


def test_many_float_tiles_merge_to_the_same_percentiles_in_any_order() -> None:
    rng = np.random.default_rng(5)
    parts = [rng.normal(100, 30, 4000).astype(np.float32) for _ in range(60)]
    forward, backward = BandAccumulator(), BandAccumulator()
    for part in parts:
        forward.add(band_tile_stats(part), "float32")
    for part in reversed(parts):
        acc = BandAccumulator()
        acc.add(band_tile_stats(part), "float32")
        backward.merge(acc)
    assert forward.summary()["count"] == 240000
    assert [forward.percentile(p) for p in (1, 50, 99)] == [backward.percentile(p) for p in (1, 50, 99)]


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16"])
def test_tile_stats_of_integer_bands_equal_the_masked_copy_reference(dtype: str) -> None:
    """Integer bands are counted under the validity mask with nodata's bin emptied (no masked copies): the same
    moments and histograms as band_tile_stats of each band's valid, non-nodata values, for full and partial masks,
    with and without nodata, including a band whose every valid pixel is nodata."""
    rng = np.random.default_rng(3)
    info = np.iinfo(dtype)
    data = rng.integers(info.min, int(info.max) + 1, size=(3, 40, 50)).astype(dtype)
    nodata = float(info.min + 7)
    data[0, :5] = info.min + 7
    data[2] = info.min + 7  # all fill
    for valid in (np.ones((40, 50), bool), rng.random((40, 50)) < 0.6):
        for nd in (None, nodata):
            got = tile_stats(data, valid, nd)
            for band, stats in zip(data, got.bands, strict=True):
                keep = valid & (band != np.asarray(nd).astype(dtype)) if nd is not None else valid
                want = band_tile_stats(band[keep])
                assert (stats.count, stats.kind) == (want.count, want.kind)
                np.testing.assert_array_equal(stats.keys, want.keys)
                np.testing.assert_array_equal(stats.counts, want.counts)
                np.testing.assert_allclose([stats.mean, stats.std, stats.min, stats.max],
                                           [want.mean, want.std, want.min, want.max], equal_nan=True)


@pytest.mark.parametrize("values", [
    np.float32(np.random.default_rng(1).random(5000) * 40 + 5),  # reflectance: a few binades
    np.float32(np.random.default_rng(2).random(5000) * 60 + 220),  # brightness temperature
    np.random.default_rng(3).standard_normal(5000) * 10.0 ** np.random.default_rng(4).integers(-30, 30, 5000),
    np.array([1.0]),
])
def test_sparse_counts_equal_numpy_unique(values: np.ndarray) -> None:
    """The bincount path (short key range) and the sort fallback (keys spread over many binades) both give
    exactly np.unique's keys, counts and dtypes."""
    from rscurate.band_stats import _sparse_keys, sparse_counts

    keys = _sparse_keys(values.astype(np.float64))
    want_keys, want_counts = np.unique(keys, return_counts=True)
    got_keys, got_counts = sparse_counts(keys)
    np.testing.assert_array_equal(got_keys, want_keys)
    np.testing.assert_array_equal(got_counts, want_counts)
    assert got_keys.dtype == want_keys.dtype and got_counts.dtype == want_counts.dtype
