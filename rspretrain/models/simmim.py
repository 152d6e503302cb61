"""SimMIM (Xie et al. 2022) on SwinV2, as SatVision-TOA pretrains it.

Random mask cells (`mask_patch_size` px, a multiple of the patch) cover `mask_ratio` of the image; a learned mask
token replaces the embeddings of the masked patches (the encoder sees the whole grid, so windows and shifts stay
regular); a 1x1 convolution to stride^2 * C channels and a PixelShuffle turn the final feature map back into
pixels; the loss is L1 over the masked pixels, divided by the band count (SimMIM's `loss / in_chans`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from torch import nn

from rspretrain.models.swin import SwinEncoder


@dataclass
class SimMIMOutput:
    """A training forward's result; the token counts feed the throughput logs as MAE's do."""

    loss: torch.Tensor
    pred: torch.Tensor  # (B, C, H, W) reconstruction
    mask: torch.Tensor  # (B, H, W) bool: pixels whose patch was masked
    tokens_encoded: int  # patches the encoder processes (all of them, masked ones as the mask token)
    decoder_queries: int  # pixels per band the decoder predicts


def check_mask_cell(img_size: int, cell: int, patch: int) -> None:
    if img_size % cell or cell % patch:
        raise ValueError(
            f"model.mask_patch_size {cell} must divide img_size {img_size} and be a multiple of patch_size {patch}"
        )


def random_cell_mask(
    batch: int, img_size: int, cell: int, patch: int, ratio: float, device: torch.device
) -> torch.Tensor:
    """(B, G, G) bool patch mask: ceil(ratio * cells) random mask cells of `cell` px per sample, upsampled to the
    patch grid G = img_size / patch (SimMIM's MaskGenerator, drawn with torch's RNG so a resume redraws it)."""
    check_mask_cell(img_size, cell, patch)
    side = img_size // cell
    count = math.ceil(side * side * ratio)
    order = torch.rand(batch, side * side, device=device).argsort(dim=1)
    cells = torch.zeros(batch, side * side, dtype=torch.bool, device=device)
    cells.scatter_(1, order[:, :count], True)
    scale = cell // patch
    return cells.view(batch, side, side).repeat_interleave(scale, 1).repeat_interleave(scale, 2)


class SimMIM(nn.Module):
    """SwinV2 encoder + mask token + 1x1-conv/PixelShuffle decoder + masked L1 loss."""

    def __init__(self, encoder: SwinEncoder, mask_ratio: float = 0.6, mask_patch_size: int = 8):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio, self.mask_patch_size = mask_ratio, mask_patch_size
        self.patch_size, self.in_chans = encoder.patch_size, encoder.in_chans
        self.num_patches = encoder.num_patches
        self.mask_token = nn.Parameter(torch.zeros(1, 1, encoder.embed_dim))
        trunc_normal_(self.mask_token, std=0.02)
        self.decoder = nn.Sequential(
            nn.Conv2d(encoder.num_features, encoder.stride**2 * encoder.in_chans, kernel_size=1),
            nn.PixelShuffle(encoder.stride),
        )
        check_mask_cell(encoder.img_size, mask_patch_size, self.patch_size)

    def set_progress(self, progress: float) -> None:
        """SimMIM has no curriculum."""

    def reconstruct(
        self, images: torch.Tensor, mask: torch.Tensor, wavelengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, C, H, W) prediction of `images` with the patches of `mask` (B, G, G) hidden from the encoder."""
        tokens = self.encoder.embed(images, wavelengths)
        hidden = mask.flatten(1)[..., None].to(tokens.dtype)
        tokens = tokens * (1 - hidden) + self.mask_token.to(tokens.dtype) * hidden
        features = self.encoder.encode(tokens).permute(0, 3, 1, 2)
        return self.decoder(features)

    def pixel_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """(B, G, G) patch mask -> (B, H, W) pixel mask."""
        p = self.patch_size
        return mask.repeat_interleave(p, 1).repeat_interleave(p, 2)

    def loss(self, images: torch.Tensor, pred: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
        """Mean absolute error per masked pixel and band: summed over bands, / masked pixels / band count."""
        weight = pixels[:, None].to(torch.float32)
        error = (pred.float() - images.float()).abs() * weight
        return error.sum() / (weight.sum() + 1e-5) / images.shape[1]

    def forward(self, images: torch.Tensor, wavelengths: torch.Tensor | None = None) -> SimMIMOutput:
        b, _, h, w = images.shape
        if h != self.encoder.img_size or w != self.encoder.img_size:
            raise ValueError(f"SimMIM takes {self.encoder.img_size} px images, got {h}x{w}")
        mask = random_cell_mask(b, h, self.mask_patch_size, self.patch_size, self.mask_ratio, images.device)
        pred = self.reconstruct(images, mask, wavelengths)
        pixels = self.pixel_mask(mask)
        return SimMIMOutput(
            loss=self.loss(images, pred, pixels),
            pred=pred,
            mask=pixels,
            tokens_encoded=self.encoder.num_patches,
            decoder_queries=h * w,
        )

    @torch.no_grad()
    def trivial_losses(self, images: torch.Tensor, out: SimMIMOutput) -> list[float]:
        """This loss for two predictors that learn nothing (engine.BASELINES): zeros (the band means, as inputs
        are normalised) and each image's per-band mean over its visible pixels."""
        visible = (~out.mask)[:, None].to(torch.float32)
        seen_mean = (images.float() * visible).sum((2, 3), keepdim=True) / visible.sum((2, 3), keepdim=True)
        zeros = self.loss(images, torch.zeros_like(images), out.mask)
        visible_mean = self.loss(images, seen_mean.expand_as(images), out.mask)
        return [float(zeros), float(visible_mean)]
