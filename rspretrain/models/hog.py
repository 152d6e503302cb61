"""Batched HOG (histograms of oriented gradients) per patch, for any band count, in a few tensor ops.

Gradients are central differences per band (zero on the image border); at each pixel the band with the
strongest gradient votes (Dalal-Triggs' rule for colour images, which extends to any number of bands).
Votes are magnitude-weighted, softly split between the two nearest of `bins` unsigned orientations, and
summed over `cell` x `cell` cells.
No block normalisation: the absolute gradient energy is exactly what tells a textured patch from a flat one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _strongest_gradient(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel, (gx, gy, magnitude) of the band with the largest gradient; (B, H, W) each.

    Central differences on the interior; border pixels get zero gradient (as scikit-image's HOG does), which
    also spares a padded copy of every band.
    """
    gx = images[..., 1:-1, 2:] - images[..., 1:-1, :-2]
    gy = images[..., 2:, 1:-1] - images[..., :-2, 1:-1]
    mag2, strongest = (gx * gx + gy * gy).max(dim=1, keepdim=True)
    if images.shape[1] > 1:
        gx, gy = gx.gather(1, strongest), gy.gather(1, strongest)
    border = (1, 1, 1, 1)
    return F.pad(gx[:, 0], border), F.pad(gy[:, 0], border), F.pad(mag2[:, 0].sqrt(), border)


def hog_cells(images: torch.Tensor, cell: int, bins: int = 9) -> torch.Tensor:
    """(B, C, H, W) -> (B, bins, H // cell, W // cell) orientation histograms.

    Votes go straight into the cell histograms with one index_add (no full-resolution (B, bins, H, W)
    tensor): at 224 px this keeps HOG to a few milliseconds per batch, a small part of a SelectiveMAE step.
    """
    b, _, h, w = images.shape
    gh, gw = h // cell, w // cell
    images = images[..., : gh * cell, : gw * cell].float()
    gx, gy, mag = _strongest_gradient(images)
    pos = torch.atan2(gy, gx).remainder(math.pi) * (bins / math.pi) - 0.5  # unsigned, in bin units
    lower = pos.floor()
    frac = pos - lower
    lower = lower.long().remainder(bins)
    upper = (lower + 1).remainder(bins)
    rows = torch.arange(gh * cell, device=images.device) // cell
    cols = torch.arange(gw * cell, device=images.device) // cell
    cell_index = rows[:, None] * gw + cols[None, :]  # (H, W) -> cell number
    offset = (torch.arange(b, device=images.device) * bins)[:, None, None]
    hist = torch.zeros(b * bins * gh * gw, device=images.device)
    hist.index_add_(
        0, ((offset + lower) * (gh * gw) + cell_index).reshape(-1), (mag * (1 - frac)).reshape(-1)
    )
    hist.index_add_(0, ((offset + upper) * (gh * gw) + cell_index).reshape(-1), (mag * frac).reshape(-1))
    return hist.view(b, bins, gh, gw)


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


FLAT_GRADIENT = 1e-2  # mean gradient magnitude per pixel, in normalised (per-band std) units


def flat_patches(features: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, N, F) patch HOG vectors -> (B, N) bool: patches with (almost) no gradient anywhere.

    The votes of a patch's pixels sum to their gradient magnitudes, so the vector's sum over the patch's
    pixel count is the mean gradient. Below 1 % of a band's std per pixel a patch is fill or saturation
    (nodata is set to the band mean, i.e. exactly 0), not content; 8-bit quantisation alone gives more.
    """
    return features.sum(dim=-1) / (patch * patch) < FLAT_GRADIENT
