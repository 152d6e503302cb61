"""The ViT encoder shared by MAE and SelectiveMAE, built from timm blocks.

Its parameter names are timm's VisionTransformer names (cls_token, pos_embed, patch_embed.proj, blocks.N.*,
norm), so exporting is a key filter, not a translation table.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch import nn

from rspretrain.models.patch_embed import Rows, build_patch_embed, by_band_set
from rspretrain.models.patches import gather_tokens, patchify
from rspretrain.models.pos_embed import sincos_2d


@dataclass(frozen=True)
class VitShape:
    embed_dim: int
    depth: int
    num_heads: int
    # timm architecture (with a pretrained tag whose weights file is a plain state dict, so that
    # `pretrained_cfg_overlay=dict(file=...)` loads our file without custom_load) whose blocks match;
    # export passes the exact shape as kwargs
    timm_name: str


VIT_SIZES: dict[str, VitShape] = {
    "tiny": VitShape(192, 12, 3, "deit_tiny_patch16_224.fb_in1k"),
    "small": VitShape(384, 12, 6, "vit_small_patch16_224.dino"),
    "base": VitShape(768, 12, 12, "vit_base_patch16_224.mae"),
    "large": VitShape(1024, 24, 16, "vit_large_patch16_224.mae"),
    "huge": VitShape(1280, 32, 16, "vit_huge_patch14_224.mae"),
}

norm_layer = partial(nn.LayerNorm, eps=1e-6)


def init_mae_weights(module: nn.Module) -> None:
    """MAE's initialisation: xavier-uniform linears, unit LayerNorms."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class ViTEncoder(nn.Module):
    """Patch embedding + class token + fixed sin-cos positions + transformer blocks + final norm."""

    def __init__(
        self,
        in_chans: int,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depth: int,
        num_heads: int,
        patch_embed: str = "conv",
    ):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of patch_size {patch_size}")
        self.in_chans, self.img_size, self.patch_size = in_chans, img_size, patch_size
        self.embed_dim, self.depth, self.num_heads = embed_dim, depth, num_heads
        self.num_features = embed_dim  # width of the final tokens (timm's name)
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.patch_embed = build_patch_embed(patch_embed, in_chans, embed_dim, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(embed_dim, self.grid), requires_grad=False)
        self.blocks = nn.ModuleList(
            [
                Block(embed_dim, num_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(depth)
            ]
        )
        self.norm = norm_layer(embed_dim)
        self.apply(init_mae_weights)
        nn.init.normal_(self.cls_token, std=0.02)

    def embed(
        self, x: torch.Tensor, visible: torch.Tensor | None = None, wavelengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, K, D) tokens with positions of the patches in `visible` (B, K), or of all patches when None.

        With a visible set only those patches are projected: the convolution's kernel applied as a matrix to
        the gathered (p, p, C) patch vectors, so masked patches cost nothing (and get no gradient work).
        """
        if visible is None:
            return self.patch_embed(x, wavelengths) + self.pos_embed[:, 1:]
        patches = gather_tokens(patchify(x, self.patch_size), visible)

        def project(rows: Rows, waves: torch.Tensor | None) -> torch.Tensor:
            weight, bias = self.patch_embed.conv_weights(waves)
            matrix = weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1)  # (D, p*p*C) in patchify's order
            return F.linear(patches[rows], matrix.to(patches.dtype), bias.to(patches.dtype))

        pos = gather_tokens(self.pos_embed[:, 1:].expand(x.shape[0], -1, -1), visible)
        return by_band_set(wavelengths, x.shape[0], project) + pos

    def forward(
        self, x: torch.Tensor, visible: torch.Tensor | None = None, wavelengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Encode the patches listed in `visible` (B, K) (all patches when None) -> (B, 1 + K, D), normed."""
        tokens = self.embed(x, visible, wavelengths)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)
