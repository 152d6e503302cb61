"""MODIS L1B (MOD021KM) ingest: calibration by hand, band order, flags, day/night, geolocation, bad granules, build."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rscurate import modis_calibration as cal
from rscurate import open_corpus
from rscurate.manifest import Band, ManifestError, load_manifest
from rscurate.modis_bands import DEFAULT_BANDS, EMISSIVE_1KM, REFLECTIVE_250
from rscurate.modis_synth import FILL, SATURATED, Granule, granule_name, write_granule
from rscurate.readers import SceneLeftOut, SceneReader, SceneRef, detect_format, open_scene
from rscurate.verify import verify
from tests.conftest import SHARED_REAL, run_build, write_manifest

SMALL = Granule(scans=13, frames=270)  # 130 x 270 pixels: two 128 px chips across, one down


def _granule(folder: Path, g: Granule = SMALL, minutes: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    start = g.start + timedelta(minutes=minutes)
    return write_granule(folder / granule_name(start), replace(g, start=start))


def _open(path: Path, day_only: bool = True, bands: list[Band] | None = None) -> SceneReader:
    return open_scene(SceneRef("m", path.name, (str(path),), "modis_l1b"), bands or [], None, day_only=day_only)


def _sds(path: Path, name: str) -> tuple[np.ndarray, dict, dict[str, int]]:
    """A dataset's values, attributes and attribute type codes (access ended before the file: see close())."""
    from pyhdf.SD import SD

    sd = SD(str(path))
    sds = sd.select(name)
    try:
        full = sds.attributes(full=1)  # name -> (value, index, type code, length)
        return sds.get(), {a: v[0] for a, v in full.items()}, {a: v[2] for a, v in full.items()}
    finally:
        sds.endaccess()
        sd.end()


def _set_text(path: Path, dataset: str | None, key: str, text: str) -> None:
    """Rewrite a text attribute of a dataset (or of the file) in place."""
    from pyhdf.SD import SD, SDC

    sd = SD(str(path), SDC.WRITE)
    target = sd.select(dataset) if dataset else sd
    target.attr(key).set(SDC.CHAR8, text)
    if dataset:
        target.endaccess()
    sd.end()


def _manifest(tmp_path: Path, extra: str = "") -> Path:
    return write_manifest(tmp_path / "modis.yaml", """\
        name: mod021km
        license: CC0-1.0 (generated)
        root: d
        include: ["*.hdf"]
        format: modis_l1b
        """ + extra)


def test_calibration_matches_values_computed_by_hand() -> None:
    # reflectance (%) = 100 * 5.2e-5 * (1000 - 316.9722) = 3.5517446
    dn = np.array([1000, 32767, 32768, SATURATED, FILL], np.uint16)
    refl = cal.reflectance_percent(dn, 5.2e-5, 316.9722)
    np.testing.assert_allclose(refl[:2], [3.5517446, 168.7401446], rtol=1e-6)
    assert np.isnan(refl[2:]).all()  # above 32767: flags, not measurements
    # band 31: L = 8.4e-4 * (DN - 1577.34); Tb = c2 / (λ ln(c1 / (1e6 L λ^5) + 1)), λ = 1 / (100 * 908.0884 cm^-1);
    # T = (Tb - 0.1302699) / 0.9995608, with c1 = 2hc², c2 = hc/k (h, c, k of CODATA 1986), worked in float64
    rad = cal.radiance(np.array([12000, 6000, FILL], np.uint16), 8.4e-4, 1577.34)
    np.testing.assert_allclose(rad[:2], [8.7550344, 3.7150344], rtol=1e-6)
    np.testing.assert_allclose(cal.brightness_temperature(rad, "31")[:2], [294.08189, 246.81123], atol=2e-3)
    assert np.isnan(cal.brightness_temperature(rad, "31")[2])
    # band 21 (3.959 µm): 2.5e-3 * (3000 - 2730) = 0.675 -> 298.64059 K
    bt21 = cal.brightness_temperature(cal.radiance(np.array([3000], np.uint16), 2.5e-3, 2730.0), "21")
    np.testing.assert_allclose(bt21, [298.64059], atol=2e-3)
    np.testing.assert_allclose(cal.radiance_of_temperature(np.array([294.08189]), "31"), [8.7550344], rtol=1e-5)
    with pytest.raises(ValueError, match="not a MODIS thermal band"):
        cal.brightness_temperature(rad, "26")


def test_bands_in_satvision_order_read_from_their_datasets_by_band_names(tmp_path: Path) -> None:
    from pyhdf.SD import SDC

    path = _granule(tmp_path)
    reader = _open(path)
    assert [b.name for b in reader.bands] == list(DEFAULT_BANDS) == [
        "B01", "B02", "B03", "B06", "B07", "B21", "B26", "B27", "B28", "B29", "B30", "B31", "B32", "B33"]
    assert [b.wavelength_um for b in reader.bands][:3] == [0.645, 0.858, 0.469]
    assert reader.bands[11].wavelength_um == 11.03 and (reader.width, reader.height) == (270, 130)
    assert reader.dtype == "float32" and np.isnan(reader.nodata) and reader.crs == "" and reader.gsd_m() == 1000.0
    reader.read(0, 0, 128, 128)  # the next window comes from the same cached strip of rows
    data = reader.read(128, 0, 128, 128).data
    reader.close()
    emissive, attrs, _ = _sds(path, EMISSIVE_1KM)
    # band 31 is the 11th of EV_1KM_Emissive (20..25, 27..36) and the 12th stored band
    k31 = attrs["band_names"].split(",").index("31")
    assert k31 == 10
    counts = emissive[k31, 0:128, 128:256]
    scale, offset = (float(attrs[a][k31]) for a in ("radiance_scales", "radiance_offsets"))
    np.testing.assert_allclose(data[11], cal.brightness_temperature(cal.radiance(counts, scale, offset), "31"))
    ref250, attrs, types = _sds(path, REFLECTIVE_250)
    counts = ref250[1, 0:128, 128:256]  # band 2
    scale, offset = (float(attrs[a][1]) for a in ("reflectance_scales", "reflectance_offsets"))
    want = np.where(counts > 32767, np.nan, 100 * scale * (counts.astype(np.float64) - offset))
    np.testing.assert_allclose(data[1], want, rtol=1e-5)
    assert {a: types[a] for a in ("reflectance_scales", "valid_range", "_FillValue", "band_names")} == {
        "reflectance_scales": SDC.FLOAT32, "valid_range": SDC.UINT16, "_FillValue": SDC.UINT16,
        "band_names": SDC.CHAR8}  # the file spec's types, not pyhdf's float64/int32 defaults
    # a declared band subset in its own order
    sub = _open(path, bands=[Band(name="B31"), Band(name="B01", wavelength_um=0.65)])
    assert [(b.name, b.wavelength_um) for b in sub.bands] == [("B31", 11.03), ("B01", 0.65)]
    np.testing.assert_array_equal(sub.read(128, 0, 128, 128).data, data[[11, 0]])
    sub.close()


def test_flagged_counts_become_nan_and_a_missing_scan_is_nodata(tmp_path: Path) -> None:
    path = _granule(tmp_path)
    band2 = _sds(path, REFLECTIVE_250)[0][1]
    reader = _open(path)
    res = reader.read(0, 0, 128, 128)
    reader.close()
    saturated = band2[:128, :128] == SATURATED
    assert saturated.any() and np.isnan(res.data[1][saturated]).all()
    assert np.isfinite(res.data[0][saturated]).all()  # band 1 still has data there: the pixel stays valid
    missing = slice(60, 70)  # scan 6 of 13 is fill in every band
    assert np.isnan(res.data[:, missing]).all() and not res.valid[missing].any() and res.valid[:60].all()


def test_night_granules_are_left_out_unless_the_source_keeps_any(tmp_path: Path) -> None:
    path = _granule(tmp_path, replace(SMALL, daynight="Night"))
    with pytest.raises(SceneLeftOut, match="DAYNIGHTFLAG is Night") as err:
        _open(path)
    assert err.value.reason == "night"
    reader = _open(path, day_only=False)
    res = reader.read(0, 0, 128, 128)
    reader.close()
    reflective, thermal = [0, 1, 2, 3, 4, 6], [5, 7, 8, 9, 10, 11, 12, 13]  # B26 (1.375 µm) is reflective
    assert np.isnan(res.data[reflective]).all() and np.isfinite(res.data[thermal, :60]).all()  # no sunlight
    assert res.valid[:60].all()  # thermal bands have data, and `any` keeps night pixels


def test_terminator_granule_counts_only_sunlit_pixels_by_default(tmp_path: Path) -> None:
    path = _granule(tmp_path, replace(SMALL, scans=26, daynight="Both", flags=False))  # night from row 130
    day = _open(path)
    assert day.read(0, 0, 128, 128).valid.all() and not day.read(0, 130, 128, 128).valid.any()
    day.close()
    anytime = _open(path, day_only=False)
    assert anytime.read(0, 130, 128, 128).valid.all()
    anytime.close()


def test_day_night_from_solar_zenith_when_the_metadata_has_no_flag(tmp_path: Path) -> None:
    path = _granule(tmp_path, replace(SMALL, daynight="Night"))
    _set_text(path, None, "CoreMetadata.0", "GROUP = INVENTORYMETADATA\nEND_GROUP = INVENTORYMETADATA\nEND\n")
    with pytest.raises(SceneLeftOut, match="Night"):  # SolarZenith is 110 degrees everywhere
        _open(path)


def test_chip_latitude_longitude_bounds_come_from_the_5km_grid(tmp_path: Path) -> None:
    path = _granule(tmp_path)
    lat, lon = _sds(path, "Latitude")[0], _sds(path, "Longitude")[0]
    assert lat.shape == (26, 54) and lat.dtype == np.float32  # cell (i, j) at pixel (5i + 2, 5j + 2)
    reader = _open(path)
    # pixels 128..255 across meet the 5x5 blocks of columns 25..51; rows 0..127 those of rows 0..25
    west, south, east, north = reader.lonlat_bounds(128, 0, 128, 128)
    assert (west, east) == (lon[:26, 25:52].min(), lon[:26, 25:52].max())
    assert (south, north) == (lat[:26, 25:52].min(), lat[:26, 25:52].max())
    reader.close()
    dateline = _granule(tmp_path / "e", replace(SMALL, lon0=179.5))
    reader = _open(dateline)
    west, _, east, _ = reader.lonlat_bounds(64, 0, 128, 128)
    reader.close()
    assert 170 < west < 180 and -180 < east < -170  # across the antimeridian: west > east, as GeoJSON says


def test_bad_granules_are_recorded_and_the_build_goes_on(tmp_path: Path) -> None:
    d = tmp_path / "d"
    good = _granule(d)
    truncated = _granule(d, minutes=5)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 3])
    _granule(d, replace(SMALL, omit=(EMISSIVE_1KM,)), minutes=10)
    wrong = _granule(d, minutes=15)
    # a granule whose thermal bands lack 31
    _set_text(wrong, EMISSIVE_1KM, "band_names", "20,21,22,23,24,25,27,28,29,30,32,33,34,35,36,37")
    _granule(d, replace(SMALL, daynight="Night"), minutes=20)
    report = run_build([_manifest(tmp_path)], tmp_path / "c")
    assert report.kept == 2
    excl = pd.read_parquet(tmp_path / "c" / "excluded.parquet").set_index("scene")
    assert good.name not in excl.index
    detail = excl["detail"].to_dict()
    reasons = excl["reason"].to_dict()
    assert reasons[truncated.name] == "unreadable"
    assert "missing dataset EV_1KM_Emissive" in detail[granule_name(SMALL.start + timedelta(minutes=10))]
    assert "band 31 (B31) is not in EV_1KM_Emissive band_names" in detail[wrong.name]
    assert reasons[granule_name(SMALL.start + timedelta(minutes=20))] == "night"
    verify(tmp_path / "c")


def test_build_two_granules_into_a_verified_corpus(tmp_path: Path) -> None:
    first = _granule(tmp_path / "d")
    _granule(tmp_path / "d", replace(SMALL, lat0=20.0, seed=1), minutes=5)
    report = run_build([_manifest(tmp_path)], tmp_path / "c")
    assert report.kept == 4 and report.excluded == 0
    assert verify(tmp_path / "c")["tiles"] == 4
    corpus = open_corpus(tmp_path / "c")
    index = corpus.index.to_pandas()
    assert sorted(index["width"]) == [128] * 4 and set(index["channels"]) == {14}
    row = index[(index["scene"] == first.name) & (index["x"] == 128)].iloc[0]
    assert list(row["bands"]) == list(DEFAULT_BANDS) and row["wavelengths_um"][11] == 11.03
    assert row["crs"] == "" and np.isnan(row["minx"]) and row["gsd_m"] == 1000.0 and row["dtype"] == "float32"
    assert 38 < row["lat_min"] < row["lat_max"] < 41 and row["lon_min"] < row["lon_max"]
    arr, _ = corpus.tile(row["id"])
    reader = _open(first)
    np.testing.assert_array_equal(arr, reader.read(128, 0, 128, 128).data)
    reader.close()
    assert index.loc[index["scene"] != first.name, "lat_max"].max() < 21


def test_manifest_defaults_and_refusals(tmp_path: Path) -> None:
    m = load_manifest(_manifest(tmp_path))
    assert m.tile.size == 128 and m.daynight == "day"
    assert load_manifest(_manifest(tmp_path, "tile: {size: 64}\n")).tile.size == 64
    with pytest.raises(ManifestError, match="'B99' is not a MODIS L1B band"):
        load_manifest(_manifest(tmp_path, "bands: [{name: B99}]\n"))
    with pytest.raises(ManifestError, match="take only name, wavelength_um and gsd_m"):
        load_manifest(_manifest(tmp_path, "bands: [{name: B01, sds: EV_250_Aggr1km_RefSB}]\n"))
    plain = write_manifest(tmp_path / "tif.yaml", """\
        name: t
        license: x
        root: d
        include: ["*.tif"]
        format: geotiff
        daynight: any
        """)
    with pytest.raises(ManifestError, match="daynight applies to format modis_l1b only"):
        load_manifest(plain)
    assert detect_format("x/MYD021KM.A2024153.1030.061.2024154103000.hdf") == "modis_l1b"
    assert detect_format("x/MOD09GA.A2008296.h14v17.006.2015181011753.hdf") == "modis_hdf4"


def test_full_size_granule_layout(tmp_path: Path) -> None:
    path = _granule(tmp_path, replace(SMALL, scans=203, frames=1354, flags=False))
    assert _sds(path, EMISSIVE_1KM)[0].shape == (16, 2030, 1354)
    assert _sds(path, "Latitude")[0].shape == (406, 271)
    reader = _open(path)
    assert (reader.width, reader.height) == (1354, 2030)
    assert reader.lonlat_bounds(1280, 1920, 74, 110) is not None  # the last rows and columns have geolocation
    data = reader.read(1226, 1902, 128, 128).data
    reader.close()
    assert data.shape == (14, 128, 128) and np.isfinite(data).all()


REAL_MOD09GA = SHARED_REAL / "modis" / "MOD09GA.A2008296.h14v17.006.2015181011753.hdf"


@pytest.mark.skipif(not REAL_MOD09GA.exists(), reason="real MOD09GA granule only in the shared data folder")
def test_real_mod09ga_granule_reads_through_the_gridded_reader() -> None:
    bands = [Band(name="B01", sds="sur_refl_b01_1", wavelength_um=0.645)]
    reader = open_scene(SceneRef("m", REAL_MOD09GA.name, (str(REAL_MOD09GA),), detect_format(str(REAL_MOD09GA))),
                        bands, None)
    assert (reader.width, reader.height) == (2400, 2400) and reader.nodata == -28672
    assert "Sinusoidal" in reader.crs or "sinu" in reader.crs
    view = reader.overview(480)
    reader.close()
    assert 0 < view.valid.mean() < 0.02  # an Antarctic tile: almost all fill
