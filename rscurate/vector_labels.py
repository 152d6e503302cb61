"""Tile labels from polygons (GeoPackage, GeoJSON, Shapefile) with a class column.

A tile takes the class that covers most of its valid pixels when that class covers at least `min_fraction` of
them, otherwise no label. Fractions are pixel fractions, not area overlaps: the polygons are burnt on the tile's
own pixel grid (a pixel counts when its centre is inside: GDAL's all_touched=False), so a label says what the
tile's pixels show, and nodata pixels neither count for a class nor against it.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import rasterize
from rasterio.transform import Affine
from rasterio.warp import transform_geom

# pyogrio and shapely are imported where polygons are read or searched: every build imports this module (the
# manifest names LabelSource), and only one with vector labels needs them (~0.1 s of a small build's start)
if TYPE_CHECKING:  # tiling imports the manifest, which imports this module
    import shapely

    from rscurate.tiling import Window

POLYGONAL = {"Polygon", "MultiPolygon"}


class LabelFileError(ValueError):
    """A label file that cannot be used; the message names the file and what to change."""


@dataclass(frozen=True)
class ClassPolygons:
    """The labelled polygons of one file: geometry, class name and the file's CRS (WKT)."""

    geoms: np.ndarray  # shapely geometries
    classes: np.ndarray  # str class of each geometry
    crs: str


@dataclass(frozen=True)
class LabelSource:
    """Where a source's vector labels come from; hashable, so per-process caches key on it."""

    path: str
    column: str
    layer: str | None = None
    min_fraction: float = 0.5

    def stamp(self) -> str:
        """Size and mtime of the file and its siblings (a Shapefile's classes live in its .dbf): a changed file
        is read again and changes the build's unit keys."""
        path = Path(self.path)
        siblings = path.parent.glob(f"{glob.escape(path.stem)}.*")
        found = sorted(p for p in siblings if p.is_file()) if path.exists() else []
        return ";".join(f"{p.name}:{os.stat(p).st_size}:{os.stat(p).st_mtime_ns}" for p in found)

    def polygons(self) -> ClassPolygons:
        """The file's polygons, read once per process and file version; LabelFileError if it cannot be used."""
        return _read(self, self.stamp())

    def labeller(self, crs: str, transform: Affine | None) -> Callable[[Window, np.ndarray], str | None]:
        """The labelling of one scene's tiles, given each tile's window and (h, w) valid mask; a scene without
        georeference gets no labels."""
        if transform is None or not crs:
            return lambda window, valid: None
        import shapely

        geoms, classes, tree = _projected(self, self.stamp(), crs)

        def label(window: Window, valid: np.ndarray) -> str | None:
            x, y, w, h = window
            tile_transform = transform @ Affine.translation(x, y)
            corners = np.array([tile_transform @ c for c in ((0, 0), (w, 0), (w, h), (0, h))])
            hits = tree.query(shapely.box(*corners.min(axis=0), *corners.max(axis=0)))
            counts = {
                name: int(np.count_nonzero(valid & rasterize(
                    geoms[hits][classes[hits] == name], out_shape=valid.shape, transform=tile_transform,
                    all_touched=False, fill=0, default_value=1, dtype="uint8").astype(bool)))
                for name in np.unique(classes[hits])
            }
            return majority(counts, int(np.count_nonzero(valid)), self.min_fraction)

        return label


def majority(counts: dict[str, int], valid_pixels: int, min_fraction: float) -> str | None:
    """The class with the most pixels if it holds at least `min_fraction` of the valid pixels; a tie for the
    most is no label (neither class is the tile's)."""
    if not counts or valid_pixels == 0:
        return None
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    best, pixels = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == pixels:
        return None
    return best if pixels / valid_pixels >= min_fraction else None


@lru_cache(maxsize=8)
def _read(source: LabelSource, stamp: str) -> ClassPolygons:
    import pyogrio
    import shapely
    from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError

    path = source.path
    if not stamp:
        raise LabelFileError(f"{path} does not exist; fix labels.file (relative to the manifest, or absolute)")
    try:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        if source.layer is None and len(layers) > 1:
            raise LabelFileError(f"{path} holds layers {layers}; name one with labels.layer")
        if source.layer is not None and source.layer not in layers:
            raise LabelFileError(f"{path} has no layer {source.layer!r}; its layers are {layers}")
        info = pyogrio.read_info(path, layer=source.layer)
        columns = [str(c) for c in info["fields"]]
        if source.column not in columns:
            raise LabelFileError(f"{path} has no column {source.column!r}; its columns are {columns}: "
                                 "set labels.column to the one holding the class")
        meta, _, wkb, fields = pyogrio.raw.read(path, layer=source.layer, columns=[source.column])
    except (DataSourceError, DataLayerError, FieldError, GeometryError, OSError) as err:
        raise LabelFileError(f"{path} cannot be read as a vector file ({err}); labels.file takes a GeoPackage, "
                             "GeoJSON or Shapefile") from err
    if not meta.get("crs"):
        raise LabelFileError(f"{path} has no CRS; write it with one (a Shapefile needs its .prj)")
    geoms = shapely.from_wkb(wkb)
    classes = np.asarray(fields[0], dtype=object)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms)) & np.array([c is not None for c in classes], bool)
    other = sorted({g.geom_type for g in geoms[keep]} - POLYGONAL)
    if other:
        raise LabelFileError(f"{path} holds {other} geometries; labels need polygons (a class covers pixels)")
    return ClassPolygons(geoms[keep], np.array([str(c) for c in classes[keep]], dtype=object), str(meta["crs"]))


@lru_cache(maxsize=32)
def _projected(source: LabelSource, stamp: str, crs: str) -> tuple[np.ndarray, np.ndarray, shapely.STRtree]:
    """The polygons in a scene's CRS (reprojected once per process and CRS) with a search tree."""
    import shapely
    from shapely.geometry import mapping, shape

    polygons = _read(source, stamp)
    geoms = polygons.geoms
    try:
        if len(geoms) and CRS.from_user_input(polygons.crs) != CRS.from_user_input(crs):
            geoms = np.array([shape(g) for g in transform_geom(polygons.crs, crs, [mapping(g) for g in geoms])],
                             dtype=object)
    except CRSError as err:
        raise LabelFileError(f"{source.path}: polygons cannot be reprojected to the scene CRS {crs} ({err})") from err
    return geoms, polygons.classes, shapely.STRtree(geoms)
