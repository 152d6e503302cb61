"""Co-located tiles compared over the pixels valid in both: the near-duplicate check for partial tiles.

Where two scenes overlap (adjacent Landsat rows of one path, a crop and its parent), a tile of one can cover
the same ground as a tile of the other while part of it is the scene's nodata border. Its pHash then mostly
encodes the border's shape and lies far from the full tile's (distance 12 for a third of a Landsat tile), so
pHash alone misses the pair. For such pairs only (footprints in one CRS with IoU >= COLOCATED_IOU, at least
one tile over dedup.NEAR_NODATA_CONFIRM nodata) both tiles are decoded again from the staged units and hashed
with the joint mask: pixels invalid in either tile are blanked in both, so both views show the same ground.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from rscurate.codec import decode
from rscurate.parquet_io import read_rows
from rscurate.phash import canonical_view, phash_gray
from rscurate.readers import valid_from_nodata

COLOCATED_IOU = 0.9
"""Footprint overlap (intersection over union) above which two tiles show the same ground."""
_COLUMNS = ["image", "encoding", "bands", "nodata"]


def colocated_pairs(cands: pd.DataFrame, pool: np.ndarray, partial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row positions (i, j) of pool tiles from different scenes whose footprints (one CRS) have IoU >= COLOCATED_IOU,
    where tile i is partial. Tiles are bucketed by footprint centre on a quarter-tile grid, so only neighbours
    are compared."""
    located = pool & (cands["crs"].fillna("") != "").to_numpy() & cands["minx"].notna().to_numpy()
    sub = cands[located]
    if sub.empty or not (partial & located).any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    width = (sub["maxx"] - sub["minx"]).to_numpy()
    cell = pd.Series(width / 4).groupby([sub["crs"].to_numpy(), sub["width"].to_numpy()]).transform("max")
    frame = pd.DataFrame({
        "pos": np.flatnonzero(located), "crs": sub["crs"].to_numpy(), "w": sub["width"].to_numpy(),
        "kx": np.floor((sub["minx"] + sub["maxx"]).to_numpy() / 2 / cell.to_numpy()).astype(np.int64),
        "ky": np.floor((sub["miny"] + sub["maxy"]).to_numpy() / 2 / cell.to_numpy()).astype(np.int64),
    })
    left = frame[partial[frame["pos"].to_numpy()]]
    found = []
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            shifted = left.assign(kx=left["kx"] + dx, ky=left["ky"] + dy)
            found.append(shifted.merge(frame, on=["crs", "w", "kx", "ky"], suffixes=("_i", "_j"))[["pos_i", "pos_j"]])
    pairs = pd.concat(found)
    i, j = pairs["pos_i"].to_numpy(), pairs["pos_j"].to_numpy()
    src, scene = cands["source"].to_numpy(), cands["scene"].to_numpy()
    keep = ((src[i] != src[j]) | (scene[i] != scene[j])) & (footprint_iou(cands, i, j) >= COLOCATED_IOU)
    lo, hi = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
    codes = np.unique(lo.astype(np.int64) * len(cands) + hi)
    return codes // len(cands), codes % len(cands)


def footprint_iou(rows: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Intersection over union of the footprints (minx..maxy columns) of rows i and j; 0 when disjoint or
    unknown (NaN bounds). Says nothing about CRS: callers compare only rows in one CRS."""
    b = {c: rows[c].to_numpy(np.float64) for c in ("minx", "miny", "maxx", "maxy")}
    ix = np.clip(np.minimum(b["maxx"][i], b["maxx"][j]) - np.maximum(b["minx"][i], b["minx"][j]), 0, None)
    iy = np.clip(np.minimum(b["maxy"][i], b["maxy"][j]) - np.maximum(b["miny"][i], b["miny"][j]), 0, None)
    area = (b["maxx"] - b["minx"]) * (b["maxy"] - b["miny"])
    inter = np.nan_to_num(ix * iy)
    return inter / np.maximum(np.nan_to_num(area[i] + area[j] - inter), 1e-12)


def joint_distance(a: dict, b: dict) -> int:
    """pHash distance of two stored tiles (rows with image, encoding, bands, nodata) over their joint valid
    pixels; 64 (no match possible) when their pixel grids differ or share no valid pixel."""
    da, db = decode(a["image"], a["encoding"]), decode(b["image"], b["encoding"])
    if da.shape[1:] != db.shape[1:]:
        return 64
    joint = valid_from_nodata(da, a["nodata"]) & valid_from_nodata(db, b["nodata"])
    if not joint.any():
        return 64
    ha = phash_gray(canonical_view(da, a["bands"], joint))
    hb = phash_gray(canonical_view(db, b["bands"], joint))
    return (ha ^ hb).bit_count()


def joint_distances(root: str, pairs: list[tuple[tuple[str, int], tuple[str, int]]]) -> list[int]:
    """joint_distance of each ((file, row), (file, row)) pair of staged tiles under `root` (a Dask task)."""
    rows = read_rows(Path(root), [loc for pair in pairs for loc in pair], _COLUMNS)
    return [joint_distance(rows[2 * k], rows[2 * k + 1]) for k in range(len(pairs))]
