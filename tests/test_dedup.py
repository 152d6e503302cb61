"""Near, scene-level and eval-leak dedup inside `rscurate build`, and the guards that keep different tiles apart.

Imagery is the sample's real 4-band rgbn.tif (and copies of it written here); flat and synthetic tiles are
generated where a test needs a property real tiles rarely have.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio

from rscurate.dedup import decide
from rscurate.hamming_search import DEFAULT_RADIUS
from rscurate.manifest import load_manifest
from tests.conftest import run_build, scene_signatures, textured, write_manifest, write_tif

RGBN_BANDS = """bands:
  - {name: red}
  - {name: green}
  - {name: blue}
  - {name: nir}
"""


def _rgbn(sample_dir: Path) -> np.ndarray:
    with rasterio.open(sample_dir / "rgbn.tif") as ds:
        return ds.read()


def _source(root: Path, name: str, include: str, tile: int = 64, extra: str = "") -> Path:
    return write_manifest(root / f"{name}.yaml", textwrap.dedent(f"""\
        name: {name}
        license: MIT
        root: data
        include: ["{include}"]
        tile: {{size: {tile}}}
        """) + extra)


def _write_plain(path: Path, data: np.ndarray) -> None:
    """Not georeferenced; 4 bands as 4 data bands (GDAL would read a 4th 8-bit band as alpha by default)."""
    write_tif(path, data, crs=None, photometric="MINISBLACK")


def _half(data: np.ndarray) -> np.ndarray:
    """A 2x downsample by averaging, as a delivery at half resolution would be."""
    c, h, w = data.shape
    d = data[:, : h // 2 * 2, : w // 2 * 2].astype(np.float64)
    return d.reshape(c, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).round().astype(data.dtype)


def _tables(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (pd.read_parquet(out / "index.parquet"), pd.read_parquet(out / "duplicates.parquet"),
            pd.read_parquet(out / "excluded.parquet"))


def test_resampled_copy_of_a_scene_is_a_scene_duplicate(tmp_path: Path, sample_dir: Path) -> None:
    data = _rgbn(sample_dir)
    _write_plain(tmp_path / "data" / "orig.tif", data)
    _write_plain(tmp_path / "data" / "half.tif", _half(data))
    m1 = _source(tmp_path, "orig", "orig.tif", extra=RGBN_BANDS + "priority: 1\n")
    m2 = _source(tmp_path, "half", "half.tif", extra=RGBN_BANDS)
    out = tmp_path / "corpus"
    run_build([m1, m2], out)
    index, dups, _ = _tables(out)
    assert set(index["source"]) == {"orig"}, "every tile of the half-size copy is dropped"
    half = dups[dups["source"] == "half"]
    assert len(half) > 0 and set(half["kind"]) == {"scene"}
    assert half["kept_id"].isin(index["id"]).all()
    # each dropped tile points at the kept tile covering the same relative position of the scene
    kept = index.set_index("id").loc[half["kept_id"]]
    rel_dropped = (half["x"].to_numpy() + 32) / (data.shape[2] // 2)
    rel_kept = (kept["x"].to_numpy() + 32) / data.shape[2]
    assert np.abs(rel_dropped - rel_kept).max() < 0.2
    assert (out / "card" / "duplicates.png").stat().st_size > 10_000


def test_single_band_copy_is_matched_on_the_band_it_shares(tmp_path: Path, sample_dir: Path) -> None:
    """A half-resolution delivery of only the near-infrared band: its canonical view (NIR) is far from the
    4-band scene's (RGB luma), so the scenes are also compared band by band on the bands they share."""
    data = _rgbn(sample_dir)
    _write_plain(tmp_path / "data" / "orig.tif", data)
    _write_plain(tmp_path / "data" / "nir.tif", _half(data)[3:4])
    m1 = _source(tmp_path, "orig", "orig.tif", extra=RGBN_BANDS)
    m2 = _source(tmp_path, "nir", "nir.tif", extra="bands:\n  - {name: nir}\n")
    a, b = (next(iter(scene_signatures(load_manifest(m), tmp_path / n).values())) for n, m in
            (("orig", m1), ("nir", m2)))
    assert a is not None and b is not None
    assert (a.view.phash ^ b.view.phash).bit_count() > DEFAULT_RADIUS, "canonical views alone do not match"
    out = tmp_path / "corpus"
    run_build([m1, m2], out)
    index, dups, _ = _tables(out)
    assert set(index["source"]) == {"orig"}
    nir = dups[dups["source"] == "nir"]
    assert set(nir["kind"]) == {"scene"} and (nir["distance"] <= 4).all()


def test_copy_of_an_eval_scene_leaks_whole(tmp_path: Path, sample_dir: Path) -> None:
    data = _rgbn(sample_dir)
    _write_plain(tmp_path / "data" / "train.tif", data)
    _write_plain(tmp_path / "data" / "test.tif", _half(data))
    train = _source(tmp_path, "train", "train.tif", extra=RGBN_BANDS)
    evals = _source(tmp_path, "bench", "test.tif", extra=RGBN_BANDS + "role: eval\n")
    out = tmp_path / "corpus"
    run_build([train, evals], out)
    index, _, excluded = _tables(out)
    assert len(index) == 0
    leaks = excluded[excluded["reason"] == "eval_leak"]
    assert len(leaks) > 0 and leaks["detail"].str.startswith("scene matches eval scene bench:test.tif").all()


def test_near_copy_of_an_eval_tile_leaks(tmp_path: Path, sample_dir: Path, rng: np.random.Generator) -> None:
    data = _rgbn(sample_dir)[:, :128, :256]
    noisy = np.clip(data.astype(np.int16) + rng.integers(-3, 4, size=data.shape), 0, 255).astype(np.uint8)
    _write_plain(tmp_path / "data" / "train.tif", data)
    _write_plain(tmp_path / "data" / "eval" / "chip.tif", noisy[:, :64, 64:128])
    train = _source(tmp_path, "train", "train.tif", extra=RGBN_BANDS)
    evals = write_manifest(tmp_path / "bench.yaml", textwrap.dedent("""\
        name: bench
        license: MIT
        root: data/eval
        include: ["*.tif"]
        role: eval
        tile: {mode: whole}
        """) + RGBN_BANDS)
    out = tmp_path / "corpus"
    run_build([train, evals], out)
    index, _, excluded = _tables(out)
    leaks = excluded[excluded["reason"] == "eval_leak"]
    assert leaks[["x", "y"]].values.tolist() == [[64, 0]]
    assert leaks["detail"].iloc[0].startswith("near eval tile bench:chip.tif window 0,0,64,64 (pHash distance")
    assert len(index) == 2 * 4 - 1


def test_near_duplicate_across_sources_but_not_within_a_scene(
    tmp_path: Path, sample_dir: Path, rng: np.random.Generator
) -> None:
    data = _rgbn(sample_dir)[:, :192, :256]
    noisy = np.clip(data.astype(np.int16) + rng.integers(-3, 4, size=data.shape), 0, 255).astype(np.uint8)
    _write_plain(tmp_path / "data" / "a.tif", data)
    _write_plain(tmp_path / "data" / "b.tif", noisy[:, :128])  # another shape: not a scene copy
    # overlapping tiles of one scene (stride 16 of 64) look alike but are the tiling's choice: all kept
    m1 = _source(tmp_path, "a", "a.tif", extra=RGBN_BANDS + "priority: 1\n").read_text()
    (tmp_path / "a.yaml").write_text(m1.replace("tile: {size: 64}", "tile: {size: 64, stride: 16}"))
    m2 = _source(tmp_path, "b", "b.tif", extra=RGBN_BANDS)
    out = tmp_path / "corpus"
    run_build([tmp_path / "a.yaml", m2], out)
    index, dups, _ = _tables(out)
    assert (index["source"] == "a").sum() == 13 * 9, "no tile of the overlapping grid is dropped"
    near = dups[dups["kind"] == "near"]
    assert set(near["source"]) == {"b"} and len(near) == 2 * 4 and "b" not in set(index["source"])
    assert (near["distance"] <= DEFAULT_RADIUS).all()
    assert (near["kept_source"] == "a").all()
    timing = json.loads((out / "stats.json").read_text())["build"]["dedup"]
    assert timing["pixel_checks"] >= len(near), "every near pair was checked on its pixels, and counted"
    assert timing["pixel_check_seconds"] > 0 and timing["pair_search_seconds"] >= 0
    # with radius 0 only exact copies go
    out0 = tmp_path / "corpus0"
    run_build([tmp_path / "a.yaml", m2], out0, radius=0)
    assert len(pd.read_parquet(out0 / "duplicates.parquet")) == 0


def test_flat_tiles_and_different_places_are_not_merged(tmp_path: Path, rng: np.random.Generator) -> None:
    # flat 8-bit tiles, not identical (sensor noise over open water), without georeferencing: only the
    # texture guard keeps their colliding pHashes apart
    for k in range(4):
        water = (60 + k * 7 + rng.integers(0, 3, size=(3, 128, 128))).astype(np.uint8)
        _write_plain(tmp_path / "data" / f"water{k}.tif", water)
    # one scene at two places 50 km apart, with a little noise: the same-CRS footprints are disjoint, so
    # neither its scene signature nor its tiles make it a copy
    land = textured(rng, 3, 256, 256)
    for k in range(2):
        noisy = (land.astype(np.int32) + rng.integers(-2, 3, size=land.shape)).astype(np.uint16)
        write_tif(tmp_path / "data" / f"land{k}.tif", noisy, origin=(491520.0 + 51200 * k, 4096000.0))
    m = write_manifest(tmp_path / "m.yaml", """\
        name: m
        license: MIT
        root: data
        include: ["*.tif"]
        tile: {size: 128}
        quality: {min_std: 0.5}
        """)
    out = tmp_path / "corpus"
    run_build([m], out)
    index, dups, _ = _tables(out)
    assert len(index) == 4 + 2 * 4 and len(dups) == 0
    assert (index[index["scene"].str.startswith("water")]["texture"] < 2.0).all()


def test_decide_points_scene_copies_at_tiles_that_stay() -> None:
    """A scene copy's tile maps onto a tile that the near step then drops: the record follows the chain."""
    def row(i: str, source: str, scene: str, x: int, h: int) -> dict:
        return {"id": i, "source": source, "scene": scene, "x": x, "y": 0, "width": 64, "height": 64, "crs": "",
                "minx": np.nan, "miny": np.nan, "maxx": np.nan, "maxy": np.nan, "gsd_m": np.nan,
                "channels": 3, "dtype": "uint8", "sha256": i, "phash": np.uint64(h), "texture": 30.0,
                "nodata_fraction": 0.0}

    cands = pd.DataFrame([
        row("c0", "copy", "c.tif", 0, 0x0F0F_0000_0000_0000), row("k0", "kept", "k.tif", 0, 0x00FF_00FF_00FF_00FF),
        row("w0", "winner", "w.tif", 0, 0x00FF_00FF_00FF_00FE),
    ])
    sig = {"phash": 0x1234_5678_9ABC_DEF0, "q0": 1, "q1": 2, "q2": 3, "q3": 4, "texture": 30.0, "aspect": 1.0,
           "crs": "", "minx": np.nan, "miny": np.nan, "maxx": np.nan, "maxy": np.nan}
    scenes = pd.DataFrame([{"source": "copy", "scene": "c.tif", "width": 64, "height": 64, **sig},
                           {"source": "kept", "scene": "k.tif", "width": 128, "height": 128, **sig}])
    for c in ("phash", "q0", "q1", "q2", "q3"):
        scenes[c] = scenes[c].astype(np.uint64)
    d = decide(cands, scenes, {"winner": 2, "kept": 1}, set())
    dups = d.duplicates.set_index("id")
    assert dups.loc["c0", "kind"] == "scene" and dups.loc["k0", "kind"] == "near"
    assert dups.loc["c0", "distance"] == 0 and dups.loc["k0", "distance"] == 1
    assert dups.loc["c0", "kept_id"] == "w0" and dups.loc["c0", "kept_source"] == "winner"
    assert d.keep.tolist() == [False, False, True]


def test_georegistered_check_sees_through_a_nodata_corner(sample_dir: Path) -> None:
    """A real Landsat tile against itself with a third blanked (a scene border): far by pHash, the same content
    over the joint valid pixels (all of the partial tile lies on the full one); another place is not."""
    from rscurate.phash import tile_phash
    from rscurate.pixel_check import Pixels, georegistered

    with rasterio.open(sample_dir / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF") as ds:
        full = ds.read(window=((600, 856), (600, 856)))
        other = ds.read(window=((1000, 1256), (1200, 1456)))
    corner = full.copy()
    corner[:, np.add.outer(np.arange(256), np.arange(256)) < 220] = 0  # a third of the tile
    names = ["blue", "green", "red"]
    box = (0.0, 0.0, 7680.0, 7680.0)

    def pixels(a: np.ndarray) -> Pixels:
        return Pixels(a, a.any(axis=0), names, "EPSG:32621", box)

    assert (tile_phash(full, names) ^ tile_phash(corner, names, corner.any(axis=0))).bit_count() > DEFAULT_RADIUS
    sim = georegistered(pixels(full), pixels(corner))
    assert sim.same_content and sim.correlation > 0.99 and sim.change is not None and sim.change < 0.05
    assert sim.covered[1] > 0.95 and 0.55 < sim.covered[0] < 0.75
    assert not georegistered(pixels(other), pixels(corner)).same_content


def test_overlap_pairs_need_shared_ground_and_two_scenes() -> None:
    from rscurate.footprints import overlap_pairs

    def tile(source: str, scene: str, x0: float) -> dict:
        return {"source": source, "scene": scene, "width": 256, "crs": "EPSG:32621",
                "minx": x0, "miny": 0.0, "maxx": x0 + 7680.0, "maxy": 7680.0}

    cands = pd.DataFrame([tile("a", "s1", 0.0), tile("b", "s2", 30.0), tile("b", "s2", 4000.0),
                          tile("a", "s1", 30.0)])
    i, j = overlap_pairs(cands, np.ones(4, bool))
    # 2 shares 48 % of its ground with 0 and 3 (under half); 0 and 3 are one scene, as are 1 and 2
    assert sorted(zip(i.tolist(), j.tolist(), strict=True)) == [(0, 1), (1, 3)]


def test_sample_scene_signatures(sample_dir: Path, tmp_path: Path) -> None:
    """What docs/dedup.md section 7 reports of the sample: the stacked and band-per-file copies of row 078
    match on every hash; rows 077 and 078 do not; the 60 m blue-band copy of 077 is beyond the radius by
    canonical views and matches on the blue band."""
    samples = Path(__file__).resolve().parent.parent / "manifests" / "samples"
    sig = {}
    for name in ("landsat8_l1tp_stack", "landsat8_l1tp_bands", "landsat8_b2_60m"):
        m = load_manifest(samples / f"{name}.yaml")
        for scene, signature in scene_signatures(m, tmp_path / name).items():
            sig[(name, scene[:16])] = signature

    def dist(a: tuple[str, str], b: tuple[str, str], band: str | None = None) -> list[int]:
        x = dict(sig[a].bands)[band] if band else sig[a].view
        y = dict(sig[b].bands)[band] if band else sig[b].view
        return [(p ^ q).bit_count() for p, q in zip((x.phash, *x.quadrants), (y.phash, *y.quadrants), strict=True)]

    stack, bands78 = ("landsat8_l1tp_stack", "LC08_L1TP_224078"), ("landsat8_l1tp_bands", "LC08_L1TP_224078")
    bands77, blue60 = ("landsat8_l1tp_bands", "LC08_L1TP_224077"), ("landsat8_b2_60m", "LC08_L1TP_224077")
    assert dist(stack, bands78) == [0] * 5
    assert min(dist(bands77, bands78)) > 2 * DEFAULT_RADIUS
    assert dist(blue60, bands77)[0] > DEFAULT_RADIUS
    assert max(dist(blue60, bands77, "blue")) <= DEFAULT_RADIUS


def test_a_stack_of_dates_of_one_place_costs_few_pixel_checks_per_tile() -> None:
    """Forty acquisitions of one tile's ground (a daily gridded product): 780 footprint pairs, of which only
    each tile's OVERLAP_CANDIDATES nearest by pHash go to the pixels; the true copy (distance 1) is among them."""
    from rscurate.dedup import OVERLAP_CANDIDATES, nearest_overlaps
    from rscurate.footprints import overlap_pairs

    n = 40
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64)
    hashes[1] = hashes[0] ^ np.uint64(1)  # date 1 repeats date 0
    cands = pd.DataFrame({"source": "daily", "scene": [f"d{k}.tif" for k in range(n)], "crs": "EPSG:32633",
                          "minx": 0.0, "miny": 0.0, "maxx": 2560.0, "maxy": 2560.0, "phash": hashes})
    i, j = overlap_pairs(cands, np.ones(n, bool))
    assert len(i) == n * (n - 1) // 2
    ni, nj = nearest_overlaps(cands, i, j)
    assert len(ni) <= n * OVERLAP_CANDIDATES
    assert (0, 1) in set(zip(ni.tolist(), nj.tolist(), strict=True))


def test_a_crop_saved_under_another_crs_name_is_found_on_its_parent(tmp_path: Path, sample_dir: Path) -> None:
    """rasterio's rgb1..4 test rasters are crops of RGB.byte.tif saved with a user WKT ("UTM Zone 18, Northern
    Hemisphere", unknown datum on the WGS 84 ellipsoid): EPSG:32618 under another name. Here a crop of the sample's
    rgbn.tif (EPSG:32618) at offset (13, 9) is saved with such a definition: its tiles overlap the parent's on
    offset grids, and are found through their footprints only once the two CRS strings count as one frame."""
    from rasterio.crs import CRS

    from rscurate.footprints import same_frame
    from rscurate.readers import SceneRef, open_scene

    renamed = CRS.from_proj4("+proj=utm +zone=18 +ellps=WGS84 +units=m +no_defs")  # GDAL names it EPSG:3450
    with rasterio.open(sample_dir / "rgbn.tif") as ds:
        data, t = ds.read(), ds.transform
    write_tif(tmp_path / "data" / "parent.tif", data, res=t.a, origin=(t.c, t.f), crs="EPSG:32618",
              photometric="MINISBLACK")
    write_tif(tmp_path / "data" / "crop.tif", data[:, 9:265, 13:333], res=t.a,
              origin=(t.c + 13 * t.a, t.f + 9 * t.e), crs=renamed.to_wkt(), photometric="MINISBLACK")
    names = {n: open_scene(SceneRef(n, n, (str(tmp_path / "data" / n),), "geotiff"), [], None).crs
             for n in ("parent.tif", "crop.tif")}
    assert names["parent.tif"] == "EPSG:32618" != names["crop.tif"], "the premise: two names for one frame"
    assert same_frame(names["parent.tif"], names["crop.tif"], t.c, t.f)
    assert not same_frame("EPSG:32618", "EPSG:32619", t.c, t.f)
    parent = _source(tmp_path, "parent", "parent.tif", extra=RGBN_BANDS + "priority: 1\n")
    crop = _source(tmp_path, "crop", "crop.tif", extra=RGBN_BANDS)
    out = tmp_path / "corpus"
    run_build([parent, crop], out)
    index, dups, _ = _tables(out)
    assert set(index["source"]) == {"parent"}, "every crop tile lies at least half on a parent tile"
    assert len(dups[dups["source"] == "crop"]) == (256 // 64) * (320 // 64)


def test_a_scene_signature_is_the_phash_of_each_view_and_of_its_quarters(rng: np.random.Generator) -> None:
    """The views of a scene (its canonical view and one per band) are hashed in one batch: each hash must still be
    imagehash's pHash of that view or quarter, in its place (a shifted slice of the batch hashes the wrong image)."""
    from rscurate.phash import canonical_view, phash_gray, texture_score
    from rscurate.scene_hash import view_signature

    names = ["red", "green", "blue", "nir"]
    data = textured(rng, 4, 150, 203)
    valid = rng.random((150, 203)) < 0.9
    signature = view_signature(data, valid, names, 203 / 150)
    assert signature is not None and [n for n, _ in signature.bands] == names
    grays = [canonical_view(data, names, valid)] + [canonical_view(data[k : k + 1], [n], valid)
                                                    for k, n in enumerate(names)]
    for hashes, gray in zip([signature.view, *(v for _, v in signature.bands)], grays, strict=True):
        h, w = gray.shape
        quarters = [gray[rows, cols] for rows in (slice(0, h // 2), slice(h // 2, h))
                    for cols in (slice(0, w // 2), slice(w // 2, w))]
        assert hashes.phash == phash_gray(gray)
        assert hashes.quadrants == tuple(phash_gray(q) for q in quarters)
        assert hashes.texture == texture_score(gray)
