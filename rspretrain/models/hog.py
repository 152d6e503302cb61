"""Batched HOG (histograms of oriented gradients) per patch, for any band count, in a few tensor ops.

Gradients are central differences per band; at each pixel the band with the strongest gradient votes
(Dalal-Triggs' rule for colour images, which extends to any number of bands). Votes are magnitude-weighted,
softly split between the two nearest of `bins` unsigned orientations, and summed over `cell` x `cell` cells.
No block normalisation: the absolute gradient energy is exactly what tells a textured patch from a flat one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _gradients(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    gx = padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]
    gy = padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]
    return gx, gy


def hog_cells(images: torch.Tensor, cell: int, bins: int = 9) -> torch.Tensor:
    """(B, C, H, W) -> (B, bins, H // cell, W // cell) orientation histograms."""
    images = images.float()
    gx, gy = _gradients(images)
    mag2 = gx * gx + gy * gy
    strongest = mag2.argmax(dim=1, keepdim=True)
    gx, gy = gx.gather(1, strongest), gy.gather(1, strongest)
    mag = mag2.gather(1, strongest).sqrt()
    angle = torch.atan2(gy, gx) % math.pi  # unsigned orientation in [0, pi)
    pos = angle * (bins / math.pi) - 0.5
    lower = pos.floor()
    frac = pos - lower
    lower = lower.long() % bins
    upper = (lower + 1) % bins
    hist = torch.zeros(images.shape[0], bins, *images.shape[-2:], device=images.device)
    hist.scatter_add_(1, lower, mag * (1 - frac))
    hist.scatter_add_(1, upper, mag * frac)
    return F.avg_pool2d(hist, cell) * (cell * cell)


def patch_hog(images: torch.Tensor, patch: int, cell: int = 8, bins: int = 9) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, (patch // cell)^2 * bins): the HOG vector of every patch, row-major patches."""
    cell = cell if 0 < cell <= patch and patch % cell == 0 else patch
    hist = hog_cells(images, cell, bins)
    b, _, gh, gw = hist.shape
    k = patch // cell
    hist = hist.reshape(b, bins, gh // k, k, gw // k, k).permute(0, 2, 4, 3, 5, 1)
    return hist.reshape(b, (gh // k) * (gw // k), k * k * bins)


def richness(features: torch.Tensor) -> torch.Tensor:
    """(B, N, F) patch HOG vectors -> (B, N) score: the L2 norm, i.e. oriented gradient energy.

    The released SelectiveMAE code z-scores each HOG vector and ranks by its mean, which is 0 by construction;
    its ranking is therefore arbitrary. The norm grows with edges and texture and is ~0 on flat patches.
    """
    return features.norm(dim=-1)
