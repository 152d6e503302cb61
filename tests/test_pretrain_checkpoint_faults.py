"""Checkpoint faults: SIGKILL in the middle of a checkpoint write leaves the previous checkpoint loadable and
`--resume` continues bit-identically; a damaged newest checkpoint falls back to the one before; a checkpoint
whose pickle carries code is refused before the code runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from pretrain_fixtures import (
    TINY_OVERRIDES,
    make_corpus,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)
from typer.testing import CliRunner

from rspretrain import checkpoint as ckpt
from rspretrain.cli import app

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()

# Runs `rspretrain ARGS` with torch.save replaced: the checkpoint of step KILL_STEP is written half, synced, and
# the process then waits (in the middle of the write) for the test to SIGKILL it.
KILLED_MID_WRITE = """
import io, os, sys, time
from pathlib import Path
import torch

real_save = torch.save
kill_step, marker = int(sys.argv[1]), Path(sys.argv[2])


def save_and_hang(obj, fh, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("step") == kill_step:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        data = buffer.getvalue()
        fh.write(data[: len(data) // 2])
        fh.flush()
        os.fsync(fh.fileno())
        marker.write_text(fh.name)
        time.sleep(600)
    return real_save(obj, fh, *args, **kwargs)


torch.save = save_and_hang
from rspretrain.cli import app

app(sys.argv[3:])
"""


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def run_args(corpus: Path, out: Path, max_steps: int = 6) -> list[str]:
    sets = [a for o in [*TINY_OVERRIDES, "data.num_workers=1"] for a in ("--set", o)]
    return ["run", "--config", str(ROOT / "configs/mae_vit_tiny.yaml"), "--data", str(corpus), "--out", str(out),
            "--quiet", *sets, "--max-steps", str(max_steps), "--checkpoint-every", "2"]


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def straight(corpus, tmp_path_factory) -> Path:
    """The uninterrupted 6-step run the interrupted ones must reproduce, single-threaded as they are (a module
    fixture is made before the function-scoped torch_single_thread applies; two intra-op threads change the
    float sums in the last bits)."""
    run = tmp_path_factory.mktemp("straight") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = runner.invoke(app, run_args(corpus, run))
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    return run


def assert_same_run(run: Path, straight: Path) -> None:
    assert losses(run) == losses(straight)  # bit for bit: JSON keeps every digit of the float
    a = ckpt.load(ckpt.latest_checkpoint(run))["model"]
    b = ckpt.load(ckpt.latest_checkpoint(straight))["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one_and_resume_is_exact(corpus, straight, tmp_path):
    run, marker = tmp_path / "run", tmp_path / "writing"
    script = tmp_path / "killed_mid_write.py"
    script.write_text(KILLED_MID_WRITE)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, str(script), "4", str(marker), *run_args(corpus, run)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    while not marker.exists():
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the run never reached the checkpoint of step 4"
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    proc.stdout.close()

    torn = Path(marker.read_text())
    assert torn.parent == ckpt.checkpoint_dir(run) and torn.stat().st_size > 0
    with pytest.raises(ckpt.CorruptCheckpoint, match=torn.name):
        ckpt.load(torn)  # what writing in place would have left as step_00000004.pt
    assert [p.name for _, p in ckpt.list_checkpoints(run)] == ["step_00000002.pt"]
    assert ckpt.load(ckpt.latest_checkpoint(run))["step"] == 2

    res = runner.invoke(app, [*run_args(corpus, run), "--resume"])
    assert res.exit_code == 0, res.output
    assert not torn.exists()  # the first save after the kill removes the killed writer's temporary file
    assert_same_run(run, straight)


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before_and_resume_is_exact(
    corpus, straight, tmp_path, caplog
):
    run = tmp_path / "run"
    res = runner.invoke(app, [*run_args(corpus, run), "--stop-at", "4"])
    assert res.exit_code == 0, res.output
    newest = ckpt.latest_checkpoint(run)
    assert newest.name == "step_00000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # a partial copy, a bad disk block
    with caplog.at_level("WARNING", logger="rspretrain"):
        res = runner.invoke(app, [*run_args(corpus, run), "--resume"])
    assert res.exit_code == 0, res.output
    assert f"{newest}: not a readable checkpoint" in caplog.text
    assert_same_run(run, straight)  # steps 3 and 4 trained again from step 2


class Payload:
    """Pickles to a call of os.system: what a hostile checkpoint would carry."""

    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


def test_a_checkpoint_whose_pickle_carries_code_is_refused_before_the_code_runs(corpus, tmp_path):
    run, target = tmp_path / "run", tmp_path / "payload-ran"
    assert runner.invoke(app, run_args(corpus, run, max_steps=4)).exit_code == 0
    path = ckpt.latest_checkpoint(run)
    state = ckpt.load(path)
    state["extra"] = Payload(target)
    torch.save(state, path)

    with pytest.raises(ckpt.UnsafeCheckpoint, match=r"step_00000004\.pt: refused to load.*posix\.system"):
        ckpt.load(path)
    res = runner.invoke(app, ["export", str(run), "--out", str(tmp_path / "export")])
    assert res.exit_code == 1 and "refused to load" in res.output and not (tmp_path / "export/config.json").exists()
    # the older, intact step-2 checkpoint is not a way round: someone else wrote into the run folder
    res = runner.invoke(app, [*run_args(corpus, run, max_steps=6), "--resume"])
    assert res.exit_code == 1 and f"{path}: refused to load" in res.output
    assert not target.exists()


def test_checkpoints_written_before_the_weights_only_reader_still_resume(tmp_path):
    """They pickled numpy's RNG state as a tuple holding a uint32 array: that array type alone is allowed."""
    import random

    import numpy as np

    np.random.seed(5)
    path = tmp_path / "step_00000002.pt"
    torch.save({"model": {}, "rng": [{"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                                      "python": random.getstate()}]}, path)
    expected = np.random.rand()
    ckpt.set_rng_state(ckpt.load(path)["rng"][0])
    assert np.random.rand() == expected
