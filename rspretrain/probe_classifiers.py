"""The two frozen-feature classifiers of `rspretrain probe`, as published evaluations run them.

k-NN follows DINO (cosine similarity, votes weighted by exp(sim / T), T = 0.07), so near neighbours count more than
the k-th; the linear probe follows MAE (BatchNorm without affine parameters, then one linear layer, SGD with a
cosine schedule), which standardises features without giving the probe extra capacity. Both return predictions, so
overall and per-class accuracy come from one place (probe_splits).
"""

from __future__ import annotations

import math

import torch
from torch import nn

KNN_TEMPERATURE = 0.07


def knn_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    ks: tuple[int, ...],
    num_classes: int,
    temperature: float = KNN_TEMPERATURE,
) -> dict[int, torch.Tensor]:
    """Predicted class of each test row for every k: cosine neighbours, temperature-weighted votes."""
    a, b = nn.functional.normalize(train_x, dim=1), nn.functional.normalize(test_x, dim=1)
    sim, idx = (b @ a.T).topk(min(max(ks), len(a)), dim=1)
    weights = (sim / temperature).exp()
    out = {}
    for k in ks:
        votes = torch.zeros(len(b), num_classes)
        votes.scatter_add_(1, train_y[idx[:, :k]], weights[:, :k])
        out[k] = votes.argmax(1)
    return out


def fit(model: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, epochs: int,
        batch_size: int, gen: torch.Generator, min_rows: int = 1) -> None:
    """Minibatch cross-entropy training of a probe (rows cast to float32 per batch, so float16 caches stay small),
    the learning rate decaying to 0 on a cosine over every step; batches under `min_rows` rows are skipped."""
    batch_size = min(batch_size, len(x))
    total = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(order), batch_size):
            batch = order[i : i + batch_size]
            if len(batch) < min_rows:
                continue
            loss = nn.functional.cross_entropy(model(x[batch].float()), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def linear_predict(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    num_classes: int,
    seed: int,
    epochs: int = 100,
    lr: float = 0.1,
    batch_size: int = 256,
) -> torch.Tensor:
    """Predicted class of each test row: BatchNorm (no affine) + linear, SGD momentum 0.9, cosine decay to 0."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    # momentum=None: the running statistics are the exact average over all batches seen, where the default
    # exponential average of a short run on a small set is still far from the data's mean at test time
    norm = nn.BatchNorm1d(train_x.shape[1], affine=False, momentum=None)
    head = nn.Sequential(norm, nn.Linear(train_x.shape[1], num_classes))
    nn.init.trunc_normal_(head[1].weight, std=0.01)
    nn.init.zeros_(head[1].bias)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=0.9)
    fit(head, train_x, train_y, opt, epochs, batch_size, gen, min_rows=2)  # BatchNorm needs two rows
    head.eval()
    with torch.no_grad():
        return head(test_x).argmax(1)
