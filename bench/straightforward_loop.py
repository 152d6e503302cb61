"""The straightforward loop the build benchmarks compare with: rasterio reads each whole scene, numpy slices
256 px tiles, `imagehash.phash` per tile, one PNG file per tile; one process. Imports nothing of rscurate, so that
as a whole process (`python bench/straightforward_loop.py OUT SCENE...`) it pays only its own start-up.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import imagehash
import numpy as np
import rasterio
from PIL import Image

TILE = 256


def baseline(paths: list[Path], out: Path, stride: int) -> tuple[int, float]:
    """Tiles written and seconds taken for 8-bit RGB scenes."""
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    t0 = time.perf_counter()
    for path in paths:
        with rasterio.open(path) as ds:
            scene = ds.read()
        for y in range(0, scene.shape[1] - TILE + 1, stride):
            for x in range(0, scene.shape[2] - TILE + 1, stride):
                img = Image.fromarray(np.moveaxis(scene[:, y : y + TILE, x : x + TILE], 0, -1))
                str(imagehash.phash(img))
                img.save(out / f"{path.stem}_{x}_{y}.png")
                n += 1
    return n, time.perf_counter() - t0


if __name__ == "__main__":
    baseline([Path(p) for p in sys.argv[2:]], Path(sys.argv[1]), TILE)
