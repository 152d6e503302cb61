"""Patch embeddings for any band count.

`ConvPatchEmbed` is the plain stride-p convolution (timm-compatible: its weight is `proj.weight`).
`WavelengthPatchEmbed` generates that convolution's per-band kernels from each band's centre wavelength,
so one model can take different band sets; for a fixed band set it bakes down to a plain convolution
(see export). Both end in timm's `norm` (a LayerNorm for SwinV2, identity for the ViT), so their parameter
names are timm's PatchEmbed names.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from rspretrain.models.pos_embed import sincos_1d

Rows = slice | torch.Tensor  # the samples of a batch one band set covers


def by_band_set(
    wavelengths: torch.Tensor | None, batch: int, embed: Callable[[Rows, torch.Tensor | None], torch.Tensor]
) -> torch.Tensor:
    """`embed(rows, band wavelengths)` once per distinct band set of the batch, reassembled in batch order.

    `wavelengths` is (C,) for the whole batch or (B, C) per sample: tiles whose bands share names can still differ
    in wavelength (sources of different sensors), and each sample must be embedded with its own bands' kernels.
    """
    if wavelengths is None or wavelengths.ndim == 1:
        return embed(slice(None), wavelengths)
    if wavelengths.shape[0] != batch:
        raise ValueError(f"wavelengths of shape {tuple(wavelengths.shape)} do not match a batch of {batch}")
    # unique() treats every NaN as distinct: key on a sentinel; the kernels still see (and refuse) the NaN
    _, inverse = torch.unique(torch.nan_to_num(wavelengths, nan=-1.0), dim=0, return_inverse=True)
    if int(inverse.max()) == 0:
        return embed(slice(None), wavelengths[0])
    groups = [torch.nonzero(inverse == k).squeeze(1) for k in range(int(inverse.max()) + 1)]
    out = torch.cat([embed(rows, wavelengths[rows[0]]) for rows in groups])
    return out[torch.cat(groups).argsort()]


class ConvPatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, N, D) with one stride-p convolution; wavelengths are accepted and ignored."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm: bool = False):
        super().__init__()
        self.in_chans, self.embed_dim, self.patch_size = in_chans, embed_dim, patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()
        # MAE initialises the patch projection like a linear layer
        nn.init.xavier_uniform_(self.proj.weight.view(embed_dim, -1))

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))

    def conv_weights(self, wavelengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj.weight, self.proj.bias


class WavelengthPatchEmbed(nn.Module):
    """Kernels generated per band from its wavelength (micrometres) by a small MLP (DOFA-style)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, norm: bool = False, hidden: int = 128):
        super().__init__()
        self.in_chans, self.embed_dim, self.patch_size = in_chans, embed_dim, patch_size
        self.hidden = hidden
        self.generator = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, embed_dim * patch_size * patch_size)
        )
        self.bias = nn.Parameter(torch.zeros(embed_dim))
        self.norm = nn.LayerNorm(embed_dim) if norm else nn.Identity()
        nn.init.normal_(self.generator[-1].weight, std=0.02)
        nn.init.zeros_(self.generator[-1].bias)

    def conv_weights(self, wavelengths: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(D, C, p, p) kernels and bias for bands at `wavelengths` (C,)."""
        if wavelengths is None or torch.isnan(wavelengths).any():
            raise ValueError("the wavelength patch embedding needs every selected band's wavelength_um")
        # nanometre-scale positions give the sin-cos features a useful frequency range
        feats = sincos_1d(self.hidden, wavelengths.detach().double().cpu() * 1000).to(self.bias)
        kernels = self.generator(feats).view(-1, self.embed_dim, self.patch_size, self.patch_size)
        weight = kernels.transpose(0, 1) / math.sqrt(kernels.shape[0])
        return weight, self.bias

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        """`wavelengths` (C,) for the batch or (B, C) per sample; the band count is x's, any C."""

        def project(rows: Rows, waves: torch.Tensor | None) -> torch.Tensor:
            weight, bias = self.conv_weights(waves)
            return nn.functional.conv2d(x[rows], weight.to(x.dtype), bias.to(x.dtype), stride=self.patch_size)

        return self.norm(by_band_set(wavelengths, x.shape[0], project).flatten(2).transpose(1, 2))


def build_patch_embed(kind: str, in_chans: int, embed_dim: int, patch_size: int, norm: bool = False) -> nn.Module:
    if kind == "conv":
        return ConvPatchEmbed(in_chans, embed_dim, patch_size, norm)
    if kind == "wavelength":
        return WavelengthPatchEmbed(in_chans, embed_dim, patch_size, norm)
    raise ValueError(f"model.patch_embed must be conv or wavelength, got {kind!r}")
