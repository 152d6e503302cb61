"""Curation faults injected for real: SIGKILL of `rscurate build` at each stage, a shard marker torn by a kill."""

from __future__ import annotations

import json
import os
import pickle
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rscurate.kill_points import KILL_AT
from rscurate.shards import write_shard
from rscurate.verify import VerifyError, verify
from tests.conftest import SMALL_MANIFEST, external_cluster, run_build, scene_row, textured, write_manifest, write_tif

BIN = Path(sys.executable).parent
TABLES = ("index.parquet", "excluded.parquet", "duplicates.parquet", "inputs.parquet")
UNIT_TILES = 8


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 scenes of 4x4 tiles (two units each); scenes 4 and 8 repeat scene 0's top-left 2x2 tiles elsewhere, so
    two units lose half their tiles to dedup and are rewritten by shard tasks (the others are hard-linked)."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("faults")
    first = textured(rng, 3, 256, 256, "uint8")
    scenes = [first] + [textured(rng, 3, 256, 256, "uint8") for _ in range(11)]
    for i in (4, 8):
        scenes[i][:, :128, :128] = first[:, :128, :128]
    return scene_row(root, scenes)


@pytest.fixture(scope="module")
def reference(scenes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted build."""
    out = tmp_path_factory.mktemp("reference") / "corpus"
    run_build([scenes], out, unit_tiles=UNIT_TILES)
    return out


def start_build(sources: Path, out: Path, *extra: str, env: dict[str, str] | None = None,
                **kw) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    """`rscurate build` (2 local workers unless --scheduler is given) as its own process group."""
    return subprocess.Popen([str(BIN / "rscurate"), "build", "--sources", str(sources), "--out", str(out),
                             "--workers", "2", "--quiet", "--unit-tiles", str(UNIT_TILES), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, **(env or {})}, **kw)


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    """Wait for a build; whatever it leaves running (orphaned local workers) is killed."""
    try:
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout.decode(), stderr.decode())


def rscurate_build(sources: Path, out: Path, *extra: str, **kw) -> subprocess.CompletedProcess:  # type: ignore
    return finish(start_build(sources, out, *extra, **kw))


def assert_no_partial_shard(out: Path) -> None:
    """Every shard file under its final name is whole (temporary files are dot-named and never read)."""
    for path in (out / "shards").glob("part-*.parquet"):
        pq.read_table(path)


def assert_same_corpus(out: Path, reference: Path) -> None:
    """Tables, shard rows (image bytes included) and statistics equal the uninterrupted build's."""
    verify(out)
    for name in TABLES:
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(reference / name))
    shards = sorted(p.name for p in (reference / "shards").glob("*"))
    assert sorted(p.name for p in (out / "shards").glob("*")) == shards
    for name in shards:
        assert pq.read_table(out / "shards" / name).equals(pq.read_table(reference / "shards" / name)), name
    stats, ref = (json.loads((d / "stats.json").read_text()) for d in (out, reference))
    assert {k: stats[k] for k in ("counts", "sources", "bands")} == {k: ref[k] for k in ("counts", "sources", "bands")}
    assert not list(out.glob("_work*")), "the work folder is removed"


# each stage once part-way (N tasks of it done, where it has tasks); see rscurate/kill_points.py
@pytest.mark.slow
@pytest.mark.parametrize("stage", ["planning:1", "tiles:6", "dedup", "shards:1", "card", "cleanup"])
def test_a_build_killed_at_any_stage_reruns_to_the_same_corpus(scenes: Path, reference: Path, tmp_path: Path,
                                                              stage: str) -> None:
    out = tmp_path / "corpus"
    killed = rscurate_build(scenes, out, env={KILL_AT: stage})
    assert killed.returncode == -signal.SIGKILL, f"the build was not killed at {stage}: {killed.stderr}"
    assert_no_partial_shard(out)
    if stage != "cleanup":  # killed after build.json, the corpus is whole already
        with pytest.raises(VerifyError, match="did not finish"):
            verify(out)
    rerun = rscurate_build(scenes, out)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_corpus(out, reference)

# Runs shards.write_shard(0, KEY, [0], WORK, OUT) with Path.write_bytes replaced: the `.done` marker (or its
# temporary file) is written half, and the process then SIGKILLs itself, as a kill in the middle of that write would.
TORN_MARKER = """
import os, signal, sys
from pathlib import Path

def torn(self, data):
    if ".done" in self.name:
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, data)

real, Path.write_bytes = Path.write_bytes, torn
from rscurate.shards import write_shard
write_shard(0, sys.argv[1], [0], sys.argv[2], sys.argv[3])
"""


def test_a_kill_while_a_shard_marker_is_written_leaves_no_torn_marker(tmp_path: Path) -> None:
    write_tif(tmp_path / "data" / "a.tif", textured(np.random.default_rng(5), 3, 256, 256, "uint8"))
    corpus = tmp_path / "corpus"
    run_build([write_manifest(tmp_path / "small.yaml", SMALL_MANIFEST)], corpus, keep_work=True)
    work = corpus / "_work"
    key = next(p.name.split(".")[0] for p in (work / "units").glob("*.meta.parquet"))
    clean = write_shard(0, key, [0], str(work), str(tmp_path / "clean"))

    out = tmp_path / "out"
    script = tmp_path / "torn.py"
    script.write_text(TORN_MARKER)
    killed = subprocess.run([sys.executable, str(script), key, str(work), str(out)], capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()
    assert (out / "shards" / "part-00000.parquet").exists(), "the kill came after the shard was written"
    # the rerun of the shard task redoes it (on the old code it unpickled the torn marker and failed)
    again = write_shard(0, key, [0], str(work), str(out))
    assert pickle.dumps(again) == pickle.dumps(clean)


# A worker preload: reading a scene named poison_plan (when planning) or poison_read (when cutting tiles) kills the
# worker process, as a crash in a decoder would, every time.
POISON = """
import os, signal
from rscurate import units

def poisoned(func, marker):
    def run(first, scene, *rest):
        if marker in scene.scene:
            os.kill(os.getpid(), signal.SIGKILL)
        return func(first, scene, *rest)
    return run

units._plan_scene = poisoned(units._plan_scene, "poison_plan")
units._process_scene = poisoned(units._process_scene, "poison_read")
"""


def _tiles(corpus: Path) -> pd.DataFrame:
    """Kept tiles without their place in the shards (a split unit moves them), in id order."""
    index = pd.read_parquet(corpus / "index.parquet").drop(columns=["shard", "row"])
    return index.sort_values("id", ignore_index=True)


@pytest.mark.slow
def test_a_file_that_keeps_killing_its_worker_is_unreadable_not_a_failed_build(scenes: Path, reference: Path,
                                                                                tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for tif in (scenes.parent.parent / "data").glob("*.tif"):
        os.link(tif, data / tif.name)
    rng = np.random.default_rng(3)
    write_tif(data / "poison_plan.tif", textured(rng, 3, 128, 128, "uint8"), origin=(0.0, 4014080.0))
    # two small scenes share one unit: when it kills its workers, its scenes are retried one per task
    write_tif(data / "poison_read.tif", textured(rng, 3, 128, 128, "uint8"), origin=(3200.0, 4014080.0))
    write_tif(data / "q_small.tif", textured(rng, 3, 128, 128, "uint8"), origin=(6400.0, 4014080.0))
    manifest = write_manifest(tmp_path / "scenes.yaml", (scenes).read_text().replace("../data", "data"))
    preload = tmp_path / "poison.py"
    preload.write_text(POISON)
    out = tmp_path / "corpus"
    build = rscurate_build(manifest, out, env={"DASK_DISTRIBUTED__WORKER__PRELOAD": json.dumps([str(preload)]),
                                               "DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES": "1"})
    assert build.returncode == 0, build.stderr
    verify(out)
    excluded = pd.read_parquet(out / "excluded.parquet")
    lost = excluded[excluded["detail"].str.contains("worker process died")]
    assert (lost["reason"] == "unreadable").all()
    assert lost.groupby("scene").size().to_dict() == {"poison_plan.tif": 1, "poison_read.tif": 4}
    assert "poison_read.tif" in build.stderr, "the end-of-build summary names the lost scene"
    tiles = _tiles(out)
    assert (tiles["scene"] == "q_small.tif").sum() == 4, "the poison's unit-mate is kept"
    pd.testing.assert_frame_equal(tiles[tiles["scene"] != "q_small.tif"].reset_index(drop=True), _tiles(reference))


@pytest.mark.slow
def test_a_worker_killed_mid_build_on_a_cluster_changes_nothing(scenes: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    with external_cluster(tmp_path, 2) as (address, workers):
        build = start_build(scenes, out, "--scheduler", address)
        units = out / "_work" / "units"
        deadline = time.time() + 120
        while len(list(units.glob("*.excluded.parquet"))) < 4 and time.time() < deadline and build.poll() is None:
            time.sleep(0.02)
        assert build.poll() is None, "the build finished before a worker could be killed; make the input larger"
        os.killpg(workers[0].pid, signal.SIGKILL)  # the worker and its nanny: the node is gone
        staged = len(list(units.glob("*.excluded.parquet")))
        done = finish(build)
    assert staged < 24, "the worker was killed while tiles were being made"
    assert done.returncode == 0, done.stderr
    assert_same_corpus(out, reference)


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:  # in the child: Python ignores SIGXFSZ, so a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@contextmanager
def small_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `folder` (root only: the test skips where mounting is refused)."""
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def _check_disk_full_then_rerun(scenes: Path, reference: Path, out: Path, failed: subprocess.CompletedProcess,
                                rerun: Callable[[], subprocess.CompletedProcess]) -> None:
    assert failed.returncode == 2, failed.stderr
    lines = failed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(out) in lines[0], failed.stderr
    assert "Traceback" not in failed.stderr
    assert_no_partial_shard(out)
    with pytest.raises(VerifyError, match="did not finish"):
        verify(out)
    again = rerun()
    assert again.returncode == 0, again.stderr
    assert_same_corpus(out, reference)


@pytest.mark.slow
def test_a_file_size_limit_fails_cleanly_and_a_rerun_finishes(scenes: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    # the fingerprint and small files fit, the first staged unit (about 100 KB) does not
    failed = rscurate_build(scenes, out, preexec_fn=_limit_file_size(32 * 1024))
    assert "File too large" in failed.stderr
    _check_disk_full_then_rerun(scenes, reference, out, failed, lambda: rscurate_build(scenes, out))


@pytest.mark.slow
def test_a_full_disk_fails_cleanly_and_a_rerun_with_space_finishes(scenes: Path, reference: Path,
                                                                   tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        out = disk / "corpus"
        failed = rscurate_build(scenes, out)
        assert "No space left on device" in failed.stderr

        def with_space() -> subprocess.CompletedProcess:
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            return rscurate_build(scenes, out)

        _check_disk_full_then_rerun(scenes, reference, out, failed, with_space)
