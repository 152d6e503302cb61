"""The training loop: one process per device (DDP under torchrun), exactly resumable from its checkpoints.

A checkpoint holds everything the next step depends on: model, optimizer, grad scaler, step (hence the lr
schedule and curriculum stage), every rank's data position and every rank's RNG states. Resuming from it
reproduces the uninterrupted run's losses (tests/test_pretrain_resume.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel

from rspretrain import checkpoint as ckpt
from rspretrain import distributed as ddp
from rspretrain.config import RunConfig
from rspretrain.corpus import Corpus
from rspretrain.data import SKIP_KINDS, CorpusDataset, DataPosition, batch_images, make_loader
from rspretrain.models import build_model
from rspretrain.models.base import MaskedAutoencoder, MaskedOutput
from rspretrain.models.selection import curriculum_stage
from rspretrain.models.simmim import SimMIM, SimMIMOutput
from rspretrain.optim import build_optimizer, effective_lr, lr_at, reconstruction_lr_scale
from rspretrain.run_log import RunLog
from rspretrain.tiles import band_normalisation

log = logging.getLogger("rspretrain")


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or inf; training stopped before that step could touch the weights."""


@dataclass
class TrainResult:
    steps: int
    losses: list[float] = field(default_factory=list)  # per optimizer step run by this call
    baselines: list[dict[str, float]] = field(default_factory=list)  # trivial predictors' losses, same steps
    last_checkpoint: Path | None = None


BASELINES = ("loss_zeros", "loss_visible_mean")


def trivial_losses(model: MaskedAutoencoder | SimMIM, images: torch.Tensor, out: MaskedOutput | SimMIMOutput
                   ) -> list[float]:
    """The losses of BASELINES' predictors, which learn nothing, on this step's targets, in the model's own loss
    (norm-pix MSE for the MAEs, masked L1 for SimMIM). A run has learned something only once its loss is below
    both, which the raw loss alone cannot show."""
    return model.trivial_losses(images, out)


def select_device(preference: str) -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """bf16 where the device supports it when amp is auto; fp16 only on request; None means full precision."""
    if amp == "off":
        return None
    if amp == "fp16":
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else None
    raise ValueError(f"train.amp must be auto, bf16, fp16 or off, got {amp!r}")


@dataclass(frozen=True)
class Layout:
    """What must not change across a resume for the data stream to continue exactly."""

    world: int
    num_workers: int
    batch_size: int
    accum_steps: int
    seed: int


class Trainer:
    def __init__(self, cfg: RunConfig, data: Path, run_dir: Path, resume: bool = False):
        self.cfg, self.run_dir, self.resume = cfg, Path(run_dir), resume
        self.device = select_device(cfg.train.device)
        self.rank, self.world, local_rank = ddp.init_from_env(self.device.type)
        if self.device.type == "cuda":
            self.device = torch.device("cuda", local_rank)
            torch.cuda.set_device(self.device)
            torch.backends.cuda.matmul.allow_tf32 = True
        self.is_main = self.rank == 0
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.corpus = Corpus(data)
        self.channels = cfg.data.channels()
        t = cfg.train
        self.layout = Layout(self.world, cfg.data.num_workers, t.batch_size, t.accum_steps, t.seed)
        self.global_batch = t.batch_size * t.accum_steps * self.world
        self.steps_per_epoch = max(1, self.corpus.num_rows // self.global_batch)
        self.total_steps = t.max_steps or max(1, math.ceil(t.epochs * self.steps_per_epoch))
        warmup = (
            t.warmup_steps if t.warmup_steps is not None else round(t.warmup_epochs * self.steps_per_epoch)
        )
        self.warmup_steps = min(warmup, self.total_steps)
        lr_scale = reconstruction_lr_scale(cfg.model, t.lr_scaling)
        self.base_lr = effective_lr(t.blr, t.lr, self.global_batch, lr_scale)
        self.amp_dtype = autocast_dtype(t.amp, self.device)

        torch.manual_seed(t.seed)  # identical initial weights on every rank
        self.model = build_model(cfg.model, self.channels).to(self.device)
        self.optimizer = build_optimizer(self.model, self.base_lr, t.weight_decay, tuple(t.betas))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.position = DataPosition()
        self.bands = self._band_record()
        self.last_checkpoint: Path | None = None
        if resume:
            self._restore()
        else:
            torch.manual_seed(t.seed + 1 + self.rank)  # masks differ between ranks
        self.ddp_model = (
            DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
            if self.world > 1
            else None
        )
        wrapped = self.ddp_model or self.model
        self.net = torch.compile(wrapped) if t.compile else wrapped  # same parameters: checkpoints are unchanged

    # -- set-up ----------------------------------------------------------------------------------
    def _band_record(self) -> dict[str, Any]:
        """Band names, wavelengths and normalisation, recorded in checkpoints and exports; taken from the corpus
        (stats.json and every tile's band columns), so they do not depend on which tile came first."""
        names = list(self.cfg.data.bands or self.corpus.in_chans_bands(self.channels))
        mean, std = band_normalisation(self.corpus, names, self.cfg.data.normalise)
        per_source = {}
        if self.cfg.data.normalise == "source":
            for source in self.corpus.source_names():
                if self.corpus.source_stats(names, source) is None:
                    continue  # its tiles (if any have these bands) use the all-source statistics
                m, s = self.corpus.band_mean_std(names, source)
                per_source[source] = {"mean": m.tolist(), "std": s.tolist(),
                                      "input_scale": self.corpus.input_scale(names, source)}
        return {
            "names": names,
            "mean": mean.tolist(),
            "std": std.tolist(),
            "input_scale": self.corpus.input_scale(names),
            "wavelengths_um": self.corpus.band_wavelengths(names),
            "normalise": self.cfg.data.normalise,
            "per_source": per_source,
        }

    def _restore(self) -> None:
        path, state = ckpt.load_latest(self.run_dir)
        saved = Layout(**state["layout"])
        if saved != self.layout:
            raise ValueError(
                f"{path} was written with {saved}; this run has {self.layout}. Exact resume needs the same "
                "ranks, DataLoader workers, batch size, accumulation and seed"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.position = DataPosition.from_dict(state["positions"][self.rank])
        self.bands = state["bands"]
        ckpt.set_rng_state(state["rng"][self.rank])
        self.last_checkpoint = path
        if self.is_main:
            log.info("resumed from %s at step %d", path, self.step)

    def _loader(self):
        dataset = CorpusDataset(
            self.corpus,
            self.cfg.model.img_size,
            self.cfg.data,
            seed=self.cfg.train.seed,
            num_workers=self.cfg.data.num_workers,
            rank=self.rank,
            world=self.world,
            device_type=self.device.type,
        )
        dataset.resume_from(self.position)
        return make_loader(dataset, self.cfg.train.batch_size, pin_memory=self.device.type == "cuda")

    def _stage(self) -> str | None:
        if self.cfg.model.method != "selective_mae" or self.cfg.model.selection != "hog":
            return None
        return curriculum_stage(self.step / self.total_steps, self.cfg.model.curriculum)

    # -- checkpoints -----------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        positions = ddp.gather_objects(self.position.to_dict())
        rngs = ddp.gather_objects(ckpt.rng_state())
        path = ckpt.checkpoint_dir(self.run_dir) / f"step_{self.step:08d}.pt"
        if self.is_main:
            state = {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict(),
                "step": self.step,
                "total_steps": self.total_steps,
                "curriculum_stage": self._stage(),
                "layout": self.layout.__dict__,
                "positions": positions,
                "rng": rngs,
                "bands": self.bands,
                "config": self.cfg.to_dict(),
                "data": str(self.corpus.root),
            }
            ckpt.save_atomic(state, path)
            ckpt.prune(self.run_dir, self.cfg.train.keep_checkpoints)
        ddp.barrier()
        self.last_checkpoint = path
        return path

    # -- training --------------------------------------------------------------------------------
    def fit(self, stop_at: int | None = None) -> TrainResult:
        """Train to total_steps (or stop after step `stop_at`, checkpointed, as if interrupted)."""
        t = self.cfg.train
        end = min(self.total_steps, stop_at) if stop_at is not None else self.total_steps
        result = TrainResult(steps=self.step, last_checkpoint=self.last_checkpoint)
        runlog = RunLog(self.run_dir, self.is_main, t.tensorboard, self.step if self.resume else None)
        if self.is_main and not self.resume:
            # the resolved config, loadable again with --config; the corpus goes in a comment
            header = f"# rspretrain run --data {self.corpus.root}\n"
            body = yaml.safe_dump(self.cfg.to_dict(), sort_keys=False)
            (self.run_dir / "config.yaml").write_text(header + body)
        batches = iter(self._loader())
        self.model.train()
        try:
            while self.step < end:
                loss, info = self._train_step(batches)
                self.step += 1
                result.losses.append(loss)
                result.baselines.append({k: info[k] for k in BASELINES})
                if self.is_main and (self.step % t.log_every == 0 or self.step == end):
                    runlog.write({"step": self.step, **info})
                if self.step % t.checkpoint_every == 0 or self.step == end:
                    result.last_checkpoint = self.save_checkpoint()
        finally:
            runlog.close()
        result.steps = self.step
        if self.is_main and result.losses:
            log.info("%s", summarise(result))
        return result

    def _train_step(self, batches) -> tuple[float, dict[str, Any]]:
        t = self.cfg.train
        start = time.perf_counter()
        lr = lr_at(self.step, self.total_steps, self.warmup_steps, self.base_lr, t.min_lr)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.set_progress(self.step / self.total_steps)
        net = self.net
        losses, trivial = [], []
        for micro in range(t.accum_steps):
            batch = next(batches)
            self.position.advance(batch)
            images = batch_images(batch, self.cfg.model.img_size, self.device)
            wavelengths = batch["wavelengths"].to(self.device, non_blocking=True)
            sync = self.ddp_model is None or micro == t.accum_steps - 1
            with contextlib.nullcontext() if sync else self.ddp_model.no_sync():
                with torch.autocast(
                    self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None
                ):
                    out = net(images, wavelengths)
                value, *baselines = ddp.mean_across_ranks(
                    [out.loss.item(), *trivial_losses(self.model, images, out)], self.device
                )
                if not math.isfinite(value):
                    where = self.last_checkpoint or "none written yet"
                    raise NonFiniteLoss(
                        f"loss is {value} at step {self.step + 1}; stopped before updating the weights. "
                        f"Last good checkpoint: {where}. Lower the lr (train.blr), enable clipping "
                        "(train.clip_grad) or check the corpus for NaN/inf pixels"
                    )
                self.scaler.scale(out.loss / t.accum_steps).backward()
            losses.append(value)
            trivial.append(baselines)
        self.scaler.unscale_(self.optimizer)
        grad_norm = None
        if t.clip_grad:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.clip_grad))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        elapsed = time.perf_counter() - start
        images = self.global_batch
        skipped = ddp.sum_across_ranks([getattr(self.position, k) for k in SKIP_KINDS], self.device)
        loss = sum(losses) / len(losses)
        info = {
            "epoch": round((self.step + 1) / self.steps_per_epoch, 4),
            "loss": loss,
            **{k: sum(v) / len(v) for k, v in zip(BASELINES, zip(*trivial, strict=True), strict=True)},
            "lr": lr,
            "grad_norm": grad_norm,
            "images_per_s": images / elapsed,
            "tokens_encoded": out.tokens_encoded * images,
            "decoder_queries": out.decoder_queries * images,
            "step_s": elapsed,
            **{k: int(n) for k, n in zip(SKIP_KINDS, skipped, strict=True)},
        }
        stage = self._stage()
        if stage is not None:
            info["curriculum"] = stage
        return loss, info

    def close(self) -> None:
        ddp.shutdown()


def summarise(result: TrainResult, last: int = 10) -> str:
    """The run's final loss next to the trivial predictors' on the same steps (mean of the last steps)."""
    n = min(last, len(result.losses))
    final = sum(result.losses[-n:]) / n
    parts = [f"{k.removeprefix('loss_')} {sum(b[k] for b in result.baselines[-n:]) / n:.3f}" for k in BASELINES]
    return f"loss of the last {n} steps {final:.3f}; predicting {', '.join(parts)}"


def train(
    cfg: RunConfig, data: Path, run_dir: Path, resume: bool = False, stop_at: int | None = None
) -> TrainResult:
    """Build a Trainer, run it, and tear down the process group."""
    trainer = Trainer(cfg, data, run_dir, resume)
    try:
        return trainer.fit(stop_at)
    finally:
        trainer.close()
