"""The SwinV2 encoder SimMIM trains: timm's SwinTransformerV2 with rspretrain's patch embedding.

It *is* timm's model (a subclass), so its parameter names are timm's `swinv2_*` names and exporting is a key
filter. Only the patch embedding is ours (conv or wavelength-conditioned, both with timm's `patch_embed.proj` /
`patch_embed.norm` names), so that SimMIM can swap masked patch embeddings for its mask token between the
embedding and the stages.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.swin_transformer_v2 import SwinTransformerV2

from rspretrain.models.patch_embed import build_patch_embed


@dataclass(frozen=True)
class SwinShape:
    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    # a registered timm architecture of this family; export passes the exact shape as model_args
    timm_name: str


SWIN_SIZES: dict[str, SwinShape] = {
    "tiny": SwinShape(96, (2, 2, 6, 2), (3, 6, 12, 24), "swinv2_tiny_window8_256"),
    "base": SwinShape(128, (2, 2, 18, 2), (4, 8, 16, 32), "swinv2_base_window8_256"),
    # SatVision-TOA's shapes (Spradlin et al. 2024): ~0.7B and ~3B parameters
    "huge": SwinShape(352, (2, 2, 18, 2), (4, 8, 16, 32), "swinv2_base_window8_256"),
    "giant": SwinShape(512, (2, 2, 42, 2), (16, 32, 64, 128), "swinv2_base_window8_256"),
}


class SwinEncoder(SwinTransformerV2):
    """(B, C, H, W) -> (B, H/s, W/s, F) final normed feature map, s = patch * 2^(stages - 1) (SimMIM's stride)."""

    def __init__(
        self,
        in_chans: int,
        img_size: int,
        patch_size: int,
        embed_dim: int,
        depths: tuple[int, ...] | list[int],
        num_heads: tuple[int, ...] | list[int],
        window_size: int = 8,
        patch_embed: str = "conv",
    ):
        if len(depths) != len(num_heads):
            raise ValueError(f"model.stage_depths {list(depths)} and stage_heads {list(num_heads)} differ in length")
        stride = patch_size * 2 ** (len(depths) - 1)
        if img_size % stride:
            raise ValueError(
                f"model.img_size {img_size} must be a multiple of {stride} (patch {patch_size} x 2^{len(depths) - 1} "
                "stage downsamplings) for SimMIM's pixel-shuffle decoder"
            )
        super().__init__(
            img_size=img_size,
            patch_size=patch_size,
            in_chans=in_chans,
            num_classes=0,
            embed_dim=embed_dim,
            depths=tuple(depths),
            num_heads=tuple(num_heads),
            window_size=window_size,
        )
        self.patch_embed = build_patch_embed(patch_embed, in_chans, embed_dim, patch_size, norm=True)
        self.img_size, self.patch_size, self.window_size = img_size, patch_size, window_size
        self.depths, self.num_heads = tuple(depths), tuple(num_heads)
        self.grid = img_size // patch_size
        self.num_patches = self.grid * self.grid
        self.stride = stride

    def embed(self, x: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, D) normed patch embeddings, row-major."""
        return self.patch_embed(x, wavelengths)

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch embeddings (B, N, D) through the stages and the final norm -> (B, h, w, F)."""
        b, n, d = tokens.shape
        x = self.layers(tokens.reshape(b, self.grid, self.grid, d))
        return self.norm(x)

    def forward(self, x: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.encode(self.embed(x, wavelengths))
