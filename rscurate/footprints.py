"""Tile footprints: which tiles of different scenes show the same ground, whatever their grids.

Tiles are cut on each scene's own grid (tile.anchor: scene), so where two scenes overlap (adjacent Landsat rows of
one path, a crop and its parent, two dates of one place) their tiles are offset by any number of pixels and no
hash of the whole tile pairs them. For georeferenced tiles the footprints say it directly: two tiles of different
scenes in one CRS whose footprints share at least MIN_OVERLAP of the smaller one are a candidate pair, and the
pixels over the shared ground decide (pixel_check.georegistered).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform

MIN_OVERLAP = 0.5
"""Shared ground, as a fraction of the smaller footprint, from which two tiles are compared as possible copies."""
SAME_FRAME_M = 0.5
"""Two CRS definitions are one frame when points 10 km apart map onto themselves within this (metres or degrees)."""
_frames: dict[tuple[str, str], bool] = {}


def same_frame(a: str, b: str, x: float, y: float) -> bool:
    """Whether CRS strings a and b put the same coordinates on the same ground, tested around (x, y) in a and
    remembered per pair: a crop re-saved with a user WKT ("UTM Zone 18, Northern Hemisphere", unknown datum on the
    WGS 84 ellipsoid) is EPSG:32618 under another name, and its tiles overlap the original's."""
    if a == b:
        return True
    if not a or not b:
        return False
    if (a, b) not in _frames:
        try:
            step = 10_000.0 if CRS.from_user_input(a).is_projected else 0.1
            xs, ys = [x, x + step, x], [y, y, y + step]
            tx, ty = transform(CRS.from_user_input(a), CRS.from_user_input(b), xs, ys)
            _frames[(a, b)] = bool(np.allclose(tx, xs, atol=SAME_FRAME_M) and np.allclose(ty, ys, atol=SAME_FRAME_M))
        except (CRSError, CPLE_BaseError, ValueError, RuntimeError):  # no operation between them: not one frame
            _frames[(a, b)] = False
    return _frames[(a, b)]


def canonical_crs(rows: pd.DataFrame) -> pd.Series:
    """The rows' `crs` with every definition that is one frame with an earlier one (same_frame, tested at its
    tiles' median centre) replaced by that one, so footprints compare across differently written CRSs."""
    crs = rows["crs"].fillna("")
    cx, cy = (rows["minx"] + rows["maxx"]) / 2, (rows["miny"] + rows["maxy"]) / 2
    names: dict[str, str] = {}
    for text in sorted(set(crs) - {""}):
        at = crs == text
        x, y = float(np.nanmedian(cx[at])), float(np.nanmedian(cy[at]))
        names[text] = next((r for r in dict.fromkeys(names.values())
                            if np.isfinite(x) and same_frame(text, r, x, y)), text)
    return crs.map(lambda c: names.get(c, c))


def footprint_iou(rows: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Intersection over union of the footprints (minx..maxy columns) of rows i and j; 0 when disjoint or
    unknown (NaN bounds). Says nothing about CRS: callers compare only rows in one CRS."""
    inter, area = _intersection(rows, i, j)
    return inter / np.maximum(np.nan_to_num(area[i] + area[j] - inter), 1e-12)


def overlap_of_smaller(rows: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Intersection of the footprints of rows i and j over the smaller of the two; 0 when disjoint or unknown."""
    inter, area = _intersection(rows, i, j)
    return inter / np.maximum(np.nan_to_num(np.minimum(area[i], area[j])), 1e-12)


def _intersection(rows: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b = {c: rows[c].to_numpy(np.float64) for c in ("minx", "miny", "maxx", "maxy")}
    ix = np.clip(np.minimum(b["maxx"][i], b["maxx"][j]) - np.maximum(b["minx"][i], b["minx"][j]), 0, None)
    iy = np.clip(np.minimum(b["maxy"][i], b["maxy"][j]) - np.maximum(b["miny"][i], b["miny"][j]), 0, None)
    return np.nan_to_num(ix * iy), (b["maxx"] - b["minx"]) * (b["maxy"] - b["miny"])


def overlap_pairs(cands: pd.DataFrame, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (i < j) of pool tiles from different scenes, georeferenced in one CRS, whose footprints share
    at least MIN_OVERLAP of the smaller one. Tiles are bucketed by footprint centre on a grid of the largest tile
    width in their CRS, so only neighbouring buckets are compared (no all-pairs loop)."""
    located = pool & (cands["crs"].fillna("") != "").to_numpy() & cands["minx"].notna().to_numpy()
    sub = cands[located]
    if len(sub) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    width = (sub["maxx"] - sub["minx"]).to_numpy()
    cell = pd.Series(width).groupby(sub["crs"].to_numpy()).transform("max").to_numpy()
    frame = pd.DataFrame({
        "pos": np.flatnonzero(located), "crs": sub["crs"].to_numpy(),
        "kx": np.floor((sub["minx"] + sub["maxx"]).to_numpy() / 2 / cell).astype(np.int64),
        "ky": np.floor((sub["miny"] + sub["maxy"]).to_numpy() / 2 / cell).astype(np.int64),
    })
    found = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            shifted = frame.assign(kx=frame["kx"] + dx, ky=frame["ky"] + dy)
            part = shifted.merge(frame, on=["crs", "kx", "ky"], suffixes=("_i", "_j"))[["pos_i", "pos_j"]]
            found.append(part[part["pos_i"] < part["pos_j"]])
    pairs = pd.concat(found)
    i, j = pairs["pos_i"].to_numpy(np.int64), pairs["pos_j"].to_numpy(np.int64)
    src, scene = cands["source"].to_numpy(), cands["scene"].to_numpy()
    keep = ((src[i] != src[j]) | (scene[i] != scene[j])) & (overlap_of_smaller(cands, i, j) >= MIN_OVERLAP)
    return i[keep], j[keep]
