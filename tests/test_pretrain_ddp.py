"""Two-rank DDP through torchrun (gloo on CPU): data split across ranks, synchronised steps, exact resume."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pretrain_fixtures import (
    TINY_OVERRIDES,
    make_corpus,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rspretrain import checkpoint as ckpt

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def torchrun(corpus: Path, out: Path, *args: str, preset: str = "selectivemae_vit_tiny",
             overrides: tuple[str, ...] = (*TINY_OVERRIDES, "data.num_workers=1")) -> subprocess.CompletedProcess:
    sets = [a for o in overrides for a in ("--set", o)]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "rspretrain.cli",
        "run",
        "--config",
        str(ROOT / "configs" / f"{preset}.yaml"),
        "--data",
        str(corpus),
        "--out",
        str(out),
        "--quiet",
        *sets,
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_two_ranks_train_on_disjoint_streams(corpus, tmp_path):
    torchrun(corpus, tmp_path, "--max-steps", "3")
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert records[0]["tokens_encoded"] == 2 * 4 * 3  # two ranks x batch 4 x (2 visible + cls)
    state = ckpt.load(ckpt.latest_checkpoint(tmp_path))
    assert state["layout"]["world"] == 2
    streams = [set(p["cursors"]) for p in state["positions"]]
    assert streams == [{"0"}, {"1"}]  # rank r, one worker: stream r only
    assert all(p["batches"] == 3 for p in state["positions"])
    assert len(state["rng"]) == 2


@pytest.mark.slow
def test_ddp_resume_matches_uninterrupted(corpus, tmp_path):
    torchrun(corpus, tmp_path / "straight", "--max-steps", "4")
    torchrun(corpus, tmp_path / "resumed", "--max-steps", "4", "--stop-at", "2")
    torchrun(corpus, tmp_path / "resumed", "--max-steps", "4", "--resume")
    a, b = losses(tmp_path / "straight"), losses(tmp_path / "resumed")
    assert len(a) == len(b) == 4
    assert all(math.isclose(x, y, abs_tol=1e-6) for x, y in zip(a, b, strict=True))


def test_simmim_trains_on_two_ranks(tmp_path):
    """The SatVision-TOA model goes through the same DDP engine: both ranks step together on disjoint streams."""
    from rspretrain.synthetic import make_modis_corpus

    modis = make_modis_corpus(tmp_path / "modis", n=16, size=64)
    torchrun(modis, tmp_path / "run", "--max-steps", "2", preset="satvision_toa_tiny",
             overrides=("model.img_size=64", "data.num_workers=1", "train.batch_size=2", "train.tensorboard=false"))
    records = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(math.isfinite(r["loss"]) for r in records)
    state = ckpt.load(ckpt.latest_checkpoint(tmp_path / "run"))
    assert state["layout"]["world"] == 2 and [set(p["cursors"]) for p in state["positions"]] == [{"0"}, {"1"}]
