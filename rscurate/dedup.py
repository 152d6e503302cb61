"""Global decisions over all candidate tiles: eval-set leakage first, then duplicates.

Runs on slim rows (ids and hashes, no bytes). The keep rule is deterministic and independent of
worker count: manifest priority (higher first), then finer GSD, then the larger tile, then source
and scene name (so copies of a scene lose whole, not tile by tile), then id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class Decisions:
    keep: np.ndarray  # bool per candidate row (train rows only can be True)
    duplicates: pd.DataFrame  # rows of schema.DUPLICATES
    leaks: pd.DataFrame  # rows of schema.EXCLUDED with reason eval_leak


def keep_rank(cands: pd.DataFrame, priority: dict[str, int]) -> np.ndarray:
    """Position of each row in keep order (0 = kept first among equals)."""
    order = pd.DataFrame({
        "p": -cands["source"].map(priority).fillna(0).to_numpy(),
        "g": cands["gsd_m"].fillna(np.inf).to_numpy(),
        "a": -(cands["width"] * cands["height"]).to_numpy(),
        "s": cands["source"].to_numpy(),
        "sc": cands["scene"].to_numpy(),
        "id": cands["id"].to_numpy(),
    })
    sorted_idx = order.sort_values(["p", "g", "a", "s", "sc", "id"], kind="stable").index.to_numpy()
    rank = np.empty(len(cands), dtype=np.int64)
    rank[sorted_idx] = np.arange(len(cands))
    return rank


def _provenance(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: rows[c].to_numpy() for c in ("source", "scene", "x", "y", "width", "height")}


def exact_leaks(cands: pd.DataFrame, is_eval: np.ndarray) -> pd.DataFrame:
    """Training tiles whose pixels equal an eval tile's, with the eval tile named in `detail`."""
    ev = cands[is_eval]
    first = ev.drop_duplicates("sha256").set_index("sha256")
    train = cands[~is_eval]
    hit = train[train["sha256"].isin(first.index)]
    match = first.loc[hit["sha256"]]
    detail = [
        f"pixels equal eval tile {s}:{sc} window {x},{y},{w},{h}"
        for s, sc, x, y, w, h in zip(match["source"], match["scene"], match["x"], match["y"],
                                     match["width"], match["height"], strict=True)
    ]
    return pd.DataFrame({**_provenance(hit), "reason": "eval_leak", "detail": detail}, index=hit.index)


def exact_duplicates(cands: pd.DataFrame, eligible: np.ndarray, rank: np.ndarray) -> pd.DataFrame:
    """Within each group of identical pixels, every tile but the first in keep order is dropped."""
    pool = cands[eligible].assign(_rank=rank[eligible]).sort_values("_rank", kind="stable")
    firsts = pool.drop_duplicates("sha256")
    dropped = pool[pool.duplicated("sha256")]
    kept = firsts.set_index("sha256").loc[dropped["sha256"]]
    return pd.DataFrame({
        "id": dropped["id"].to_numpy(),
        **_provenance(dropped),
        "kept_id": kept["id"].to_numpy(),
        "kept_source": kept["source"].to_numpy(),
        "kept_scene": kept["scene"].to_numpy(),
        "kind": "exact",
        "distance": 0,
    }, index=dropped.index)


def decide(cands: pd.DataFrame, priority: dict[str, int], eval_sources: set[str]) -> Decisions:
    """Leakage, then exact duplicates; returns which candidates are kept and every drop's record."""
    is_eval = cands["source"].isin(eval_sources).to_numpy()
    leaks = exact_leaks(cands, is_eval)
    eligible = ~is_eval & ~cands.index.isin(leaks.index)
    duplicates = exact_duplicates(cands, eligible, keep_rank(cands, priority))
    keep = eligible & ~cands.index.isin(duplicates.index)
    return Decisions(keep=keep, duplicates=duplicates.reset_index(drop=True), leaks=leaks.reset_index(drop=True))
