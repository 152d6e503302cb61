"""SelectiveMAE (Wang et al. 2024): encode few rich patches; reconstruct some of the rest by cross-attention.

Differences from MAE, each a cost saving: the encoder sees `1 - mask_ratio` of the patches (0.85 masking:
29 of 196 at 224/16): half of them the richest by HOG energy, the rest grown in two rounds by patch-embedding
similarity with a near -> far -> random curriculum; the decoder's queries are only `keep_ratio` of all
patches (49 of 196; `keep_of="masked"` takes the fraction of the masked ones instead), and they
cross-attend to the encoded tokens instead of running self-attention over the whole grid.
"""

from __future__ import annotations

import torch
from torch import nn

from rspretrain.models.base import MaskedAutoencoder, MaskedOutput
from rspretrain.models.cross_attention import CrossAttentionBlock
from rspretrain.models.encoder import ViTEncoder
from rspretrain.models.hog import flat_patches, patch_hog, richness
from rspretrain.models.mae import random_split
from rspretrain.models.patches import gather_tokens
from rspretrain.models.selection import curriculum_mix, grow_visible, sample_targets


def reconstruction_budget(num_patches: int, num_visible: int, keep_ratio: float, keep_of: str) -> int:
    """Decoder targets per sample: `keep_ratio` of all patches (published) or of the masked ones."""
    if keep_of not in ("all", "masked"):
        raise ValueError(f"model.keep_of must be all or masked, got {keep_of!r}")
    if not 0.0 < keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
    masked = num_patches - num_visible
    budget = max(1, int((num_patches if keep_of == "all" else masked) * keep_ratio))
    if budget > masked:
        raise ValueError(
            f"keep_ratio {keep_ratio} of all {num_patches} patches is {budget} targets, more than the {masked} "
            "masked ones: lower model.keep_ratio or raise model.mask_ratio"
        )
    return budget


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
        keep_of: str = "all",
        selection: str = "hog",
        seed_fraction: float = 0.5,
        similarity: str = "embedding",
        growth_rounds: int = 2,
        curriculum: tuple[float, ...] = (0.35, 0.375, 0.725, 0.75),
        hog_cell: int = 8,
        hog_bins: int = 9,
    ):
        super().__init__(encoder, decoder_dim, mask_ratio, norm_pix_loss)
        if selection not in ("hog", "random"):
            raise ValueError(f"model.selection must be hog or random, got {selection!r}")
        if similarity not in ("embedding", "hog"):
            raise ValueError(f"model.similarity must be embedding or hog, got {similarity!r}")
        if growth_rounds < 1:
            raise ValueError(f"model.growth_rounds must be at least 1, got {growth_rounds}")
        self.selection, self.similarity, self.growth_rounds = selection, similarity, growth_rounds
        self.seed_fraction = seed_fraction
        self.curriculum = tuple(curriculum)
        curriculum_mix(0.0, self.curriculum)  # validates the bounds now rather than mid-run
        self.hog_cell, self.hog_bins = hog_cell, hog_bins
        self.num_targets = reconstruction_budget(self.num_patches, self.num_visible, keep_ratio, keep_of)
        self.progress = 0.0
        self.decoder_blocks = nn.ModuleList(
            [CrossAttentionBlock(decoder_dim, decoder_heads) for _ in range(decoder_depth)]
        )
        self.init_decoder()

    def set_progress(self, progress: float) -> None:
        self.progress = float(progress)

    @torch.no_grad()
    def select(self, images: torch.Tensor, wavelengths: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K) visible patch indices for this batch."""
        b = images.shape[0]
        if self.selection == "random":
            return random_split(b, self.num_patches, self.num_visible, images.device)[0]
        with torch.autocast(images.device.type, enabled=False):
            hog = patch_hog(images.float(), self.patch_size, self.hog_cell, self.hog_bins)
        # the published growth compares patch embeddings (with positions), as the encoder will see them
        features = hog if self.similarity == "hog" else self.encoder.embed(images, None, wavelengths)
        num_seed = int(self.num_visible * self.seed_fraction)
        mix = curriculum_mix(self.progress, self.curriculum)
        flat = flat_patches(hog, self.patch_size)
        return grow_visible(features, richness(hog), self.num_visible, num_seed, mix, self.growth_rounds, flat)

    def forward(self, images: torch.Tensor, wavelengths: torch.Tensor | None = None) -> MaskedOutput:
        visible = self.select(images, wavelengths)
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
