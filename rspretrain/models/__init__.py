"""Masked-image pretraining models and the one place that builds them from a config."""

from __future__ import annotations

from rspretrain.config import ModelConfig
from rspretrain.models.base import MaskedAutoencoder, MaskedOutput
from rspretrain.models.encoder import VIT_SIZES, ViTEncoder
from rspretrain.models.mae import MAE
from rspretrain.models.selective_mae import SelectiveMAE

__all__ = [
    "MAE",
    "MaskedAutoencoder",
    "MaskedOutput",
    "SelectiveMAE",
    "VIT_SIZES",
    "ViTEncoder",
    "build_model",
    "build_encoder",
]


def build_encoder(cfg: ModelConfig, in_chans: int) -> ViTEncoder:
    if cfg.size not in VIT_SIZES:
        raise ValueError(f"model.size must be one of {sorted(VIT_SIZES)}, got {cfg.size!r}")
    shape = VIT_SIZES[cfg.size]
    return ViTEncoder(
        in_chans=in_chans,
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim or shape.embed_dim,
        depth=cfg.depth or shape.depth,
        num_heads=cfg.num_heads or shape.num_heads,
        patch_embed=cfg.patch_embed,
    )


def build_model(cfg: ModelConfig, in_chans: int) -> MaskedAutoencoder:
    """The configured objective around a fresh encoder."""
    encoder = build_encoder(cfg, in_chans)
    common = dict(
        decoder_dim=cfg.decoder_dim,
        decoder_depth=cfg.decoder_depth,
        decoder_heads=cfg.decoder_heads,
        mask_ratio=cfg.resolved_mask_ratio(),
        norm_pix_loss=cfg.norm_pix_loss,
    )
    if cfg.method == "mae":
        return MAE(encoder, **common)
    if cfg.method == "selective_mae":
        return SelectiveMAE(
            encoder,
            keep_ratio=cfg.keep_ratio,
            keep_of=cfg.keep_of,
            selection=cfg.selection,
            seed_fraction=cfg.seed_fraction,
            similarity=cfg.similarity,
            growth_rounds=cfg.growth_rounds,
            curriculum=tuple(cfg.curriculum),
            hog_cell=cfg.hog_cell,
            hog_bins=cfg.hog_bins,
            **common,
        )
    raise ValueError(f"model.method must be mae or selective_mae, got {cfg.method!r}")
