"""SelectiveMAE's progressive semantic token selection: which patches the encoder sees.

A seed set of the richest patches (HOG energy) is grown to the visible budget in `rounds` rounds; each round
adds its share of the budget by cosine similarity to everything chosen so far (patch embeddings in the
published method, HOG vectors as a variant): first the most similar ("near", an easy, coherent context),
then the least similar ("far", diverse context), then at random; the stage boundaries are fractions of the
run with linear blends in between (the published 280/300/580/600 of 800 epochs). Flat patches (nodata fill,
saturated cloud) are ranked after every textured patch in the near and far rules: a flat patch's HOG vector
is zero, so without that rule its similarity is the minimum and "far" would pick fill first.
Everything is batched tensor ops.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rspretrain.models.patches import gather_tokens

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
    rounds: int = 1,
    flat: torch.Tensor | None = None,
) -> torch.Tensor:
    """(B, num_visible) patch indices: top-`num_seed` by score, then the rest in `rounds` rounds by each
    sample's rule, similarity measured to all patches chosen before the round. `flat` (B, N) marks patches
    that near/far growth takes only when no other patch is left."""
    b, n, _ = features.shape
    num_seed = min(max(num_seed, 1), num_visible)
    seeds = scores.topk(num_seed, dim=1).indices
    chosen = torch.zeros(b, n, dtype=torch.bool, device=features.device).scatter(1, seeds, True)
    unit = F.normalize(features.float(), dim=-1)
    rule = torch.multinomial(torch.tensor(mix, device=features.device).float(), b, replacement=True)
    rule = rule.to(features.device)[:, None]
    noise = torch.rand(b, n, device=features.device)
    # similarities lie in [-1, 1]: a penalty of 4 puts every flat patch below every textured one
    penalty = 4.0 * (flat & (rule != RANDOM)) if flat is not None else 0.0
    picked, extra = [seeds], num_visible - num_seed
    for r in range(rounds):
        count = extra // rounds + (extra % rounds if r == rounds - 1 else 0)
        if count == 0:
            continue
        chosen_vecs = gather_tokens(unit, torch.cat(picked, dim=1))
        similarity = (unit @ chosen_vecs.transpose(1, 2)).amax(dim=2)  # (B, N): closeness to the chosen set
        growth = torch.where(rule == NEAR, similarity, torch.where(rule == FAR, -similarity, noise)) - penalty
        added = growth.masked_fill(chosen, float("-inf")).topk(count, dim=1).indices
        chosen = chosen.scatter(1, added, True)
        picked.append(added)
    return torch.cat(picked, dim=1)


def sample_targets(visible: torch.Tensor, num_patches: int, num_targets: int) -> torch.Tensor:
    """(B, num_targets) masked patches for the decoder to reconstruct, uniformly among the masked."""
    noise = torch.rand(visible.shape[0], num_patches, device=visible.device)
    noise = noise.scatter(1, visible, float("inf"))
    return noise.topk(num_targets, dim=1, largest=False).indices
