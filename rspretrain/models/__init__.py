"""Masked-image pretraining models and the one place that builds them from a config."""

from __future__ import annotations

from rspretrain.config import ModelConfig
from rspretrain.models.base import MaskedAutoencoder, MaskedOutput
from rspretrain.models.encoder import VIT_SIZES, ViTEncoder
from rspretrain.models.mae import MAE
from rspretrain.models.selective_mae import SelectiveMAE
from rspretrain.models.simmim import SimMIM, SimMIMOutput
from rspretrain.models.swin import SWIN_SIZES, SwinEncoder

__all__ = [
    "MAE",
    "MaskedAutoencoder",
    "MaskedOutput",
    "SWIN_SIZES",
    "SelectiveMAE",
    "SimMIM",
    "SimMIMOutput",
    "SwinEncoder",
    "VIT_SIZES",
    "ViTEncoder",
    "build_model",
    "build_encoder",
    "timm_architecture",
]

METHODS = ("mae", "selective_mae", "simmim")


def _shape(cfg: ModelConfig, sizes: dict):
    if cfg.size not in sizes:
        family = "SwinV2 (method simmim)" if sizes is SWIN_SIZES else "ViT"
        raise ValueError(f"model.size must be one of {sorted(sizes)} for a {family} encoder, got {cfg.size!r}")
    return sizes[cfg.size]


def build_encoder(cfg: ModelConfig, in_chans: int) -> ViTEncoder | SwinEncoder:
    """The method's encoder: a SwinV2 for simmim, a ViT otherwise; explicit shape options override the size."""
    if cfg.method == "simmim":
        swin = _shape(cfg, SWIN_SIZES)
        return SwinEncoder(
            in_chans=in_chans,
            img_size=cfg.img_size,
            patch_size=cfg.patch_size,
            embed_dim=cfg.embed_dim or swin.embed_dim,
            depths=cfg.stage_depths or swin.depths,
            num_heads=cfg.stage_heads or swin.num_heads,
            window_size=cfg.window_size,
            patch_embed=cfg.patch_embed,
        )
    shape = _shape(cfg, VIT_SIZES)
    return ViTEncoder(
        in_chans=in_chans,
        img_size=cfg.img_size,
        patch_size=cfg.patch_size,
        embed_dim=cfg.embed_dim or shape.embed_dim,
        depth=cfg.depth or shape.depth,
        num_heads=cfg.num_heads or shape.num_heads,
        patch_embed=cfg.patch_embed,
    )


def timm_architecture(cfg: ModelConfig) -> str:
    """The registered timm name an export names in config.json (its model_args give the exact shape)."""
    return _shape(cfg, SWIN_SIZES if cfg.method == "simmim" else VIT_SIZES).timm_name


def build_model(cfg: ModelConfig, in_chans: int) -> MaskedAutoencoder | SimMIM:
    """The configured objective around a fresh encoder."""
    if cfg.method not in METHODS:
        raise ValueError(f"model.method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    encoder = build_encoder(cfg, in_chans)
    if cfg.method == "simmim":
        return SimMIM(encoder, mask_ratio=cfg.resolved_mask_ratio(), mask_patch_size=cfg.mask_patch_size)
    common = dict(
        decoder_dim=cfg.decoder_dim,
        decoder_depth=cfg.decoder_depth,
        decoder_heads=cfg.decoder_heads,
        mask_ratio=cfg.resolved_mask_ratio(),
        norm_pix_loss=cfg.norm_pix_loss,
    )
    if cfg.method == "mae":
        return MAE(encoder, **common)
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
