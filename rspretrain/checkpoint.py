"""Checkpoint files: written atomically, read without running code, found by step number, pruned to the newest few.

A crash while writing (even SIGKILL) leaves the previous checkpoint intact: the file is written to a temporary
name in the same folder, fsynced, renamed over the final name (os.replace is atomic on POSIX), and the folder is
fsynced so the rename survives a power loss. A killed writer's temporary file is removed by the next save.

Reading uses `torch.load(weights_only=True)`: a checkpoint holds tensors and plain values only (the numpy RNG
state is stored as a tensor), so a file whose pickle names any other callable (os.system, ...) is refused
before anything runs.
"""

from __future__ import annotations

import logging
import os
import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("rspretrain")

_NAME = re.compile(r"^step_(\d+)\.pt$")
_TMP = re.compile(r"^\.step_\d+\.pt\.tmp-\d+$")
# what numpy's RNG state pickles to: checkpoints written before the state was stored as a tensor need them
_LEGACY_NUMPY = [np.ndarray, np.dtype, np.dtypes.UInt32DType, np._core.multiarray._reconstruct]


class UnsafeCheckpoint(ValueError):
    """The file's pickle would call something a checkpoint never holds: it was not written by rspretrain."""


class CorruptCheckpoint(ValueError):
    """The file is not a readable checkpoint (truncated, or modified after it was written)."""


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_atomic(state: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    for stale in path.parent.iterdir():  # left by a writer killed mid-write (only one run writes a folder)
        if _TMP.match(stale.name):
            stale.unlink(missing_ok=True)


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    folder = checkpoint_dir(run_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune(run_dir: Path, keep: int) -> None:
    for _, path in list_checkpoints(run_dir)[: -max(keep, 1)]:
        path.unlink(missing_ok=True)


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint file, or the newest checkpoint of a run folder."""
    path = Path(path)
    if path.is_file():
        return path
    found = latest_checkpoint(path)
    if found is None:
        raise FileNotFoundError(
            f"{path}: neither a checkpoint file nor a run folder with checkpoints/step_*.pt"
        )
    return found


def load(path: Path) -> dict[str, Any]:
    """A checkpoint's state, unpickled with torch's weights-only unpickler (tensors and plain values only)."""
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        lines = str(err).splitlines()
        refused = next((ln.strip() for ln in lines if "GLOBAL" in ln or "but got" in ln), lines[0])
        raise UnsafeCheckpoint(
            f"{path}: refused to load: its pickle asks for more than tensors and plain values ({refused}). "
            "rspretrain never writes such a file, so it was made or changed by something else; do not open it "
            "with torch.load(weights_only=False) unless you trust where it came from"
        ) from err
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError) as err:
        raise CorruptCheckpoint(f"{path}: not a readable checkpoint (truncated or modified after writing): {err}") \
            from err
    if not isinstance(state, dict) or "model" not in state:
        raise CorruptCheckpoint(f"{path}: not an rspretrain checkpoint (no model state)")
    return state


def rng_state() -> dict[str, Any]:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"]["key"] = torch.from_numpy(numpy_state["state"]["key"].astype(np.int64))
    state = {"torch": torch.get_rng_state(), "numpy": numpy_state, "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    if isinstance(numpy_state, dict):  # tuples (legacy numpy state) already hold a numpy array
        key = numpy_state["state"]["key"]
        numpy_state = {**numpy_state, "state": {**numpy_state["state"], "key": key.numpy().astype(np.uint32)}}
    np.random.set_state(numpy_state)
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_latest(run_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The newest readable checkpoint of a run: one that cannot be read (copied in part, damaged on disk) is
    reported and the one before it used, so a damaged file costs `checkpoint_every` steps, not the run. An
    unsafe file stops the resume (UnsafeCheckpoint): someone else wrote into the run folder."""
    found = list_checkpoints(run_dir)
    if not found:
        raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint_dir(run_dir)}")
    for _, path in reversed(found):
        try:
            return path, load(path)
        except CorruptCheckpoint as err:
            log.warning("%s; resuming from the checkpoint before it", err)
    raise CorruptCheckpoint(f"--resume: no readable checkpoint in {checkpoint_dir(run_dir)} "
                            f"({', '.join(p.name for _, p in found)} are all damaged)")
