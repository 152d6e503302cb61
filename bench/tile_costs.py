"""Where a tile's time goes in a worker: ms per tile of each stage of a work unit, and of the whole unit.

Input: the first scene build_throughput.py writes (the sample's Landsat 8 row 224/078 as an 8-bit RGB
GeoTIFF), cut into 256 x 256 tiles at stride 64 (--stride) as that benchmark does; the --tiles windows in the middle
of the scene's window list are timed (whole_unit: run_unit over them, per planned tile). Each stage runs over
the same tiles, in one process, best of --repeat passes (the machine is shared; the minimum is the least
disturbed). The whole unit is timed twice: scene views binned by numpy, as in a small build, and by the compiled
kernel a worker switches to in a large one (scene_view.KERNEL_AFTER_S). Two figures are not build stages but
what later readers pay per stored tile: zstd_decode, and row_read (one staged tile fetched alone from its unit's
Parquet file, as a pixel check or the card's mosaic does).
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import rasterio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from build_throughput import make_inputs  # noqa: E402

from rscurate import codec, quality, scene_view  # noqa: E402
from rscurate.manifest import load_manifest  # noqa: E402
from rscurate.parquet_io import read_rows  # noqa: E402
from rscurate.phash import canonical_view, signatures_batch  # noqa: E402
from rscurate.pipeline import make_units  # noqa: E402
from rscurate.pixel_check import STAGED_COLUMNS  # noqa: E402
from rscurate.readers import RGB_NAMES, SceneRef, open_scene  # noqa: E402
from rscurate.units import GDAL_ENV, StagedUnit, content_sha256, plan_scenes, run_unit  # noqa: E402


def best_ms(fn: Callable[[], object], n: int, repeat: int) -> float:
    """Fastest of `repeat` passes of fn, in ms per tile."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return round(best / n * 1000, 3)


def read_fresh(ref: SceneRef, bands: list, windows: list) -> None:
    """The windows read through a newly opened scene: GDAL's block cache belongs to the open dataset, so each pass
    decodes the blocks again, as a work unit does (the first read of a block; overlapping windows then hit it)."""
    reader = open_scene(ref, bands, None)
    try:
        for w in windows:
            reader.read(*w)
    finally:
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiles", type=int, default=256, help="tiles timed (one work unit by default)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stride", type=int, default=64, help="tile stride (px) of the 256 px tiles")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, rasterio.Env(**GDAL_ENV):
        folder = Path(tmp) / "scenes"
        folder.mkdir()
        path = make_inputs(folder)[0]
        manifest_path = Path(tmp) / "bench.yaml"
        manifest_path.write_text(f"name: bench\nlicense: public domain\nroot: {folder}\ninclude: ['{path.name}']\n"
                                 f"bands: rgb\ntile: {{size: 256, stride: {args.stride}}}\n")
        manifest = load_manifest(manifest_path)
        ref = SceneRef("bench", path.name, (str(path),), "geotiff")
        plan = plan_scenes(manifest, [ref])[0]
        middle = max(0, (len(plan.windows) - args.tiles) // 2)  # the scene's interior: mostly full tiles
        windows = plan.windows[middle : middle + args.tiles]
        plan = replace(plan, windows=windows)
        reader = open_scene(ref, manifest.band_list(), None)
        reads = [reader.read(*w) for w in windows]
        kept = [r for r in reads if r.valid.all()]
        grays = [canonical_view(r.data, RGB_NAMES, r.valid) for r in kept]
        n, k = len(reads), len(kept)
        encoded = [codec.encode_array(r.data) for r in kept]
        stages = {
            "read": best_ms(lambda: read_fresh(ref, manifest.band_list(), windows), n, args.repeat),
            "band_stats": best_ms(lambda: [quality.tile_stats(r.data, r.valid) for r in reads], n, args.repeat),
            "grey_view": best_ms(lambda: [canonical_view(r.data, RGB_NAMES, r.valid) for r in kept], k, args.repeat),
            "phash_resize_dct": best_ms(lambda: signatures_batch(grays), k, args.repeat),
            "zstd_encode": best_ms(lambda: [codec.encode_array(r.data) for r in kept], k, args.repeat),
            "sha256": best_ms(lambda: [content_sha256(r.data) for r in kept], k, args.repeat),
            # not a build stage: what rscurate verify, pixel checks and the training loader pay per stored tile
            "zstd_decode": best_ms(lambda: [codec.decode(b, codec.NPY_ZSTD) for b in encoded], k, args.repeat),
        }
        reader.close()
        unit = make_units(manifest, [plan], len(windows))[0]

        def whole_unit() -> None:
            with tempfile.TemporaryDirectory() as work:
                (Path(work) / "units").mkdir()
                run_unit(unit, work)

        # scene views binned by numpy (a small build) and by the compiled kernel (a large one, once a worker has
        # switched: scene_view.KERNEL_AFTER_S); the kernel is loaded before its passes are timed
        scene_view._numpy_estimate = float("-inf")
        stages["whole_unit"] = best_ms(whole_unit, unit.tiles, args.repeat)
        scene_view._numpy_estimate = scene_view.KERNEL_AFTER_S
        whole_unit()
        stages["whole_unit_compiled_views"] = best_ms(whole_unit, unit.tiles, args.repeat)
        # not a build stage: one staged tile fetched alone from the unit's Parquet file (64-tile row groups), as a
        # pixel check or the card's mosaic does; a few rows in each row group, each read on its own
        with tempfile.TemporaryDirectory() as work:
            (Path(work) / "units").mkdir()
            run_unit(unit, work)
            staged = StagedUnit.of(Path(work), unit.key).kept.relative_to(work).as_posix()
            rows = list(range(0, k, max(1, k // 32)))
            stages["row_read"] = best_ms(lambda: [read_rows(Path(work), [(staged, r)], STAGED_COLUMNS) for r in rows],
                                         len(rows), args.repeat)
    print(json.dumps({"what": "ms per tile", "tiles": n, "tiles_kept": k, **stages}))


if __name__ == "__main__":
    main()
