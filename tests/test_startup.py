"""Start-up of `rscurate build` (issue 12): what importing rscurate costs, and tiny builds without worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from rscurate import fork_server, launch, pipeline
from tests.conftest import REPO, SMALL_MANIFEST, run_build, textured, write_manifest, write_tif


def test_the_rscurate_command_imports_no_torch_plotting_scipy_or_vector_readers() -> None:
    """torch is rspretrain's; matplotlib is no dependency (the card draws with PIL); scipy only for the few calls
    that need it; numba only when a near-duplicate search is large enough for the covering tables; pyogrio and
    shapely only when a source has vector labels."""
    code = ("import sys, rscurate.cli, rscurate.pipeline, rscurate.units; "
            "print(sorted({m.split('.')[0] for m in sys.modules} "
            "& {'torch', 'matplotlib', 'scipy', 'rspretrain', 'numba', 'pyogrio', 'shapely'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_workers_0_builds_with_threads_in_process(tmp_path: Path, rng: np.random.Generator,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes take ~2 s to start and stop, more than a small scene's whole build: `--workers 0` skips
    them (by default they stay: a worker process isolates a file that crashes its decoder)."""
    write_tif(tmp_path / "data" / "scene.tif", textured(rng, 3, 256, 256))
    manifest = write_manifest(tmp_path / "tiny.yaml", "name: tiny\nlicense: CC0-1.0\nroot: data\n"
                              "include: ['*.tif']\ntile: {size: 128}\n")
    asked: list[bool] = []
    real = pipeline.dask_client

    @contextlib.contextmanager
    def recording(scheduler, workers, quiet, processes=True):  # noqa: ANN001, ANN202 (a stand-in)
        asked.append(processes)
        with real(scheduler, workers, quiet, processes) as client:
            yield client

    monkeypatch.setattr(pipeline, "dask_client", recording)
    report = run_build([manifest], tmp_path / "corpus", processes=True, workers=0)
    assert report.kept == 4 and asked == [False]
    run_build([manifest], tmp_path / "again", processes=True, workers=1)
    assert asked == [False, True]


TEARDOWN_PROBE = """\
import atexit, sys
import rscurate.cli
class Teardown:
    def __del__(self):
        print("torn down", flush=True)
rscurate.cli.teardown_probe = Teardown()  # freed only when the interpreter tears the modules down
atexit.register(print, "exit handlers ran")
sys.argv = ["rscurate", *sys.argv[1:]]
rscurate.cli.app()
"""


@pytest.mark.parametrize(("args", "status", "said"), [(["--version"], 0, "rscurate "),
                                                      (["build", "--bogus"], 2, "No such option")])
def test_the_command_exits_without_tearing_down_modules(args: list[str], status: int, said: str) -> None:
    """Freeing every module's objects at exit took ~0.25 s, more than a small build's work: the command skips
    it, but keeps its exit status, its output, and exit handlers (logging's, distributed's) still run."""
    out = subprocess.run([sys.executable, "-c", TEARDOWN_PROBE, *args], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == status
    assert said in out.stdout + out.stderr and "exit handlers ran" in out.stdout
    assert "torn down" not in out.stdout


@pytest.mark.parametrize(("args", "starts"), [
    (["build", "--sources", "m.yaml", "--out", "c"], True),
    (["build", "--sources", "m.yaml", "--out", "c", "--workers", "2"], True),
    (["build", "--sources", "m.yaml", "--out", "c", "--workers", "0"], False),
    (["build", "--workers=0", "--sources", "m.yaml", "--out", "c"], False),
    (["build", "--sources", "m.yaml", "--out", "c", "--scheduler", "tcp://h:8786"], False),
    (["build", "--scheduler=tcp://h:8786", "--sources", "m.yaml"], False),
    (["build", "--help"], False), (["verify", "c"], False), (["inspect", "--sources", "m.yaml"], False), ([], False),
])
def test_the_command_starts_the_fork_server_only_for_local_worker_processes(args: list[str], starts: bool) -> None:
    assert launch.starts_local_workers(args) is starts


def test_the_launcher_imports_nothing_heavy_before_the_fork_server_starts() -> None:
    """The server only overlaps the command's imports if it starts before them."""
    code = ("import sys, rscurate.launch, rscurate.fork_server; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'pyarrow', 'rasterio', 'pandas', "
            "'distributed', 'dask', 'typer'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Local workers of one build, with or without the fork server: their parent, whether rscurate's modules were loaded
# before any task imported them, and the environment their interpreter started with.
WORKERS_PROBE = """\
import json, os, sys
import dask
from rscurate import fork_server
if sys.argv[1] == "fork":
    fork_server.start()
    assert "MALLOC_TRIM_THRESHOLD_" not in os.environ, "the client's own environment is left as it was"
from rscurate.pipeline import dask_client

CLIENT = os.getpid()

def probe():
    start_env = dict(v.split("=", 1) for v in open("/proc/self/environ").read().split("\\0") if "=" in v)
    return {"parent_is_client": os.getppid() == CLIENT,
            "preloaded": "rscurate.units" in sys.modules,
            "profiled": dask.config.get("distributed.worker.profile.enabled"),
            "env": {k: start_env.get(k) for k in fork_server.WORKER_ENV}}

with dask_client(None, 2, True) as client:
    print(json.dumps(list(client.run(probe).values())))
"""


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_local_workers_fork_from_a_server_that_imported_rscurate(mode: str) -> None:
    """Spawned workers re-import everything (~1 s each, while the client imports too); forked ones start with
    it loaded. Either way a worker's interpreter starts with WORKER_ENV (glibc reads its malloc settings then),
    except where the user set a variable: theirs wins."""
    env = {**os.environ, "OMP_NUM_THREADS": "3"}
    env.pop("MALLOC_TRIM_THRESHOLD_", None)
    out = subprocess.run([sys.executable, "-c", WORKERS_PROBE, mode], cwd=REPO, env=env, capture_output=True,
                         text=True, check=True)
    workers = json.loads(out.stdout)
    assert len(workers) == 2
    expected = {**fork_server.WORKER_ENV, "OMP_NUM_THREADS": "3"}
    for worker in workers:
        assert worker["parent_is_client"] is (mode == "spawn")
        assert worker["preloaded"] is (mode == "fork")
        assert worker["env"] == expected
        assert worker["profiled"] is False  # Dask's sampling profiler costs 3-4 % (pipeline.PROFILE_VARIABLE)


@pytest.mark.parametrize("variable", [None, "True", "False"])
def test_local_workers_run_without_dasks_profiler_unless_the_user_sets_it(monkeypatch: pytest.MonkeyPatch,
                                                                          variable: str | None) -> None:
    monkeypatch.delenv(pipeline.PROFILE_VARIABLE, raising=False)
    if variable is not None:
        monkeypatch.setenv(pipeline.PROFILE_VARIABLE, variable)
    before = dask.config.get("distributed.worker.profile.enabled")
    with pipeline.dask_client(None, 1, True, processes=False):
        inside = dask.config.get("distributed.worker.profile.enabled")
    assert inside is (False if variable is None else before)


def test_the_command_forks_its_workers_and_builds_what_the_library_builds(tmp_path: Path,
                                                                          rng: np.random.Generator) -> None:
    for i in range(3):
        write_tif(tmp_path / "data" / f"s{i}.tif", textured(rng, 3, 256, 256, "uint8"), origin=(3200.0 * i, 0.0))
    manifest = write_manifest(tmp_path / "m.yaml", SMALL_MANIFEST)
    command = subprocess.run([sys.executable, "-m", "rscurate", "build", "--sources", str(manifest), "--out",
                              str(tmp_path / "command"), "--workers", "2"], cwd=REPO, capture_output=True, text=True)
    assert command.returncode == 0, command.stderr
    assert "LocalCluster: 2 worker processes (forkserver)" in command.stderr
    run_build([manifest], tmp_path / "library")
    for name in ("index.parquet", "excluded.parquet", "duplicates.parquet", "stats.json"):
        left, right = (tmp_path / side / name for side in ("command", "library"))
        if name.endswith(".json"):
            assert json.loads(left.read_text())["counts"] == json.loads(right.read_text())["counts"]
        else:
            pd.testing.assert_frame_equal(pd.read_parquet(left), pd.read_parquet(right))
    shards = sorted((tmp_path / "library" / "shards").glob("*.parquet"))
    assert shards
    assert [p.name for p in shards] == sorted(p.name for p in (tmp_path / "command" / "shards").glob("*.parquet"))
    for shard in shards:
        assert pq.read_table(tmp_path / "command" / "shards" / shard.name).equals(pq.read_table(shard))


def test_without_a_fork_server_on_the_platform_workers_stay_spawned(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no fork server: the command must still run, with spawned workers."""
    monkeypatch.setattr(fork_server.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    monkeypatch.setattr(fork_server, "_started", False)
    fork_server.start()
    assert not fork_server.started()
