"""Curation faults injected for real: SIGKILL of `rscurate build` at each stage, a shard marker torn by a kill."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np

from rscurate.shards import write_shard
from tests.conftest import SMALL_MANIFEST, run_build, textured, write_manifest, write_tif

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
