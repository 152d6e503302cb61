"""The build's global decision (rscurate.dedup.decide) at scale, on synthetic candidates.

`dedup_search.py` times the pair search alone; this times everything the client does with the slim table of
N candidates: exact leakage and duplicates, scene matching, the guarded near search and the keep rule.
Candidates: random 64-bit pHashes with 1 % planted near copies (one flipped bit), 64 tiles per scene, two
sources, no georeferencing, all textured. Prints one JSON line with n, seconds, duplicates, peak_rss_mb.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rscurate.dedup import DedupSettings, decide  # noqa: E402
from rscurate.hamming_search import DEFAULT_RADIUS  # noqa: E402


def candidates(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    k = n // 100
    src = rng.integers(0, n, k)
    h[rng.integers(0, n, k)] = h[src] ^ (np.uint64(1) << rng.integers(0, 64, k).astype(np.uint64))
    ids = np.char.add("t", np.arange(n).astype(str))
    return pd.DataFrame({
        "id": ids, "source": np.where(np.arange(n) % 2, "a", "b"),
        "scene": np.char.add("scene", (np.arange(n) // 64).astype(str)), "x": 0, "y": 0, "width": 256,
        "height": 256, "crs": "", "minx": np.nan, "miny": np.nan, "maxx": np.nan, "maxy": np.nan, "gsd_m": 10.0,
        "sha256": ids, "phash": h, "texture": 30.0, "nodata_fraction": 0.0,
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--radius", type=int, default=DEFAULT_RADIUS)
    args = parser.parse_args()
    cands = candidates(args.n)
    scenes = pd.DataFrame(columns=["source", "scene", "width", "height", "crs", "minx", "miny", "maxx", "maxy",
                                   "phash", "q0", "q1", "q2", "q3", "texture", "aspect"])
    t0 = time.perf_counter()
    decisions = decide(cands, scenes, {"a": 1}, set(), DedupSettings(args.radius))
    seconds = time.perf_counter() - t0
    print(json.dumps({"n": args.n, "radius": args.radius, "seconds": round(seconds, 1),
                      "duplicates": len(decisions.duplicates),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


if __name__ == "__main__":
    main()
