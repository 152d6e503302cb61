"""Readers for every container: band-per-file groups, npy stacks, HDF4 granules, PNG/JPEG chips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from PIL import Image

from rscurate import open_corpus
from rscurate.manifest import Band
from rscurate.readers import SceneRef, open_scene
from rscurate.verify import verify
from tests.conftest import run_build, textured, write_manifest, write_tif


def test_band_files_at_three_resolutions_share_one_grid(tmp_path: Path, rng: np.random.Generator) -> None:
    """A Sentinel-2-like layout: 10 m, 20 m and 60 m bands plus an SCL class band, one file each."""
    scene = tmp_path / "data" / "S2X_T01ABC_20200101"
    fine = textured(rng, 2, 256, 256)
    for name, arr in (("B02", fine[0]), ("B04", fine[1])):
        write_tif(scene / f"{name}.tif", arr[None], res=10)
    b11 = textured(rng, 1, 128, 128)
    write_tif(scene / "B11.tif", b11, res=20)
    write_tif(scene / "B01.tif", textured(rng, 1, 43, 43), res=60)  # 258 m: the last coarse pixel overhangs
    scl = np.full((1, 128, 128), 4, np.uint8)
    scl[:, :64, :64] = 9  # cloud, high probability, in the top-left tile only
    write_tif(scene / "SCL.tif", scl, res=20)
    manifest = write_manifest(tmp_path / "m" / "s2.yaml", """\
        name: s2
        license: CC-BY-SA-3.0-IGO
        root: ../data
        include: ["*/*.tif"]
        band_files: {pattern: '(?P<scene>[^/]+)/(?P<band>B\\d\\d|SCL)\\.tif$'}
        bands:
          - {name: B01, wavelength_um: 0.443, gsd_m: 60}
          - {name: B02, wavelength_um: 0.490, gsd_m: 10}
          - {name: B04, wavelength_um: 0.665, gsd_m: 10}
          - {name: B11, wavelength_um: 1.610, gsd_m: 20}
          - {name: SCL, qa: true}
        tile: {size: 128}
        quality: {cloud: {band: SCL, classes: [8, 9, 10], max_fraction: 0.5}}
        """)
    run_build([manifest], tmp_path / "c")
    verify(tmp_path / "c")
    corpus = open_corpus(tmp_path / "c")
    index = corpus.index.to_pandas()
    assert len(index) == 3 and index["scene"].iloc[0] == "S2X_T01ABC_20200101/{band}.tif"
    excl = pd.read_parquet(tmp_path / "c" / "excluded.parquet")
    assert excl["reason"].tolist() == ["cloud"] and (excl["x"].iloc[0], excl["y"].iloc[0]) == (0, 0)
    row = index[(index["x"] == 128) & (index["y"] == 128)].iloc[0]
    arr, meta = corpus.tile(row["id"])
    assert arr.shape == (4, 128, 128) and meta["bands"] == ["B01", "B02", "B04", "B11"]
    assert meta["gsd_m"] == 10 and meta["wavelengths_um"][1] == pytest.approx(0.49)
    np.testing.assert_array_equal(arr[1], fine[0][128:, 128:])  # native 10 m band: untouched
    expected = _bilinear_2x(b11[0])[128:255, 128:255]  # registered exactly (uint16: rounded), not correlated
    assert np.abs(arr[3][:127, :127].astype(np.float64) - expected).max() <= 0.5 + 1e-9


def test_missing_band_file_is_recorded(tmp_path: Path, rng: np.random.Generator) -> None:
    write_tif(tmp_path / "d" / "s1_B2.tif", textured(rng, 1, 128, 128))
    write_tif(tmp_path / "d" / "s1_B3.tif", textured(rng, 1, 128, 128))
    write_tif(tmp_path / "d" / "s2_B2.tif", textured(rng, 1, 128, 128))
    m = write_manifest(tmp_path / "m.yaml", """\
        name: l8
        license: public domain
        root: d
        include: ["*.tif"]
        band_files: {pattern: '(?P<scene>s\\d)_(?P<band>B\\d)\\.tif$'}
        bands: [{name: B2}, {name: B3}]
        tile: {size: 128}
        """)
    run_build([m], tmp_path / "c")
    excl = pd.read_parquet(tmp_path / "c" / "excluded.parquet")
    assert excl[["scene", "reason"]].values.tolist() == [["s2_{band}.tif", "unreadable"]]
    assert "B3" in excl["detail"].iloc[0]
    verify(tmp_path / "c")


def test_npy_time_stack_is_one_scene_per_frame(tmp_path: Path, rng: np.random.Generator) -> None:
    """eo-learn style (T, H, W, C) float32 stacks, 13 bands."""
    stack = np.stack([np.moveaxis(textured(rng, 13, 96, 100, "float32"), 0, -1) for _ in range(3)])
    (tmp_path / "d").mkdir()
    np.save(tmp_path / "d" / "scenes.npy", stack)
    m = write_manifest(tmp_path / "m.yaml", """\
        name: eo
        license: MIT
        root: d
        include: ["*.npy"]
        tile: {size: 64, stride: 32}
        """)
    run_build([m], tmp_path / "c")
    verify(tmp_path / "c")
    corpus = open_corpus(tmp_path / "c")
    index = corpus.index.to_pandas()
    assert sorted(set(index["scene"])) == ["scenes.npy#0", "scenes.npy#1", "scenes.npy#2"]
    row = index[(index["scene"] == "scenes.npy#2") & (index["x"] == 32) & (index["y"] == 0)].iloc[0]
    arr, _ = corpus.tile(row["id"])
    np.testing.assert_array_equal(arr, np.moveaxis(stack[2, 0:64, 32:96, :], -1, 0))


def _write_modis_hdf4(path: Path, bands: dict[str, np.ndarray], fill: int) -> None:
    from pyhdf.SD import SD, SDC

    sd = SD(str(path), SDC.WRITE | SDC.CREATE)
    h, w = next(iter(bands.values())).shape
    for name, arr in bands.items():
        ds = sd.create(name, SDC.INT16, (h, w))
        ds.setfillvalue(fill)
        ds[:] = arr
        ds.endaccess()
    meta = (f"GROUP=GridStructure\n\tGROUP=GRID_1\n\t\tXDim={w}\n\t\tYDim={h}\n"
            "\t\tUpperLeftPointMtrs=(-1111950.519667,-8895604.157333)\n"
            "\t\tLowerRightMtrs=(0.000000,-10007554.677000)\n")
    att = sd.attr("StructMetadata.0")
    att.set(SDC.CHAR8, meta)
    sd.end()


def test_modis_hdf4_granule_through_pyhdf(tmp_path: Path, rng: np.random.Generator) -> None:
    fill = -28672
    b1 = textured(rng, 1, 240, 240, "int16")[0]
    b2 = textured(rng, 1, 240, 240, "int16")[0]
    b1[:, 120:] = fill  # the right half is outside the swath
    b2[:, 120:] = fill
    (tmp_path / "d").mkdir()
    bands = {"sur_refl_b01_1": b1, "sur_refl_b02_1": b2}
    _write_modis_hdf4(tmp_path / "d" / "MOD09GA.A2008296.h14v17.hdf", bands, fill)
    (tmp_path / "d" / "MOD09GA.A2008297.h14v17.hdf").write_bytes(b"\x0e\x03\x13\x01 truncated granule")
    m = write_manifest(tmp_path / "m.yaml", """\
        name: mod09
        license: NASA LP DAAC, no restrictions
        root: d
        include: ["*.hdf"]
        bands:
          - {name: b01, sds: sur_refl_b01_1, wavelength_um: 0.645, gsd_m: 463.3}
          - {name: b02, sds: sur_refl_b02_1, wavelength_um: 0.858, gsd_m: 463.3}
        tile: {size: 120}
        """)
    run_build([m], tmp_path / "c")
    verify(tmp_path / "c")
    corpus = open_corpus(tmp_path / "c")
    index = corpus.index.to_pandas()
    assert sorted(index["x"]) == [0, 0] and index["nodata"].iloc[0] == fill
    assert "sinu" in index["crs"].iloc[0] or "Sinusoidal" in index["crs"].iloc[0]
    assert index["maxx"].max() == pytest.approx(-1111950.519667 + 120 * 1111950.519667 / 240)
    arr, _ = corpus.tile(int(np.flatnonzero(index["y"] == 120)[0]))
    np.testing.assert_array_equal(arr[0], b1[120:, :120])
    excl = pd.read_parquet(tmp_path / "c" / "excluded.parquet")
    assert excl.groupby("reason").size().to_dict() == {"nodata": 2, "unreadable": 1}


def test_png_and_jpeg_chips_keep_their_original_bytes(tmp_path: Path, rng: np.random.Generator) -> None:
    data = tmp_path / "d"
    for cls in ("forest", "harbor"):
        (data / cls).mkdir(parents=True)
    rgb = np.moveaxis(textured(rng, 3, 96, 96, "uint8"), 0, -1)
    Image.fromarray(rgb).save(data / "forest" / "f1.png")
    Image.fromarray(rgb[::-1]).save(data / "harbor" / "h1.jpg", quality=90)
    Image.fromarray(rgb[:, :, 0]).save(data / "harbor" / "gray.png")
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:50] = 0  # transparent top: 52 % nodata
    Image.fromarray(rgba).save(data / "forest" / "alpha.png")
    m = write_manifest(tmp_path / "m.yaml", """\
        name: chips
        license: CC-BY-4.0
        root: d
        include: ["**/*.png", "**/*.jpg"]
        bands: rgb
        tile: {mode: whole, min_size: 64}
        labels: {mode: folder}
        """)
    run_build([m], tmp_path / "c")
    verify(tmp_path / "c")
    corpus = open_corpus(tmp_path / "c")
    index = corpus.index.to_pandas().set_index("scene")
    assert set(index.index) == {"forest/f1.png", "harbor/h1.jpg", "harbor/gray.png"}
    # a colour JPEG keeps its bytes only where Pillow decodes it as GDAL does (tests/test_stored_pixels.py)
    assert index.loc["forest/f1.png", "encoding"] == "png" and index.loc["harbor/h1.jpg", "encoding"] == "npy.zst"
    assert index.loc["harbor/h1.jpg", "label"] == "harbor"
    arr, meta = corpus.tile(index.loc["forest/f1.png", "id"])
    np.testing.assert_array_equal(arr, np.moveaxis(rgb, -1, 0))
    import imagehash  # the reference pHash definition, on the original file

    assert meta["phash"] == int(str(imagehash.phash(Image.open(data / "forest" / "f1.png"))), 16)
    with rasterio.open(data / "harbor" / "h1.jpg") as ds:
        np.testing.assert_array_equal(corpus.tile(index.loc["harbor/h1.jpg", "id"])[0], ds.read())
    gray, meta = corpus.tile(index.loc["harbor/gray.png", "id"])
    assert gray.shape == (1, 96, 96) and meta["bands"] == ["gray"]
    excl = pd.read_parquet(tmp_path / "c" / "excluded.parquet")
    assert excl[["scene", "reason"]].values.tolist() == [["forest/alpha.png", "nodata"]]


def _bilinear_2x(coarse: np.ndarray) -> np.ndarray:
    """Bilinear upsampling by 2 on pixel centres (fine pixel f sits at coarse centre-index f / 2 - 0.25): the
    exact values a correctly registered read gives away from the edges."""
    out = coarse.astype(np.float64)
    for ax in (0, 1):
        n = out.shape[ax]
        pos = np.arange(2 * n) / 2 - 0.25
        lo = np.clip(np.floor(pos).astype(int), 0, n - 1)
        hi = np.clip(np.floor(pos).astype(int) + 1, 0, n - 1)
        t = (pos - np.floor(pos)).reshape([-1 if a == ax else 1 for a in (0, 1)])
        out = np.take(out, lo, axis=ax) * (1 - t) + np.take(out, hi, axis=ax) * t
    return out


def test_coarse_band_is_read_by_exact_bounds_with_fill_masked(tmp_path: Path, rng: np.random.Generator) -> None:
    """A 20 m band covering the left half of a 10 m scene, its top three rows fill: the half it does not cover is
    nodata (not the band stretched over the window), fill never blends into data, and values are registered
    exactly (a one-pixel shift fails)."""
    fill = -9999.0
    fine = textured(rng, 1, 64, 64, "float32") + 1.0
    coarse = (1000 + 1000 * textured(rng, 1, 32, 16, "float64")).astype(np.float32)  # 160 m wide: half of 320 m
    coarse[:, :3] = fill
    b02 = write_tif(tmp_path / "B02.tif", fine, res=10, nodata=fill)
    b11 = write_tif(tmp_path / "B11.tif", coarse, res=20, nodata=fill)
    bands = [Band(name="B02"), Band(name="B11")]
    ref = SceneRef("s2", "{band}.tif", (str(b02), str(b11)), "geotiff")
    res = open_scene(ref, bands, None, "bilinear").read(0, 0, 64, 64)
    got = res.data[1]
    assert not res.valid[:, 32:].any() and (got[:, 32:] == fill).all(), "uncovered ground is nodata"
    assert not res.valid[:4].any(), "pixels whose kernel holds only fill are nodata"
    data = coarse[0][3:]
    assert got[res.valid].min() >= data.min() and got[res.valid].max() <= data.max(), "no fill blended in"
    np.testing.assert_allclose(got[8:62, 2:30], _bilinear_2x(coarse[0])[8:62, 2:30], atol=1e-3)
    np.testing.assert_array_equal(res.data[0][res.valid], fine[0][res.valid])
    near = open_scene(ref, bands, None, "nearest").read(0, 0, 64, 64)
    rows, cols = np.nonzero(near.valid)
    np.testing.assert_array_equal(near.data[1][rows, cols], coarse[0][rows // 2, cols // 2])
    assert near.valid[6:, :32].all() and not near.valid[:6].any()


@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", -9999), ("uint8", 0.5), ("uint8", 256), ("int16", 40000)])
def test_a_nodata_value_the_dtype_cannot_hold_is_refused(tmp_path: Path, rng: np.random.Generator, dtype: str,
                                                          nodata: float) -> None:
    """Issue 9.4: cast unchecked, -9999 on uint16 became 55537 (masking real data) and 0.5 on uint8 became 0."""
    path = write_tif(tmp_path / "scene.tif", textured(rng, 1, 32, 32, dtype))
    ref = SceneRef(source="s", scene="scene.tif", paths=(str(path),), format="geotiff")
    with pytest.raises(ValueError, match=rf"scene\.tif: nodata {nodata:g} cannot be held by its {dtype} data"):
        open_scene(ref, [], nodata)
    for fits in (0, 255, np.nan) if dtype == "uint8" else (0, -1 if dtype == "int16" else 65535):
        assert open_scene(ref, [], fits).nodata is fits


def test_a_float_nodata_is_kept_as_declared(tmp_path: Path, rng: np.random.Generator) -> None:
    path = write_tif(tmp_path / "scene.tif", textured(rng, 1, 32, 32, "float32"), nodata=-3.4028234663852886e38)
    ref = SceneRef(source="s", scene="scene.tif", paths=(str(path),), format="geotiff")
    assert open_scene(ref, [], None).nodata == -3.4028234663852886e38
    assert open_scene(ref, [], -9999.5).nodata == -9999.5
    with pytest.raises(ValueError, match="nodata 1e\\+39 cannot be held by its float32 data"):
        open_scene(ref, [], 1e39)
