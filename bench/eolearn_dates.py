"""Write eo-learn's example Sentinel-2 time series (REFERENCE_SCENES.npy: five L1C dates of one 1 km2 area, 13
bands, with TestEOPatch_bbox.geojson) as one GeoTIFF per date plus a manifest, so that `rscurate build` makes the
multi-date corpus of the cross-date retrieval evaluation (docs/pretraining.md, docs/results.md).

The files come from eo-learn's repository (MIT, Copernicus Sentinel data); nothing is downloaded here.

    python bench/eolearn_dates.py --npy REFERENCE_SCENES.npy --bbox TestEOPatch_bbox.geojson --out /tmp/s2dates
    rscurate build --sources /tmp/s2dates/manifest.yaml --out /tmp/s2dates/corpus --radius 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_bounds

# Sentinel-2 L1C band order of the array; B02-B04 carry the names the RGB presets select.
BANDS = [("B01", 0.443), ("blue", 0.490), ("green", 0.560), ("red", 0.665), ("B05", 0.705), ("B06", 0.740),
         ("B07", 0.783), ("B08", 0.842), ("B8A", 0.865), ("B09", 0.945), ("B10", 1.375), ("B11", 1.610),
         ("B12", 2.190)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--npy", type=Path, required=True)
    p.add_argument("--bbox", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tile", type=int, default=16)
    args = p.parse_args()
    scenes = np.load(args.npy)  # (dates, rows, cols, bands)
    bbox = json.loads(args.bbox.read_text())
    xs, ys = zip(*bbox["coordinates"][0], strict=True)
    epsg = bbox["crs"]["properties"]["name"].rsplit(":", 1)[-1]
    dates, rows, cols, n_bands = scenes.shape
    if n_bands != len(BANDS):
        raise SystemExit(f"{args.npy}: expected {len(BANDS)} Sentinel-2 bands, found {n_bands}")
    transform = from_bounds(min(xs), min(ys), max(xs), max(ys), cols, rows)
    (args.out / "data").mkdir(parents=True, exist_ok=True)
    for d in range(dates):
        with rasterio.open(args.out / "data" / f"date{d}.tif", "w", driver="GTiff", width=cols, height=rows,
                           count=n_bands, dtype="float32", crs=f"EPSG:{epsg}", transform=transform) as dst:
            dst.write(np.moveaxis(scenes[d], -1, 0).astype(np.float32))
    bands = "\n".join(f"  - {{name: {n}, wavelength_um: {w}, gsd_m: 10}}" for n, w in BANDS)
    (args.out / "manifest.yaml").write_text(
        "name: eolearn_s2\nlicense: MIT (eo-learn example data); Copernicus Sentinel data\nroot: data\n"
        f'include: ["date*.tif"]\nbands:\n{bands}\ntile: {{size: {args.tile}}}\n'
        "quality: {max_nodata_fraction: 1.0, min_std: 0}\n")
    print(f"{dates} dates of {rows}x{cols} px written to {args.out / 'data'}; manifest {args.out / 'manifest.yaml'}")


if __name__ == "__main__":
    main()
