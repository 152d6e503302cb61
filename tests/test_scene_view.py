"""Each pixel decoded once: whole-scene views come from the tile pass (or from overviews), and units are bounded by
decoded bytes as well as by tile count."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio

from rscurate.coverage import owned_parts, uncovered
from rscurate.discover import discover
from rscurate.manifest import load_manifest
from rscurate.pipeline import make_units, scene_windows
from rscurate.readers import RasterioReader, SceneRef
from rscurate.scene_hash import assembled_signature, scene_signature
from rscurate.scene_view import ViewSum, load_view, view_path, view_shape
from rscurate.units import ScenePlan, StagedUnit, ViewMerger, plan_scenes, run_unit
from tests.conftest import scene_signatures, textured, write_manifest, write_tif


@pytest.fixture(autouse=True)
def _rental_as_in_a_fresh_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process builds of other tests tell this process their view plans (scene_view.plan_views)."""
    import rscurate.scene_view as sv

    monkeypatch.setattr(sv, "_rent_until", sv.KERNEL_AFTER_S)

WIDTH, HEIGHT = 700, 560  # 256 px grid: 2 x 2 tiles and margins right and below


def _scene(tmp_path: Path, rng: np.random.Generator, overviews: bool = False, tile: int = 256) -> Path:
    path = write_tif(tmp_path / "data" / "scene.tif", textured(rng, 3, HEIGHT, WIDTH), tiled=True, blockxsize=64,
                     blockysize=64, compress="deflate")
    if overviews:
        with rasterio.open(path, "r+") as ds:
            ds.build_overviews([2, 4], rasterio.enums.Resampling.average)
    return write_manifest(tmp_path / "m.yaml", f"""\
        name: m
        license: CC0-1.0
        root: data
        include: ["*.tif"]
        tile: {{size: {tile}}}
        """)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int, int, tuple[int, int] | None]]:
    """Every pixel read of a GeoTIFF, as (x, y, w, h, out_shape)."""
    seen: list[tuple[int, int, int, int, tuple[int, int] | None]] = []
    real = RasterioReader._read

    def counting(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        seen.append((x, y, w, h, out_shape))
        return real(self, x, y, w, h, out_shape)

    monkeypatch.setattr(RasterioReader, "_read", counting)
    return seen


def test_a_scene_without_overviews_is_decoded_once(tmp_path: Path, rng: np.random.Generator, reads: list) -> None:
    """Planning reads no pixel; the tile pass reads every pixel exactly once (tiles, then the margins) and the
    scene is still signed. Fails on the old code: planning read a decimated view of the whole scene."""
    m = load_manifest(_scene(tmp_path, rng))
    (signature,) = scene_signatures(m, tmp_path / "work").values()
    assert signature is not None
    assert all(out_shape is None for *_, out_shape in reads), "no decimated (whole-scene) read"
    times = np.zeros((HEIGHT, WIDTH), np.int64)
    for x, y, w, h, _ in reads:
        times[y : y + h, x : x + w] += 1
    assert (times == 1).all()


def test_a_scene_split_across_units_gets_the_same_signature(tmp_path: Path, rng: np.random.Generator,
                                                             reads: list) -> None:
    """One tile per unit: the view is assembled from four parts after the tile stage, bit for bit the view of one
    unit, and the pixels are still read once."""
    m = load_manifest(_scene(tmp_path, rng))
    (whole,) = scene_signatures(m, tmp_path / "one").values()
    reads.clear()
    (split,) = scene_signatures(m, tmp_path / "four", unit_tiles=1).values()
    assert split == whole
    assert sum(w * h for x, y, w, h, _ in reads) == WIDTH * HEIGHT


def test_a_scene_with_overviews_is_signed_from_them(tmp_path: Path, rng: np.random.Generator, reads: list) -> None:
    """Overviews give the view cheaply: the tile pass reads only the tiles, never the margins."""
    m = load_manifest(_scene(tmp_path, rng, overviews=True))
    (signature,) = scene_signatures(m, tmp_path / "work").values()
    assert signature is not None
    full = [(x, y, w, h) for x, y, w, h, out_shape in reads if out_shape is None]
    assert sorted(full) == [(0, 0, 256, 256), (0, 256, 256, 256), (256, 0, 256, 256), (256, 256, 256, 256)]


def test_assembled_view_is_the_averaged_view(tmp_path: Path, rng: np.random.Generator) -> None:
    """At an integer ratio the view assembled from three reads is GDAL's averaged read (to rounding), and its
    signature is within a few bits of the one hashed from GDAL's read."""
    path = write_tif(tmp_path / "a.tif", textured(rng, 3, 384, 768), nodata=None)
    ref = SceneRef(source="s", scene="a", paths=(str(path),), format="geotiff")
    reader = RasterioReader(ref, [], None)
    view = ViewSum.empty("s", "a", reader)
    for x, y, w, h in [(0, 0, 768, 300), (0, 300, 500, 212), (500, 300, 268, 212)]:
        res = reader.read(x, y, w, h)
        view.add(x, y, res.data, res.valid)
    data, valid = view.view()
    gdal = reader.overview(256)
    assert data.shape == gdal.data.shape == (3, 128, 256)
    assert valid.all()
    assert np.abs(data.astype(np.int64) - gdal.data).max() <= 1
    view.windows, view.margins = 1, True
    mine, theirs = assembled_signature(view), scene_signature(reader, ["b1", "b2", "b3"])
    assert mine is not None and theirs is not None
    assert (mine.view.phash ^ theirs.view.phash).bit_count() <= 4
    reader.close()


def test_uncovered_leaves_each_pixel_to_one_window() -> None:
    windows = [(10, 10, 256, 256), (138, 10, 256, 256), (10, 266, 256, 256)]  # overlapping, an L shape
    width, height = 450, 560
    times = np.zeros((height, width), np.int64)
    for x, y, w, h in windows:
        times[y : y + h, x : x + w] = 1
    for x, y, w, h in uncovered(windows, width, height):
        times[y : y + h, x : x + w] += 1
    assert (times == 1).all()


@pytest.mark.parametrize("seed", range(8))
def test_owned_parts_give_each_covered_pixel_to_its_first_window(seed: int) -> None:
    """Against brute force on random overlapping windows (some past the scene's edge), split into "units" at
    random: every covered pixel is in exactly one part, the part of the first window over it."""
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(40, 120)), int(rng.integers(40, 120))
    windows = [(int(rng.integers(-10, width)), int(rng.integers(-10, height)), int(rng.integers(1, 50)),
                int(rng.integers(1, 50))) for _ in range(int(rng.integers(1, 30)))]
    first = np.full((height, width), -1)
    for k in range(len(windows) - 1, -1, -1):
        x, y, w, h = windows[k]
        first[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = k
    cuts = sorted(rng.choice(np.arange(1, len(windows) + 1), size=min(2, len(windows)), replace=False).tolist())
    times, owner = np.zeros((height, width), np.int64), np.full((height, width), -1)
    for lo, hi in zip([0, *cuts], [*cuts, len(windows)], strict=False):
        for k, parts in zip(range(lo, hi), owned_parts(windows, width, height, list(range(lo, hi))), strict=True):
            for x, y, w, h in parts:
                wx, wy, ww, wh = windows[k]
                assert wx <= x and wy <= y and x + w <= wx + ww and y + h <= wy + wh and w > 0 and h > 0
                times[y : y + h, x : x + w] += 1
                owner[y : y + h, x : x + w] = k
    np.testing.assert_array_equal(times, (first >= 0).astype(np.int64))
    np.testing.assert_array_equal(owner, first)


def test_a_strided_grid_view_is_the_box_average_of_the_scene(tmp_path: Path, rng: np.random.Generator,
                                                             reads: list) -> None:
    """Windows at stride 64 overlap 16-fold: each pixel still weighs once, so the assembled view equals the one
    the whole scene gives in one read (before, a pixel weighed once per window over it)."""
    path = tmp_path / "data" / "scene.tif"
    write_tif(path, textured(rng, 3, HEIGHT, WIDTH), tiled=True, blockxsize=64, blockysize=64)
    m = load_manifest(write_manifest(tmp_path / "m.yaml", """\
        name: m
        license: CC0-1.0
        root: data
        include: ["*.tif"]
        tile: {size: 256, stride: 64}
        """))
    (strided,) = scene_signatures(m, tmp_path / "work").values()
    ref = SceneRef("m", "scene.tif", (str(path),), "geotiff")
    reader = RasterioReader(ref, m.band_list(), None)
    whole = ViewSum.empty("m", "scene.tif", reader)
    res = reader.read(0, 0, WIDTH, HEIGHT)
    whole.add(0, 0, res.data, res.valid)
    reader.close()
    assert strided == assembled_signature(whole)


def _plan(n: int, side: int, pixel_bytes: int) -> ScenePlan:
    ref = SceneRef(source="s", scene=f"{side}", paths=("x.tif",), format="geotiff")
    windows = tuple((k * side, 0, side, side) for k in range(n))
    return ScenePlan(ref, windows, n * side, side, pixel_bytes=pixel_bytes)


def test_units_are_bounded_by_decoded_bytes(tmp_path: Path) -> None:
    """3-band uint16 tiles: 256 px ones fill a unit by count (100 MiB), 1024 px ones (6 MiB each) by bytes.
    Fails on the old code: units of 256 tiles whatever their size."""
    m = load_manifest(write_manifest(tmp_path / "m.yaml", """\
        name: m
        license: CC0-1.0
        root: data
        include: ["*.tif"]
        """))
    small = make_units(m, [_plan(600, 256, 6)], 256, unit_mb=256)
    assert [u.tiles for u in small] == [256, 256, 88]
    big = make_units(m, [_plan(100, 1024, 6)], 256, unit_mb=256)
    assert [u.tiles for u in big] == [42, 42, 16]
    assert all(sum(w * h * 6 for _, ws in u.items for *_, w, h in ws) <= 256 * 2**20 for u in big)
    huge = make_units(m, [_plan(3, 16384, 6)], 256, unit_mb=256)  # one tile over the budget still makes a unit
    assert [u.tiles for u in huge] == [1, 1, 1]
    mixed = make_units(m, [_plan(40, 1024, 6), _plan(10, 1024, 6)], 256, unit_mb=256)  # scenes share a unit
    assert [[len(ws) for _, ws in u.items] for u in mixed] == [[40], [10]]
    shared = make_units(m, [_plan(20, 1024, 6), _plan(10, 1024, 6)], 256, unit_mb=256)
    assert [[len(ws) for _, ws in u.items] for u in shared] == [[20, 10]]


@pytest.mark.parametrize("seed", range(6))
def test_view_cells_weigh_each_pixel_by_its_area_inside_them(seed: int) -> None:
    """Against a brute-force area average (continuous cell edges at c * full / cells), added in random parts:
    a pixel on a cell edge is shared by area, so views of one ground at two resolutions agree cell by cell."""
    rng = np.random.default_rng(seed)
    width, height = int(rng.integers(300, 700)), int(rng.integers(300, 700))
    data = rng.integers(0, 65535, size=(2, height, width)).astype(np.uint16)
    valid = rng.random((height, width)) > (0.2 if seed % 2 else -1.0)  # even seeds: every pixel valid
    view = ViewSum("s", "x", width, height, "uint16", ("a", "b"), np.zeros((2, *view_shape(width, height))),
                   np.zeros(view_shape(width, height), np.int64))
    xs = sorted({0, width, *rng.integers(1, width, 3).tolist()})
    ys = sorted({0, height, *rng.integers(1, height, 3).tolist()})
    for y0, y1 in zip(ys, ys[1:], strict=False):
        for x0, x1 in zip(xs, xs[1:], strict=False):
            view.add(x0, y0, data[:, y0:y1, x0:x1], valid[y0:y1, x0:x1])

    def weights(full: int, cells: int) -> np.ndarray:  # (cells, full): length of pixel p inside cell c
        edges = np.arange(cells + 1) * full / cells
        p = np.arange(full)
        return np.clip(np.minimum(p + 1, edges[1:, None]) - np.maximum(p, edges[:-1, None]), 0, None)

    wr, wc = weights(height, view.sums.shape[1]), weights(width, view.sums.shape[2])
    total = np.stack([wr @ band @ wc.T for band in np.where(valid, data, 0).astype(np.float64)])
    area = wr @ valid.astype(np.float64) @ wc.T
    got, ok = view.view()
    np.testing.assert_array_equal(ok, area > 0)
    want = np.clip(np.rint(total / np.maximum(area, 1e-12)), 0, 65535)
    assert np.abs(got.astype(np.int64) - want.astype(np.int64)).max() <= 1  # rounding of x.5 in floating point


def test_the_scene_pair_check_uses_the_assembled_views(tmp_path: Path, sample_dir: Path, reads: list) -> None:
    """The sample's rgbn scene and its half-size copy, neither with overviews: both are signed from views the tile
    pass assembled, and the pair is confirmed on those same views, kept under _work/. No decimated read happens
    anywhere in the build (before, the check read both scenes again through GDAL's average resampling: a second
    full decode of each)."""
    import pandas as pd

    from tests.conftest import run_build

    with rasterio.open(sample_dir / "rgbn.tif") as ds:
        data = ds.read()[:, :400, :512]
    half = data.astype(np.float64).reshape(4, 200, 2, 256, 2).mean(axis=(2, 4)).round().astype(data.dtype)
    for name, pixels in (("orig", data), ("half", half)):
        write_tif(tmp_path / name / "scene.tif", pixels, crs=None, photometric="MINISBLACK", tiled=True,
                  blockxsize=64, blockysize=64)
        write_manifest(tmp_path / f"{name}.yaml", f"""\
            name: {name}
            license: CC0-1.0
            root: {name}
            include: ["*.tif"]
            bands: [{{name: red}}, {{name: green}}, {{name: blue}}, {{name: nir}}]
            tile: {{size: 64}}
            priority: {1 if name == "orig" else 0}
            """)
    out = tmp_path / "corpus"
    run_build([tmp_path / "orig.yaml", tmp_path / "half.yaml"], out, keep_work=True)
    dups = pd.read_parquet(out / "duplicates.parquet")
    assert len(dups) and set(dups["kind"]) == {"scene"} and set(dups["source"]) == {"half"}
    assert len(list((out / "_work" / "views").glob("*.npz"))) == 2
    assert reads and all(out_shape is None for *_, out_shape in reads), "no decimated (whole-scene) read"


def test_view_parts_merge_in_build_order_whatever_order_their_units_finish(tmp_path: Path,
                                                                          rng: np.random.Generator) -> None:
    """The client merges a scene's parts as units finish, in any order; float sums depend on the order, so the
    parts are merged in build order: the signature and the kept view are the same for any completion order."""

    data = textured(rng, 3, HEIGHT, WIDTH).astype(np.float64) * 10.0 ** rng.integers(-6, 17, (3, HEIGHT, WIDTH))
    write_tif(tmp_path / "data" / "scene.tif", data)
    m = load_manifest(write_manifest(tmp_path / "m.yaml", """\
        name: m
        license: CC0-1.0
        root: data
        include: ["*.tif"]
        tile: {size: 256}
        """))
    work = tmp_path / "work"
    (work / "units").mkdir(parents=True)
    plans = plan_scenes(m, discover(m).scenes)
    units = make_units(m, plans, 1)
    results = [run_unit(u, str(work)) for u in units]
    assert [r.view_parts for r in results] == [1, 1, 1, 1]
    parts = [pickle.loads(StagedUnit.of(work, u.key).views.read_bytes())[1][0] for u in units]
    forward, backward = parts[0], parts[-1]
    for part in parts[1:]:
        forward.merge(part)
    for part in parts[-2::-1]:
        backward.merge(part)
    assert not np.array_equal(forward.sums, backward.sums), "the order matters for these floats"

    merged = []
    for order in (range(4), reversed(range(4)), [2, 0, 3, 1]):
        views = ViewMerger(work, scene_windows({m.name: plans}))
        for k in order:
            views.add((k, 0), units[k].key)
        (scene,) = views.signed
        merged.append((views.signed[scene], load_view(view_path(work, *scene))))
    for signature, (view, valid) in merged[1:]:
        assert signature == merged[0][0]
        assert np.array_equal(view, merged[0][1][0]) and np.array_equal(valid, merged[0][1][1])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, ">u2"])
def test_compiled_view_sums_equal_numpys(dtype: type, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled binning (view_kernel) against numpy's, on random parts of random scenes: cells of 1 to ~12
    pixels, parts cut at any offset (non-contiguous slices, flipped rows), full and partial validity, signed values,
    big-endian pixels (numpy's path: not the kernel's types). Exact sums are equal whichever runs, which is what lets
    a process switch to the kernel mid-build (scene_view._area_sums)."""
    import rscurate.scene_view as sv

    rng = np.random.default_rng(np.dtype(dtype).itemsize * 10 + np.dtype(dtype).kind.count("i"))
    info = np.iinfo(dtype)
    for _ in range(25):
        width, height = int(rng.integers(20, 3000)), int(rng.integers(20, 3000))
        h, w = int(rng.integers(1, min(height, 300) + 1)), int(rng.integers(1, min(width, 300) + 1))
        y, x = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        block = rng.integers(info.min, int(info.max) + 1, (2, h + 3, w + 5)).astype(dtype)
        data = block[:, 1 : h + 1, 2 : w + 2]
        if rng.random() < 0.3:
            data = data[:, ::-1]
        valid = rng.random((h, w)) > (0.3 if rng.random() < 0.5 else -1.0)
        views = []
        for estimate in (0.0, sv.KERNEL_AFTER_S):  # numpy's binning, then the kernel's
            monkeypatch.setattr(sv, "_numpy_estimate", estimate)
            if not estimate:
                monkeypatch.setattr(sv, "_kernel", None)  # once loaded, the kernel bins every part
            view = ViewSum("s", "x", width, height, np.dtype(dtype).name, ("a", "b"),
                           np.zeros((2, *view_shape(width, height))), np.zeros(view_shape(width, height), np.int64))
            view.add(x, y, data, valid)
            views.append(view)
        numpy_view, kernel_view = views
        assert (kernel_view.sums != 0).any() or not valid.any()
        np.testing.assert_array_equal(kernel_view.sums, numpy_view.sums)
        np.testing.assert_array_equal(kernel_view.counts, numpy_view.counts)


def test_numba_is_loaded_only_once_numpy_binning_has_cost_as_much(tmp_path: Path) -> None:
    """Loading numba and the compiled code costs a process ~0.4 s: small views are binned with numpy, and the
    kernel is loaded once the estimated numpy time reaches KERNEL_AFTER_S (then every later part uses it)."""
    import subprocess
    import sys

    code = """\
import sys
import numpy as np
import rscurate.scene_view as sv
view = sv.ViewSum("s", "x", 2041, 1860, "uint8", ("r", "g", "b"), np.zeros((3, 233, 256)), np.zeros((233, 256), int))
tile, valid = np.ones((3, 256, 256), np.uint8), np.ones((256, 256), bool)
view.add(0, 0, tile, valid)
print("numba" in sys.modules, end=" ")
for _ in range(10000):  # each add is estimated at ~0.6 ms of numpy work
    if sv._numpy_estimate >= sv.KERNEL_AFTER_S:
        break
    view.add(0, 0, tile, valid)
print("numba" in sys.modules, end=" ")
view.add(0, 0, tile, valid)
print("rscurate.view_kernel" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.stdout.split() == ["False", "False", "True"]


def test_views_are_binned_with_numpy_where_the_kernel_cannot_load(monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """numba may fail to load or cache the kernel (a read-only install without NUMBA_CACHE_DIR): the build goes on
    with numpy's binning, says so once, and does not try again."""
    import sys

    import rscurate.scene_view as sv

    monkeypatch.setitem(sys.modules, "rscurate.view_kernel", None)  # its import now raises ImportError
    monkeypatch.setattr(sv, "_kernel", None)
    monkeypatch.setattr(sv, "_numpy_estimate", sv.KERNEL_AFTER_S)
    rng = np.random.default_rng(3)
    data, valid = rng.integers(0, 255, (3, 256, 256)).astype(np.uint8), np.ones((256, 256), bool)
    view = ViewSum("s", "x", 2041, 1860, "uint8", ("r", "g", "b"), np.zeros((3, *view_shape(2041, 1860))),
                   np.zeros(view_shape(2041, 1860), np.int64))
    with caplog.at_level("WARNING", logger="rscurate"):
        view.add(0, 0, data, valid)
        view.add(256, 0, data, valid)
    assert [r.message.split(":")[0] for r in caplog.records] == ["scene views binned with numpy"]
    assert sv._numpy_estimate == float("-inf") and view.sums[:, :31, :31].sum() > 0


def test_a_plans_estimate_of_numpys_binning_is_what_the_parts_cost_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy_view_seconds, which the client sums over a build's plans to decide whether workers load the kernel
    first, agrees with the per-part estimate the rental counts as a scene's windows and margins are added (each
    pixel once, at any stride); views of floats are never compiled, so they count nothing."""
    import rscurate.scene_view as sv

    monkeypatch.setattr(sv, "_rent_until", float("inf"))  # numpy's binning throughout: only count
    monkeypatch.setattr(sv, "_kernel", None)
    for width, height, stride, dtype in ((2041, 1860, 256, "uint8"), (2041, 1860, 64, "uint8"),
                                         (600, 900, 128, "uint16"), (7000, 300, 256, "int16")):
        windows = [(x, y, 256, 256) for y in range(0, height - 255, stride) for x in range(0, width - 255, stride)]
        view = ViewSum("s", "x", width, height, dtype, ("a", "b", "c"), np.zeros((3, *view_shape(width, height))),
                       np.zeros(view_shape(width, height), np.int64))
        monkeypatch.setattr(sv, "_numpy_estimate", 0.0)
        tile, valid = np.ones((3, 256, 256), dtype), np.ones((256, 256), bool)
        for window, parts in zip(windows, owned_parts(windows, width, height, range(len(windows))), strict=True):
            view.add_parts(window, parts, tile, valid)
        for x, y, w, h in uncovered(windows, width, height):
            view.add(x, y, np.ones((3, h, w), dtype), np.ones((h, w), bool))
        planned = sv.numpy_view_seconds(width, height, 3, dtype, len(windows))
        assert planned == pytest.approx(sv._numpy_estimate, rel=0.15), (width, height, stride)
    assert sv.numpy_view_seconds(2041, 1860, 3, "float32", 100) == 0.0
    assert not sv.worth_compiling(sv.KERNEL_LOAD_S) and sv.worth_compiling(2 * sv.KERNEL_LOAD_S)


def test_a_build_tells_its_workers_whether_their_views_are_worth_compiling(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client sums its plans' estimates (ScenePlan.view_numpy_s) and tells each worker its share: one worth
    the kernel's load loads it before its first part instead of renting numpy first; a smaller one keeps numpy
    throughout, where the rental would load it late. The corpus is the same either way (exact sums:
    test_compiled_view_sums_equal_numpys)."""
    import pyarrow.parquet as pq

    import rscurate.scene_view as sv
    from tests.conftest import run_build

    rng = np.random.default_rng(5)
    for i in range(2):
        write_tif(tmp_path / "data" / f"s{i}.tif", textured(rng, 3, 300, 400, "uint16"), origin=(3200.0 * i, 0.0),
                  tiled=True, blockxsize=128, blockysize=128)
    manifest = write_manifest(tmp_path / "m.yaml", "name: m\nlicense: CC0-1.0\nroot: data\ninclude: ['*.tif']\n"
                              "tile: {size: 128, stride: 96}\n")
    plans = plan_scenes(load_manifest(manifest), discover(load_manifest(manifest)).scenes)
    assert all(p.view_numpy_s > 0 for p in plans)  # tiled GeoTIFFs without overviews: the tile pass assembles
    corpora = []
    for worth in (False, True):
        monkeypatch.setattr(sv, "KERNEL_LOAD_S", -1.0 if worth else float("inf"))
        monkeypatch.setattr(sv, "_numpy_estimate", sv.KERNEL_AFTER_S)  # the rental alone would load it now
        monkeypatch.setattr(sv, "_kernel", None)
        out = tmp_path / f"out{worth}"
        run_build([manifest], out, workers=0)
        assert (sv._kernel is not None) is worth
        corpora.append([pq.read_table(path) for path in sorted(out.rglob("*.parquet"))])
    assert len(corpora[0]) > 2 and all(a.equals(b) for a, b in zip(*corpora, strict=True))
