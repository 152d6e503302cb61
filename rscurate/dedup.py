"""Global decisions over all candidate tiles: eval-set leakage first, then exact, scene and near duplicates.

Runs on slim rows (ids, hashes, windows, footprints; no bytes) and on the scene signatures of the plan phase;
every candidate a hash or a footprint proposes is then checked on its pixels (pixel_check, through a
PixelOracle that runs where the pixels are): hashes propose, pixels decide. The keep rule (keep_rank) keeps the
most informative copy and is independent of worker count. Order of the steps and why (docs/dedup.md):
1. eval leakage: a training tile whose pixels equal an eval tile's, whose scene matches an eval scene, whose pHash
   is within the radius of an eval tile's, or that holds an eval chip found at any offset and modest rescaling
   (probe_leaks) is excluded as `eval_leak`, naming the eval item;
2. exact duplicates (same decoded pixels): the most precise kind, so byte copies are reported as `exact`;
3. scene duplicates: every remaining tile of a scene that is a resampled/re-encoded copy of a better scene;
4. near duplicates: pHash pairs within the radius and tiles of other scenes on the same ground (footprints), kept
   by the no-chaining rule of hamming_search.select_kept.
A pHash pair must pass the guards: tiles of one scene never dedup each other (overlap there is the tiling's
choice); flat tiles (texture below the threshold) are not searched; two tiles georeferenced in one CRS whose
footprints are disjoint are different places; a tile with more than NEAR_NODATA_CONFIRM nodata matches only a
tile whose footprint overlaps it, because its hash mostly encodes the shape of its nodata border.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from rscurate.footprints import footprint_iou, overlap_pairs
from rscurate.hamming_search import DEFAULT_RADIUS, Pairs, explicit_pairs, find_pairs, query_pairs, select_kept
from rscurate.phash import LOW_TEXTURE_STD
from rscurate.pixel_check import Similarity
from rscurate.probe_leaks import Probes, probe_leaks
from rscurate.scene_hash import MAX_ASPECT_DIFFERENCE

NEAR_NODATA_CONFIRM = 0.1
"""Above this nodata fraction a tile's near match must be confirmed by overlapping footprints."""

PairSearch = Callable[[np.ndarray, int], Pairs]
MIN_COVERED = 0.5
"""A tile is dropped for another only if at least this share of its valid pixels lies on the other's."""
OVERLAP_CANDIDATES = 8
"""Footprint pairs checked per tile: its nearest by pHash (nearest_overlaps)."""


class PixelOracle(Protocol):
    """Pixel checks of candidates (pixel_check), run where the pixels are (the build's Dask tasks)."""

    def tiles(self, i: np.ndarray, j: np.ndarray) -> list[Similarity]:
        """Candidate tiles at row positions i[k], j[k], compared (pixel_check.compare)."""

    def scenes(self, a: list[tuple[str, str]], b: list[tuple[str, str]]) -> list[Similarity]:
        """Scenes a[k], b[k] (source, scene), compared on their decimated views."""

    def placed(self, chip: np.ndarray, tile: np.ndarray, x: np.ndarray, y: np.ndarray,
               scale: np.ndarray) -> list[Similarity]:
        """Eval chips placed in training tiles (pixel_check.placed)."""


@dataclass(frozen=True)
class ProbeSets:
    """Probe hashes of training and eval candidates, for the eval-leak search at any alignment."""

    train: Probes
    evals: Probes


@dataclass(frozen=True)
class DedupSettings:
    radius: int = DEFAULT_RADIUS  # Hamming radius on 64-bit pHash; 0 turns near and scene matching off
    min_texture: float = LOW_TEXTURE_STD


@dataclass
class Decisions:
    keep: np.ndarray  # bool per candidate row (train rows only can be True)
    duplicates: pd.DataFrame  # rows of schema.DUPLICATES
    leaks: pd.DataFrame  # rows of schema.EXCLUDED with reason eval_leak


def keep_rank(rows: pd.DataFrame, priority: dict[str, int], area: pd.Series | None = None) -> np.ndarray:
    """Position of each row in keep order (0 = kept first among equals): the most informative copy wins.

    Manifest priority (higher first), then more bands, fewer nodata pixels, finer GSD, higher bit depth, larger
    extent (`area`: the tile's pixels by default; the scene's for scene-level matches), then the scene's extent,
    then the rank of the tile's whole scene (`scene_rank`, scene_ranks: equal tiles follow their scenes, so the
    exact and the scene step agree on which copy of a scene stays), then source, scene and id. A band subset or a
    partial copy of a tile therefore never displaces it (docs/dedup.md, "Keep rule")."""
    n = len(rows)

    def column(name: str, default: float) -> np.ndarray:
        return rows[name].fillna(default).to_numpy(np.float64) if name in rows else np.full(n, default)

    bits = rows["dtype"].map(lambda d: np.dtype(d).itemsize if isinstance(d, str) else 0).to_numpy(np.float64) \
        if "dtype" in rows else np.zeros(n)
    tile_area = (area if area is not None else rows["width"] * rows["height"]).to_numpy(np.float64)
    order = pd.DataFrame({
        "p": -rows["source"].map(priority).fillna(0).to_numpy(),
        "c": -column("channels", 0), "n": column("nodata_fraction", 0), "g": column("gsd_m", np.inf),
        "b": -bits, "a": -tile_area, "sa": -column("scene_pixels", 0), "sr": column("scene_rank", 0),
        "s": rows["source"].to_numpy(), "sc": rows["scene"].to_numpy(),
        "id": rows["id"].to_numpy() if "id" in rows else np.zeros(n),
    })
    sorted_idx = order.sort_values(list(order.columns), kind="stable").index.to_numpy()
    rank = np.empty(n, dtype=np.int64)
    rank[sorted_idx] = np.arange(n)
    return rank


def scene_ranks(cands: pd.DataFrame, priority: dict[str, int]) -> np.ndarray:
    """Per candidate row, the keep rank of its whole scene (scene facts as in _scene_table, the scene's pixels as
    its extent): the tie-break that keeps tile-level and scene-level decisions consistent."""
    if cands.empty:
        return np.zeros(0, np.int64)
    keys = ["source", "scene"]
    scenes = _scene_facts(cands).reset_index()
    area = scenes["scene_pixels"] if "scene_pixels" in scenes else scenes["width"] * scenes["height"]
    ranked = scenes[keys].assign(scene_rank=keep_rank(scenes, priority, area=area))
    return cands[keys].merge(ranked, on=keys, how="left")["scene_rank"].to_numpy(np.int64)


def _scene_facts(cands: pd.DataFrame) -> pd.DataFrame:
    """What the keep rule reads of each scene from its tiles: GSD, band count, dtype (first tile), extent and
    mean nodata fraction."""
    grouped = cands.groupby(["source", "scene"], sort=False)
    first = [c for c in ("gsd_m", "channels", "dtype", "scene_pixels", "width", "height") if c in cands]
    return grouped[first].first().join(grouped["nodata_fraction"].mean())


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


def _confirmed(sims: list[Similarity], lower: np.ndarray | None = None) -> np.ndarray:
    """Pixel verdicts: same content, and (with `lower`, 0 or 1 per pair: which side would be dropped) enough of
    that tile's valid pixels on the other's."""
    same = np.array([s.same_content for s in sims], bool)
    if lower is None:
        covered = np.array([max(s.covered) for s in sims])
    else:
        covered = np.array([s.covered[k] for s, k in zip(sims, lower, strict=True)])
    return same & (covered >= MIN_COVERED) if len(sims) else np.zeros(0, bool)


def near_leaks(cands: pd.DataFrame, train: np.ndarray, evals: np.ndarray, settings: DedupSettings,
               pixels: PixelOracle | None = None) -> pd.DataFrame:
    """Training tiles within the radius of an eval tile (guards applied, pixels confirming), naming the nearest."""
    ti, ei = np.flatnonzero(train), np.flatnonzero(evals)
    if not len(ti) or not len(ei):
        return _leak_rows(cands.iloc[:0], [])
    h = cands["phash"].to_numpy(np.uint64)
    q = query_pairs(h[ti], h[ei], settings.radius)
    a, b, d = ti[q.index], ei[q.query], q.dist
    ok = near_pair_ok(cands, a, b)
    a, b, d = a[ok], b[ok], d[ok]
    if pixels is not None and len(a):
        ok = _confirmed(pixels.tiles(a, b))
        a, b, d = a[ok], b[ok], d[ok]
    order = np.lexsort((b, d, a))  # nearest eval tile first for each training tile
    a, b, d = a[order], b[order], d[order]
    first = np.ones(len(a), bool)
    first[1:] = a[1:] != a[:-1]
    a, b, d = a[first], b[first], d[first]
    detail = [f"near eval tile {w} (pHash distance {int(x)})" for w, x in zip(_where(cands.iloc[b]), d, strict=True)]
    return _leak_rows(cands.iloc[a], detail)


def alignment_free_leaks(cands: pd.DataFrame, alive: np.ndarray, probes: ProbeSets, settings: DedupSettings,
                         pixels: PixelOracle | None) -> pd.DataFrame:
    """Training tiles that hold an eval chip found at any offset and modest rescaling (probe_leaks)."""
    if settings.radius == 0:
        return _leak_rows(cands.iloc[:0], [])
    pos, detail = probe_leaks(cands, alive, probes.train, probes.evals, settings.radius,
                              pixels.placed if pixels is not None else None)
    return _leak_rows(cands.iloc[pos], detail)


def exact_duplicates(cands: pd.DataFrame, eligible: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    """Within each group of identical pixels, every tile but the first in keep order is dropped."""
    pool = cands[eligible].assign(_rank=rank[eligible]).sort_values("_rank", kind="stable")
    dropped = pool[pool.duplicated("sha256")]
    kept = pool.drop_duplicates("sha256").set_index("sha256").loc[dropped["sha256"]]
    return _dup_rows(dropped, kept, "exact", 0)


def near_duplicates(cands: pd.DataFrame, pool: np.ndarray, searchable: np.ndarray, rank: np.ndarray,
                    settings: DedupSettings, search: PairSearch, pixels: PixelOracle | None = None) -> pd.DataFrame:
    """Near duplicates among the pool's tiles. Candidates: guarded pHash pairs of textured tiles, and tiles of
    different scenes sharing ground in one CRS (footprints.overlap_pairs, on any grid). The pixels decide each
    (pixel_check, when `pixels` is given): same content, and at least MIN_COVERED of the tile that would be dropped
    on the other. Then the no-chaining keep rule; a drop's distance is its pair's pHash distance."""
    h_all = cands["phash"].to_numpy(np.uint64)
    idx = np.flatnonzero(pool & searchable)
    if len(idx) > 1:
        pairs = explicit_pairs(h_all[idx], search(h_all[idx], settings.radius))
        ok = near_pair_ok(cands, idx[pairs.i], idx[pairs.j])
        pi, pj = idx[pairs.i][ok], idx[pairs.j][ok]
    else:
        pi = pj = np.zeros(0, np.int64)
    oi, oj = nearest_overlaps(cands, *overlap_pairs(cands, pool)) if pixels is not None else (pi[:0], pj[:0])
    codes = np.unique(np.concatenate((np.minimum(pi, pj) * len(cands) + np.maximum(pi, pj),
                                      np.minimum(oi, oj) * len(cands) + np.maximum(oi, oj))).astype(np.int64))
    pi, pj = codes // max(len(cands), 1), codes % max(len(cands), 1)
    if pixels is not None and len(pi):
        ok = _confirmed(pixels.tiles(pi, pj), lower=(rank[pj] > rank[pi]).astype(int))
        pi, pj = pi[ok], pj[ok]
    dist = np.bitwise_count(h_all[pi] ^ h_all[pj]).astype(np.int64)
    members = np.unique(np.concatenate((pi, pj)))
    # Verified pairs are not transitive at distance 0 (two tiles of one scene may both equal a third): no
    # identical-hash grouping.
    local = Pairs(np.searchsorted(members, pi), np.searchsorted(members, pj), dist)
    drops = select_kept(rank[members], local, identical_groups=False)
    dropped, kept = members[drops.dropped], members[drops.kept]
    return _dup_rows(cands.iloc[dropped], cands.iloc[kept], "near", drops.dist.astype(np.int64))


def nearest_overlaps(cands: pd.DataFrame, i: np.ndarray, j: np.ndarray,
                     per_tile: int = OVERLAP_CANDIDATES) -> tuple[np.ndarray, np.ndarray]:
    """Of the footprint pairs, those among the `per_tile` nearest by pHash distance of either tile: a stack of many
    acquisitions of one place (a daily gridded product) would otherwise ask one pixel check per pair of dates."""
    if len(i) == 0:
        return i, j
    h = cands["phash"].to_numpy(np.uint64)
    d = np.bitwise_count(h[i] ^ h[j])
    ends = pd.DataFrame({"tile": np.concatenate((i, j)), "pair": np.tile(np.arange(len(i)), 2),
                         "d": np.concatenate((d, d))}).sort_values(["d", "pair"], kind="stable")
    chosen = np.unique(ends.loc[(ends.groupby("tile").cumcount() < per_tile).to_numpy(), "pair"].to_numpy())
    return i[chosen], j[chosen]


def _scene_table(cands: pd.DataFrame, scenes: pd.DataFrame) -> pd.DataFrame:
    """Scenes with a signature and at least one candidate tile, with what the keep rule reads from their tiles
    (GSD, band count, dtype, mean nodata fraction)."""
    facts = ["gsd_m", "channels", "dtype", "nodata_fraction"]
    if scenes.empty:
        return scenes.assign(**{c: pd.Series(dtype=object) for c in facts})
    per_scene = _scene_facts(cands)[[c for c in facts if c in cands]]
    return scenes.merge(per_scene.reset_index(), on=["source", "scene"], how="inner").reset_index(drop=True)


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


def _scene_matches(table: pd.DataFrame, radius: int, pixels: PixelOracle | None = None) -> pd.DataFrame:
    """Matching scene pairs, less those georeferenced in one CRS with disjoint footprints (other places) and, with
    `pixels`, those whose decimated views differ (another acquisition of the same place)."""
    pairs = matching_scenes(table, radius) if radius > 0 and len(table) > 1 else Pairs(*([np.zeros(0, np.int64)] * 3))
    located, overlap = footprints(table, pairs.i, pairs.j)
    ok = ~(located & ~overlap)
    i, j, d = pairs.i[ok].astype(np.int64), pairs.j[ok].astype(np.int64), pairs.dist[ok].astype(np.int64)
    if pixels is not None and len(i):
        keys = list(zip(table["source"], table["scene"], strict=True))
        ok = _confirmed(pixels.scenes([keys[k] for k in i], [keys[k] for k in j]))
        i, j, d = i[ok], j[ok], d[ok]
    return pd.DataFrame({"i": i, "j": j, "dist": d})


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


def keep_all(cands: pd.DataFrame, eval_sources: set[str]) -> Decisions:
    """The uncurated baseline (`rscurate build --no-curate`): every training tile kept, no duplicate or leak
    searched; eval tiles are still never training tiles."""
    none = cands.iloc[:0]
    return Decisions(keep=~cands["source"].isin(eval_sources).to_numpy(),
                     duplicates=_dup_rows(none, none, "exact", 0).reset_index(drop=True),
                     leaks=_leak_rows(none, []).reset_index(drop=True))


def decide(cands: pd.DataFrame, scenes: pd.DataFrame, priority: dict[str, int], eval_sources: set[str],
           settings: DedupSettings = DedupSettings(), search: PairSearch = find_pairs,
           pixels: PixelOracle | None = None, probes: ProbeSets | None = None) -> Decisions:
    """Which candidates are kept, and every drop's record (see the module docstring for the order).

    `scenes`: one row per planned scene with a signature (source, scene, width, height, crs, footprint and the
    columns of scene_hash.signature_columns). `search` finds near pairs (hamming_search.find_pairs or its Dask
    form); `pixels` checks every hash- or footprint-proposed candidate on its pixels (without it hashes decide
    alone); `probes` enables the eval-leak search at any alignment."""
    n = len(cands)
    is_eval = cands["source"].isin(eval_sources).to_numpy()
    searchable = _searchable(cands, settings)
    table = _scene_table(cands, scenes)
    matches = _scene_matches(table, settings.radius, pixels)

    leaks = [exact_leaks(cands, is_eval)]
    left = ~is_eval & ~cands.index.isin(leaks[0].index)
    leaks.append(scene_leaks(cands, table, matches, left, eval_sources))
    left &= ~cands.index.isin(leaks[-1].index)
    leaks.append(near_leaks(cands, left & searchable, is_eval & searchable, settings, pixels))
    left &= ~cands.index.isin(leaks[-1].index)
    if probes is not None:
        leaks.append(alignment_free_leaks(cands, left, probes, settings, pixels))
        left &= ~cands.index.isin(leaks[-1].index)

    rank = keep_rank(cands.assign(scene_rank=scene_ranks(cands, priority)), priority)
    dups = [exact_duplicates(cands, left, rank)]
    left &= ~cands.index.isin(dups[-1].index)
    dups.append(scene_duplicates(cands, table, matches, left, priority, eval_sources))
    left &= ~cands.index.isin(dups[-1].index)
    if settings.radius > 0:
        dups.append(near_duplicates(cands, left, searchable, rank, settings, search, pixels))
        left &= ~cands.index.isin(dups[-1].index)
    duplicates = _resolve_kept(pd.concat(dups)) if n else dups[0]
    return Decisions(keep=left, duplicates=duplicates.reset_index(drop=True),
                     leaks=pd.concat(leaks).reset_index(drop=True))
