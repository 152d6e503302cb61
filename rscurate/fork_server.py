"""Local worker processes forked from a server that imported rscurate once.

Dask's LocalCluster starts each worker with `spawn`: a fresh interpreter that imports distributed, rscurate,
pandas, pyarrow and rasterio again (~1 s a worker, on the cores the client is importing the same modules on).
The `rscurate` command instead starts multiprocessing's fork server first thing (rscurate/launch.py); it imports
everything while the client does, and each worker, or its replacement after a crash, is a fork of it.

The server's environment is frozen when it starts, so only the command uses it (its environment is fixed for the
whole run); a Python session that builds several times keeps `spawn`, whose workers see the environment of the
moment.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os

# What the server imports: the command's own module pulls in everything a worker runs (and what a child re-imports
# as __mp_main__ is then already loaded).
PRELOAD = ["rscurate.cli"]
# Set before a worker's interpreter starts. glibc reads its malloc settings once at start: distributed sets
# MALLOC_TRIM_THRESHOLD_=64 KiB, which also freezes the mmap threshold at 128 KiB, so every tile's arrays of
# 100s of KiB became an mmap/munmap with page faults (20-30 % of a tile's cost); large thresholds keep them on the
# heap. One single-threaded worker per core: a BLAS thread pool per worker only contends for the cores.
# PYTHONHASHSEED: the one distributed gives spawned workers, so that they hash alike.
WORKER_ENV = {"MALLOC_TRIM_THRESHOLD_": str(64 * 2**20), "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
              "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "6640"}

_started = False


def start() -> None:
    """Start the fork server now; it imports PRELOAD in the background. Variables of WORKER_ENV already set in
    this environment keep their values (as with distributed's pre-spawn environment); this process's own
    environment is left as it was. Where the platform has no fork server (Windows), workers stay spawned."""
    global _started
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    added = {k: v for k, v in WORKER_ENV.items() if k not in os.environ}
    os.environ.update(added)
    try:
        multiprocessing.forkserver.set_forkserver_preload(PRELOAD)
        multiprocessing.forkserver.ensure_running()
    finally:
        for key in added:
            del os.environ[key]
    _started = True


def started() -> bool:
    """Whether this process started the server: local workers then fork from it instead of being spawned."""
    return _started
