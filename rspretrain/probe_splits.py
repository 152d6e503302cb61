"""Stratified, repeated splits and the accuracy summaries of `rspretrain probe`.

Small labelled sets make one random split a lottery: a class can land entirely in train or test, and the spread
between seeds is as large as many differences between encoders. So every class is split in the same proportion,
each seed gives a new split, and reports carry the mean and spread over seeds.
"""

from __future__ import annotations

import numpy as np
import torch


def stratified_split(y: torch.Tensor, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, test) indices with round(n_c * test_fraction) of each class c in test, at least one of each class
    on both sides; a class with a single tile stays in train (it cannot be tested)."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test fraction must be between 0 and 1, got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in torch.unique(y).tolist():
        members = rng.permutation(torch.nonzero(y == c).flatten().numpy())
        n_test = 0 if len(members) < 2 else min(len(members) - 1, max(1, round(len(members) * test_fraction)))
        test += members[:n_test].tolist()
        train += members[n_test:].tolist()
    return torch.tensor(sorted(train)), torch.tensor(sorted(test))


def per_class_accuracy(pred: torch.Tensor, truth: torch.Tensor, classes: list[str]) -> dict[str, float | None]:
    """Accuracy within each class (None for a class with no test tile)."""
    return {
        name: float((pred[truth == c] == c).float().mean()) if bool((truth == c).any()) else None
        for c, name in enumerate(classes)
    }


def summarise(values: list[float]) -> dict[str, float | list[float]]:
    """Mean, sample standard deviation (0 for one value) and the per-seed values."""
    arr = np.asarray(values, dtype=float)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "seeds": values}


def mean_per_class(runs: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Per-class accuracy averaged over the seeds where that class was tested."""
    out: dict[str, float | None] = {}
    for name in runs[0]:
        vals = [r[name] for r in runs if r[name] is not None]
        out[name] = float(np.mean(vals)) if vals else None
    return out
