"""Start-up of `rscurate build` (issue 12): what importing rscurate costs, and tiny builds without worker processes."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rscurate import pipeline
from tests.conftest import REPO, run_build, textured, write_manifest, write_tif


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
