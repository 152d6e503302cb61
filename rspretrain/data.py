"""Streaming training data: an IterableDataset over the corpus shards with an exactly resumable position.

How the stream is laid out (docs/pretraining.md, "Data order and resume"):

- There are S = world_size * num_workers streams; stream s = rank * num_workers + worker.
- Epoch e permutes all row groups with the seed (seed, e); stream s reads permuted row groups s, s+S, ...
  (no overlap between workers or ranks within an epoch), then goes on to epoch e+1. Streams never end,
  so the DataLoader's round-robin over workers stays regular: batch k of a rank comes from worker
  k % num_workers.
- A shuffle buffer of row *references* (epoch, row group, row) mixes rows; its pops use the seed
  (seed, s). Output j of stream s is augmented with the seed (seed, s, j). Only referenced rows' row groups
  are kept in memory, as undecoded bytes.
- So stream s's output is a pure function of (seed, s, S). A consumer that records how many batches it took
  and, per stream, the next output index, can resume exactly: the reference stream and buffer are replayed
  without reading or decoding anything, and the worker order is rotated so batch k still comes from the
  worker that would have produced it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, IterableDataset, default_collate, get_worker_info

from rspretrain.augment import random_crop_flip, resize_flip_normalise
from rspretrain.config import DataConfig
from rspretrain.corpus import Corpus
from rspretrain.tiles import ROW_COLUMNS, CorruptTile, MissingBands, TileReader

log = logging.getLogger(__name__)

_BUFFER_SALT = 0x5EED
_AUGMENT_SALT = 0xA06
_WARN_LIMIT = 5
_FAULT_FLOOR = 1000  # rows: below this many, max_skip_fraction is taken of 1000 (one early bad row is no trend)
# data.finish_on device sends crops of these dtypes as stored (exact in float32); any other is sent as float32
_SENT_AS_STORED = (np.dtype(np.uint8), np.dtype(np.int8), np.dtype(np.uint16), np.dtype(np.int16))
SKIP_KINDS = ("skipped_corrupt", "skipped_unreadable", "skipped_bands")
FAULTS = ("skipped_corrupt", "skipped_unreadable")  # what on_error and max_skip_fraction apply to


class DataFault(ValueError):
    """A row or shard could not be read and data.on_error (or max_skip_fraction) says stop."""

    def __str__(self) -> str:
        # raised in a DataLoader worker, it reaches the trainer as this type with the worker's traceback in front
        return super().__str__().rsplit(f"{type(self).__name__}: ", 1)[-1].strip()


@dataclass
class DataPosition:
    """Where a rank's data stream stands: batches taken, next output index per stream, skip counters (SKIP_KINDS)."""

    batches: int = 0
    cursors: dict[int, int] = field(default_factory=dict)
    skipped_corrupt: int = 0  # bytes that do not decode to the row's bands
    skipped_unreadable: int = 0  # rows of a row group whose shard vanished or cannot be read
    skipped_bands: int = 0  # tiles lacking a requested band (a choice of the run, not a fault)

    def advance(self, batch: dict[str, torch.Tensor]) -> None:
        """Record a batch as consumed (call once per batch actually trained on)."""
        self.batches += 1
        for s, j in zip(batch["stream"].tolist(), batch["ordinal"].tolist(), strict=True):
            if j + 1 > self.cursors.get(s, 0):
                self.cursors[s] = j + 1
        for kind in SKIP_KINDS:
            setattr(self, kind, getattr(self, kind) + int(batch[kind].sum()))

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": self.batches,
            "cursors": {str(k): v for k, v in self.cursors.items()},
            **{kind: getattr(self, kind) for kind in SKIP_KINDS},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataPosition:
        return cls(
            batches=int(d["batches"]),
            cursors={int(k): int(v) for k, v in d["cursors"].items()},
            **{kind: int(d.get(kind, 0)) for kind in SKIP_KINDS},
        )


def dist_rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class CorpusDataset(IterableDataset):
    """Shuffled, augmented tiles from a corpus, split across DataLoader workers and DDP ranks; endless unless
    `epochs` is given (an endless stream keeps the DataLoader's worker round-robin regular, see above)."""

    def __init__(
        self,
        corpus: Corpus,
        img_size: int,
        cfg: DataConfig,
        seed: int = 0,
        num_workers: int = 0,
        rank: int | None = None,
        world: int | None = None,
        augment: bool = True,
        epochs: int | None = None,
        device_type: str = "cpu",
    ):
        super().__init__()
        self.corpus = corpus
        self.reader = TileReader(corpus, cfg.bands, cfg.in_chans, normalise=cfg.normalise)
        self.img_size = img_size
        self.cfg = cfg
        self.finish_on = cfg.finishing_on(device_type)  # where the consumer trains decides data.finish_on auto
        self.seed = seed
        self.num_workers = num_workers
        drank, dworld = dist_rank_world()
        self.rank = drank if rank is None else rank
        self.world = dworld if world is None else world
        self.augment = augment
        self.epochs = epochs  # None: endless (training); N: stop after N passes (evaluation, tests)
        self.position = DataPosition()
        self.stats = {"rows": 0, "samples": 0, **dict.fromkeys(SKIP_KINDS, 0)}
        n_streams = self.world * max(num_workers, 1)
        if len(corpus.row_groups) < n_streams:
            raise ValueError(
                f"{corpus.root}: {len(corpus.row_groups)} row groups cannot feed {n_streams} streams "
                f"(ranks x workers); use fewer DataLoader workers or write smaller row groups"
            )

    def resume_from(self, position: DataPosition) -> None:
        """Continue after `position` (as recorded by the consumer) on the next iteration."""
        self.position = DataPosition.from_dict(position.to_dict())  # a snapshot: the consumer keeps advancing

    # -- layout ---------------------------------------------------------------------------------
    def _stream(self) -> tuple[int, int]:
        info = get_worker_info()
        workers = max(self.num_workers, 1)
        physical = info.id if info is not None else 0
        if info is not None and info.num_workers != workers:
            raise RuntimeError(f"dataset built for {workers} workers runs under {info.num_workers}")
        logical = (physical + self.position.batches) % workers
        return self.rank * workers + logical, self.world * workers

    def _references(self, stream: int, n_streams: int, pending: dict) -> Iterator[tuple[int, int, int]]:
        groups = self.corpus.row_groups
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            order = np.random.default_rng([self.seed, epoch]).permutation(len(groups))
            for gi in order[stream::n_streams].tolist():
                pending[(epoch, gi)] = groups[gi].num_rows
                for row in range(groups[gi].num_rows):
                    yield epoch, gi, row
            epoch += 1

    def _shuffled(self, stream: int, n_streams: int, pending: dict) -> Iterator[tuple[int, int, int]]:
        rng = np.random.default_rng([self.seed, stream, _BUFFER_SALT])
        buf: list[tuple[int, int, int]] = []
        size = max(self.cfg.shuffle_buffer, 1)
        for ref in self._references(stream, n_streams, pending):
            buf.append(ref)
            if len(buf) >= size:
                i = int(rng.integers(len(buf)))
                buf[i], buf[-1] = buf[-1], buf[i]
                yield buf.pop()
        while buf:  # only reached by finite streams
            i = int(rng.integers(len(buf)))
            buf[i], buf[-1] = buf[-1], buf[i]
            yield buf.pop()

    # -- iteration ------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        stream, n_streams = self._stream()
        start = self.position.cursors.get(stream, 0)
        pending: dict[tuple[int, int], int] = {}
        cache: dict[tuple[int, int], dict[str, list] | str] = {}
        skipped = dict.fromkeys(SKIP_KINDS, 0)
        for j, (epoch, gi, row) in enumerate(self._shuffled(stream, n_streams, pending)):
            key = (epoch, gi)
            if j >= start:
                if key not in cache:
                    cache[key] = self._read_group(gi)
                sample = self._sample(cache[key], gi, row, stream, j, skipped)
                if sample is not None:
                    sample["epoch"] = epoch
                    yield sample
            pending[key] -= 1
            if pending[key] == 0:
                del pending[key]
                cache.pop(key, None)

    def _read_group(self, gi: int) -> dict[str, list] | str:
        """Row group `gi`'s rows, or why its shard cannot be read (it vanished, was truncated or overwritten)."""
        group = self.corpus.row_groups[gi]
        try:
            return self.corpus.read_row_group(group, ROW_COLUMNS).to_pydict()
        except (OSError, pa.ArrowException) as err:
            return f"{self.corpus.shard_dir / group.shard} row group {group.index} cannot be read: {err}"

    def _skip(self, kind: str, why: str, skipped: dict) -> None:
        """Count a skipped row (reported with the next sample); stop on a fault when on_error or the limit say so."""
        skipped[kind] += 1
        self.stats[kind] += 1
        if kind in FAULTS:
            if self.cfg.on_error == "stop":
                raise DataFault(f"{why}. data.on_error is stop: repair or restore the shard (`rscurate verify "
                                "CORPUS` checks them all), or set data.on_error=skip to skip and count such rows")
            faults, rows = sum(self.stats[k] for k in FAULTS), self.stats["rows"]
            if faults > self.cfg.max_skip_fraction * max(rows, _FAULT_FLOOR):
                raise DataFault(f"{faults} of the {rows} rows this data worker read could not be used, more than "
                                f"data.max_skip_fraction={self.cfg.max_skip_fraction} allows; the last: {why}. "
                                "Check the corpus with `rscurate verify CORPUS`, or raise the limit")
        if self.stats[kind] <= _WARN_LIMIT:
            log.warning("skipping a row (%s): %s", kind, why)

    def _sample(
        self, table: dict[str, list] | str, gi: int, row: int, stream: int, j: int, skipped: dict
    ) -> dict | None:
        self.stats["rows"] += 1
        if isinstance(table, str):
            self._skip("skipped_unreadable", table, skipped)
            return None
        record = {k: v[row] for k, v in table.items()}
        try:
            tile = self.reader.decode(record)
        except (CorruptTile, MissingBands) as err:
            group = self.corpus.row_groups[gi]
            where = f"{self.corpus.shard_dir / group.shard} row group {group.index} row {row}"
            kind = "skipped_corrupt" if isinstance(err, CorruptTile) else "skipped_bands"
            self._skip(kind, f"{where}: {err}", skipped)
            return None
        height, width = tile.shape
        (top, left, h, w), flip = (0, 0, height, width), False
        if self.augment:
            rng = np.random.default_rng([self.seed, stream, j, _AUGMENT_SALT])
            (top, left, h, w), flip = random_crop_flip(
                height, width, rng, tuple(self.cfg.crop_scale), tuple(self.cfg.crop_ratio), self.cfg.hflip
            )
        crop = tile.window(top, left, h, w)
        plan = tile.plan
        self.stats["samples"] += 1
        if self.finish_on == "device":
            if crop.dtype not in _SENT_AS_STORED:
                crop = crop.astype(np.float32)
            pixels = {"crop": torch.from_numpy(crop), "flip": flip, "mean": plan.mean, "std": plan.std}
        else:
            image = resize_flip_normalise(torch.from_numpy(crop), self.img_size, flip, plan.mean, plan.std)
            pixels = {"image": image}
        sample = {
            **pixels,
            "wavelengths": plan.wavelengths,
            "id": record["id"],
            "stream": stream,
            "ordinal": j,
            **skipped,
        }
        skipped.update(dict.fromkeys(SKIP_KINDS, 0))
        return sample


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """default_collate, except that data.finish_on device crops (of different sizes and dtypes) are packed into
    one flat tensor (in shared memory inside a worker, as default_collate does) with their shapes beside it."""
    if "crop" not in samples[0]:
        return default_collate(samples)
    crops = [s.pop("crop") for s in samples]
    dtype = functools.reduce(torch.promote_types, (c.dtype for c in crops))
    sizes = [c.numel() for c in crops]
    if get_worker_info() is not None:  # made in shared memory, as default_collate does: share_memory_() would copy
        flat = torch.empty(0, dtype=dtype).new(torch.UntypedStorage._new_shared(sum(sizes) * dtype.itemsize))
    else:
        flat = torch.empty(sum(sizes), dtype=dtype)
    torch.cat([c.reshape(-1) for c in crops], out=flat)
    batch = default_collate(samples)
    batch["crops"] = flat
    batch["crop_shape"] = torch.tensor([c.shape for c in crops], dtype=torch.int64)
    return batch


def batch_images(batch: dict[str, Any], img_size: int, device: torch.device) -> torch.Tensor:
    """The batch's (B, C, img_size, img_size) float32 images on `device`: moved as they are (data.finish_on
    worker), or finished there from the stored crops (data.finish_on device), the same function either way."""
    if "image" in batch:
        return batch["image"].to(device, non_blocking=True)
    flat = batch["crops"].to(device, non_blocking=True)
    mean = batch["mean"].to(device, non_blocking=True)
    std = batch["std"].to(device, non_blocking=True)
    shapes = batch["crop_shape"].tolist()
    images = torch.empty((len(shapes), shapes[0][0], img_size, img_size), dtype=torch.float32, device=device)
    start = 0
    for i, (shape, flip) in enumerate(zip(shapes, batch["flip"].tolist(), strict=True)):
        size = shape[0] * shape[1] * shape[2]
        crop = flat[start : start + size].view(shape)
        images[i] = resize_flip_normalise(crop, img_size, flip, mean[i], std[i])
        start += size
    return images


def _worker_init(_: int) -> None:
    # workers decode and resize single tiles; intra-op threads would only fight the trainer for cores
    torch.set_num_threads(1)


def make_loader(dataset: CorpusDataset, batch_size: int, pin_memory: bool = False) -> DataLoader:
    """DataLoader over the stream; worker count is the dataset's (it is part of the data layout).

    The loader gets its own generator: otherwise creating an iterator draws from the global torch RNG, and a
    resumed run (which creates its iterator after restoring that RNG) would draw different masks.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=dataset.num_workers,
        worker_init_fn=_worker_init if dataset.num_workers > 0 else None,
        collate_fn=collate,
        pin_memory=pin_memory,
        persistent_workers=False,
        in_order=True,
        generator=torch.Generator().manual_seed(dataset.seed),
    )
