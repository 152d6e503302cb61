"""SelectiveMAE (Wang et al. 2024): encode few rich patches; reconstruct some of the rest by cross-attention.

Differences from MAE, each a cost saving: the encoder sees `1 - mask_ratio` of the patches (0.85 masking:
29 of 196 at 224/16), chosen by HOG richness and grown by a near -> far -> random curriculum; the decoder's
queries are only `keep_ratio` of the masked patches (mask token + position), and they cross-attend to the
encoded tokens instead of running self-attention over the whole grid.
"""

from __future__ import annotations

import torch
from torch import nn

from rspretrain.models.base import MaskedAutoencoder, MaskedOutput
from rspretrain.models.cross_attention import CrossAttentionBlock
from rspretrain.models.encoder import ViTEncoder
from rspretrain.models.hog import patch_hog, richness
from rspretrain.models.mae import random_split
from rspretrain.models.patches import gather_tokens
from rspretrain.models.selection import curriculum_mix, grow_visible, sample_targets


class SelectiveMAE(MaskedAutoencoder):
    def __init__(
        self,
        encoder: ViTEncoder,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mask_ratio: float = 0.85,
        keep_ratio: float = 0.25,
        norm_pix_loss: bool = True,
        selection: str = "hog",
        seed_fraction: float = 0.25,
        curriculum: tuple[float, ...] = (0.35, 0.375, 0.725, 0.75),
        hog_cell: int = 8,
        hog_bins: int = 9,
    ):
        super().__init__(encoder, decoder_dim, mask_ratio, norm_pix_loss)
        if selection not in ("hog", "random"):
            raise ValueError(f"model.selection must be hog or random, got {selection!r}")
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        self.selection = selection
        self.seed_fraction = seed_fraction
        self.curriculum = tuple(curriculum)
        curriculum_mix(0.0, self.curriculum)  # validates the bounds now rather than mid-run
        self.hog_cell, self.hog_bins = hog_cell, hog_bins
        self.num_targets = max(1, int((self.num_patches - self.num_visible) * keep_ratio))
        self.progress = 0.0
        self.decoder_blocks = nn.ModuleList(
            [CrossAttentionBlock(decoder_dim, decoder_heads) for _ in range(decoder_depth)]
        )
        self.init_decoder()

    def set_progress(self, progress: float) -> None:
        self.progress = float(progress)

    @torch.no_grad()
    def select(self, images: torch.Tensor) -> torch.Tensor:
        """(B, K) visible patch indices for this batch."""
        b = images.shape[0]
        if self.selection == "random":
            return random_split(b, self.num_patches, self.num_visible, images.device)[0]
        with torch.autocast(images.device.type, enabled=False):
            features = patch_hog(images.float(), self.patch_size, self.hog_cell, self.hog_bins)
        num_seed = round(self.num_visible * self.seed_fraction)
        mix = curriculum_mix(self.progress, self.curriculum)
        return grow_visible(features, richness(features), self.num_visible, num_seed, mix)

    def forward(self, images: torch.Tensor, wavelengths: torch.Tensor | None = None) -> MaskedOutput:
        visible = self.select(images)
        targets = sample_targets(visible, self.num_patches, self.num_targets)
        latent = self.decoder_embed(self.encoder(images, visible, wavelengths))
        pos = self.decoder_pos_embed.expand(images.shape[0], -1, -1)
        memory = latent + torch.cat([pos[:, :1], gather_tokens(pos[:, 1:], visible)], dim=1)
        queries = self.mask_token.to(latent.dtype) + gather_tokens(pos[:, 1:], targets)
        for block in self.decoder_blocks:
            queries = block(queries, memory)
        pred = self.decoder_pred(self.decoder_norm(queries))
        return MaskedOutput(
            loss=self.loss(images, pred, targets),
            pred=pred,
            visible=visible,
            targets=targets,
            tokens_encoded=self.num_visible + 1,
            decoder_queries=self.num_targets,
        )
