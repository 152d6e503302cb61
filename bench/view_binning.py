"""Scene-view binning (scene_view.ViewSum.add): numpy's add.reduceat against the compiled kernel (view_kernel), in
ms per 256 x 256 tile of the throughput bench's real 8-bit RGB Landsat scene, every tile of the scene added once
(stride = tile size: the whole tile is the part each window adds). Also timed on a crop of the scene's top left
corner of --small pixels a side (cells of ~2-3 pixels: numpy's worst case, many short runs), and the one-off
cost of loading numba and the cached kernel in a fresh process (what scene_view.KERNEL_AFTER_S is set from).
Both paths give the same sums (checked here too). Best of --repeat passes. Prints one JSON line.
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
import rasterio

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from build_throughput import make_inputs  # noqa: E402

from rscurate import scene_view  # noqa: E402
from rscurate.scene_view import ViewSum, view_shape  # noqa: E402

TILE = 256


def per_tile_ms(data: np.ndarray, kernel: bool, repeat: int) -> tuple[float, ViewSum]:
    """Best pass adding every TILE x TILE window of `data` (C, H, W) to a fresh view, in ms per window."""
    bands, height, width = data.shape
    valid = np.ones((TILE, TILE), bool)
    windows = [(x, y) for y in range(0, height - TILE + 1, TILE) for x in range(0, width - TILE + 1, TILE)]
    best, view = float("inf"), None
    for _ in range(repeat):
        scene_view._numpy_estimate = scene_view.KERNEL_AFTER_S if kernel else float("-inf")
        if not kernel:
            scene_view._kernel = None  # a loaded kernel bins every later part
        view = ViewSum("b", "s", width, height, data.dtype.name, tuple("abc")[:bands],
                       np.zeros((bands, *view_shape(width, height))), np.zeros(view_shape(width, height), np.int64))
        t0 = time.perf_counter()
        for x, y in windows:
            view.add(x, y, data[:, y : y + TILE, x : x + TILE], valid)
        best = min(best, time.perf_counter() - t0)
    return round(best / len(windows) * 1000, 3), view


def load_seconds() -> float:
    """Import of numba and the cached kernel in a fresh interpreter (the first call compiles if no cache exists)."""
    code = ("import time, numpy; t0 = time.perf_counter(); import rscurate.view_kernel; "
            "print(time.perf_counter() - t0)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)  # fills the cache
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    return round(float(out.stdout), 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small", type=int, default=600, help="side (px) of the small crop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = make_inputs(Path(tmp))[0]
        with rasterio.open(path) as ds:
            scene = ds.read()
    result: dict[str, object] = {"bench": "view_binning", "what": "ms per 256 px tile"}
    for name, data in (("scene", scene), ("small", scene[:, : args.small, : args.small])):
        numpy_ms, numpy_view = per_tile_ms(data, False, args.repeat)
        kernel_ms, kernel_view = per_tile_ms(data, True, args.repeat)
        assert np.array_equal(numpy_view.sums, kernel_view.sums), "the two paths must give the same sums"
        result[name] = {"px": list(data.shape[1:]), "numpy": numpy_ms, "kernel": kernel_ms,
                        "numpy_over_kernel": round(numpy_ms / kernel_ms, 1)}
    result["load_s"] = load_seconds()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
