"""Hostile and odd inputs: each is recorded in excluded.parquet with its reason while the build goes on."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import rasterio
from PIL import Image
from rasterio.transform import Affine, from_origin

from rscurate import pipeline
from rscurate.build_summary import file_fault_summary
from rscurate.file_names import native_path
from rscurate.manifest import Limits, Manifest
from rscurate.readers import SceneRef
from rscurate.units import ScenePlan
from rscurate.verify import verify
from tests.conftest import REPO, run_build, textured, write_manifest, write_tif

MANIFEST = """\
    name: hostile
    license: CC0-1.0
    root: data
    include: ["**/*.tif", "*.png", "*.jpg"]
    bands: [{name: a}, {name: b}, {name: c}]
    tile: {size: 128}
    """
LATIN1 = b"caf\xe9.tif"  # a Latin-1 name: not UTF-8
STORED = "caf\\xe9.tif"  # how the corpus stores it (file_names.as_text)
BOMB_SIDE = 30000  # declared by the PNG/JPEG bombs: 900 M pixels, over Pillow's bomb limit and limits.max_decode_pixels


def _png_declaring(path: Path, side: int) -> None:
    """A 1 KB PNG whose header declares side x side RGB pixels (its data stops after a few rows)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (1 + 3 * side) * 4)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _jpeg_declaring(path: Path, side: int, rng: np.random.Generator) -> None:
    """A small real JPEG whose frame header (SOF0) is rewritten to declare side x side pixels."""
    Image.fromarray(np.moveaxis(textured(rng, 3, 64, 64, "uint8"), 0, -1)).save(path, quality=90)
    data = bytearray(path.read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", side, side)
    path.write_bytes(bytes(data))


def _bomb_tif(path: Path) -> None:
    """200000 x 200000 x 3 uint16 (240 GB) declared in about 1 MB: tiled, every block sparse."""
    profile = dict(driver="GTiff", width=200_000, height=200_000, count=3, dtype="uint16", crs="EPSG:32633",
                   transform=from_origin(0, 0, 10, 10), tiled=True, blockxsize=512, blockysize=512,
                   compress="deflate", SPARSE_OK=True)
    with rasterio.open(path, "w", **profile):
        pass


def _unknown_epsg(path: Path, rng: np.random.Generator) -> None:
    """A GeoTIFF whose ProjectedCSTypeGeoKey names EPSG code 33000, which does not exist: GDAL makes a LOCAL_CS."""
    write_tif(path, textured(rng, 3, 256, 256))
    data = bytearray(path.read_bytes())
    key = struct.pack("<HHHH", 3072, 0, 1, 32633)
    at = data.find(key)
    assert at > 0
    data[at : at + 8] = struct.pack("<HHHH", 3072, 0, 1, 33000)
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One source folder holding every hostile input next to clean scenes, built once: (corpus, data folder)."""
    rng = np.random.default_rng(13)
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    write_tif(data / "clean.tif", textured(rng, 3, 256, 256))
    _bomb_tif(data / "bomb.tif")
    _png_declaring(data / "bomb.png", BOMB_SIDE)
    _jpeg_declaring(data / "bomb.jpg", BOMB_SIDE, rng)
    floats = textured(rng, 3, 256, 256, "float32")
    floats[:, :128, :] = np.nan  # the top row of tiles is all NaN
    floats[0, 200, 200], floats[1, 210, 10] = np.inf, -np.inf  # one infinity in each bottom tile
    write_tif(data / "nan.tif", floats)
    write_tif(data / "inf.tif", np.full((3, 128, 128), np.inf, np.float32))
    with rasterio.open(data / "rotated.tif", "w", driver="GTiff", width=256, height=256, count=3, dtype="uint16",
                       crs="EPSG:32633", transform=Affine(8.66, 5.0, 500000, 5.0, -8.66, 4000000)) as ds:
        ds.write(textured(rng, 3, 256, 256))
    _unknown_epsg(data / "badcrs.tif", rng)
    write_tif(data / "fourbands.tif", textured(rng, 4, 256, 256))
    os.mkfifo(data / "fifo.tif")  # opening it would block the reader forever
    (data / "folder.tif").mkdir()  # a folder: walked, not read
    os.symlink("nowhere.tif", data / "dangling.tif")
    os.symlink("loop.tif", data / "loop.tif")  # a symlink to itself
    os.symlink(".", data / "again")  # a folder loop: `**` must not descend it forever
    latin = write_tif(data / "latin.tif", textured(rng, 3, 256, 256))
    os.rename(latin, os.fsencode(data) + b"/" + LATIN1)
    out = root / "corpus"
    run_build([write_manifest(root / "m.yaml", MANIFEST)], out)
    return out, data


EXPECTED = {  # scene -> (reason, words of the detail)
    "bomb.tif": ("too_large", "over limits.max_scene_pixels"),
    "bomb.png": ("too_large", "over limits.max_decode_pixels"),
    "bomb.jpg": ("too_large", "over limits.max_decode_pixels"),
    "rotated.tif": ("bad_georeference", "rotated or sheared"),
    "badcrs.tif": ("bad_georeference", "cannot be placed on Earth"),
    "fourbands.tif": ("unreadable", "declares 3 bands"),
    "fifo.tif": ("unreadable", "not a regular file (a FIFO)"),
    "dangling.tif": ("unreadable", "symlink to 'nowhere.tif'"),
    "loop.tif": ("unreadable", "Too many levels of symbolic links"),
    "inf.tif": ("nodata", "nodata_fraction=1.000"),
}


def test_each_hostile_input_is_excluded_with_its_reason(hostile: tuple[Path, Path]) -> None:
    out, _ = hostile
    excluded = pd.read_parquet(out / "excluded.parquet")
    for scene, (reason, words) in EXPECTED.items():
        rows = excluded[excluded["scene"] == scene]
        assert len(rows) == 1 and rows["reason"].iloc[0] == reason, (scene, rows.to_dict("records"))
        assert words in rows["detail"].iloc[0], (scene, rows["detail"].iloc[0])
    index = pd.read_parquet(out / "index.parquet")
    assert index.groupby("scene").size().to_dict() == {"clean.tif": 4, STORED: 4, "nan.tif": 2}
    assert not any("again/" in s for s in excluded["scene"]), "the folder loop is not descended"
    verify(out)


def test_the_pixel_budget_leaves_real_large_scenes_alone(hostile: tuple[Path, Path]) -> None:
    """The PNG/JPEG bombs trip Pillow's own guard too; a 100k x 100k scene is within the scene budget."""
    _, data = hostile
    for name in ("bomb.png", "bomb.jpg"):
        with pytest.raises(Image.DecompressionBombError):
            Image.open(data / name)
    assert 100_000 * 100_000 <= Limits().max_scene_pixels < 200_000 * 200_000


def test_nan_and_infinity_are_never_data(hostile: tuple[Path, Path]) -> None:
    """An all-NaN tile is nodata; a kept tile with an infinity has finite statistics over its finite pixels."""
    out, data = hostile
    excluded = pd.read_parquet(out / "excluded.parquet")
    assert set(excluded.loc[excluded["scene"] == "nan.tif", "y"]) == {0}
    kept = pd.read_parquet(out / "index.parquet").query("scene == 'nan.tif'")
    for col in ("band_mean", "band_std", "band_min", "band_max"):
        assert np.isfinite(np.stack(kept[col].to_numpy())).all(), col
    with rasterio.open(data / "nan.tif") as ds:
        pixels = ds.read(window=((128, 256), (128, 256)))
    row = kept[(kept["x"] == 128) & (kept["y"] == 128)].iloc[0]
    finite = pixels[0][np.isfinite(pixels[0])]
    assert row["band_max"][0] == pytest.approx(float(finite.max()))


def test_a_name_that_is_not_utf8_is_read_and_stored_escaped(hostile: tuple[Path, Path]) -> None:
    out, data = hostile
    inputs = pq.read_table(out / "inputs.parquet").to_pandas().set_index("scene")
    assert inputs.loc[STORED, "files"].tolist() == [os.fsdecode(os.fsencode(data)) + "/" + STORED]
    index = pd.read_parquet(out / "index.parquet").query("scene == @STORED")
    with native_path(os.fsdecode(os.fsencode(data) + b"/" + LATIN1)) as path, rasterio.open(path) as ds:
        assert index["band_max"].map(max).max() == ds.read().max()


def test_the_build_summary_names_each_file_fault(hostile: tuple[Path, Path]) -> None:
    out, _ = hostile
    text = "\n".join(file_fault_summary(out))
    for reason, count in (("unreadable", 4), ("too_large", 3), ("bad_georeference", 2)):
        assert f"{count} items excluded as {reason}" in text


ROOT_WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]


@pytest.mark.skipif(os.geteuid() == 0 and shutil.which("setpriv") is None,
                    reason="root reads files without read permission, and setpriv cannot drop that capability here")
def test_a_file_without_read_permission_is_unreadable(tmp_path: Path, rng: np.random.Generator) -> None:
    """As root (CI), the build runs with the capabilities that bypass file permissions dropped (setpriv), so the
    file is as unreadable to it as to any other user."""
    path = write_tif(tmp_path / "data" / "secret.tif", textured(rng, 3, 128, 128))
    write_tif(tmp_path / "data" / "open.tif", textured(rng, 3, 128, 128))
    path.chmod(0)
    out, manifest = tmp_path / "corpus", write_manifest(tmp_path / "m.yaml", MANIFEST)
    prefix = ROOT_WITHOUT_DAC if os.geteuid() == 0 else []
    subprocess.run([*prefix, sys.executable, "-m", "rscurate.cli", "build", "--sources", str(manifest), "--out",
                    str(out), "--quiet", "--workers", "1"], check=True, cwd=REPO, capture_output=True)
    excl = pd.read_parquet(out / "excluded.parquet")
    assert excl[["scene", "reason"]].values.tolist() == [["secret.tif", "unreadable"]]
    assert "ermission denied" in excl["detail"].iloc[0]
    assert set(pd.read_parquet(out / "index.parquet")["scene"]) == {"open.tif"}


def test_a_file_changed_or_deleted_after_planning(tmp_path: Path, rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Files rewritten or deleted between planning and reading are `changed` (the build goes on, fails on the old
    code, which stat()ed the deleted file on the client); the same command rerun reads them as they are now."""
    data = tmp_path / "data"
    for name in ("stays.tif", "grows.tif", "gone.tif"):
        write_tif(data / name, textured(rng, 3, 256, 256))
    real_plan = pipeline.plan_scenes

    def plan_then_touch(manifest: Manifest, scenes: list[SceneRef], work_dir: str) -> list[ScenePlan]:
        plans = real_plan(manifest, scenes, work_dir)
        if any(s.scene == "gone.tif" for s in scenes):
            (data / "gone.tif").unlink()
        if any(s.scene == "grows.tif" for s in scenes):
            write_tif(data / "grows.tif", textured(rng, 3, 384, 384))
        return plans

    monkeypatch.setattr(pipeline, "plan_scenes", plan_then_touch)
    manifest = write_manifest(tmp_path / "m.yaml", MANIFEST)
    out = tmp_path / "corpus"
    run_build([manifest], out)
    excluded = pd.read_parquet(out / "excluded.parquet")
    assert excluded.groupby("scene")["reason"].agg(set).to_dict() == {"gone.tif": {"changed"}, "grows.tif": {"changed"}}
    assert excluded.loc[excluded["scene"] == "gone.tif", "detail"].str.contains("vanished").all()
    assert excluded.loc[excluded["scene"] == "grows.tif", "detail"].str.contains("changed after discovery").all()
    assert set(pd.read_parquet(out / "index.parquet")["scene"]) == {"stays.tif"}
    verify(out)

    monkeypatch.undo()
    run_build([manifest], out)
    index = pd.read_parquet(out / "index.parquet")
    assert index.groupby("scene").size().to_dict() == {"stays.tif": 4, "grows.tif": 9}
    assert pd.read_parquet(out / "excluded.parquet").empty
    verify(out)


def test_a_whole_tile_over_the_decode_budget_is_too_large(tmp_path: Path, rng: np.random.Generator) -> None:
    """`mode: whole` without max_size would decode a huge image as one tile: over limits.max_decode_pixels it is
    too_large, with the fix; the same file cut by max_size is kept."""
    write_tif(tmp_path / "data" / "big.tif", textured(rng, 1, 1200, 1200))
    body = "name: w\nlicense: CC0-1.0\nroot: data\ninclude: ['*.tif']\nlimits: {max_decode_pixels: 1000000}\n"
    out = tmp_path / "corpus"
    run_build([write_manifest(tmp_path / "m.yaml", body + "tile: {mode: whole}\n")], out)
    row = pd.read_parquet(out / "excluded.parquet").iloc[0]
    assert row["reason"] == "too_large" and "set tile.max_size" in row["detail"]
    shutil.rmtree(out)
    report = run_build([write_manifest(tmp_path / "m.yaml", body + "tile: {mode: whole, max_size: 600, size: 600}\n")],
                       out)
    assert report.kept == 4
