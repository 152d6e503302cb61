"""Whole-build throughput (tiles/s per core) against the straightforward loop, in the same run.

Input: the sample's real Landsat 8 scenes as 8-bit RGB GeoTIFFs (a 2-98 % stretch of bands 4/3/2),
in their 8 flips/rotations so the tiles are real imagery and distinct. Both sides cut the same
256x256 tiles at the same stride (default 64: about 10k tiles, so that start-up, a few seconds, does
not dominate a throughput figure; overlapping tiles are distinct content for both sides).
- baseline: rasterio reads each whole scene, numpy slices tiles, `imagehash.phash` per tile and one
  PNG file per tile (one process, one core);
- rscurate: `rscurate build` on a LocalCluster (reads, quality, sha256 + pHash, encode, dedup,
  shards, stats, card), timed end to end including the cluster start;
- decode once: rasterio reads each whole scene once and does nothing else (one process, one core), the
  physical floor of any build; each build is also reported as a multiple of it.
Prints one JSON line per measurement and a summary line with the ratio per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from straightforward_loop import TILE, baseline  # noqa: E402

from rscurate.sample_data import fetch  # noqa: E402

SCENES = ["LC08_L1TP_224078_20200518_20200518_01_RT.TIF"]
BAND_SCENE = "LC08_L1TP_224077_20200518_20200518_01_RT_B{}.TIF"


def _rgb8(stack: np.ndarray) -> np.ndarray:
    valid = stack.any(axis=0)
    out = np.zeros(stack.shape, np.uint8)
    for i, band in enumerate(stack):
        lo, hi = np.percentile(band[valid], (2, 98))
        out[i] = np.clip((band.astype(np.float64) - lo) / (hi - lo) * 254 + 1, 1, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


def make_inputs(folder: Path) -> list[Path]:
    """Real scenes as 8-bit RGB (red, green, blue), each in its 8 dihedral variants."""
    sample = fetch()
    stacks = []
    with rasterio.open(sample / SCENES[0]) as ds:
        stacks.append(ds.read()[::-1])  # file holds B2,B3,B4 -> red, green, blue
    stacks.append(np.stack([rasterio.open(sample / BAND_SCENE.format(b)).read(1) for b in (4, 3, 2)]))
    paths = []
    for s, stack in enumerate(stacks):
        rgb = _rgb8(stack)
        for k in range(8):
            v = np.rot90(rgb, k % 4, axes=(1, 2))
            v = v[:, :, ::-1] if k >= 4 else v
            path = folder / f"scene{s}_v{k}.tif"
            profile = dict(driver="GTiff", width=v.shape[2], height=v.shape[1], count=3, dtype="uint8",
                           tiled=True, blockxsize=256, blockysize=256, compress="deflate", nodata=0)
            with rasterio.open(path, "w", **profile) as dst:
                dst.write(np.ascontiguousarray(v))
            paths.append(path)
    return paths


def _linked(path: Path, prefix: str) -> Path:
    """A hard link to `path` beside it, its name prefixed."""
    link = path.with_name(prefix + path.name)
    os.link(path, link)
    return link


def rscurate_command() -> list[str]:
    """The `rscurate` command of the tree this script is in, as its console script runs it (`python -m rscurate`;
    trees from before rscurate/__main__.py: `python -m rscurate.cli`), whatever is installed in the venv."""
    main = "rscurate" if (REPO / "rscurate" / "__main__.py").exists() else "rscurate.cli"
    return [sys.executable, "-m", main]


def run_rscurate(args: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    """Run `rscurate ARGS` from this tree (outside it: the working directory must not shadow its package)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([*rscurate_command(), *args], env=env, cwd="/", check=True, **kwargs)  # type: ignore[call-overload]


def ours(folder: Path, out: Path, workers: int, stride: int) -> tuple[int, dict[str, int], float]:
    manifest = folder / "bench.yaml"
    manifest.write_text(f"""name: bench
license: public domain (USGS Landsat)
root: {folder}
include: ["*.tif"]
bands: rgb
tile: {{size: {TILE}, stride: {stride}}}
""")
    t0 = time.perf_counter()
    run_rscurate(["build", "--sources", str(manifest), "--out", str(out), "--workers", str(workers), "--quiet"],
                 stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    stats = json.loads((out / "stats.json").read_text())
    c = stats["counts"]
    return c["kept"] + sum(c["excluded"].values()) + sum(c["duplicates"].values()), c["duplicates"], seconds


def decode_once(paths: list[Path]) -> float:
    """Seconds to decode every scene once (whole-scene reads, nothing else)."""
    t0 = time.perf_counter()
    for path in paths:
        with rasterio.open(path) as ds:
            ds.read()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--stride", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="builds per worker count (their spread is the noise)")
    parser.add_argument("--no-baseline", action="store_true",
                        help="skip the loop (about 3 minutes): a scaling curve of rscurate alone, without ratios")
    parser.add_argument("--copies", type=int, default=1,
                        help="each scene this many times under other names (hard links: exact copies, more tiles)")
    parser.add_argument("--keep-corpus", type=Path, metavar="DIR",
                        help="move the last build's corpus here (a real corpus for bench/loader_throughput.py --data)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "scenes"
        folder.mkdir()
        paths = make_inputs(folder)
        paths += [_linked(path, f"copy{k}_") for k in range(1, args.copies) for path in list(paths)]
        base = None
        floor = min(decode_once(paths) for _ in range(3))
        print(json.dumps({"what": "decode once", "scenes": len(paths), "seconds": round(floor, 2)}))
        if not args.no_baseline:
            n, secs = baseline(paths, Path(tmp) / "png", args.stride)
            base = n / secs
            print(json.dumps({"what": "baseline loop", "tiles": n, "seconds": round(secs, 2), "cores": 1,
                              "tiles_per_s_per_core": round(base, 1)}))
        for w in args.workers:
            for _ in range(args.repeat):
                out = Path(tmp) / f"corpus{w}"
                m, dups, secs = ours(folder, out, w, args.stride)
                rate = m / secs / w
                print(json.dumps({"what": "rscurate build", "tiles": m, "duplicates": dups, "seconds": round(secs, 2),
                                  "cores": w, "tiles_per_s_per_core": round(rate, 1),
                                  "build_over_decode_once": round(secs / floor, 2),
                                  **({"ratio_per_core": round(rate / base, 2)} if base else {})}))
                if args.keep_corpus:
                    shutil.rmtree(args.keep_corpus, ignore_errors=True)
                    shutil.move(out, args.keep_corpus)
                else:
                    shutil.rmtree(out)


if __name__ == "__main__":
    main()
