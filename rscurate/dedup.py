"""Global decisions over all candidate tiles: eval-set leakage first, then exact, scene and near duplicates.

Runs on slim rows (ids, hashes, windows, footprints; no bytes) and on the scene signatures of the plan
phase. The keep rule is deterministic and independent of worker count: manifest priority (higher first),
then finer GSD, then the larger tile (or scene), then source and scene name (so copies of a scene lose
whole, not tile by tile), then id. Order of the steps and why (docs/dedup.md):
1. eval leakage: a training tile whose pixels equal an eval tile's, whose scene matches an eval scene, or
   whose pHash is within the radius of an eval tile's is excluded as `eval_leak`, naming the eval item;
2. exact duplicates (same decoded pixels): the most precise kind, so byte copies are reported as `exact`;
3. scene duplicates: every remaining tile of a scene that is a resampled/re-encoded copy of a better scene;
4. near duplicates: pHash within the radius, kept by the no-chaining rule of hamming_search.select_kept.
A near pair must pass the guards: tiles of one scene never dedup each other (overlap there is the tiling's
choice); flat tiles (texture below the threshold) are not searched; two tiles georeferenced in one CRS whose
footprints are disjoint are different places; a tile with more than NEAR_NODATA_CONFIRM nodata matches only a
tile whose footprint overlaps it, because its hash mostly encodes the shape of its nodata border; and a
partial tile on the same ground as another (footprint IoU >= 0.9) is also compared over the pixels valid in
both (masked_hash), which pHash of the whole tile cannot do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rscurate.hamming_search import DEFAULT_RADIUS, Pairs, explicit_pairs, find_pairs, query_pairs, select_kept
from rscurate.masked_hash import colocated_pairs, footprint_iou
from rscurate.phash import LOW_TEXTURE_STD
from rscurate.scene_hash import MAX_ASPECT_DIFFERENCE

NEAR_NODATA_CONFIRM = 0.1
"""Above this nodata fraction a tile's near match must be confirmed by overlapping footprints."""

PairSearch = Callable[[np.ndarray, int], Pairs]
JointDistance = Callable[[np.ndarray, np.ndarray], np.ndarray]  # candidate row positions i, j -> distances


@dataclass(frozen=True)
class DedupSettings:
    radius: int = DEFAULT_RADIUS  # Hamming radius on 64-bit pHash; 0 turns near and scene matching off
    min_texture: float = LOW_TEXTURE_STD


@dataclass
class Decisions:
    keep: np.ndarray  # bool per candidate row (train rows only can be True)
    duplicates: pd.DataFrame  # rows of schema.DUPLICATES
    leaks: pd.DataFrame  # rows of schema.EXCLUDED with reason eval_leak


def keep_rank(cands: pd.DataFrame, priority: dict[str, int], area: pd.Series | None = None) -> np.ndarray:
    """Position of each row in keep order (0 = kept first among equals)."""
    order = pd.DataFrame({
        "p": -cands["source"].map(priority).fillna(0).to_numpy(),
        "g": cands["gsd_m"].fillna(np.inf).to_numpy(),
        "a": -(area if area is not None else cands["width"] * cands["height"]).to_numpy(),
        "s": cands["source"].to_numpy(),
        "sc": cands["scene"].to_numpy(),
        "id": cands["id"].to_numpy() if "id" in cands else np.zeros(len(cands)),
    })
    sorted_idx = order.sort_values(["p", "g", "a", "s", "sc", "id"], kind="stable").index.to_numpy()
    rank = np.empty(len(cands), dtype=np.int64)
    rank[sorted_idx] = np.arange(len(cands))
    return rank


def _provenance(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: rows[c].to_numpy() for c in ("source", "scene", "x", "y", "width", "height")}


def _where(rows: pd.DataFrame) -> list[str]:
    return [f"{s}:{sc} window {x},{y},{w},{h}" for s, sc, x, y, w, h in
            zip(rows["source"], rows["scene"], rows["x"], rows["y"], rows["width"], rows["height"], strict=True)]


def _leak_rows(hit: pd.DataFrame, detail: list[str]) -> pd.DataFrame:
    return pd.DataFrame({**_provenance(hit), "reason": "eval_leak", "detail": detail}, index=hit.index)


def _dup_rows(dropped: pd.DataFrame, kept: pd.DataFrame, kind: str, distance: np.ndarray | int) -> pd.DataFrame:
    return pd.DataFrame({
        "id": dropped["id"].to_numpy(),
        **_provenance(dropped),
        "kept_id": kept["id"].to_numpy(),
        "kept_source": kept["source"].to_numpy(),
        "kept_scene": kept["scene"].to_numpy(),
        "kind": kind,
        "distance": distance,
    }, index=dropped.index)


def exact_leaks(cands: pd.DataFrame, is_eval: np.ndarray) -> pd.DataFrame:
    """Training tiles whose pixels equal an eval tile's, with the eval tile named in `detail`."""
    first = cands[is_eval].drop_duplicates("sha256").set_index("sha256")
    train = cands[~is_eval]
    hit = train[train["sha256"].isin(first.index)]
    return _leak_rows(hit, [f"pixels equal eval tile {w}" for w in _where(first.loc[hit["sha256"]])])


def footprints(rows: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(located, overlap) per pair: both footprints known in one CRS, and whether they intersect."""
    crs = rows["crs"].fillna("").to_numpy()
    minx = rows["minx"].to_numpy(np.float64)
    located = (crs[i] != "") & (crs[i] == crs[j]) & ~np.isnan(minx[i]) & ~np.isnan(minx[j])
    return located, footprint_iou(rows, i, j) > 0


def near_pair_ok(cands: pd.DataFrame, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The guards every near pair (row positions i, j) must pass; see the module docstring."""
    src, scene = cands["source"].to_numpy(), cands["scene"].to_numpy()
    same_scene = (src[i] == src[j]) & (scene[i] == scene[j])
    located, overlap = footprints(cands, i, j)
    nodata = cands["nodata_fraction"].to_numpy()
    partial = (nodata[i] > NEAR_NODATA_CONFIRM) | (nodata[j] > NEAR_NODATA_CONFIRM)
    return ~same_scene & ~(located & ~overlap) & ~(partial & ~(located & overlap))


def _searchable(cands: pd.DataFrame, settings: DedupSettings) -> np.ndarray:
    return (cands["texture"].to_numpy() >= settings.min_texture) & (settings.radius > 0)


def near_leaks(cands: pd.DataFrame, train: np.ndarray, evals: np.ndarray, settings: DedupSettings) -> pd.DataFrame:
    """Training tiles within the radius of an eval tile (guards applied), naming the nearest eval tile."""
    ti, ei = np.flatnonzero(train), np.flatnonzero(evals)
    if not len(ti) or not len(ei):
        return _leak_rows(cands.iloc[:0], [])
    h = cands["phash"].to_numpy(np.uint64)
    q = query_pairs(h[ti], h[ei], settings.radius)
    a, b, d = ti[q.index], ei[q.query], q.dist
    ok = near_pair_ok(cands, a, b)
    a, b, d = a[ok], b[ok], d[ok]
    order = np.lexsort((b, d, a))  # nearest eval tile first for each training tile
    a, b, d = a[order], b[order], d[order]
    first = np.ones(len(a), bool)
    first[1:] = a[1:] != a[:-1]
    a, b, d = a[first], b[first], d[first]
    detail = [f"near eval tile {w} (pHash distance {int(x)})" for w, x in zip(_where(cands.iloc[b]), d, strict=True)]
    return _leak_rows(cands.iloc[a], detail)


def exact_duplicates(cands: pd.DataFrame, eligible: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    """Within each group of identical pixels, every tile but the first in keep order is dropped."""
    pool = cands[eligible].assign(_rank=rank[eligible]).sort_values("_rank", kind="stable")
    dropped = pool[pool.duplicated("sha256")]
    kept = pool.drop_duplicates("sha256").set_index("sha256").loc[dropped["sha256"]]
    return _dup_rows(dropped, kept, "exact", 0)


def near_duplicates(cands: pd.DataFrame, pool: np.ndarray, rank: np.ndarray, settings: DedupSettings,
                    search: PairSearch, joint: JointDistance | None = None) -> pd.DataFrame:
    """Near duplicates among the pool's tiles: guarded pHash pairs, plus co-located partial tiles whose
    joint-mask distance (masked_hash, when `joint` is given) is within the radius; then the no-chaining rule."""
    idx = np.flatnonzero(pool)
    h_all = cands["phash"].to_numpy(np.uint64)
    pairs = explicit_pairs(h_all[idx], search(h_all[idx], settings.radius))
    ok = near_pair_ok(cands, idx[pairs.i], idx[pairs.j])
    pi, pj, dist = idx[pairs.i][ok], idx[pairs.j][ok], pairs.dist[ok].astype(np.int64)
    if joint is not None:
        partial = pool & (cands["nodata_fraction"].to_numpy() > NEAR_NODATA_CONFIRM)
        ci, cj = colocated_pairs(cands, pool, partial)
        far = np.bitwise_count(h_all[ci] ^ h_all[cj]) > settings.radius  # the rest are pairs already
        ci, cj = ci[far], cj[far]
        if len(ci):
            d = np.asarray(joint(ci, cj), np.int64)
            close = d <= settings.radius
            pi, pj, dist = np.concatenate((pi, ci[close])), np.concatenate((pj, cj[close])), np.concatenate(
                (dist, d[close]))
    # Guarded pairs are not transitive at distance 0 (two tiles of one scene may both equal a third): no
    # identical-hash grouping. A dropped tile's distance is its pair's, joint-mask ones included.
    local = Pairs(np.searchsorted(idx, pi), np.searchsorted(idx, pj), dist)
    drops = select_kept(rank[idx], local, identical_groups=False)
    dropped, kept = idx[drops.dropped], idx[drops.kept]
    distance = drops.dist.astype(np.int64)
    return _dup_rows(cands.iloc[dropped], cands.iloc[kept], "near", distance)


def _scene_table(cands: pd.DataFrame, scenes: pd.DataFrame) -> pd.DataFrame:
    """Scenes with a signature and at least one candidate tile, with their GSD from the tiles."""
    if scenes.empty:
        return scenes.assign(gsd_m=pd.Series(dtype=np.float64))
    gsd = cands.groupby(["source", "scene"], sort=False)["gsd_m"].first().rename("gsd_m").reset_index()
    return scenes.merge(gsd, on=["source", "scene"], how="inner").reset_index(drop=True)


def _matching_views(views: pd.DataFrame, radius: int) -> Pairs:
    """Pairs of rows of `views` (columns scene: row position of the scene, phash, q0..q3, texture, aspect) whose
    whole view and four quarters are all within the radius, with the same aspect ratio. Flat views (texture
    below LOW_TEXTURE_STD: open sea, cloud deck, fill) never match: their hashes collide by shape alone."""
    textured = np.flatnonzero(views["texture"].to_numpy() >= LOW_TEXTURE_STD)
    h = views["phash"].to_numpy(np.uint64)[textured]
    pairs = explicit_pairs(h, find_pairs(h, radius))
    i, j = textured[pairs.i], textured[pairs.j]
    ok = np.ones(len(i), bool)
    for k in range(4):
        q = views[f"q{k}"].to_numpy(np.uint64)
        ok &= np.bitwise_count(q[i] ^ q[j]) <= radius
    aspect = views["aspect"].to_numpy()
    ok &= np.abs(aspect[i] / aspect[j] - 1.0) <= MAX_ASPECT_DIFFERENCE
    scene = views["scene"].to_numpy()
    return Pairs(scene[i[ok]], scene[j[ok]], pairs.dist[ok])


def matching_scenes(scenes: pd.DataFrame, radius: int) -> Pairs:
    """Every pair of scenes (row positions i < j) whose signatures match, with the smallest distance.

    Scenes are compared by their canonical views (all bands, as tiles are hashed); scenes with different
    band sets are also compared band by band on the bands they share (a single-band or RGB delivery of a
    multispectral scene has another canonical view)."""
    canonical = scenes[["phash", "q0", "q1", "q2", "q3", "texture", "aspect"]].assign(scene=np.arange(len(scenes)))
    found = [_matching_views(canonical, radius)]
    if "band_views" in scenes:
        long = scenes[["band_views", "aspect"]].assign(scene=np.arange(len(scenes))).explode("band_views")
        long = long.dropna(subset=["band_views"])
        if len(long):
            parts = pd.DataFrame(long["band_views"].tolist(), columns=["band", "phash", "q0", "q1", "q2", "q3",
                                                                      "texture"], index=long.index)
            long = pd.concat([long[["scene", "aspect"]], parts], axis=1)
            for c in ("phash", "q0", "q1", "q2", "q3"):
                long[c] = long[c].astype(np.uint64)
            band_sets = [frozenset(v[0] for v in views) for views in scenes["band_views"]]
            for _, group in long.groupby("band", sort=True):
                p = _matching_views(group.reset_index(drop=True), radius)
                other = np.array([band_sets[a] != band_sets[b] for a, b in zip(p.i, p.j, strict=True)], bool)
                found.append(Pairs(p.i[other], p.j[other], p.dist[other]))
    i = np.concatenate([p.i for p in found]).astype(np.int64)
    j = np.concatenate([p.j for p in found]).astype(np.int64)
    d = np.concatenate([p.dist for p in found]).astype(np.int64)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    order = np.lexsort((d, hi, lo))
    lo, hi, d = lo[order], hi[order], d[order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    return Pairs(lo[first], hi[first], d[first].astype(np.uint8))


def _scene_matches(table: pd.DataFrame, radius: int) -> pd.DataFrame:
    """Matching scene pairs, less those georeferenced in one CRS with disjoint footprints (other places)."""
    pairs = matching_scenes(table, radius) if radius > 0 and len(table) > 1 else Pairs(*([np.zeros(0, np.int64)] * 3))
    located, overlap = footprints(table, pairs.i, pairs.j)
    ok = ~(located & ~overlap)
    return pd.DataFrame({"i": pairs.i[ok], "j": pairs.j[ok], "dist": pairs.dist[ok].astype(np.int64)})


def scene_leaks(cands: pd.DataFrame, table: pd.DataFrame, matches: pd.DataFrame, train: np.ndarray,
                eval_sources: set[str]) -> pd.DataFrame:
    """Every candidate tile of a training scene whose signature matches an eval scene's."""
    is_eval = table["source"].isin(eval_sources).to_numpy()
    pairs = pd.concat([matches, matches.rename(columns={"i": "j", "j": "i"})])
    pairs = pairs[~is_eval[pairs["i"].to_numpy()] & is_eval[pairs["j"].to_numpy()]]
    pairs = pairs.sort_values(["i", "dist", "j"]).drop_duplicates("i")
    if pairs.empty:
        return _leak_rows(cands.iloc[:0], [])
    leaky = table.iloc[pairs["i"].to_numpy()][["source", "scene"]].assign(
        detail=[f"scene matches eval scene {s}:{sc} (pHash distance {d})" for s, sc, d in
                zip(table["source"].to_numpy()[pairs["j"]], table["scene"].to_numpy()[pairs["j"]],
                    pairs["dist"], strict=True)])
    rows = cands[train].reset_index().merge(leaky, on=["source", "scene"]).set_index("index")
    return _leak_rows(rows, rows["detail"].tolist())


def scene_duplicates(cands: pd.DataFrame, table: pd.DataFrame, matches: pd.DataFrame, pool: np.ndarray,
                     priority: dict[str, int], eval_sources: set[str]) -> pd.DataFrame:
    """Tiles of a scene that copies a better scene, each pointing at the kept scene's tile at the same
    relative position (the copy may have another size)."""
    alive = cands[pool]
    has_tiles = table.set_index(["source", "scene"]).index.isin(alive.set_index(["source", "scene"]).index)
    usable = has_tiles & ~table["source"].isin(eval_sources).to_numpy()
    m = matches[usable[matches["i"].to_numpy()] & usable[matches["j"].to_numpy()]]
    if m.empty:
        return _dup_rows(cands.iloc[:0], cands.iloc[:0], "scene", 0)
    rank = keep_rank(table, priority, area=table["width"] * table["height"])
    drops = select_kept(rank, Pairs(m["i"].to_numpy(), m["j"].to_numpy(), m["dist"].to_numpy()),
                        identical_groups=False)
    distances = drops.dist.astype(np.int64)
    groups = {key: g for key, g in alive.groupby(["source", "scene"], sort=False)}
    parts = []
    for d, k, dist in zip(drops.dropped, drops.kept, distances, strict=True):
        drop_scene, keep_scene = table.iloc[d], table.iloc[k]
        dropped = groups[(drop_scene["source"], drop_scene["scene"])]
        kept = groups[(keep_scene["source"], keep_scene["scene"])]
        rel_d = _relative_centres(dropped, drop_scene)
        rel_k = _relative_centres(kept, keep_scene)
        nearest = np.argmin(((rel_d[:, None, :] - rel_k[None, :, :]) ** 2).sum(axis=2), axis=1)
        parts.append(_dup_rows(dropped, kept.iloc[nearest], "scene", int(dist)))
    return pd.concat(parts)


def _relative_centres(tiles: pd.DataFrame, scene: pd.Series) -> np.ndarray:
    return np.stack([(tiles["x"] + tiles["width"] / 2).to_numpy() / scene["width"],
                     (tiles["y"] + tiles["height"] / 2).to_numpy() / scene["height"]], axis=1)


def _resolve_kept(dups: pd.DataFrame) -> pd.DataFrame:
    """Point every record at a tile that is really kept: a scene copy's tile may map onto a tile that a
    later step dropped, whose own record names the tile kept in its place (chains are short)."""
    out = dups.copy()
    cols = ["kept_id", "kept_source", "kept_scene"]
    succ = dups.set_index("id")[cols]
    for _ in range(len(dups)):
        moved = out["kept_id"].isin(succ.index).to_numpy()
        if not moved.any():
            break
        out.loc[moved, cols] = succ.loc[out.loc[moved, "kept_id"]].to_numpy()
    return out


def decide(cands: pd.DataFrame, scenes: pd.DataFrame, priority: dict[str, int], eval_sources: set[str],
           settings: DedupSettings = DedupSettings(), search: PairSearch = find_pairs,
           joint: JointDistance | None = None) -> Decisions:
    """Which candidates are kept, and every drop's record (see the module docstring for the order).

    `scenes`: one row per planned scene with a signature (source, scene, width, height, crs, footprint and the
    columns of scene_hash.signature_columns). `search` finds near pairs (hamming_search.find_pairs or its Dask
    form); `joint` measures co-located partial tiles over their joint valid pixels (masked_hash)."""
    n = len(cands)
    is_eval = cands["source"].isin(eval_sources).to_numpy()
    searchable = _searchable(cands, settings)
    table = _scene_table(cands, scenes)
    matches = _scene_matches(table, settings.radius)

    leaks = [exact_leaks(cands, is_eval)]
    left = ~is_eval & ~cands.index.isin(leaks[0].index)
    leaks.append(scene_leaks(cands, table, matches, left, eval_sources))
    left &= ~cands.index.isin(leaks[-1].index)
    leaks.append(near_leaks(cands, left & searchable, is_eval & searchable, settings))
    left &= ~cands.index.isin(leaks[-1].index)

    rank = keep_rank(cands, priority)
    dups = [exact_duplicates(cands, left, rank)]
    left &= ~cands.index.isin(dups[-1].index)
    dups.append(scene_duplicates(cands, table, matches, left, priority, eval_sources))
    left &= ~cands.index.isin(dups[-1].index)
    if settings.radius > 0 and (left & searchable).sum() > 1:
        dups.append(near_duplicates(cands, left & searchable, rank, settings, search, joint))
        left &= ~cands.index.isin(dups[-1].index)
    duplicates = _resolve_kept(pd.concat(dups)) if n else dups[0]
    return Decisions(keep=left, duplicates=duplicates.reset_index(drop=True),
                     leaks=pd.concat(leaks).reset_index(drop=True))
