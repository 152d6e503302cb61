"""Start-up of `rscurate build`: wall time of the whole command on one small scene, against Python's own start
(`python -c pass`) and the straightforward loop as a whole process (bench/straightforward_loop.py), measured in
the same run; median of --repeat runs each. Prints one JSON line.

    python bench/startup.py --repeat 5 --workers 0   # a 512 x 512 8-bit RGB window of a real Landsat 8 scene;
    # --workers 0: threads in process (no worker-process start); --workers 1: one isolated worker process

Every command runs the rscurate of the tree this script is in (PYTHONPATH), as its console script does
(`python -m rscurate`): copy the script into another tree to measure that version the same way.

Breakdown: `imports` is `python -c "import rscurate.cli"`; `build_reported` is what the build reports of its own
time (cluster, planning, tiles, dedup, shards, statistics: everything but the card and the imports).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import rasterio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from build_throughput import SCENES, _rgb8, rscurate_command  # noqa: E402

from rscurate.sample_data import fetch  # noqa: E402

SIZE = 512


def small_scene(folder: Path) -> Path:
    """A SIZE x SIZE window of the sample's Landsat 8 scene as 8-bit RGB, georeferenced: four 256 px tiles."""
    window = ((1000, 1000 + SIZE), (1000, 1000 + SIZE))
    with rasterio.open(fetch() / SCENES[0]) as ds:
        rgb = _rgb8(ds.read(window=window)[::-1])
        profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=3, dtype="uint8", crs=ds.crs,
                       transform=ds.window_transform(window), tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate", nodata=0)
    path = folder / "scene.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(rgb)
    return path


def timed(cmd: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd="/",  # outside: no other package
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - t0, out.stdout + out.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scene = small_scene(folder)
        manifest = folder / "small.yaml"
        manifest.write_text(f"name: small\nlicense: public domain (USGS Landsat)\nroot: {folder}\n"
                            "include: ['scene.tif']\nbands: rgb\ntile: {size: 256}\n")
        build = [*rscurate_command(), "build", "--sources", str(manifest), "--out", str(folder / "corpus"),
                 "--workers", str(args.workers), "--quiet", "--overwrite"]
        runs: dict[str, list[float]] = {"python_pass": [], "imports": [], "build": [], "build_reported": [],
                                        "loop": []}
        for _ in range(args.repeat):  # interleaved, so that a busy spell of the shared machine hits all alike
            runs["python_pass"].append(timed([py, "-c", "pass"])[0])
            runs["imports"].append(timed([py, "-c", "import rscurate.cli"])[0])
            seconds, output = timed(build)
            runs["build"].append(seconds)
            runs["build_reported"].append(float(re.findall(r"\(([\d.]+) s\)", output)[-1]))
            runs["loop"].append(timed([py, str(REPO / "bench" / "straightforward_loop.py"), str(folder / "png"),
                                       str(scene)])[0])
    med = {k: round(statistics.median(v), 3) for k, v in runs.items()}
    print(json.dumps({
        "bench": "startup", "scene_px": SIZE, "tiles": (SIZE // 256) ** 2, "workers": args.workers,
        "repeat": args.repeat, "median_s": med,
        "build_beyond_python_s": round(med["build"] - med["python_pass"], 3),
        "build_over_loop": round(med["build"] / med["loop"], 2),
        "range_s": {k: [round(min(v), 3), round(max(v), 3)] for k, v in runs.items()},
    }))


if __name__ == "__main__":
    main()
