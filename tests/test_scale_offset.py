"""Scale/offset (GeoTIFF tags, HDF scale_factor/add_offset, manifest overrides): read, recorded per band in the
index and stats.json, and applied by the brightness cloud rule, which refuses integer DN of unknown scale."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rscurate.manifest import Band, Quality
from rscurate.quality import check_units, judge, tile_stats
from rscurate.readers import SceneRef, open_scene
from tests.conftest import run_build, textured, write_manifest, write_tif

LANDSAT_SCALE, LANDSAT_OFFSET = 0.0000275, -0.2  # Collection 2 Level-2 surface reflectance


def _landsat_dn(rng: np.random.Generator, size: int) -> np.ndarray:
    """Dark land: reflectance 0.02..0.10 as Collection 2 DN (about 8000..11000)."""
    refl = 0.02 + 0.08 * textured(rng, 3, size, size, "float64")
    return np.round((refl - LANDSAT_OFFSET) / LANDSAT_SCALE).astype(np.uint16)


def test_brightness_rule_compares_physical_values_of_integer_dn() -> None:
    """0.2 reflectance on Landsat DN flagged every pixel as cloud; scaled, only the bright block is."""
    tile = _landsat_dn(np.random.default_rng(0), 32)
    tile[:, :8] = round((0.5 - LANDSAT_OFFSET) / LANDSAT_SCALE)  # a bright cloud over a quarter of the tile
    valid = np.ones((32, 32), bool)
    quality = Quality.model_validate({"cloud": {"brightness": 0.2, "max_fraction": 0.2}})
    names = ["B2", "B3", "B4"]
    verdict = judge(quality, tile, valid, {}, tile_stats(tile, valid), names,
                    [LANDSAT_SCALE] * 3, [LANDSAT_OFFSET] * 3)
    assert verdict == ("cloud", "cloud_fraction=0.250 > 0.2")
    quality.cloud.max_fraction = 0.3
    assert judge(quality, tile, valid, {}, tile_stats(tile, valid), names,
                 [LANDSAT_SCALE] * 3, [LANDSAT_OFFSET] * 3) is None


def test_brightness_rule_on_unscaled_integers_is_refused() -> None:
    rule = Quality.model_validate({"cloud": {"brightness": 0.2, "bands": ["B3"]}})
    with pytest.raises(ValueError, match=r"x\.tif stores uint16 bands \['B3'\].*cloud\.units: stored"):
        check_units(rule, ["B2", "B3"], "uint16", [False, False], "x.tif")
    check_units(rule, ["B2", "B3"], "uint16", [False, True], "x.tif")  # the tested band has a scale
    check_units(rule, ["B2", "B3"], "float32", [False, False], "x.tif")  # floats: taken as physical already
    stored = Quality.model_validate({"cloud": {"brightness": 20000, "units": "stored"}})
    check_units(stored, ["B2", "B3"], "uint16", [False, False], "x.tif")


def test_geotiff_scale_tags_and_manifest_scale_are_read(tmp_path: Path, rng: np.random.Generator) -> None:
    tagged = write_tif(tmp_path / "tagged.tif", _landsat_dn(rng, 64))
    import rasterio

    with rasterio.open(tagged, "r+") as ds:
        ds.scales = (LANDSAT_SCALE,) * 3
        ds.offsets = (LANDSAT_OFFSET,) * 3
    reader = open_scene(SceneRef("s", "tagged.tif", (str(tagged),), "geotiff"), [], None)
    assert reader.scales == [LANDSAT_SCALE] * 3 and reader.offsets == [LANDSAT_OFFSET] * 3
    assert reader.scaled == [True] * 3
    plain = write_tif(tmp_path / "plain.tif", _landsat_dn(rng, 64))
    bands = [Band(name="B2", scale=LANDSAT_SCALE, offset=LANDSAT_OFFSET), Band(name="B3"), Band(name="B4")]
    reader = open_scene(SceneRef("s", "plain.tif", (str(plain),), "geotiff"), bands, None)
    assert reader.scales == [LANDSAT_SCALE, 1.0, 1.0] and reader.offsets == [LANDSAT_OFFSET, 0.0, 0.0]
    assert reader.scaled == [True, False, False]


def test_hdf4_scale_factor_and_add_offset_in_gdal_convention(tmp_path: Path) -> None:
    """MODIS LST: physical = scale_factor * (stored - add_offset), recorded as stored * scale + offset."""
    from pyhdf.SD import SD, SDC

    path = tmp_path / "MOD11.hdf"
    sd = SD(str(path), SDC.WRITE | SDC.CREATE)
    ds = sd.create("LST_Day_1km", SDC.UINT16, (8, 8))
    ds[:] = np.full((8, 8), 14500, np.uint16)
    ds.scale_factor, ds.add_offset = 0.02, 100.0
    ds.endaccess()
    sd.end()
    reader = open_scene(SceneRef("m", "MOD11.hdf", (str(path),), "modis_hdf4"),
                        [Band(name="lst", sds="LST_Day_1km")], None)
    assert reader.scales == [0.02] and reader.offsets == [pytest.approx(-2.0)] and reader.scaled == [True]
    physical = reader.read(0, 0, 8, 8).data * reader.scales[0] + reader.offsets[0]
    assert physical[0, 0, 0] == pytest.approx(0.02 * (14500 - 100.0))


def test_scaled_build_records_scale_and_applies_it(tmp_path: Path, rng: np.random.Generator) -> None:
    """Landsat-like DN with scale/offset tags: one bright tile of four is cloud, the scale is in index and stats;
    the same rule on an untagged copy is refused for that scene with the fix in the detail."""
    import rasterio

    dn = _landsat_dn(rng, 256)
    dn[:, :100, :100] = round((0.6 - LANDSAT_OFFSET) / LANDSAT_SCALE)  # cloud over most of the top-left tile
    tagged = write_tif(tmp_path / "d" / "tagged.tif", dn)
    with rasterio.open(tagged, "r+") as ds:
        ds.scales = (LANDSAT_SCALE,) * 3
        ds.offsets = (LANDSAT_OFFSET,) * 3
    write_tif(tmp_path / "d" / "untagged.tif", _landsat_dn(rng, 256))
    m = write_manifest(tmp_path / "m.yaml", """\
        name: l9
        license: public domain
        root: d
        include: ["*.tif"]
        bands: [{name: B2}, {name: B3}, {name: B4}]
        tile: {size: 128}
        quality: {cloud: {brightness: 0.2, max_fraction: 0.5}}
        """)
    run_build([m], tmp_path / "c")
    excl = pd.read_parquet(tmp_path / "c" / "excluded.parquet")
    rows = excl[["scene", "x", "y", "reason"]].values.tolist()
    assert sorted(rows) == [["tagged.tif", 0, 0, "cloud"], ["untagged.tif", 0, 0, "unreadable"]]
    assert "cloud rule refused" in excl[excl["scene"] == "untagged.tif"]["detail"].iloc[0]
    index = pd.read_parquet(tmp_path / "c" / "index.parquet")
    assert len(index) == 3
    assert all(list(s) == [LANDSAT_SCALE] * 3 for s in index["band_scale"])
    assert all(list(o) == [LANDSAT_OFFSET] * 3 for o in index["band_offset"])
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    b2 = stats["sources"]["l9"]["bands"]["B2"]
    assert (b2["scale"], b2["offset"]) == (LANDSAT_SCALE, LANDSAT_OFFSET) and b2["min"] > 7000  # stored DN
