"""Eval leakage at any alignment: where in the training scenes does each eval chip lie?

Probe hashes (rscurate/probes.py) of eval chips are matched against those of training tiles within the radius
(covering-table search, no all-pairs loop). Each match implies a placement of the whole chip in the training
scene: an offset (scene pixels) and a scale (training pixels per chip pixel). Matches of one chip in one scene
vote; the placement most of them agree on is checked on the pixels (pixel_check.placed, through `check`), and
when it holds, every training tile of that scene that holds at least half of the chip, or lies at least half
inside it, or holds more of it than any other tile, leaks. See docs/dedup.md ("Eval leakage at any alignment").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from rscurate.hamming_search import query_pairs
from rscurate.pixel_check import Similarity
from rscurate.probes import SCALE_RANGE

LEAK_SHARE = 0.5
"""A training tile leaks when it holds at least this share of the chip, or this share of it lies in the chip."""
VOTE_BIN = 0.05
"""Placements within this fraction of the chip's side (and of scale) vote together."""

# (eval row, train row, chip origin x, y in the train tile's pixels, train px per chip px) -> similarity
PlacementCheck = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], list[Similarity]]


@dataclass(frozen=True)
class Probes:
    """Probe hashes of candidate tiles: `cand` is the tile's row position in the candidate table, (x, y, w, h)
    the window in that tile's pixels."""

    cand: np.ndarray
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    h: np.ndarray
    phash: np.ndarray

    @classmethod
    def of(cls, frame: pd.DataFrame) -> Probes:
        return cls(*(frame[c].to_numpy() for c in ("cand", "x", "y", "w", "h")), frame["phash"].to_numpy(np.uint64))

    def take(self, mask: np.ndarray) -> Probes:
        return Probes(self.cand[mask], self.x[mask], self.y[mask], self.w[mask], self.h[mask], self.phash[mask])


def _placements(cands: pd.DataFrame, train: Probes, evals: Probes, radius: int) -> pd.DataFrame:
    """Every probe match as a placement of its eval chip in the training scene (scene pixels)."""
    q = query_pairs(train.phash, evals.phash, radius)
    t, e = q.index, q.query
    fx, fy = train.w[t] / evals.w[e], train.h[t] / evals.h[e]
    x0, y0 = cands["x"].to_numpy(np.float64), cands["y"].to_numpy(np.float64)
    tile, chip = train.cand[t], evals.cand[e]
    frame = pd.DataFrame({
        "chip": chip, "tile": tile,
        "ox": x0[tile] + train.x[t] - evals.x[e] * fx, "oy": y0[tile] + train.y[t] - evals.y[e] * fy,
        "scale": np.sqrt(fx * fy),
    })
    lo, hi = 1 / SCALE_RANGE[1] / 1.05, 1 / SCALE_RANGE[0] * 1.05
    return frame[(frame["scale"] >= lo) & (frame["scale"] <= hi) & (np.abs(np.log(fx / fy)) < 0.05)]


def _best_placements(cands: pd.DataFrame, found: pd.DataFrame) -> pd.DataFrame:
    """Per (chip, training scene): the placement with the most votes, and the tile holding most of its votes."""
    src, scene = cands["source"].to_numpy(), cands["scene"].to_numpy()
    side = cands["width"].to_numpy(np.float64)[found["chip"].to_numpy()] * found["scale"].to_numpy()
    frame = found.assign(
        source=src[found["tile"]], scene=scene[found["tile"]],
        bx=np.floor(found["ox"] / (VOTE_BIN * side)), by=np.floor(found["oy"] / (VOTE_BIN * side)),
        bs=np.floor(np.log(found["scale"]) / np.log(1 + VOTE_BIN)),
    )
    keys = ["chip", "source", "scene", "bx", "by", "bs"]
    votes = frame.groupby(keys, sort=False).agg(votes=("tile", "size"), ox=("ox", "median"), oy=("oy", "median"),
                                                 scale=("scale", "median"),
                                                 tile=("tile", lambda t: t.value_counts().index[0]))
    votes = votes.reset_index().sort_values(["chip", "source", "scene", "votes", "bx", "by", "bs"],
                                            ascending=[True, True, True, False, True, True, True])
    return votes.drop_duplicates(["chip", "source", "scene"]).reset_index(drop=True)


def _leaking_tiles(cands: pd.DataFrame, alive: np.ndarray, best: pd.DataFrame) -> pd.DataFrame:
    """Training tiles (row positions) under each confirmed placement, with the share of the chip each holds."""
    scene_rows = pd.DataFrame({"pos": np.flatnonzero(alive), "source": cands["source"].to_numpy()[alive],
                               "scene": cands["scene"].to_numpy()[alive]})
    chip_w = cands["width"].to_numpy(np.float64)[best["chip"]] * best["scale"].to_numpy()
    chip_h = cands["height"].to_numpy(np.float64)[best["chip"]] * best["scale"].to_numpy()
    placed = best.assign(cw=chip_w, ch=chip_h).merge(scene_rows, on=["source", "scene"])
    pos = placed["pos"].to_numpy()
    tx, ty = cands["x"].to_numpy(np.float64)[pos], cands["y"].to_numpy(np.float64)[pos]
    tw, th = cands["width"].to_numpy(np.float64)[pos], cands["height"].to_numpy(np.float64)[pos]
    ix = np.clip(np.minimum(tx + tw, placed["ox"] + placed["cw"]) - np.maximum(tx, placed["ox"]), 0, None)
    iy = np.clip(np.minimum(ty + th, placed["oy"] + placed["ch"]) - np.maximum(ty, placed["oy"]), 0, None)
    inter = (ix * iy).to_numpy()
    placed = placed.assign(of_chip=inter / (placed["cw"] * placed["ch"]).to_numpy(), of_tile=inter / (tw * th))
    placed = placed[inter > 0]
    most = placed.groupby(["chip", "source", "scene"])["of_chip"].transform("max")
    leak = (placed["of_chip"] >= LEAK_SHARE) | (placed["of_tile"] >= LEAK_SHARE) | (placed["of_chip"] == most)
    return placed[leak]


def probe_leaks(cands: pd.DataFrame, alive: np.ndarray, train: Probes, evals: Probes, radius: int,
                check: PlacementCheck | None) -> tuple[np.ndarray, list[str]]:
    """Training rows (positions, among `alive`) that hold an eval chip found at any offset and scale, and for each
    the `detail` naming the eval item, the placement and the share; nearest placement first per tile."""
    train = train.take(alive[train.cand])
    if not len(train.phash) or not len(evals.phash):
        return np.zeros(0, np.int64), []
    found = _placements(cands, train, evals, radius)
    if found.empty:
        return np.zeros(0, np.int64), []
    best = _best_placements(cands, found)
    if check is not None:
        tiles = best["tile"].to_numpy()
        sims = check(best["chip"].to_numpy(), tiles, best["ox"].to_numpy() - cands["x"].to_numpy()[tiles],
                     best["oy"].to_numpy() - cands["y"].to_numpy()[tiles], best["scale"].to_numpy())
        # the pixel check refines the votes' placement: use it for the shares each tile holds
        refined = np.array([s.placement or (np.nan, np.nan, np.nan) for s in sims], np.float64).reshape(-1, 3)
        at = np.stack([cands["x"].to_numpy()[tiles], cands["y"].to_numpy()[tiles], np.zeros(len(tiles))], axis=1)
        voted = best[["ox", "oy", "scale"]].to_numpy(np.float64)
        placement = np.where(np.isnan(refined), voted, refined + at)
        best = best.assign(corr=[s.correlation for s in sims], ox=placement[:, 0], oy=placement[:, 1],
                           scale=placement[:, 2])
        best = best[[s.same_content for s in sims]]
    else:
        best = best.assign(corr=np.nan)
    leaks = _leaking_tiles(cands, alive, best).sort_values(["pos", "of_chip"], ascending=[True, False])
    others = leaks.groupby("pos")["chip"].transform("size").to_numpy() - 1
    first = ~leaks["pos"].duplicated().to_numpy()
    leaks, others = leaks[first], others[first]
    src, scene = cands["source"].to_numpy(), cands["scene"].to_numpy()
    detail = [f"eval item {src[c]}:{scene[c]} lies at x={ox:.0f}, y={oy:.0f} of this scene at scale {1 / s:.2f} "
              f"(chip px per scene px; {v} probe matches, pixel correlation {r:.3f}); this tile holds "
              f"{share:.0%} of it" + (f" (and {n} other eval items)" if n else "") for c, ox, oy, s, v, r, share, n in
              zip(leaks["chip"], leaks["ox"], leaks["oy"], leaks["scale"], leaks["votes"], leaks["corr"],
                  leaks["of_chip"], others, strict=True)]
    return leaks["pos"].to_numpy(np.int64), detail
