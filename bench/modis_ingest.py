"""MODIS L1B ingest throughput (128 px chips/s per core) against a straightforward pyhdf loop, in the same run.

Input: full-size MOD021KM-structured granules (2030 x 1354, every band of the product) written by
rscurate.modis_synth; 150 chips of 128 px per granule, 14 bands each.
- baseline: per granule, pyhdf reads each of the 14 bands whole, calibrates it with rscurate.modis_calibration
  (the same arithmetic), stacks them and slices the 128 px chips (one process, one core);
- reader: rscurate's ModisL1BReader reads and calibrates each chip's window (what a build worker does per chip,
  validity included), one core;
- build: `rscurate build --workers N` end to end (cluster start, reads, quality rules, sha256 + pHash, zstd
  encode, dedup, shards, stats, card).
Prints one JSON line per measurement, chips/s per core and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rscurate import modis_calibration as cal  # noqa: E402
from rscurate.manifest import load_manifest  # noqa: E402
from rscurate.modis_bands import BANDS, DEFAULT_BANDS  # noqa: E402
from rscurate.modis_synth import write_demo  # noqa: E402
from rscurate.readers import SceneRef, open_scene  # noqa: E402
from rscurate.tiling import plan_windows  # noqa: E402

CHIP = 128


def baseline(paths: list[Path]) -> tuple[int, float]:
    """Read each band whole, calibrate, stack, slice chips: the loop one writes first."""
    from pyhdf.SD import SD

    n, t0 = 0, time.perf_counter()
    for path in paths:
        sd = SD(str(path))
        layers = []
        for name in DEFAULT_BANDS:
            m = BANDS[name]
            sds = sd.select(m.sds)
            attrs = sds.attributes()
            k = attrs["band_names"].split(",").index(m.number)
            dn = sds[k]
            if m.emissive:
                rad = cal.radiance(dn, attrs["radiance_scales"][k], attrs["radiance_offsets"][k])
                layers.append(cal.brightness_temperature(rad, m.number))
            else:
                layers.append(cal.reflectance_percent(dn, attrs["reflectance_scales"][k],
                                                      attrs["reflectance_offsets"][k]))
            sds.endaccess()
        sd.end()
        stack = np.stack(layers)
        for y in range(0, stack.shape[1] - CHIP + 1, CHIP):
            for x in range(0, stack.shape[2] - CHIP + 1, CHIP):
                chip = np.ascontiguousarray(stack[:, y : y + CHIP, x : x + CHIP])
                n += chip.shape[0] > 0
    return n, time.perf_counter() - t0


def reader_loop(paths: list[Path], manifest: Path) -> tuple[int, float]:
    """rscurate's reader, one window per chip, as a build worker reads them."""
    m = load_manifest(manifest)
    n, t0 = 0, time.perf_counter()
    for path in paths:
        reader = open_scene(SceneRef(m.name, path.name, (str(path),), "modis_l1b"), [], None)
        for window in plan_windows(reader.width, reader.height, m.tile, path.name):
            reader.read(*window)
            n += 1
        reader.close()
    return n, time.perf_counter() - t0


def build(manifest: Path, out: Path, workers: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    subprocess.run([str(Path(sys.executable).parent / "rscurate"), "build", "--sources", str(manifest), "--out",
                    str(out), "--workers", str(workers), "--quiet", "--overwrite"], check=True,
                   stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - t0
    counts = json.loads((out / "stats.json").read_text())["counts"]
    return counts["kept"] + sum(counts["excluded"].values()) + sum(counts["duplicates"].values()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--granules", type=int, default=2, help="full-size day granules (210 MB each on disk)")
    parser.add_argument("--workers", type=int, nargs="*", default=[1], help="build worker counts; none: skip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "granules"
        manifest = write_demo(folder, granules=args.granules, night=0)
        paths = sorted(folder.glob("*.hdf"))
        reader_loop(paths[:1], manifest)  # warm the page cache: both sides then read from memory
        n, secs = baseline(paths)
        base = n / secs
        print(json.dumps({"what": "baseline pyhdf loop", "chips": n, "seconds": round(secs, 2), "cores": 1,
                          "chips_per_s_per_core": round(base, 1)}))
        n, secs = reader_loop(paths, manifest)
        print(json.dumps({"what": "ModisL1BReader per chip", "chips": n, "seconds": round(secs, 2), "cores": 1,
                          "chips_per_s_per_core": round(n / secs, 1), "ratio_per_core": round(n / secs / base, 2)}))
        for w in args.workers:
            n, secs = build(manifest, Path(tmp) / "corpus", w)
            rate = n / secs / w
            print(json.dumps({"what": "rscurate build", "chips": n, "seconds": round(secs, 2), "cores": w,
                              "chips_per_s_per_core": round(rate, 1), "ratio_per_core": round(rate / base, 2)}))


if __name__ == "__main__":
    main()
