"""SelectiveMAE's progressive semantic token selection: which patches the encoder sees.

A seed set of the richest patches (HOG energy) is grown to the visible budget by cosine similarity of HOG
vectors to the seeds: first the most similar ("near", an easy, coherent context), then the least similar
("far", diverse context), then at random; the stage boundaries are fractions of the run with linear blends
in between (the published 280/300/580/600 of 800 epochs). Everything is batched tensor ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEAR, FAR, RANDOM = 0, 1, 2


def curriculum_mix(progress: float, bounds: list[float] | tuple[float, ...]) -> tuple[float, float, float]:
    """Probabilities (near, far, random) of a sample's growth rule at `progress` (0..1) of the run."""
    b0, b1, b2, b3 = bounds
    if not 0 <= b0 <= b1 <= b2 <= b3 <= 1:
        raise ValueError(f"curriculum bounds must be increasing fractions of the run, got {bounds}")
    if progress < b0:
        return 1.0, 0.0, 0.0
    if progress < b1:
        t = (progress - b0) / (b1 - b0)
        return 1.0 - t, t, 0.0
    if progress < b2:
        return 0.0, 1.0, 0.0
    if progress < b3:
        t = (progress - b2) / (b3 - b2)
        return 0.0, 1.0 - t, t
    return 0.0, 0.0, 1.0


def curriculum_stage(progress: float, bounds: list[float] | tuple[float, ...]) -> str:
    near, far, rand = curriculum_mix(progress, bounds)
    names = [n for n, p in (("near", near), ("far", far), ("random", rand)) if p > 0]
    return "->".join(names)


def grow_visible(
    features: torch.Tensor,
    scores: torch.Tensor,
    num_visible: int,
    num_seed: int,
    mix: tuple[float, float, float],
) -> torch.Tensor:
    """(B, num_visible) patch indices: top-`num_seed` by score, plus the rest chosen by each sample's rule."""
    b, n, _ = features.shape
    num_seed = min(max(num_seed, 1), num_visible)
    seeds = scores.topk(num_seed, dim=1).indices
    unit = F.normalize(features.float(), dim=-1)
    seed_vecs = torch.gather(unit, 1, seeds[..., None].expand(-1, -1, unit.shape[-1]))
    similarity = (unit @ seed_vecs.transpose(1, 2)).amax(dim=2)  # (B, N): closeness to the seed set
    rule = torch.multinomial(torch.tensor(mix, device=features.device).float(), b, replacement=True)
    rule = rule.to(features.device)[:, None]
    noise = torch.rand(b, n, device=features.device)
    growth = torch.where(rule == NEAR, similarity, torch.where(rule == FAR, -similarity, noise))
    growth = growth.scatter(1, seeds, float("-inf"))
    extra = growth.topk(num_visible - num_seed, dim=1).indices
    return torch.cat([seeds, extra], dim=1)


def sample_targets(visible: torch.Tensor, num_patches: int, num_targets: int) -> torch.Tensor:
    """(B, num_targets) masked patches for the decoder to reconstruct, uniformly among the masked."""
    noise = torch.rand(visible.shape[0], num_patches, device=visible.device)
    noise = noise.scatter(1, visible, float("inf"))
    return noise.topk(num_targets, dim=1, largest=False).indices
