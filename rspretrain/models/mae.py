"""MAE (He et al. 2022): random masking, full-sequence decoder, norm-pix MSE on masked patches. Baseline."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import Block
from torch import nn

from rspretrain.models.base import MaskedAutoencoder, MaskedOutput
from rspretrain.models.encoder import ViTEncoder, norm_layer
from rspretrain.models.patches import gather_tokens


def random_split(
    batch: int, num_patches: int, num_keep: int, device: torch.device
) -> tuple[torch.Tensor, ...]:
    """Per sample, a random permutation split into kept (B, K) and masked (B, N-K) patch indices."""
    order = torch.rand(batch, num_patches, device=device).argsort(dim=1)
    return order[:, :num_keep], order[:, num_keep:]


class MAE(MaskedAutoencoder):
    """The decoder sees every position: encoded tokens at visible ones, the mask token elsewhere."""

    def __init__(
        self,
        encoder: ViTEncoder,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
    ):
        super().__init__(encoder, decoder_dim, mask_ratio, norm_pix_loss)
        self.decoder_blocks = nn.ModuleList(
            [
                Block(decoder_dim, decoder_heads, mlp_ratio=4.0, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(decoder_depth)
            ]
        )
        self.init_decoder()

    def forward(self, images: torch.Tensor, wavelengths: torch.Tensor | None = None) -> MaskedOutput:
        b = images.shape[0]
        visible, masked = random_split(b, self.num_patches, self.num_visible, images.device)
        latent = self.decoder_embed(self.encoder(images, visible, wavelengths))
        # scatter encoded tokens back to their grid positions; mask tokens fill the rest
        grid = self.mask_token.to(latent.dtype).expand(b, self.num_patches, -1).clone()
        grid = grid.scatter(1, visible[..., None].expand(-1, -1, grid.shape[-1]), latent[:, 1:])
        tokens = torch.cat([latent[:, :1], grid], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            tokens = block(tokens)
        pred = self.decoder_pred(self.decoder_norm(gather_tokens(tokens[:, 1:], masked)))
        return MaskedOutput(
            loss=self.loss(images, pred, masked),
            pred=pred,
            visible=visible,
            targets=masked,
            tokens_encoded=self.num_visible + 1,
            decoder_queries=self.num_patches + 1,
        )
