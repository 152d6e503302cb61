"""A multi-date 16-bit corpus built whole: the tile stage, the pixel checks and the build, as the build reports them.

Input: a --side px crop of the sample's Landsat 8 scene (row 224/078, uint16 blue, green, red, georeferenced) as
--dates acquisitions of one place, each the crop times its own smooth random field of 0.5-1.5 per band plus noise
(seed 0), so that the pixel checks see other dates of the same ground; each file is also written --copies times
under other names (hard links: exact copies, found by sha256). Tiles of 256 px at stride 256.

    python bench/multidate_build.py --copies 6 --workers 1 --repeat 2

Every build runs the rscurate of the tree this script is in: copy it into another checkout to measure that version.
Prints one JSON line per build: seconds of the tile stage (the build's log), of the pixel checks and of the whole
build (stats.json), and the counts.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from scipy.ndimage import zoom

sys.path.insert(0, str(Path(__file__).resolve().parent))

from build_throughput import SCENES, _linked, run_rscurate  # noqa: E402

from rscurate.sample_data import fetch  # noqa: E402


def make_dates(folder: Path, side: int, dates: int) -> list[Path]:
    """The crop as `dates` acquisitions (see the module docstring)."""
    with rasterio.open(fetch() / SCENES[0]) as ds:
        window = ((0, side), (0, side))
        crop = ds.read(window=window).astype(np.float64)
        profile = dict(driver="GTiff", width=side, height=side, count=ds.count, dtype="uint16", crs=ds.crs,
                       transform=ds.window_transform(window), tiled=True, blockxsize=256, blockysize=256,
                       compress="deflate")
    rng = np.random.default_rng(0)
    paths = []
    for d in range(dates):
        field = zoom(rng.uniform(0.5, 1.5, (crop.shape[0], 8, 8)), (1, side / 8, side / 8), order=1)
        path = folder / f"date{d}.tif"
        with rasterio.open(path, "w", **profile) as out:
            out.write(np.clip(crop * field + rng.normal(0, 30, crop.shape), 1, 65535).astype(np.uint16))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", type=int, default=1792, help="crop side, px (the scene is 2,041 x 1,860)")
    parser.add_argument("--dates", type=int, default=4)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "dates"
        folder.mkdir()
        paths = make_dates(folder, args.side, args.dates)
        for k in range(1, args.copies):
            for path in paths:
                _linked(path, f"copy{k}_")
        manifest = Path(tmp) / "dates.yaml"
        manifest.write_text(f"name: l8_dates\nlicense: public domain (USGS)\nroot: {folder}\ninclude: ['*.tif']\n"
                            "bands: [{name: blue}, {name: green}, {name: red}]\ntile: {size: 256}\n")
        for r in range(args.repeat):
            out = Path(tmp) / f"corpus{r}"
            done = run_rscurate(["build", "--sources", str(manifest), "--out", str(out), "--workers",
                                 str(args.workers)], capture_output=True, text=True)
            tiles = re.search(r"tiles: \d+ tasks in ([\d.]+) s", done.stderr)
            build = json.loads((out / "stats.json").read_text())["build"]
            counts = json.loads((out / "stats.json").read_text())["counts"]
            print(json.dumps({"what": "rscurate build", "workers": args.workers, "files": len(paths) * args.copies,
                              "kept": counts["kept"], "duplicates": counts["duplicates"],
                              "tile_stage_s": float(tiles.group(1)) if tiles else None,
                              "pixel_checks": build["dedup"]["pixel_checks"],
                              "pixel_check_s": build["dedup"]["pixel_check_seconds"],
                              "build_s": build["seconds"]}))


if __name__ == "__main__":
    main()
