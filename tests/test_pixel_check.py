"""Pixels decide: the verification of hash- and footprint-proposed candidates, on real multi-date imagery.

Real pairs: five Sentinel-2 dates of one area (eo-learn's REFERENCE_SCENES, in ../shared when present; dates 2 and 3
are near-identical clear days, 4 a later clear date, 0 cloudy, 1 hazy), the sample's rgbn_subb crop (resampled
0.4 px off its parent's grid) and real Landsat tiles. Each test states the trivial outcome it must beat.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_bounds

from rscurate.pixel_check import (
    MAX_CHANGE,
    MIN_CORRELATION,
    Pixels,
    _correlation,
    _grid_shape,
    _on_grid,
    _resample,
    _Windows,
    compare,
    georegistered,
    placed,
    whole_views,
)
from tests.conftest import SHARED_REAL, landsat_dates, run_build, write_manifest

S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S2_BOX = (465181.05, 5079244.89, 466180.53, 5080254.63)  # TestEOPatch_bbox.geojson, EPSG:32633
SERIES = SHARED_REAL / "eo-learn" / "REFERENCE_SCENES.npy"
needs_series = pytest.mark.skipif(not SERIES.is_file(), reason="../shared/data/real/eo-learn is not present")
L8_078 = "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"


def _dates() -> list[Pixels]:
    stack = np.load(SERIES)  # (5, 101, 100, 13) float32 TOA reflectance
    return [Pixels(np.moveaxis(d, -1, 0), np.ones(d.shape[:2], bool), S2_BANDS, "EPSG:32633", S2_BOX) for d in stack]


@needs_series
def test_real_dates_near_identical_merge_and_other_dates_do_not() -> None:
    """pHash puts dates 2, 3 and 4 within 6 bits of each other, and their grey structure correlates 0.9-0.97: only
    the radiometric change (near-infrared up 20 % from 3 to 4) separates the near-identical pair from the others."""
    d = _dates()
    same = {(i, j): compare(d[i], d[j]) for i in range(5) for j in range(i + 1, 5)}
    assert same[(2, 3)].same_content and same[(2, 3)].change is not None and same[(2, 3)].change < 0.4
    for pair, sim in same.items():
        if pair != (2, 3):
            assert not sim.same_content, (pair, sim)
    assert same[(3, 4)].correlation > MIN_CORRELATION and same[(3, 4)].change > 1.5 * MAX_CHANGE


@needs_series
def test_real_dates_in_a_build_keep_every_acquisition_but_one_copy(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for t, frame in enumerate(np.load(SERIES)):
        with rasterio.open(tmp_path / "data" / f"date{t}.tif", "w", driver="GTiff", width=100, height=101, count=13,
                           dtype="float32", crs="EPSG:32633", transform=from_bounds(*S2_BOX, 100, 101)) as out:
            out.write(np.moveaxis(frame, -1, 0))
    manifest = write_manifest(tmp_path / "s2.yaml", textwrap.dedent("""\
        name: s2_series
        license: MIT (eo-learn) / Copernicus
        root: data
        include: ["*.tif"]
        tile: {mode: whole}
        quality: {max_nodata_fraction: 1.0}
        bands: [""" + ", ".join(f"{{name: {b}}}" for b in S2_BANDS) + "]\n"))
    out = tmp_path / "corpus"
    run_build([manifest], out)
    index = pd.read_parquet(out / "index.parquet")
    dups = pd.read_parquet(out / "duplicates.parquet")
    assert sorted(dups["scene"]) in (["date2.tif"], ["date3.tif"])
    assert set(index["scene"]) == {"date0.tif", "date1.tif", "date4.tif"} | ({"date2.tif", "date3.tif"} -
                                                                            set(dups["scene"]))


def _landsat(sample_dir: Path, row: int, col: int, side: int = 256) -> Pixels:
    with rasterio.open(sample_dir / L8_078) as ds:
        window = ((row, row + side), (col, col + side))
        data, t = ds.read(window=window), ds.window_transform(window)
    return Pixels(data, data.any(axis=0), ["blue", "green", "red"], "EPSG:32621",
                  (t.c, t.f + side * t.e, t.c + side * t.a, t.f))


def test_a_later_date_of_the_same_ground_is_other_content(sample_dir: Path, rng: np.random.Generator) -> None:
    """Same ground, same georeference: a near-identical acquisition (1 % sensor noise) merges; the same place with
    vegetation greening (red -15 %, green +10 %) does not, although its grey structure still correlates almost
    perfectly (what pHash and correlation alone would merge)."""
    a = _landsat(sample_dir, 600, 600)
    noise = np.clip(a.data * (1 + rng.normal(0, 0.01, a.data.shape)), 1, 65535).astype(np.uint16)
    season = a.data.astype(np.float64) * np.array([1.0, 1.10, 0.85])[:, None, None]
    later = Pixels(season.astype(np.uint16), a.valid, a.bands, a.crs, a.bounds)
    assert georegistered(a, Pixels(noise, a.valid, a.bands, a.crs, a.bounds)).same_content
    sim = georegistered(a, later)
    assert sim.correlation > MIN_CORRELATION and not sim.same_content


def test_resampled_crop_on_a_shifted_grid_is_the_same_content(sample_dir: Path) -> None:
    """rgbn_subb.tif is a crop of rgbn.tif resampled 0.4 px off its grid (no integer offset makes them equal)."""
    def tile(name: str, x: int, y: int) -> Pixels:
        with rasterio.open(sample_dir / name) as ds:
            window = ((y, y + 64), (x, x + 64))
            data, t = ds.read(window=window), ds.window_transform(window)
        return Pixels(data, data.any(axis=0), ["red", "green", "blue", "nir"], "EPSG:32618",
                      (t.c, t.f - 64 * 5.0, t.c + 64 * 5.0, t.f))

    sim = georegistered(tile("rgbn_subb.tif", 64, 0), tile("rgbn.tif", 192, 128))
    assert sim.same_content and sim.covered[0] > 0.5
    assert not georegistered(tile("rgbn_subb.tif", 64, 0), tile("rgbn.tif", 320, 128)).same_content  # next door


def test_whole_views_tell_copies_from_other_places(sample_dir: Path) -> None:
    """Without georeference: a 3 px shifted copy is the same content, another place of the same scene is not."""
    def plain(row: int, col: int) -> Pixels:
        p = _landsat(sample_dir, row, col)
        return Pixels(p.data, p.valid, p.bands)

    assert whole_views(plain(600, 600), plain(603, 603)).same_content
    assert not whole_views(plain(600, 600), plain(1000, 1200)).same_content


def test_placed_chip_is_confirmed_only_where_it_was_cut(sample_dir: Path) -> None:
    """A 160 px chip cut at (70, 50) of a tile and enlarged 1.25x: confirmed from a placement 6 px and 5 % off,
    refused at a placement 60 px off (where a trivial check of overlap alone would accept it)."""
    tile = _landsat(sample_dir, 600, 600)
    region = tile.data[:, 50:210, 70:230].astype(np.float64)
    rgb = np.stack([np.asarray(Image.fromarray(b.astype(np.float32), "F").resize((200, 200),
                                                                              Image.Resampling.BILINEAR))
                    for b in region])
    chip = Pixels(rgb.astype(np.uint16), np.ones((200, 200), bool), tile.bands)
    assert placed(chip, tile, 76, 45, 0.8 * 1.05).same_content
    assert not placed(chip, tile, 10, 110, 0.8).same_content


def test_a_later_date_in_a_build_is_kept_and_a_repeat_is_dropped(tmp_path: Path, sample_dir: Path,
                                                                  rng: np.random.Generator) -> None:
    """Three deliveries of one Landsat crop, one georeference, cut on each scene's grid: a repeat with 1 % noise
    is dropped for the original; a greener later date (which pHash puts within the radius) is kept."""
    manifest = landsat_dates(sample_dir, tmp_path, 512, lambda data: {
        "a_original": data,
        "b_repeat": data * (1 + rng.normal(0, 0.01, data.shape)),
        "c_later": (data * np.array([1.0, 1.10, 0.85])[:, None, None]).astype(np.uint16),
    }, tile=256)
    out = tmp_path / "corpus"
    run_build([manifest], out)
    index = pd.read_parquet(out / "index.parquet")
    dups = pd.read_parquet(out / "duplicates.parquet")
    assert set(dups["scene"]) == {"b_repeat.tif"} and len(dups) == 4
    assert sorted(index["scene"].unique()) == ["a_original.tif", "c_later.tif"] and len(index) == 8


def test_a_tile_in_several_pairs_is_resampled_once(sample_dir: Path, rng: np.random.Generator,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Dates of one place: tile a is compared with b and with c; its grid is made once and reused, with the
    same similarities as fresh tiles give (fails on the old code: a was resampled for every pair)."""
    import rscurate.pixel_check as pc

    a = _landsat(sample_dir, 600, 600)
    b, c = (Pixels(np.clip(a.data * (1 + rng.normal(0, s, a.data.shape)), 1, 65535).astype(np.uint16), a.valid,
                   a.bands, a.crs, a.bounds) for s in (0.01, 0.2))
    fresh = [compare(_landsat(sample_dir, 600, 600), b), compare(_landsat(sample_dir, 600, 600), c)]
    calls: list[int] = []
    real = pc._resample
    monkeypatch.setattr(pc, "_resample", lambda *args, **kw: calls.append(1) or real(*args, **kw))
    b2, c2 = (Pixels(p.data, p.valid, p.bands, p.crs, p.bounds) for p in (b, c))
    assert [compare(a, b2), compare(a, c2)] == fresh
    assert len(calls) == 3, "a's grey view and bands once (one stack: one validity), b's and c's once each"



def test_ranks_of_a_shifted_selection_from_one_sort_equal_a_sort_of_the_selection() -> None:
    """Spearman's ranks for every shift come from one sort of the grid: the same ranks (ties included, in the
    order a stable sort gives them) as sorting each shift's selected cells."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(2, 40, 2))
        gray = rng.integers(0, 6, (h, w)).astype(np.float64)  # many ties
        r0, c0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        rows, cols = slice(r0, int(rng.integers(r0 + 1, h + 1))), slice(c0, int(rng.integers(c0 + 1, w + 1)))
        ok = rng.random((rows.stop - rows.start, cols.stop - cols.start)) < 0.7
        selected = gray[rows, cols][ok]
        expected = np.empty(len(selected))
        expected[np.argsort(selected, kind="stable")] = np.arange(len(selected))
        assert np.array_equal(_Windows(gray).ranks(rows, cols, ok), expected)


def _reference_pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson's correlation as the pixel check computed it before its windows' statistics were kept."""
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else -1.0


def test_a_grids_window_statistics_are_made_once_and_give_the_same_correlations() -> None:
    """A grid meets the same shifted windows in each of its pairs: a fully valid window's centred grey values and
    ranks are computed once and shared, and every correlation is bit for bit what computing both afresh gives
    (float32 grey grids, whose sums stay in float32; partial validity; flat windows)."""
    rng = np.random.default_rng(8)
    for case in range(60):
        a = (rng.random((16, 16)) * 255).astype(np.float32)
        b = (a * rng.random() + rng.normal(0, 20, a.shape)).astype(np.float32) if case % 3 else np.full_like(a, 7)
        wa, wb = _Windows(a), _Windows(b)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                ra, rb = slice(max(dy, 0), 16 + min(dy, 0)), slice(max(-dy, 0), 16 + min(-dy, 0))
                ca, cb = slice(max(dx, 0), 16 + min(dx, 0)), slice(max(-dx, 0), 16 + min(-dx, 0))
                shape = (ra.stop - ra.start, ca.stop - ca.start)
                ok = np.ones(shape, bool) if case % 2 else rng.random(shape) < 0.8
                expected = max(_reference_pearson(a[ra, ca][ok], b[rb, cb][ok]),
                               _reference_pearson(wa.ranks(ra, ca, ok), wb.ranks(rb, cb, ok)))
                for _ in range(2):
                    assert _correlation(wa.of(ra, ca, ok), wb.of(rb, cb, ok)) == expected
                assert (wa.of(ra, ca, ok) is wa.of(ra, ca, ok)) is bool(ok.all())


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "uint32", "int64", "float32", "float64"])
def test_bands_go_on_the_grid_without_a_float64_copy_and_with_the_same_values(dtype: str) -> None:
    """A part's bands are cast into the resampling stack directly, invalid pixels (NaN and infinities among them)
    zeroed there: the same float32 stack, hence the same grids, as the float64 copy with NaN replaced that was
    made before (2.6x faster on 13-band 256 px tiles)."""
    import rscurate.pixel_check as pc

    rng = np.random.default_rng(len(dtype))
    info = np.finfo(dtype) if dtype.startswith("float") else np.iinfo(dtype)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(4, 90, 2))
        values = rng.uniform(-1.0, 1.0, (4, h, w)) * float(min(info.max, 2**60)) * rng.choice([1e-9, 1e-3, 1.0])
        data = values.astype(dtype) if dtype.startswith("float") else np.clip(values, info.min, info.max).astype(dtype)
        valid = rng.random((h, w)) < rng.choice([0.6, 1.0])
        if dtype.startswith("float"):
            data[rng.random(data.shape) < 0.05] = np.nan
            data[0, 0, 0] = np.inf
        if dtype == "int64":  # rounds differently to float32 directly (up) and through float64 (down, a tie)
            data[:, 1, 1], valid[1, 1] = 2**60 + 2**36 + 1, True
        finite = np.all(np.isfinite(data), axis=0) & valid
        shape = pc._grid_shape(h, w)
        stack = np.empty((5, h, w), np.float32)  # the previous construction
        stack[0] = finite
        stack[1:] = np.where(finite, np.nan_to_num(data.astype(np.float64)), 0.0)
        resized = pc.resize_stack(stack, shape, Image.Resampling.BOX)
        ok = resized[0] >= 0.5
        expected = np.where(ok, resized[1:] / np.maximum(resized[0], 1e-6), 0.0)
        layers, got_ok = pc._resample(data, finite, shape)
        assert np.array_equal(got_ok, ok)
        assert np.array_equal(np.asarray(layers), expected)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_a_parts_grey_view_and_bands_in_one_stack_give_the_grids_of_two_stacks(dtype: str) -> None:
    """Where the bands' validity is the grey view's (integers; floats without NaN) both go through one resampling
    stack; each layer is resized alone, so the grids are those of a stack for the grey view and one for the bands.
    Floats with NaN where the tile is valid keep two stacks (their bands' validity differs)."""
    from rscurate.phash import canonical_view

    rng = np.random.default_rng(11)
    for case in range(16):
        h, w = (int(v) for v in rng.integers(20, 300, 2))
        data = (rng.random((3, h, w)) * 1000).astype(dtype)
        valid = rng.random((h, w)) > (0.2 if case % 2 else -1.0)
        if dtype == "float32" and case % 4 == 3:
            data[0, h // 2, w // 3] = np.nan
            valid[h // 2, w // 3] = True
        p = Pixels(data, valid, ["red", "green", "blue"])
        shape = _grid_shape(h, w)
        grid = _on_grid(p, slice(0, h), slice(0, w), shape)
        (gray,), ok = _resample([canonical_view(data, p.bands, valid).astype(np.float32)], valid, shape)
        finite = valid & np.all(np.isfinite(data), axis=0)
        layers, _ = _resample(data, finite, shape)
        assert np.array_equal(grid.gray, gray) and np.array_equal(grid.valid, ok)
        for name, layer in zip(p.bands, layers, strict=True):
            assert np.array_equal(grid.bands[name], layer), (case, name)
        structure = _on_grid(p, slice(0, h), slice(0, w), shape, with_bands=False)
        assert np.array_equal(structure.gray, gray) and not structure.bands
