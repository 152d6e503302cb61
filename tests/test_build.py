"""End-to-end builds over generated rasters with known defects: every input accounted for."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
import zstandard

from rscurate import open_corpus
from rscurate.verify import verify
from tests.conftest import run_build, textured, write_manifest, write_tif


@pytest.fixture(scope="module")
def defects_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One source with each defect the quality rules must catch, plus clean multi-dtype scenes."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("defects")
    data = root / "data"
    clean = textured(rng, 4, 256, 256)
    write_tif(data / "clean_u16.tif", clean)
    write_tif(data / "copy_u16.tif", clean.copy(), origin=(614400.0, 4014080.0))  # same pixels elsewhere
    border = textured(rng, 4, 256, 256)
    border[:, :, :160] = 0  # left column of tiles all nodata, right column 25 % nodata (kept)
    write_tif(data / "border.tif", border, nodata=0)
    flat = np.full((4, 128, 128), 1000, np.uint16)
    write_tif(data / "flat.tif", flat)
    cloudy = textured(rng, 4, 128, 128)
    cloudy[:, 10:120, 5:125] = 3990  # saturated bright block over most of the tile
    write_tif(data / "cloudy.tif", cloudy)
    write_tif(data / "tiny.tif", textured(rng, 4, 40, 60))
    (data / "corrupt.tif").write_bytes(b"II*\x00" + bytes(rng.integers(0, 255, 4000, dtype=np.uint8)))
    write_tif(data / "f32.tif", textured(rng, 13, 128, 128, "float32"))
    write_tif(data / "i16.tif", textured(rng, 1, 128, 128, "int16"))
    manifest = write_manifest(root / "manifests" / "defects.yaml", """\
        name: defects
        license: CC0-1.0
        root: ../data
        include: ["*.tif"]
        tile: {size: 128}
        quality:
          max_nodata_fraction: 0.5
          cloud: {brightness: 3900, units: stored, max_fraction: 0.5}
        """)
    out = root / "corpus"
    run_build([manifest.parent], out)
    return out, data


def test_every_input_is_accounted_for(defects_corpus: tuple[Path, Path]) -> None:
    out, _ = defects_corpus
    checked = verify(out)
    assert checked["scenes"] == 9


def test_defects_are_excluded_with_their_reason(defects_corpus: tuple[Path, Path]) -> None:
    out, _ = defects_corpus
    excl = pd.read_parquet(out / "excluded.parquet")
    by_scene = excl.groupby("scene")["reason"].agg(set).to_dict()
    assert by_scene["flat.tif"] == {"low_information"}
    assert by_scene["cloudy.tif"] == {"cloud"}
    assert by_scene["tiny.tif"] == {"too_small"}
    assert by_scene["corrupt.tif"] == {"unreadable"}
    assert "nodata" in by_scene["border.tif"]
    corrupt = excl[excl["scene"] == "corrupt.tif"].iloc[0]
    assert corrupt["detail"], "an unreadable file carries the error text"
    border_tiles = excl[(excl["scene"] == "border.tif") & (excl["reason"] == "nodata")]
    assert set(border_tiles["x"]) == {0}, "only the left column of tiles is mostly nodata"


def test_exact_duplicates_point_at_kept_tile(defects_corpus: tuple[Path, Path]) -> None:
    out, _ = defects_corpus
    dups = pd.read_parquet(out / "duplicates.parquet")
    index = pd.read_parquet(out / "index.parquet")
    assert len(dups) == 4 and set(dups["kind"]) == {"exact"}
    assert set(dups["kept_id"]) <= set(index["id"])
    # when priority, gsd and size tie, the scene named first keeps all its tiles
    assert set(dups["scene"]) == {"copy_u16.tif"} and set(dups["kept_scene"]) == {"clean_u16.tif"}


def test_no_curate_keeps_every_tile_with_a_valid_pixel(defects_corpus: tuple[Path, Path], tmp_path: Path) -> None:
    """The uncurated baseline of docs/results.md: duplicates, flat, cloudy and mostly-nodata tiles stay; only tiles
    without a valid pixel and files that cannot be tiled go."""
    curated, data = defects_corpus
    out = tmp_path / "uncurated"
    run_build([data.parent / "manifests"], out, curate=False)
    index, excl = pd.read_parquet(out / "index.parquet"), pd.read_parquet(out / "excluded.parquet")
    assert len(pd.read_parquet(out / "duplicates.parquet")) == 0
    assert {"copy_u16.tif", "flat.tif", "cloudy.tif"} <= set(index["scene"])
    assert set(excl["reason"]) == {"nodata", "too_small", "unreadable"}
    assert (excl[excl["reason"] == "nodata"]["detail"].str.startswith("nodata_fraction=1.000")).all()
    assert len(index) == len(pd.read_parquet(curated / "index.parquet")) + 4 + 1 + 1  # copies, flat, cloudy
    assert json.loads((out / "build.json").read_text())["settings"]["curate"] is False
    verify(out)


def test_tiles_round_trip_losslessly(defects_corpus: tuple[Path, Path]) -> None:
    out, data = defects_corpus
    import rasterio

    corpus = open_corpus(out)
    index = corpus.index.to_pandas()
    for scene, dtype, bands in (("f32.tif", "float32", 13), ("i16.tif", "int16", 1), ("clean_u16.tif", "uint16", 4)):
        rows = index[index["scene"] == scene]
        assert len(rows) > 0, scene
        for _, row in rows.iterrows():
            arr, meta = corpus.tile(row["id"])
            assert arr.dtype == np.dtype(dtype) and arr.shape == (bands, 128, 128)
            with rasterio.open(data / scene) as ds:
                src = ds.read(window=((row["y"], row["y"] + 128), (row["x"], row["x"] + 128)))
            np.testing.assert_array_equal(arr, src)
            assert meta["bands"] == [f"b{i + 1}" for i in range(bands)]


def test_corpus_opens_without_rscurate(defects_corpus: tuple[Path, Path]) -> None:
    out, _ = defects_corpus
    shards = sorted((out / "shards").glob("*.parquet"))
    table = pq.read_table(shards[0])
    row = table.slice(0, 1).to_pylist()[0]
    arr = np.load(io.BytesIO(zstandard.decompress(row["image"])))
    assert arr.shape == (row["channels"], row["height"], row["width"]) and arr.dtype.name == row["dtype"]
    df = pd.read_parquet(out / "index.parquet")
    assert {"id", "shard", "row", "source", "scene", "x", "y", "width", "height", "crs", "minx", "miny", "maxx",
            "maxy", "bands", "dtype", "sha256"} <= set(df.columns)
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"select count(*) from read_parquet('{out}/shards/*.parquet')").fetchall()[0][0]
    assert n == len(df)


def test_band_stats_match_numpy_over_kept_valid_pixels(defects_corpus: tuple[Path, Path]) -> None:
    out, _ = defects_corpus
    stats = json.loads((out / "stats.json").read_text())
    corpus = open_corpus(out)
    pixels: dict[str, list[np.ndarray]] = {}
    for i in range(len(corpus)):
        arr, meta = corpus.tile(i)
        for name, band in zip(meta["bands"], arr, strict=True):  # the source mixes band sets: name@dtypexN keys
            valid = band != meta["nodata"] if meta["nodata"] is not None else np.isfinite(band)  # per band
            pixels.setdefault(f"{name}@{arr.dtype}x{len(arr)}", []).append(band[valid].astype(np.float64))
    assert set(stats["sources"]["defects"]["band_groups"]) == {"uint16x4", "float32x13", "int16x1"}
    for key in ("b1@uint16x4", "b1@int16x1", "b4@uint16x4", "b13@float32x13"):
        ref = np.concatenate(pixels[key])
        got = stats["bands"][key]
        assert got["count"] == ref.size
        assert got["mean"] == pytest.approx(ref.mean(), rel=1e-9)
        assert got["std"] == pytest.approx(ref.std(), rel=1e-6)
        assert (got["min"], got["max"]) == (ref.min(), ref.max())
    b4 = np.concatenate(pixels["b4@uint16x4"])  # uint16: one bin per value, exact
    for p in (1, 99):
        assert stats["bands"]["b4@uint16x4"][f"p{p}"] == np.percentile(b4, p, method="inverted_cdf")
    b4 = np.concatenate(pixels["b4@float32x13"])  # float32: 12-bit bins, relative error 2**-11
    for p in (1, 99):
        want = np.percentile(b4, p, method="inverted_cdf")
        assert abs(stats["bands"]["b4@float32x13"][f"p{p}"] - want) <= 2**-11 * abs(want)
    assert stats["counts"]["excluded"]["too_small"] == 1


def test_same_index_whatever_the_worker_count(defects_corpus: tuple[Path, Path], tmp_path: Path) -> None:
    out, data = defects_corpus
    again = tmp_path / "again"
    run_build([data.parent / "manifests"], again, workers=1, unit_tiles=1)
    a = pd.read_parquet(out / "index.parquet").sort_values("id").reset_index(drop=True)
    b = pd.read_parquet(again / "index.parquet").sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns=["shard", "row"]), b.drop(columns=["shard", "row"]))
    verify(again)


def test_huge_declared_scene_is_read_window_by_window(tmp_path: Path) -> None:
    """A 40000 x 40000 GeoTIFF that declares its size but stores almost nothing (sparse blocks):
    whole-scene reading would need 3.2 GB; windowed reading handles it tile by tile."""
    import rasterio

    path = tmp_path / "data" / "huge.tif"
    path.parent.mkdir()
    profile = dict(driver="GTiff", width=40000, height=40000, count=1, dtype="uint16", crs="EPSG:32633",
                   transform=rasterio.transform.from_origin(0, 0, 10, 10), tiled=True, blockxsize=512,
                   blockysize=512, compress="deflate", nodata=0, SPARSE_OK=True)
    block = textured(np.random.default_rng(3), 1, 4096, 4096)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(block, window=((8192, 12288), (4096, 8192)))  # one written region, the rest is sparse
    assert path.stat().st_size < 50 * 2**20
    m = write_manifest(tmp_path / "m.yaml", "name: huge\nlicense: CC0-1.0\nroot: data\ninclude: ['*.tif']\n"
                       "tile: {size: 4096}\n")
    report = run_build([m], tmp_path / "c")
    verify(tmp_path / "c")
    index = pd.read_parquet(tmp_path / "c" / "index.parquet")
    assert report.kept == 1 and (index["x"].iloc[0], index["y"].iloc[0]) == (4096, 8192)
    assert report.excluded == 9 * 9 - 1  # every other full window reads as nodata



def _only_the_last_block_unreadable(manifest: Path, out: Path) -> str:
    """Build a 512 px scene whose bottom-right 256 px block is damaged: three tiles kept, that block recorded
    unreadable (verify passes); returns its detail text."""
    run_build([manifest], out)
    index = pd.read_parquet(out / "index.parquet")
    excluded = pd.read_parquet(out / "excluded.parquet")
    assert sorted(zip(index["x"], index["y"], strict=True)) == [(0, 0), (0, 256), (256, 0)]
    assert excluded[["x", "y", "reason"]].values.tolist() == [[256, 256, "unreadable"]]
    verify(out)
    return str(excluded["detail"].iloc[0])

def test_a_damaged_block_loses_its_tiles_not_the_scene(tmp_path: Path, rng: np.random.Generator) -> None:
    """One corrupt compressed block: the windows over it are `unreadable` with GDAL's error text, the rest
    of the scene is kept (its whole-scene signature, which reads every block, is simply skipped)."""
    path = write_tif(tmp_path / "data" / "damaged.tif", textured(rng, 3, 512, 512, "uint8"), tiled=True,
                     blockxsize=256, blockysize=256, compress="deflate", interleave="band")
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * 64)
    m = write_manifest(tmp_path / "m.yaml", """\
        name: m
        license: CC0-1.0
        root: data
        include: ["*.tif"]
        tile: {size: 256}
        """)
    assert _only_the_last_block_unreadable(m, tmp_path / "corpus")


def _damaged_images(data: Path, rng: np.random.Generator) -> dict[str, str]:
    """A clean 512x512 JPEG and PNG and three damaged copies; returns each damaged file's expected warning."""
    from PIL import Image

    data.mkdir(parents=True)
    rgb = np.moveaxis(textured(rng, 3, 512, 512, "uint8"), 0, -1)
    Image.fromarray(rgb).save(data / "ok.jpg", quality=90)
    Image.fromarray(rgb[::-1]).save(data / "ok.png")
    jpeg, png = (data / "ok.jpg").read_bytes(), (data / "ok.png").read_bytes()
    (data / "truncated.jpg").write_bytes(jpeg[: int(len(jpeg) * 0.3)])
    garbage = bytearray(jpeg)
    middle = len(jpeg) // 2  # well inside the entropy-coded data, past the ~600 header bytes
    garbage[middle : middle + 2000] = rng.integers(0, 255, 2000, dtype=np.uint8).tobytes()
    (data / "garbage.jpg").write_bytes(bytes(garbage))
    (data / "truncated.png").write_bytes(png[: int(len(png) * 0.3)])
    return {"truncated.jpg": "Premature end of JPEG file", "garbage.jpg": "Corrupt JPEG data",
            "truncated.png": "libpng"}


@pytest.mark.parametrize("tile", ["{size: 128}", "{mode: whole, min_size: 64}"])
def test_a_file_that_fails_to_decode_gives_no_tile(tmp_path: Path, rng: np.random.Generator, tile: str) -> None:
    """JPEG/PNG damage (truncation, garbage in the entropy-coded data) makes the whole file unreadable with the
    decoder's words, whether it is cut into tiles (where windows above the damage read cleanly) or kept whole."""
    expected = _damaged_images(tmp_path / "data", rng)
    m = write_manifest(tmp_path / "m.yaml", f"""\
        name: images
        license: CC0-1.0
        root: data
        include: ["*.jpg", "*.png"]
        bands: rgb
        tile: {tile}
        """)
    out = tmp_path / "corpus"
    run_build([m], out)
    index = pd.read_parquet(out / "index.parquet")
    assert set(index["scene"]) == {"ok.jpg", "ok.png"}
    excluded = pd.read_parquet(out / "excluded.parquet")
    for scene, warning in expected.items():
        rows = excluded[excluded["scene"] == scene]
        assert set(rows["reason"]) == {"unreadable"}, scene
        assert all(warning in d for d in rows["detail"]), (scene, rows["detail"].tolist())
    verify(out)


def test_a_block_that_decodes_with_a_warning_is_unreadable(tmp_path: Path, rng: np.random.Generator) -> None:
    """libjpeg only warns about garbage in a JPEG-compressed GeoTIFF block and returns made-up pixels: the window
    over that block is unreadable with the warning's text, the other windows are kept."""
    path = write_tif(tmp_path / "data" / "jpeg.tif", textured(rng, 3, 512, 512, "uint8"), tiled=True,
                     blockxsize=256, blockysize=256, compress="jpeg")
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_1_1", "TIFF", bidx=1))
        size = int(ds.get_tag_item("BLOCK_SIZE_1_1", "TIFF", bidx=1))
    with open(path, "r+b") as f:
        f.seek(offset + size // 2)
        f.write(rng.integers(0, 255, 200, dtype=np.uint8).tobytes())
    m = write_manifest(tmp_path / "m.yaml", "name: m\nlicense: CC0-1.0\nroot: data\ninclude: ['*.tif']\n"
                       "tile: {size: 256}\n")
    assert "Corrupt JPEG data" in _only_the_last_block_unreadable(m, tmp_path / "corpus")


@pytest.fixture(scope="module")
def mixed_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One source without declared bands holding uint8 1-band, uint8 3-band and uint16 3-band GeoTIFFs (all named
    b1..bN), and one source of uint16 3-band files only."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("mixed")
    write_tif(root / "mixed" / "gray_u8.tif", textured(rng, 1, 128, 128, "uint8"))
    write_tif(root / "mixed" / "rgb_u8.tif", textured(rng, 3, 128, 128, "uint8"), origin=(496640.0, 4014080.0))
    write_tif(root / "mixed" / "dn_u16.tif", textured(rng, 3, 128, 256, "uint16"), origin=(501760.0, 4014080.0))
    write_tif(root / "plain" / "dn_u16.tif", textured(rng, 3, 128, 128, "uint16"), origin=(512000.0, 4014080.0))
    for name in ("mixed", "plain"):
        write_manifest(root / "manifests" / f"{name}.yaml",
                       f"name: {name}\nlicense: CC0-1.0\nroot: ../{name}\ninclude: ['*.tif']\ntile: {{size: 128}}\n")
    out = root / "corpus"
    run_build([root / "manifests"], out)
    return out


def test_band_statistics_never_pool_dtypes_or_band_counts(mixed_corpus: Path) -> None:
    """b1 of a gray uint8 file, of an RGB uint8 file and of a uint16 scene are three statistics, each exact over
    its own tiles; a source with one band set keeps plain band-name keys."""
    stats = json.loads((mixed_corpus / "stats.json").read_text())
    mixed, plain = stats["sources"]["mixed"], stats["sources"]["plain"]
    assert set(mixed["bands"]) == {"b1@uint8x1", "b1@uint8x3", "b2@uint8x3", "b3@uint8x3",
                                   "b1@uint16x3", "b2@uint16x3", "b3@uint16x3"}
    assert {g: (v["dtype"], v["bands"], v["tiles"], v["examples"]) for g, v in mixed["band_groups"].items()} == {
        "uint8x1": ("uint8", ["b1"], 1, ["gray_u8.tif"]), "uint8x3": ("uint8", ["b1", "b2", "b3"], 1, ["rgb_u8.tif"]),
        "uint16x3": ("uint16", ["b1", "b2", "b3"], 2, ["dn_u16.tif"])}
    assert set(plain["bands"]) == {"b1", "b2", "b3"} and "band_groups" not in plain
    assert {"b1", "b1@uint8x1", "b1@uint16x3"} <= set(stats["bands"])
    corpus = open_corpus(mixed_corpus)
    tiles = [corpus.tile(i) for i in range(len(corpus))]
    for group, v in mixed["band_groups"].items():
        arrays = [arr for arr, meta in tiles if meta["source"] == "mixed" and f"{arr.dtype}x{len(arr)}" == group]
        for k, name in enumerate(v["bands"]):
            pixels = np.concatenate([arr[k].ravel() for arr in arrays])
            got = mixed["bands"][f"{name}@{group}"]
            assert got["dtype"] == v["dtype"] and got["count"] == pixels.size
            assert got["mean"] == pytest.approx(pixels.mean(), rel=1e-9)
    card = (mixed_corpus / "README.md").read_text()
    assert "b1@uint8x1" in card and "b1@uint16x3" in card
    assert "| mixed | uint16x3 | uint16 | 3 | 2 | dn_u16.tif |" in card  # the groups, with example files


def test_a_mixed_source_is_logged_with_example_files(tmp_path: Path, mixed_corpus: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    manifests = mixed_corpus.parent / "manifests"
    with caplog.at_level("WARNING", logger="rscurate"):
        run_build([manifests], tmp_path / "again")
    lines = [r.getMessage() for r in caplog.records if "mixes band sets" in r.getMessage()]
    assert len(lines) == 1 and "source mixed" in lines[0]
    assert all(f in lines[0] for f in ("gray_u8.tif", "rgb_u8.tif", "dn_u16.tif", "uint8x1", "uint16x3"))


def test_pretraining_refuses_a_band_name_split_by_group(mixed_corpus: Path) -> None:
    from rspretrain.corpus import AmbiguousBands, Corpus

    corpus = Corpus(mixed_corpus)
    with pytest.raises(AmbiguousBands, match=r"\['b1'\].*b1@uint8x1.*mixed uint8x1: e\.g\. gray_u8\.tif"):
        corpus.band_mean_std(["b1"])  # all sources: plain's b1 exists, but mixed's b1 is three things
    with pytest.raises(AmbiguousBands, match="rgb_u8.tif"):
        corpus.band_mean_std(["b1", "b2"], "mixed")
    mean, _ = corpus.band_mean_std(["b1"], "plain")
    assert mean[0] == pytest.approx(json.loads((mixed_corpus / "stats.json").read_text())
                                    ["sources"]["plain"]["bands"]["b1"]["mean"])


def test_stats_json_is_strict_and_per_band(tmp_path: Path, rng: np.random.Generator) -> None:
    """Issue 9.1/9.2: a NaN in one band or fill in one band stays out of that band's statistics only, and a band
    without a valid pixel is null in stats.json (bare NaN/Infinity, written before, is not JSON)."""
    data = tmp_path / "data"
    nan = textured(rng, 2, 128, 128, "float32")
    nan[1] = np.nan  # a band with no data at all
    nan[0, 5, 7] = nan[0, 90, 3] = np.nan
    write_tif(data / "nan" / "f32.tif", nan)
    fill = textured(rng, 2, 128, 128)
    fill[0, 40:56, 60:64] = 0  # declared fill in b1 only: b2 has data there
    write_tif(data / "fill" / "u16.tif", fill, nodata=0)
    for name in ("nan", "fill"):
        write_manifest(tmp_path / "manifests" / f"{name}.yaml", f"""\
            name: {name}
            license: CC0-1.0
            root: ../data/{name}
            include: ["*.tif"]
            tile: {{size: 128}}
            """)
    out = tmp_path / "corpus"
    run_build([tmp_path / "manifests"], out)

    def refuse(constant: str) -> None:
        raise AssertionError(f"stats.json holds {constant}, which is not JSON")

    stats = json.loads((out / "stats.json").read_text(), parse_constant=refuse)
    b1, b2 = stats["sources"]["nan"]["bands"]["b1"], stats["sources"]["nan"]["bands"]["b2"]
    finite = nan[0][np.isfinite(nan[0])].astype(np.float64)
    assert b1["count"] == 128 * 128 - 2 and b1["mean"] == pytest.approx(finite.mean(), rel=1e-9)
    assert (b1["min"], b1["max"]) == (finite.min(), finite.max())
    assert b2["count"] == 0 and b2["mean"] is None and b2["p99"] is None
    f1, f2 = stats["sources"]["fill"]["bands"]["b1"], stats["sources"]["fill"]["bands"]["b2"]
    assert (f1["count"], f2["count"]) == (128 * 128 - 64, 128 * 128)
    assert f1["min"] == fill[0][fill[0] != 0].min() > 0
    row = pd.read_parquet(out / "index.parquet").set_index("source").loc["nan"]
    assert row["valid_pixels"] == 128 * 128 - 2 and np.isnan(row["band_mean"][1])  # NaN in every band: invalid
