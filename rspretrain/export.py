"""Encoder-only export: model.safetensors + config.json that timm loads without any hub access.

The encoder already uses timm's parameter names (VisionTransformer's, or SwinTransformerV2's for SimMIM), so the
weights are the checkpoint's `encoder.*` tensors with the prefix removed; a wavelength-conditioned patch embedding
is baked into the plain convolution for the run's bands. config.json is timm's hub layout (architecture,
model_args, pretrained_cfg) plus what a remote-sensing user needs: bands, wavelengths, per-band mean/std. Either
load with `timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=dict(file=...), **kwargs)`
or simply `timm.create_model("local-dir:" + DIR, pretrained=True)`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from rspretrain import checkpoint as ckpt
from rspretrain.config import config_from_dict
from rspretrain.models import SwinEncoder, ViTEncoder, build_encoder, timm_architecture

WEIGHTS = "model.safetensors"


Encoder = ViTEncoder | SwinEncoder


def encoder_from_checkpoint(state: dict[str, Any]) -> Encoder:
    """The trained encoder of a checkpoint, as an rspretrain module."""
    cfg = config_from_dict(state["config"])
    encoder = build_encoder(cfg.model, len(state["bands"]["names"]))
    prefix = "encoder."
    encoder.load_state_dict({k[len(prefix) :]: v for k, v in state["model"].items() if k.startswith(prefix)})
    return encoder.eval()


def timm_state_dict(encoder: Encoder, wavelengths: list[float | None] | None) -> dict[str, torch.Tensor]:
    """Encoder weights under timm names, with the patch embedding as a plain convolution (its norm kept)."""
    weights = {
        k: v
        for k, v in encoder.state_dict().items()
        if not k.startswith("patch_embed.") or k.startswith("patch_embed.norm.")
    }
    waves = None
    if wavelengths is not None:
        waves = torch.tensor([float("nan") if w is None else w for w in wavelengths], dtype=torch.float32)
    with torch.no_grad():
        conv_w, conv_b = encoder.patch_embed.conv_weights(waves)
    weights["patch_embed.proj.weight"] = conv_w
    weights["patch_embed.proj.bias"] = conv_b
    return {k: v.detach().float().contiguous().clone() for k, v in weights.items()}


def timm_model_args(encoder: Encoder) -> dict[str, Any]:
    if isinstance(encoder, SwinEncoder):
        return {
            "img_size": encoder.img_size,
            "patch_size": encoder.patch_size,
            "in_chans": encoder.in_chans,
            "embed_dim": encoder.embed_dim,
            "depths": list(encoder.depths),
            "num_heads": list(encoder.num_heads),
            "window_size": encoder.window_size,
        }
    return {
        "img_size": encoder.img_size,
        "patch_size": encoder.patch_size,
        "in_chans": encoder.in_chans,
        "embed_dim": encoder.embed_dim,
        "depth": encoder.depth,
        "num_heads": encoder.num_heads,
        "qkv_bias": True,
    }


TIMM_INPUT = {
    True: "8-bit data: timm.data.create_transform(**timm.data.resolve_data_config({}, model=model)) on a PIL "
    "image (or a float (C, H, W) tensor of stored values / 255) with the bands in the order of `bands`",
    False: "non-8-bit data: timm.data.create_transform(**timm.data.resolve_data_config({}, model=model)) on a "
    "float32 (C, H, W) tensor of the stored values with the bands in the order of `bands` (timm's transforms "
    "pass tensors through ToTensor unscaled; PIL cannot hold these images)",
}


def timm_data_config(bands: dict[str, Any], in_chans: int, img_size: int) -> dict[str, Any]:
    """timm's data config (what resolve_data_config reads from pretrained_cfg) for a band record or one of its
    per_source entries. mean/std are divided by the record's input_scale: timm's ToTensor turns an 8-bit image
    into 0-1 values, so 8-bit statistics in stored units would leave every input near -2."""
    scale = bands.get("input_scale", 1.0)
    return {
        "input_size": [in_chans, img_size, img_size],
        "interpolation": "bilinear",  # what rspretrain.augment.resize does
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": [m / scale for m in bands["mean"]],
        "std": [s / scale for s in bands["std"]],
    }


def encoder_from_model_args(config: dict[str, Any]) -> Encoder:
    """A fresh rspretrain encoder (our initialisation) of an export's architecture, from its config.json."""
    args = dict(config["model_args"])
    if config.get("method") == "simmim":
        return SwinEncoder(**args)
    return ViTEncoder(**{k: v for k, v in args.items() if k != "qkv_bias"})


def source_data_config(export_dir: Path, source: str | None = None) -> dict[str, Any]:
    """timm's data config of an export, for `source`'s own statistics when the run normalised per source:
    `timm.data.create_transform(**source_data_config(DIR, "NAME"))` feeds data like that source's tiles."""
    config = json.loads((Path(export_dir) / "config.json").read_text())
    if source is None:
        return timm_data_config(config, config["in_chans"], config["img_size"])
    if source not in config.get("per_source", {}):
        raise KeyError(f"{export_dir}/config.json: no per-source statistics for {source!r}; "
                       f"known: {sorted(config.get('per_source', {}))}")
    return timm_data_config(config["per_source"][source], config["in_chans"], config["img_size"])


def export(source: Path, out_dir: Path) -> Path:
    """Write `out_dir`/model.safetensors and config.json from a checkpoint or a run folder's newest one."""
    path = ckpt.resolve_checkpoint(Path(source))
    state = ckpt.load(path)
    cfg = config_from_dict(state["config"])
    encoder = encoder_from_checkpoint(state)
    bands = state["bands"]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_file(
        timm_state_dict(encoder, bands.get("wavelengths_um")),
        str(out_dir / WEIGHTS),
        metadata={"format": "pt", "source": str(path)},
    )
    arch = timm_architecture(cfg.model)
    model_args = timm_model_args(encoder)
    c, size = encoder.in_chans, encoder.img_size
    scale = bands.get("input_scale", 1.0)  # checkpoints written before it was recorded used stored values
    data_config = timm_data_config(bands, c, size)
    config = {
        "architecture": arch,
        "num_classes": 0,
        "num_features": encoder.num_features,
        "model_args": model_args,
        "pretrained_cfg": {
            **data_config,
            "fixed_input_size": True,
            "num_classes": 0,
            "first_conv": "patch_embed.proj",
            "classifier": "head.fc" if isinstance(encoder, SwinEncoder) else "head",
            "license": "see the corpus dataset card",
        },
        # what the remote-sensing user needs, flat
        "in_chans": c,
        "img_size": size,
        "patch_size": encoder.patch_size,
        "bands": bands["names"],
        "wavelengths_um": bands.get("wavelengths_um"),
        "mean": bands["mean"],
        "std": bands["std"],
        "input_scale": scale,
        "normalisation": "per band, in the order of `bands`: (x - mean) / std on stored values, i.e. "
        "(x / input_scale - pretrained_cfg.mean) / pretrained_cfg.std; invalid (nodata) pixels were set to the mean",
        "timm_input": TIMM_INPUT[scale == 255.0],
        "normalise": bands.get("normalise", "global"),
        # with normalise == source, training used each source's own statistics (mean/std above: all sources);
        # rspretrain.export.source_data_config(export_dir, source) gives timm's data config for one of them
        "per_source": bands.get("per_source", {}),
        # for timm.create_model(architecture, pretrained=True, pretrained_cfg_overlay=...), file made absolute
        "pretrained_cfg_overlay": {"file": WEIGHTS, **data_config},
        "method": cfg.model.method,
        "step": state["step"],
        "source_checkpoint": str(path),
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def load_timm(export_dir: Path, pretrained: bool = True, **kwargs: Any) -> torch.nn.Module:
    """The timm model of an export folder, with its weights (no network) or, for baselines, at random init."""
    import timm

    export_dir = Path(export_dir)
    config = json.loads((export_dir / "config.json").read_text())
    args = {**config["model_args"], "num_classes": 0, **kwargs}
    if not pretrained:
        return timm.create_model(config["architecture"], pretrained=False, **args)
    overlay = {**config["pretrained_cfg_overlay"], "file": str(export_dir / WEIGHTS)}
    return timm.create_model(config["architecture"], pretrained=True, pretrained_cfg_overlay=overlay, **args)
