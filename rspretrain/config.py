"""Run configuration: YAML presets in configs/ become typed dataclasses, overridable from the command line.

Typed sections catch typos early (an unknown key is an error naming the key) and give every option one
documented default, which docs/pretraining.md lists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


@dataclass
class ModelConfig:
    """What network is trained. `method` picks the objective, `size` the ViT (or, for simmim, SwinV2) shape."""

    method: str = "selective_mae"  # mae | selective_mae | simmim
    size: str = "base"  # ViT: tiny | small | base | large | huge; SwinV2 (simmim): tiny | base | huge | giant
    img_size: int = 224
    patch_size: int = 16
    embed_dim: int | None = None  # overrides of the size preset
    depth: int | None = None
    num_heads: int | None = None
    decoder_dim: int = 512
    decoder_depth: int = 8
    decoder_heads: int = 16
    mask_ratio: float | None = None  # default: 0.75 for mae, 0.85 for selective_mae, 0.6 for simmim
    norm_pix_loss: bool = True
    patch_embed: str = "conv"  # conv | wavelength
    # SelectiveMAE only (defaults: the published method; docs/pretraining.md lists our variants)
    keep_ratio: float = 0.25  # fraction of the patches the decoder reconstructs ...
    keep_of: str = "all"  # ... all: of all patches (published) | masked: of the masked ones
    selection: str = "hog"  # hog | random: how the visible set is chosen
    seed_fraction: float = 0.5  # fraction of the visible set taken straight from the HOG ranking
    similarity: str = "embedding"  # embedding (published) | hog: what the seed set grows by
    growth_rounds: int = 2  # rounds the growth is split into (published 2)
    hog_bins: int = 9
    hog_cell: int = 8
    # curriculum boundaries as fractions of the run (published: 280/300/580/600 of 800 epochs)
    curriculum: list[float] = field(default_factory=lambda: [0.35, 0.375, 0.725, 0.75])
    # SimMIM (SwinV2) only: overrides of the size preset's stages, the attention window, the mask cell (pixels)
    stage_depths: list[int] | None = None
    stage_heads: list[int] | None = None
    window_size: int = 8
    mask_patch_size: int = 8

    def resolved_mask_ratio(self) -> float:
        if self.mask_ratio is not None:
            return self.mask_ratio
        return {"selective_mae": 0.85, "simmim": 0.6}.get(self.method, 0.75)


@dataclass
class DataConfig:
    """How tiles become model inputs."""

    bands: list[str] | None = None  # select bands by name, in this order
    in_chans: int | None = None  # or take the first C bands of each tile (when bands is unset)
    # source: each tile's source's band stats (else global) | global: all sources | satvision: SatVision-TOA's fixed
    # MODIS scaling (reflectance % x 0.01, brightness temperature min-max per band; rspretrain.modis_scaling)
    normalise: str = "source"
    shuffle_buffer: int = 1024
    num_workers: int = 2
    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])
    crop_ratio: list[float] = field(default_factory=lambda: [3 / 4, 4 / 3])
    hflip: bool = True
    on_error: str = "skip"  # skip | stop: a row whose bytes do not decode, a shard that vanished or cannot be read
    max_skip_fraction: float = 0.05  # skip: stop anyway once a worker skipped more than this share of its rows
    # worker: DataLoader workers resize, flip and normalise (float32 batches) | device: workers send the stored
    # integer crops and the training device finishes them (a third to half the bytes between processes) | auto:
    # device when training on CUDA (the GPU finishes a batch in microseconds), worker elsewhere (on a CPU the
    # finishing would move from the workers to the training process)
    finish_on: str = "auto"

    def __post_init__(self) -> None:
        if self.normalise not in ("source", "global", "satvision"):
            raise ValueError(f"data.normalise must be source, global or satvision, got {self.normalise!r}")
        if self.on_error not in ("skip", "stop"):
            raise ValueError(f"data.on_error must be skip or stop, got {self.on_error!r}")
        if self.finish_on not in ("auto", "worker", "device"):
            raise ValueError(f"data.finish_on must be auto, worker or device, got {self.finish_on!r}")
        if not 0 <= self.max_skip_fraction <= 1:
            raise ValueError(f"data.max_skip_fraction is a share of rows, 0 to 1, got {self.max_skip_fraction!r}")

    def finishing_on(self, device_type: str) -> str:
        """Where samples are finished when training on a device of this type (`cuda`, `cpu`): auto resolved."""
        if self.finish_on != "auto":
            return self.finish_on
        return "device" if device_type == "cuda" else "worker"

    def channels(self) -> int:
        if self.bands:
            return len(self.bands)
        if self.in_chans:
            return self.in_chans
        raise ValueError("data needs either bands: [names] or in_chans: C")


@dataclass
class TrainConfig:
    """Optimisation, schedule, precision, checkpoints and logs."""

    seed: int = 0
    epochs: float = 1.0
    max_steps: int | None = None  # optimizer steps; overrides epochs when set
    batch_size: int = 64  # per rank and micro-batch
    accum_steps: int = 1
    blr: float = 1.5e-4  # lr = blr * effective_batch / 256 (* reconstructed / masked, see lr_scaling)
    lr_scaling: str = "kept_masked"  # kept_masked: SelectiveMAE scales lr by keep / mask ratio (published) | none
    lr: float | None = None  # absolute lr; overrides blr when set
    min_lr: float = 0.0
    warmup_epochs: float = 0.05
    warmup_steps: int | None = None  # overrides warmup_epochs when set
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    clip_grad: float | None = 1.0
    amp: str = "auto"  # auto | bf16 | fp16 | off   (auto = bf16 on CUDA that supports it, else off)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2
    log_every: int = 1
    tensorboard: bool = True
    device: str = "auto"  # auto | cpu | cuda
    compile: bool = False  # torch.compile the training forward (GPU: fewer kernel launches; compiles for minutes)

    def __post_init__(self) -> None:
        # YAML reads a bare `off` / `on` as a boolean
        if isinstance(self.amp, bool):
            self.amp = "auto" if self.amp else "off"
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"train.amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if self.lr_scaling not in ("kept_masked", "none"):
            raise ValueError(f"train.lr_scaling must be kept_masked or none, got {self.lr_scaling!r}")


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ValueError(f"unknown option(s) {sorted(where + k for k in unknown)}; known: {sorted(known)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        sub = _SECTIONS.get(name) if cls is RunConfig else None
        if sub is not None:
            if not isinstance(value, dict):
                raise ValueError(f"{where}{name} must be a mapping")
            kwargs[name] = _build(sub, value, f"{where}{name}.")
        else:
            kwargs[name] = _number(value, known[name].type, where + name)
    return cls(**kwargs)


def _number(value: Any, annotation: Any, name: str) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string: a float option takes it as the number it spells."""
    if not isinstance(value, str) or not str(annotation).startswith("float"):
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {value!r}") from None


_SECTIONS: dict[str, type] = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Validate a plain mapping (YAML or a checkpoint's copy) into a RunConfig."""
    return _build(RunConfig, data or {}, "")


def set_option(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `section.key` in a config mapping; the value is parsed as YAML (so 0.8, true, [a, b] work)."""
    parts = dotted.split(".")
    if len(parts) != 2 or parts[0] not in _SECTIONS:
        raise ValueError(f"--set takes section.key=value with section in {sorted(_SECTIONS)}, got {dotted!r}")
    data.setdefault(parts[0], {})[parts[1]] = yaml.safe_load(value) if isinstance(value, str) else value


def load_config(path: Path | None, overrides: list[str] = ()) -> RunConfig:
    """Read a YAML preset and apply `key=value` overrides, validating the result."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text())
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: a config is a mapping with sections model, data, train")
        data = loaded
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not key=value")
        key, value = item.split("=", 1)
        set_option(data, key.strip(), value)
    return config_from_dict(data)
