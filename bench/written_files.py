"""What writing files that stay costs this machine, beside the work that produces them: a build's staged tiles
stay on disk (they become its shards), where `bench/tile_costs.py` deletes each pass's files at once.

Writes --files files of --mb MiB each after a fixed compute step (sha256 of 300 MiB of a 1 MiB buffer, the stand-in
for a unit's work), once keeping every file and once deleting each as soon as it is written, and reports the
process's wall, user and system seconds of each. Also times touching --touch-mb MiB of fresh memory twice: on a
virtual machine whose host backs free memory only when it is first touched, the first pass costs far more a page,
and so does the page cache that kept files take. Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def write_files(folder: Path, files: int, mb: int, keep: bool) -> dict[str, float]:
    """Seconds of `files` rounds of compute then one write of `mb` MiB (kept or deleted at once)."""
    payload, work = os.urandom(mb * 2**20), os.urandom(2**20)
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for k in range(files):
        digest = hashlib.sha256()
        for _ in range(300):
            digest.update(work)
        path = folder / f"part-{k}.bin"
        path.write_bytes(payload)
        if not keep:
            path.unlink()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {"wall_s": round(time.perf_counter() - t0, 3), "user_s": round(r1.ru_utime - r0.ru_utime, 3),
            "system_s": round(r1.ru_stime - r0.ru_stime, 3)}


def touch_us_per_page(mb: int) -> float:
    """Microseconds a 4 KiB page of touching `mb` MiB of newly allocated memory."""
    t0 = time.perf_counter()
    block = np.ones(mb * 2**20 // 8)
    seconds = time.perf_counter() - t0
    del block
    return round(seconds / (mb * 2**20 / 4096) * 1e6, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--mb", type=int, default=20, help="MiB a file (a 256-tile unit of 8-bit RGB is ~20)")
    parser.add_argument("--touch-mb", type=int, default=2560)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for keep in (True, False):
            folder = Path(tmp) / ("kept" if keep else "deleted")
            folder.mkdir()
            print(json.dumps({"what": "files written", "files": args.files, "mb": args.mb,
                              "kept": keep, **write_files(folder, args.files, args.mb, keep)}), flush=True)
    print(json.dumps({"what": "fresh memory touched", "mb": args.touch_mb,
                      "us_per_page": [touch_us_per_page(args.touch_mb) for _ in range(2)]}))


if __name__ == "__main__":
    main()
