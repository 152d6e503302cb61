"""Peak memory per worker while building from one huge scene: bounded by the tile, not the scene.

Writes a 20000 x 20000 uint16 3-band COG (deflate, 512 px blocks, overviews) whose content is the
sample's real Landsat 8 scene repeated with per-block noise (distinct tiles), then runs
`rscurate build --workers 2` once per tile size (`--tiles 256 512 1024`: units are bounded by decoded bytes,
`--unit-mb`, so the peak should not grow with the tile) and samples the resident memory of every worker
process. In the same
run it measures the straightforward approach (rasterio reads the whole scene) for the ratio.
With --overlap a second scene shows the same ground another time (the first one's pixels from 1024 px inward, with
other noise): every tile of the overlap has a footprint candidate, so the builds also decode pairs of tiles of each
size for their pixel checks, whose tasks --unit-mb bounds as well.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import rasterio
from rasterio.shutil import copy as rio_copy
from rasterio.transform import from_origin
from rasterio.windows import Window

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rscurate.sample_data import fetch  # noqa: E402

SCENE = "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"


def make_cog(path: Path, size: int, offset: int = 0, seed: int = 0) -> None:
    """A size x size COG built strip by strip, so generating it stays small in memory too; with `offset`, only its
    part from (offset, offset) on, georeferenced there, and noise drawn from `seed`."""
    with rasterio.open(fetch() / SCENE) as ds:
        src = ds.read(window=Window(200, 200, 1536, 1536))  # inside the valid footprint
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tiled.tif")
    side = size - offset
    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint16", crs="EPSG:32621",
                   transform=from_origin(300000 + 30 * offset, 7500000 - 30 * offset, 30, 30), tiled=True,
                   blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="YES")
    strip = 1536
    with rasterio.open(tmp, "w", **profile) as dst:
        for y in range(offset, size, strip):
            h = min(strip, size - y)
            rows = (np.arange(y, y + h) % strip)[:, None]
            cols = (np.arange(offset, size) % strip)[None, :]
            row = src[:, rows, cols]
            row = row + rng.integers(0, 8, size=row.shape, dtype=np.uint16)
            dst.write(row, window=Window(0, y - offset, side, h))
    rio_copy(tmp, path, driver="COG", compress="deflate", blocksize=512, BIGTIFF="YES")
    tmp.unlink()


def peak_rss_of_children(proc: subprocess.Popen, stop: threading.Event, peaks: dict[int, int]) -> None:
    parent = psutil.Process(proc.pid)
    while not stop.is_set():
        try:
            for child in parent.children(recursive=True):
                try:
                    peaks[child.pid] = max(peaks.get(child.pid, 0), child.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
        except psutil.NoSuchProcess:
            return
        time.sleep(0.1)


def whole_scene_peak(path: Path) -> int:
    """Peak RSS (bytes) of a fresh process that reads the scene whole, as the straightforward loop does."""
    code = (f"import resource, rasterio; ds = rasterio.open({str(path)!r}); a = ds.read(); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    return int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def build_peaks(folder: Path, tile: int, workers: int, unit_mb: int | None) -> list[int]:
    """Run one build at `tile` px and print its time and each worker's peak RSS; returns the peaks (bytes)."""
    (folder / "huge.yaml").write_text(f"name: huge\nlicense: public domain (USGS Landsat)\nroot: {folder}\n"
                                      f"include: ['*.tif']\nnodata: 0\ntile: {{size: {tile}}}\n")
    cmd = [str(Path(sys.executable).parent / "rscurate"), "build", "--sources", str(folder / "huge.yaml"),
           "--out", str(folder / "corpus"), "--workers", str(workers), "--quiet", "--overwrite",
           *(["--unit-mb", str(unit_mb)] if unit_mb else [])]
    peaks: dict[int, int] = {}
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    watcher = threading.Thread(target=peak_rss_of_children, args=(proc, stop, peaks))
    watcher.start()
    proc.wait()
    stop.set()
    watcher.join()
    seconds = time.perf_counter() - t0
    stats = json.loads((folder / "corpus" / "stats.json").read_text())
    worker_peaks = sorted(peaks.values(), reverse=True)[:workers]
    print(json.dumps({"what": "rscurate build", "tile": tile, "workers": workers, "seconds": round(seconds, 1),
                      "tiles": stats["counts"]["kept"], "unit_mb": stats["build"]["settings"].get("unit_mb"),
                      "pixel_checks": stats["build"]["dedup"]["pixel_checks"],
                      "peak_rss_mb_per_worker": [round(p / 2**20) for p in worker_peaks]}), flush=True)
    return worker_peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tiles", type=int, nargs="+", default=[256], help="tile sizes, one build each")
    parser.add_argument("--unit-mb", type=int, default=None, help="passed to rscurate build (default: its own)")
    parser.add_argument("--overlap", action="store_true", help="a second scene over the same ground (pixel checks)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        make_cog(folder / "huge.tif", args.size)
        if args.overlap:
            make_cog(folder / "huge_again.tif", args.size, offset=1024, seed=1)
        print(json.dumps({"what": "generated COG", "size": args.size, "seconds": round(time.perf_counter() - t0, 1),
                          "file_mb": round((folder / "huge.tif").stat().st_size / 2**20, 1)}))
        worker_peaks = [p for tile in args.tiles for p in build_peaks(folder, tile, args.workers, args.unit_mb)]
        naive = whole_scene_peak(folder / "huge.tif")
        print(json.dumps({"what": "whole-scene read", "peak_rss_mb": round(naive / 2**20),
                          "ratio_to_worker_peak": round(naive / max(worker_peaks), 1)}))


if __name__ == "__main__":
    main()
