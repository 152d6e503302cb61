"""Shared helpers for the rspretrain tests: the synthetic corpus and a CPU-second-sized run config."""

from __future__ import annotations

from pathlib import Path

from rspretrain.synthetic import RGB_BANDS, S2_BANDS, S2_WAVES, make_corpus, smooth_field, textured_tile

__all__ = [
    "RGB_BANDS",
    "S2_BANDS",
    "S2_WAVES",
    "TINY_OVERRIDES",
    "make_corpus",
    "smooth_field",
    "textured_tile",
    "tiny_config",
]


TINY_OVERRIDES = [
    "data.bands=[B02, B03, B04, B08]",
    "model.img_size=32",
    "model.depth=2",
    "model.decoder_depth=1",
    "train.batch_size=4",
    "data.shuffle_buffer=16",
    "data.num_workers=0",
    "train.tensorboard=false",
    "train.warmup_steps=2",
]


def tiny_config(preset: str = "selectivemae_vit_tiny", *overrides: str):
    """A CPU-second-sized run config from a shipped preset, for the fixture corpus."""
    from rspretrain.config import load_config

    root = Path(__file__).resolve().parent.parent
    return load_config(root / "configs" / f"{preset}.yaml", [*TINY_OVERRIDES, *overrides])
