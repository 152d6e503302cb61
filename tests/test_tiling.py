"""Grid origin: tiles start at the scene's top-left pixel by default (`tile.anchor: scene`, as solaris, TorchGeo's
GridGeoSampler and rio-tiler cut); `anchor: crs` puts grid lines on the CRS pixel lattice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rscurate.discover import discover
from rscurate.manifest import Tile, load_manifest
from rscurate.tiling import plan_windows
from rscurate.units import plan_scenes
from tests.conftest import run_build, textured, write_manifest, write_tif

# 10 m pixels; the first pixel is column 49165, row -401395 of the CRS lattice: 25 and 5 lattice pixels past a
# multiple of 90 (and 25 and 5 past a multiple of 45), so a lattice-anchored grid cannot start at the corner.
ORIGIN = (491650.0, 4013950.0)


def _scene(root: Path, tile: str, rng: np.random.Generator) -> Path:
    """A 900 x 900 georeferenced scene off the 90 px lattice and its manifest with the given `tile:` mapping."""
    write_tif(root / "data" / "scene.tif", textured(rng, 1, 900, 900), origin=ORIGIN)
    return write_manifest(root / "m.yaml", f"""\
        name: grid
        license: MIT
        root: data
        include: ["scene.tif"]
        tile: {tile}
        """)


def _starts(manifest: Path) -> tuple[list[int], list[int], int]:
    """(x starts, y starts, tile count) as the build plans them: manifest, reader origin and plan_windows."""
    m = load_manifest(manifest)
    (plan,) = plan_scenes(m, discover(m).scenes)
    xs, ys = sorted({w[0] for w in plan.windows}), sorted({w[1] for w in plan.windows})
    return xs, ys, len(plan.windows)


@pytest.mark.parametrize(("tile", "starts"), [
    ("{size: 90}", list(range(0, 811, 90))),  # solaris' grid: 10 x 10 tiles from the corner
    ("{size: 90, stride: 45}", list(range(0, 811, 45))),  # overlapping: 19 x 19
])
def test_grid_starts_at_the_scene_corner_by_default(tmp_path: Path, rng: np.random.Generator, tile: str,
                                                    starts: list[int]) -> None:
    xs, ys, n = _starts(_scene(tmp_path, tile, rng))
    assert xs == starts and ys == starts and n == len(starts) ** 2


@pytest.mark.parametrize(("tile", "xs", "ys"), [
    # lattice multiples of 90: column 49165 + 65 = 49230 = 547 * 90; row -401395 + 85 = -401310 = -4459 * 90
    ("{size: 90, anchor: crs}", list(range(65, 811, 90)), list(range(85, 811, 90))),
    ("{size: 90, stride: 45, anchor: crs}", list(range(20, 811, 45)), list(range(40, 811, 45))),
])
def test_crs_anchor_keeps_the_lattice_grid(tmp_path: Path, rng: np.random.Generator, tile: str, xs: list[int],
                                           ys: list[int]) -> None:
    got_x, got_y, n = _starts(_scene(tmp_path, tile, rng))
    assert (got_x, got_y, n) == (xs, ys, len(xs) * len(ys))


def test_crs_anchor_falls_back_to_the_corner_where_no_anchored_tile_fits() -> None:
    """100 px across: the lattice start 65 leaves no full 90 px tile, so that axis starts at the scene's corner."""
    tile = Tile(size=90, anchor="crs")
    assert plan_windows(100, 900, tile, "s", origin=(49165, -401395)) == [(0, y, 90, 90) for y in range(85, 811, 90)]
    assert plan_windows(100, 900, tile, "s", origin=None) == [(0, y, 90, 90) for y in range(0, 811, 90)]


def test_build_cuts_the_default_grid_with_no_margin(tmp_path: Path, rng: np.random.Generator) -> None:
    """The corpus holds the 100 corner-anchored tiles, and inputs.parquet counts every pixel as tiled."""
    out = tmp_path / "corpus"
    run_build([_scene(tmp_path, "{size: 90}", rng)], out)
    index = pd.read_parquet(out / "index.parquet")
    assert sorted(zip(index["x"], index["y"], strict=True)) == [(x, y) for x in range(0, 811, 90)
                                                                  for y in range(0, 811, 90)]
    assert (index[["width", "height"]] == 90).all().all()
    inputs = pd.read_parquet(out / "inputs.parquet")
    assert inputs[["pixels", "pixels_tiled"]].values.tolist() == [[900 * 900, 900 * 900]]
