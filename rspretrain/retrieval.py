"""`rspretrain retrieve`: a label-free real-data evaluation, co-located retrieval across acquisitions.

Each query tile (one source or scene: one date) is matched by cosine similarity of frozen features against every
gallery tile (another date). The ground truth needs no annotation: it is geometry. A query's true match is the
gallery tile in the same CRS whose footprint overlaps it most, if that overlap has IoU >= MIN_IOU; queries without
one are not scored. Recall@k is the share of scored queries whose match ranks within the k most similar gallery
tiles (cosine of features centred per acquisition). Features and random-init baselines are those of
`rspretrain probe` (probe_features), so both evaluations compare the same encoders the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rspretrain.corpus import Corpus
from rspretrain.probe_features import FeatureCache, ProbeTiles, export_config
from rspretrain.probe_report import write_report
from rspretrain.probe_splits import summarise

MIN_IOU = 0.5
KS = (1, 5)
_COLUMNS = ["id", "sha256", "bands", "source", "scene", "crs", "minx", "miny", "maxx", "maxy"]


@dataclass
class PlacedTiles:
    """Tiles of one acquisition with their footprints: (N, 4) minx, miny, maxx, maxy and the CRS of each."""

    tiles: ProbeTiles
    crs: list[str | None]
    boxes: np.ndarray


def placed_tiles(corpus: Corpus, name: str, bands: list[str]) -> PlacedTiles:
    """The tiles whose source or scene is `name` and that carry every band, with their footprints."""
    ids, shas, locs, crs, boxes = [], [], [], [], []
    seen: set[str] = set()
    for g, group in enumerate(corpus.row_groups):
        table = corpus.read_row_group(group, _COLUMNS).to_pydict()
        if "minx" not in table:
            raise ValueError(f"{corpus.root}: shards have no footprint columns (crs, minx..maxy); rebuild the corpus")
        for i in range(group.num_rows):
            seen.update((table["source"][i], table["scene"][i]))
            if name not in (table["source"][i], table["scene"][i]) or not set(bands) <= set(table["bands"][i] or []):
                continue
            ids.append(table["id"][i])
            shas.append(table["sha256"][i])
            locs.append((g, i))
            crs.append(table["crs"][i])
            boxes.append([table[k][i] for k in ("minx", "miny", "maxx", "maxy")])
    if not ids:
        known = ", ".join(sorted(s for s in seen if s)[:20])
        raise ValueError(f"{corpus.root}: no tile of source or scene {name!r} with bands {bands}; known: {known}")
    box_array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return PlacedTiles(ProbeTiles(ids, shas, [name] * len(ids), locs), crs, box_array)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of axis-aligned boxes (minx, miny, maxx, maxy)."""
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    union = _area(a)[:, None] + _area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def true_matches(query: PlacedTiles, gallery: PlacedTiles, min_iou: float = MIN_IOU) -> np.ndarray:
    """Index of each query's gallery match (largest IoU in the same CRS, at least min_iou), -1 where none."""
    overlap = iou(query.boxes, gallery.boxes)
    same_crs = np.asarray(query.crs, dtype=object)[:, None] == np.asarray(gallery.crs, dtype=object)[None, :]
    overlap = np.where(same_crs & np.isfinite(overlap), overlap, 0.0)
    best = overlap.argmax(1)
    return np.where(overlap[np.arange(len(best)), best] >= min_iou, best, -1)


def recall_at(query: torch.Tensor, gallery: torch.Tensor, match: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
    """Share of queries with a match (match >= 0) whose match is among the k gallery rows of highest cosine.

    Each acquisition's features are centred on their own mean first: a date's global shift (haze, season, sensor
    gain) otherwise dominates every cosine, and all queries retrieve the same few gallery tiles (measured on the
    eo-learn series: recall exactly at chance for every encoder, docs/pretraining.md)."""
    scored = torch.from_numpy(np.nonzero(match >= 0)[0])
    query, gallery = query.float() - query.float().mean(0), gallery.float() - gallery.float().mean(0)
    sims = torch.nn.functional.normalize(query[scored], dim=1) @ torch.nn.functional.normalize(gallery, dim=1).T
    truth = torch.from_numpy(match[scored.numpy()])
    rank = (sims > sims.gather(1, truth[:, None])).sum(1)  # gallery tiles strictly more similar than the match
    return {k: float((rank < k).float().mean()) for k in ks}


def run_retrieval(
    export_dir: Path,
    data: Path,
    query: str,
    gallery: str,
    out: Path | None = None,
    seeds: int = 3,
    ks: tuple[int, ...] = KS,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Retrieval report (also written to out/report.json and out/report.md when `out` is given)."""
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    export_dir, data = Path(export_dir), Path(data)
    config = export_config(export_dir)
    corpus = Corpus(data)
    q, g = placed_tiles(corpus, query, config["bands"]), placed_tiles(corpus, gallery, config["bands"])
    if set(q.tiles.ids) & set(g.tiles.ids):
        raise ValueError(f"--query {query!r} and --gallery {gallery!r} share tiles; name two different acquisitions")
    match = true_matches(q, g)
    if not (match >= 0).any():
        raise ValueError(
            f"{data}: no {query!r} tile overlaps a {gallery!r} tile with IoU >= {MIN_IOU} in the same CRS; "
            "retrieval needs two acquisitions of the same place"
        )
    both = q.tiles + g.tiles
    cache = FeatureCache(cache_dir or (out / "features" if out else export_dir / "retrieval_features"), export_dir,
                         corpus, both)
    n = len(q.tiles.ids)
    results: dict[str, dict[int, list[float]]] = {}
    for encoder, names in (("pretrained", ["pretrained"]), ("random_init", [f"random_init:{s}" for s in range(seeds)])):
        results[encoder] = {k: [] for k in ks}
        for name in names:
            feats = cache.features(name)
            for k, r in recall_at(feats[:n], feats[n:], match, ks).items():
                results[encoder][k].append(r)
    report: dict[str, Any] = {
        "export": str(export_dir),
        "data": str(data),
        "query": query,
        "gallery": gallery,
        "query_tiles": n,
        "gallery_tiles": len(g.tiles.ids),
        "scored_queries": int((match >= 0).sum()),
        "min_iou": MIN_IOU,
        "similarity": "cosine of mean patch tokens, centred on each acquisition's mean",
        "seeds": list(range(seeds)),
        "metrics": [f"recall@{k}" for k in ks],
        "chance": {f"recall@{k}": min(1.0, k / len(g.tiles.ids)) for k in ks},
        "encoders": list(results),
        "cache": {"folder": str(cache.folder), "hits": cache.hits, "misses": cache.misses},
    }
    for encoder, by_k in results.items():
        report[encoder] = {f"recall@{k}": summarise(v) for k, v in by_k.items()}
    write_report(out, report, markdown)
    return report


def markdown(report: dict[str, Any]) -> str:
    """Recall mean ± std per encoder (the pretrained encoder is one deterministic run, std 0), with chance level."""
    metrics = report["metrics"]
    lines = [
        f"# Cross-date retrieval of `{report['export']}` on `{report['data']}`",
        "",
        f"Query `{report['query']}` ({report['query_tiles']} tiles, {report['scored_queries']} with a match of "
        f"IoU >= {report['min_iou']}) against gallery `{report['gallery']}` ({report['gallery_tiles']} tiles). "
        f"Random init: seeds {report['seeds']}, mean ± sample std.",
        "",
        "| encoder | " + " | ".join(metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
    ]
    lines += [f"| {e} | " + " | ".join(f"{report[e][m]['mean']:.3f} ± {report[e][m]['std']:.3f}" for m in metrics)
              + " |" for e in report["encoders"]]
    lines.append("| chance | " + " | ".join(f"{report['chance'][m]:.3f}" for m in metrics) + " |")
    return "\n".join(lines) + "\n"
