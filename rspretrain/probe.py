"""Probes of what an exported encoder learned: k-NN and linear classification of labelled corpus tiles,
always next to the same architecture at random initialisation (the number that says "learned something").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rspretrain.augment import resize
from rspretrain.corpus import Corpus
from rspretrain.export import load_timm
from rspretrain.tiles import ROW_COLUMNS, CorruptTile, MissingBands, TileReader


def labelled_tiles(
    corpus: Corpus, bands: list[str], img_size: int, max_tiles: int | None = None, per_source: bool = True
) -> tuple[torch.Tensor, list[str]]:
    """Every labelled tile with the bands, resized to img_size and normalised as in training; and labels."""
    reader = TileReader(corpus, bands=bands, per_source=per_source)
    images, labels = [], []
    for group in corpus.row_groups:
        table = corpus.read_row_group(group, ROW_COLUMNS).to_pydict()
        for i, label in enumerate(table["label"]):
            if label is None:
                continue
            try:
                tile, plan = reader.raw({k: v[i] for k, v in table.items()})
            except (CorruptTile, MissingBands):
                continue
            images.append(TileReader.normalise(resize(tile, img_size), plan))
            labels.append(label)
            if max_tiles and len(labels) >= max_tiles:
                return torch.stack(images), labels
    if not labels:
        raise ValueError(f"{corpus.root}: no labelled tile with bands {bands}; probes need a `label` column")
    return torch.stack(images), labels


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Mean of the final (normed) patch tokens: MAE-style encoders probe better by patches than by cls."""
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        tokens = model.forward_features(images[i : i + batch])
        out.append(tokens[:, model.num_prefix_tokens :].mean(1))
    return torch.cat(out).float()


def knn_accuracy(
    train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor, k: int
) -> float:
    """Cosine k-NN with similarity-weighted votes."""
    a, b = nn.functional.normalize(train_x, dim=1), nn.functional.normalize(test_x, dim=1)
    sim, idx = (b @ a.T).topk(min(k, len(a)), dim=1)
    votes = torch.zeros(len(b), int(train_y.max()) + 1)
    votes.scatter_add_(1, train_y[idx], sim.clamp_min(0) + 1e-6)
    return float((votes.argmax(1) == test_y).float().mean())


def linear_accuracy(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    weight_decay: float = 1e-3,
) -> float:
    """Multinomial logistic regression on standardised features, fitted with full-batch L-BFGS."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    xtr, xte = (train_x - mean) / std, (test_x - mean) / std
    head = nn.Linear(xtr.shape[1], int(train_y.max()) + 1)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(xtr), train_y) + weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((head(xte).argmax(1) == test_y).float().mean())


def run_probe(
    export_dir: Path,
    data: Path,
    k: int = 5,
    test_fraction: float = 0.3,
    seed: int = 0,
    max_tiles: int | None = None,
) -> dict[str, Any]:
    config = json.loads((Path(export_dir) / "config.json").read_text())
    per_source = config.get("normalise", "global") == "source"
    images, labels = labelled_tiles(Corpus(data), config["bands"], config["img_size"], max_tiles, per_source)
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ValueError(f"probes need at least two classes, found {classes}")
    y = torch.tensor([classes.index(label) for label in labels])
    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    n_test = max(1, int(round(len(y) * test_fraction)))
    test, train = order[:n_test], order[n_test:]
    torch.manual_seed(seed)
    models = {"pretrained": load_timm(export_dir), "random_init": load_timm(export_dir, pretrained=False)}
    report: dict[str, Any] = {"tiles": len(y), "classes": classes, "train": len(train), "test": len(test)}
    for name, model in models.items():
        feats = embed(model, images)
        report[name] = {
            "knn": knn_accuracy(feats[train], y[train], feats[test], y[test], k),
            "linear": linear_accuracy(feats[train], y[train], feats[test], y[test]),
        }
    return report
