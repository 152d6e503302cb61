"""Patch embeddings for any band count.

`ConvPatchEmbed` is the plain stride-p convolution (timm-compatible: its weight is `proj.weight`).
`WavelengthPatchEmbed` generates that convolution's per-band kernels from each band's centre wavelength,
so one model can take different band sets; for a fixed band set it bakes down to a plain convolution
(see export).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rspretrain.models.pos_embed import sincos_1d


class ConvPatchEmbed(nn.Module):
    """(B, C, H, W) -> (B, N, D) with one stride-p convolution; wavelengths are accepted and ignored."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int):
        super().__init__()
        self.in_chans, self.embed_dim, self.patch_size = in_chans, embed_dim, patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)
        # MAE initialises the patch projection like a linear layer
        nn.init.xavier_uniform_(self.proj.weight.view(embed_dim, -1))

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)

    def conv_weights(self, wavelengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj.weight, self.proj.bias


class WavelengthPatchEmbed(nn.Module):
    """Kernels generated per band from its wavelength (micrometres) by a small MLP (DOFA-style)."""

    def __init__(self, in_chans: int, embed_dim: int, patch_size: int, hidden: int = 128):
        super().__init__()
        self.in_chans, self.embed_dim, self.patch_size = in_chans, embed_dim, patch_size
        self.hidden = hidden
        self.generator = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, embed_dim * patch_size * patch_size)
        )
        self.bias = nn.Parameter(torch.zeros(embed_dim))
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
        if wavelengths is not None and wavelengths.ndim == 2:
            wavelengths = wavelengths[0]  # a batch shares its band set (one band plan per run)
        weight, bias = self.conv_weights(wavelengths)
        out = nn.functional.conv2d(x, weight.to(x.dtype), bias.to(x.dtype), stride=self.patch_size)
        return out.flatten(2).transpose(1, 2)


def build_patch_embed(kind: str, in_chans: int, embed_dim: int, patch_size: int) -> nn.Module:
    if kind == "conv":
        return ConvPatchEmbed(in_chans, embed_dim, patch_size)
    if kind == "wavelength":
        return WavelengthPatchEmbed(in_chans, embed_dim, patch_size)
    raise ValueError(f"model.patch_embed must be conv or wavelength, got {kind!r}")
