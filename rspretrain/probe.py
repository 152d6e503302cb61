"""`rspretrain probe`: what an exported encoder learned, measured as published evaluations do.

Frozen features (mean patch token) of labelled tiles feed temperature-weighted cosine k-NN (k = 5, 10, 20) and a
linear probe (BatchNorm without affine + linear, cosine schedule); the patch tokens themselves feed an efficient
attentive probe (learned queries, probe_attentive). All run over stratified splits repeated for several seeds (mean
and spread), for the exported weights and, in the same run, the same architecture at our random
initialisation (one init per seed): the number that says "learned something". Probe tiles that were pretraining
tiles are refused, dropped or flagged (probe_overlap). Features are cached; the report is JSON and Markdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from rspretrain.corpus import Corpus
from rspretrain.probe_attentive import EP_QUERIES, attentive_predict, check_queries
from rspretrain.probe_classifiers import knn_predict, linear_predict
from rspretrain.probe_features import FeatureCache, export_config, select_tiles
from rspretrain.probe_overlap import check_overlap
from rspretrain.probe_report import markdown, write_report
from rspretrain.probe_splits import mean_per_class, per_class_accuracy, stratified_split, summarise

KS = (5, 10, 20)


def run_probe(
    export_dir: Path,
    data: Path,
    out: Path | None = None,
    ks: tuple[int, ...] = KS,
    test_fraction: float = 0.3,
    seeds: int = 3,
    max_tiles: int | None = None,
    pretrain_data: Path | None = None,
    on_overlap: str = "refuse",
    cache_dir: Path | None = None,
    linear_epochs: int = 100,
    ep_epochs: int = 50,
    ep_queries: int = EP_QUERIES,
) -> dict[str, Any]:
    """Probe report (also written to out/report.json and out/report.md when `out` is given); ep_epochs=0 leaves
    the attentive probe out."""
    if seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {seeds}")
    if ep_epochs < 0:
        raise ValueError(f"--ep-epochs must be 0 (no attentive probe) or more, got {ep_epochs}")
    export_dir, data = Path(export_dir), Path(data)
    config = export_config(export_dir)
    if ep_epochs:
        check_queries(config["num_features"], ep_queries)  # before any tile is decoded
    corpus = Corpus(data)
    tiles = select_tiles(corpus, config["bands"], max_tiles, seed=0)
    tiles, overlap = check_overlap(tiles, export_dir, pretrain_data, on_overlap)
    classes = sorted(set(tiles.labels))
    if len(classes) < 2:
        raise ValueError(f"{data}: probes need at least two classes, found {classes}")
    y = torch.tensor([classes.index(label) for label in tiles.labels])
    cache = FeatureCache(cache_dir or (out / "features" if out else export_dir / "probe_features"), export_dir,
                         corpus, tiles)
    attentive = ["ep"] if ep_epochs else []
    metrics = [f"knn_k{k}" for k in ks] + ["linear"] + attentive
    per_class_metrics = [f"knn_k{max(ks)}", "linear"] + attentive
    encoders = ("pretrained", "random_init")
    acc: dict[str, dict[str, list[float]]] = {e: {m: [] for m in metrics} for e in encoders}
    per_class: dict[str, dict[str, list]] = {e: {m: [] for m in per_class_metrics} for e in encoders}
    for seed in range(seeds):
        train, test = stratified_split(y, test_fraction, seed)
        for encoder in encoders:
            name = "pretrained" if encoder == "pretrained" else f"random_init:{seed}"
            feats = cache.features(name)
            preds = {f"knn_k{k}": p for k, p in
                     knn_predict(feats[train], y[train], feats[test], ks, len(classes)).items()}
            preds["linear"] = linear_predict(feats[train], y[train], feats[test], len(classes), seed, linear_epochs)
            if ep_epochs:
                tokens = cache.tokens(name)
                preds["ep"] = attentive_predict(tokens[train], y[train], tokens[test], len(classes), seed, ep_epochs,
                                                ep_queries)
            for m in metrics:
                acc[encoder][m].append(float((preds[m] == y[test]).float().mean()))
            for m in per_class_metrics:
                per_class[encoder][m].append(per_class_accuracy(preds[m], y[test], classes))
    report: dict[str, Any] = {
        "export": str(export_dir),
        "data": str(data),
        "tiles": len(y),
        "classes": classes,
        "class_counts": {c: tiles.labels.count(c) for c in classes},
        "train": len(train),
        "test": len(test),
        "test_fraction": test_fraction,
        "seeds": list(range(seeds)),
        "metrics": metrics,
        "per_class_metrics": per_class_metrics,
        "encoders": list(encoders),
        "settings": {"linear_epochs": linear_epochs, "ep_epochs": ep_epochs, "ep_queries": ep_queries},
        "overlap": overlap,
        "cache": {"folder": str(cache.folder), "hits": cache.hits, "misses": cache.misses},
    }
    for e in encoders:
        report[e] = {m: summarise(acc[e][m]) for m in metrics}
        report[e]["per_class"] = {m: mean_per_class(per_class[e][m]) for m in per_class_metrics}
    write_report(out, report, markdown)
    return report
