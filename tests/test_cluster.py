"""Real multi-process Dask: an external scheduler with two workers, and resume after a hard kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rscurate.verify import verify
from tests.conftest import external_cluster, run_build, scene_row, textured

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 scenes of 4x4 tiles with a few exact copies: enough units to interrupt a build part-way."""
    rng = np.random.default_rng(11)
    root = tmp_path_factory.mktemp("cluster")
    # scenes 0, 6, 12, 18 hold the same pixels
    return scene_row(root, [textured(np.random.default_rng(0) if i % 6 == 0 else rng, 3, 256, 256, "uint8")
                            for i in range(24)]).parent


def _index(corpus: Path) -> pd.DataFrame:
    return pd.read_parquet(corpus / "index.parquet")


def _rscurate(*args: str, **kw) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen([str(BIN / "rscurate"), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True, **kw)


@pytest.mark.slow
def test_external_scheduler_and_two_workers_give_the_local_index(scenes: Path, tmp_path: Path) -> None:
    with external_cluster(tmp_path, 2) as (address, _):
        remote = tmp_path / "remote"
        build = _rscurate("build", "--sources", str(scenes), "--out", str(remote), "--scheduler", address,
                          "--quiet", "--unit-tiles", "16")
        _, err = build.communicate(timeout=300)
        assert build.returncode == 0, err.decode()
    local = tmp_path / "local"
    run_build([scenes], local, workers=1, unit_tiles=16)
    verify(remote)
    pd.testing.assert_frame_equal(_index(remote), _index(local))
    assert len(pd.read_parquet(remote / "duplicates.parquet")) == 3 * 16


@pytest.mark.slow
def test_resume_after_kill_finishes_without_duplicates_or_gaps(scenes: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    args = ["build", "--sources", str(scenes), "--out", str(out), "--workers", "2", "--quiet", "--unit-tiles", "4",
            "--keep-work"]
    build = _rscurate(*args)
    units = out / "_work" / "units"
    deadline = time.time() + 120
    while len(list(units.glob("*.excluded.parquet"))) < 20 and time.time() < deadline and build.poll() is None:
        time.sleep(0.05)
    assert build.poll() is None, "the build finished before it could be interrupted; make the input larger"
    os.killpg(build.pid, signal.SIGKILL)
    build.wait(timeout=30)
    assert not (out / "index.parquet").exists()
    # a unit is finished once its kept file exists (written last); a half-finished one is redone
    staged = {p: p.stat().st_mtime_ns for p in units.glob("*.parquet")
              if not p.name.startswith(".") and p.name.count(".") == 1}  # <key>.parquet, not .meta/.excluded
    assert 0 < len(staged) < 24 * 16 // 4, "some units, not all, were staged before the kill"

    resumed = _rscurate(*args)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    for path, mtime in staged.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was recomputed instead of reused"
    clean = tmp_path / "clean"
    run_build([scenes], clean, workers=1, unit_tiles=4)
    verify(out)
    pd.testing.assert_frame_equal(_index(out), _index(clean))
    assert not list(out.glob("shards/.*tmp")), "no temporary shard file is left behind"
