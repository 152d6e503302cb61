"""What MAE and SelectiveMAE share: the encoder, the decoder's input/output projections and the loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rspretrain.models.encoder import ViTEncoder, init_mae_weights, norm_layer
from rspretrain.models.patches import gather_tokens, norm_pix_target, patchify
from rspretrain.models.pos_embed import sincos_2d


@dataclass
class MaskedOutput:
    """A training forward's result; the token counts are per sample and feed the throughput logs."""

    loss: torch.Tensor
    pred: torch.Tensor  # (B, Q, p*p*C) predictions for the patches in `targets`
    visible: torch.Tensor  # (B, K) indices of encoded patches
    targets: torch.Tensor  # (B, Q) indices of reconstructed patches
    tokens_encoded: int  # encoder sequence length, class token included
    decoder_queries: int  # tokens the decoder predicts


class MaskedAutoencoder(nn.Module):
    """Encoder + decoder embedding/mask token/positions/prediction head + norm-pix MSE loss."""

    def __init__(self, encoder: ViTEncoder, decoder_dim: int, mask_ratio: float, norm_pix_loss: bool = True):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        self.encoder = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_size, self.in_chans = encoder.patch_size, encoder.in_chans
        self.num_patches = encoder.num_patches
        self.num_visible = max(1, int(self.num_patches * (1 - mask_ratio)))
        self.decoder_embed = nn.Linear(encoder.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(decoder_dim, encoder.grid), requires_grad=False)
        self.decoder_norm = norm_layer(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch_size**2 * self.in_chans)

    def init_decoder(self) -> None:
        for name, module in self.named_modules():
            if not name.startswith("encoder"):
                init_mae_weights(module)
        nn.init.normal_(self.mask_token, std=0.02)

    def set_progress(self, progress: float) -> None:
        """Fraction of the run done; objectives with a curriculum override this."""

    @torch.no_grad()
    def trivial_losses(self, images: torch.Tensor, out: MaskedOutput) -> list[float]:
        """The loss of two predictors that learn nothing, on this step's targets (see engine.BASELINES).

        Zeros is the mean of every target (a norm-pix target is standardised per patch, so it scores ~1); the
        visible mean predicts every hidden patch as the mean of the image's visible (normalised) patches. A
        run has learned something only once its loss is below both, which the raw loss alone cannot show.
        """
        patches = patchify(images.float(), self.patch_size)
        target = norm_pix_target(gather_tokens(patches, out.targets), self.norm_pix_loss)
        seen = norm_pix_target(gather_tokens(patches, out.visible), self.norm_pix_loss)
        zeros = target.pow(2).mean()
        visible_mean = (target - seen.mean(dim=1, keepdim=True)).pow(2).mean()
        return [float(zeros), float(visible_mean)]

    def loss(self, images: torch.Tensor, pred: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean squared error between predictions and (norm-pix) targets, over the `targets` patches."""
        target = gather_tokens(patchify(images, self.patch_size), targets)
        target = norm_pix_target(target.float(), self.norm_pix_loss)
        return ((pred.float() - target) ** 2).mean()
