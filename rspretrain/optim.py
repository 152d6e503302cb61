"""AdamW with MAE's parameter grouping and the warmup + half-cycle cosine learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from rspretrain.config import ModelConfig

# SwinV2's attention temperature and continuous position-bias MLP are exempt too, as in SimMIM's optimizer
NO_DECAY_NAMES = ("pos_embed", "cls_token", "mask_token", "logit_scale", "cpb_mlp")


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms, biases, position embeddings/biases and learned tokens are exempt."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or name.endswith(".bias") or any(k in name for k in NO_DECAY_NAMES):
            no_decay.append(p)
        else:
            decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all tensors) on CPU and CUDA: the update is memory-bound, and at ViT-B
    size the unfused per-tensor loop costs as much as a SelectiveMAE forward+backward."""
    device = next(model.parameters()).device.type
    fused = device in ("cpu", "cuda")
    return torch.optim.AdamW(param_groups(model, weight_decay), lr=lr, betas=betas, fused=fused)


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> float:
    """Linear warmup to base_lr over warmup_steps, then half-cycle cosine down to min_lr at total_steps."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(total_steps - warmup_steps, 1)
    progress = min((step - warmup_steps) / span, 1.0)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def effective_lr(blr: float, lr: float | None, effective_batch: int, scale: float = 1.0) -> float:
    """MAE's linear scaling rule: lr = blr * effective_batch / 256 * scale, unless an absolute lr is given."""
    return lr if lr is not None else blr * effective_batch / 256 * scale


def reconstruction_lr_scale(model: ModelConfig, rule: str) -> float:
    """SelectiveMAE's published lr factor, kept / mask ratio (0.25 / 0.85 = 0.29): its decoder reconstructs
    only that share of the masked patches. 1 for MAE (every masked patch) and for rule `none`."""
    if rule == "none" or model.method != "selective_mae":
        return 1.0
    mask = model.resolved_mask_ratio()
    return model.keep_ratio if model.keep_of == "masked" else model.keep_ratio / mask
