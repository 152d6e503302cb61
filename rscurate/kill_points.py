"""Test hook: SIGKILL the build at a named point, so tests can prove that a rerun of a killed build gives the
same corpus (tests/test_build_faults.py). Unset, it costs one environment lookup per call.

`RSCURATE_TEST_KILL_AT=STAGE[:N]` kills the `rscurate build` process (as `kill -9 PID` would; its local
workers exit with it) once N tasks of STAGE are done (default 0: on reaching it). Stages, in build order:
planning, tiles, dedup (after the near-pair search), shards, card (after the dataset card, before build.json),
cleanup (after build.json, with `_work/` renamed for removal).
"""

from __future__ import annotations

import os
import signal

KILL_AT = "RSCURATE_TEST_KILL_AT"


def kill_point(stage: str, done: int = 0) -> None:
    """Die here when the test hook names this stage and count."""
    want = os.environ.get(KILL_AT)
    if want is None:
        return
    name, _, count = want.partition(":")
    if name == stage and done == int(count or 0):
        os.kill(os.getpid(), signal.SIGKILL)
