"""Where tiles are cut from a scene: a regular grid, random multi-scale crops, or the whole chip.

Windows are a pure function of the scene size, the tile settings and the scene key, so the same
inputs give the same tiles whatever machine or worker plans them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from rscurate.manifest import Tile

Window = tuple[int, int, int, int]  # x, y, width, height in source pixels


def min_tile_size(tile: Tile) -> int:
    """The smallest scene side that still yields a tile."""
    if tile.mode in ("random", "whole"):
        return int(tile.min_size or 1)
    return tile.size


def plan_windows(
    width: int, height: int, tile: Tile, scene_key: str, origin: tuple[int, int] | None = None
) -> list[Window]:
    """Tile windows for a scene; empty when the scene is too small for one tile.

    Grid mode keeps only full windows (a partial first/last row or column is not padded), so every
    tile has the configured size. With `origin` (the scene's first pixel on its CRS pixel lattice,
    see SceneReader.grid_origin) and `anchor: crs`, grid lines fall on lattice indices that are
    multiples of the stride: overlapping scenes on one lattice cut the same tiles where they overlap.
    """
    if min(width, height) < min_tile_size(tile):
        return []
    if tile.mode == "whole" and max(width, height) <= (tile.max_size or max(width, height)):
        return [(0, 0, width, height)]
    if tile.mode in ("grid", "whole"):  # whole images above max_size are cut into a grid of `size`
        stride = tile.stride or tile.size
        anchored = origin is not None and tile.anchor == "crs"
        xs = _grid_starts(width, tile.size, stride, origin[0] if anchored else None)
        ys = _grid_starts(height, tile.size, stride, origin[1] if anchored else None)
        return [(x, y, tile.size, tile.size) for y in ys for x in xs]
    return _random_windows(width, height, tile, scene_key)


def _grid_starts(length: int, size: int, stride: int, lattice_origin: int | None) -> range:
    """Tile starts along one axis: on lattice multiples of the stride when anchored, unless that leaves no
    full tile (a scene barely larger than a tile), where the scene's own corner is used instead."""
    if lattice_origin is not None:
        starts = range(-lattice_origin % stride, length - size + 1, stride)
        if len(starts):
            return starts
    return range(0, length - size + 1, stride)


def _random_windows(width: int, height: int, tile: Tile, scene_key: str) -> list[Window]:
    """OpticalRS-style multi-scale square crops, seeded by the scene key (stable across runs)."""
    assert tile.min_size is not None and tile.max_size is not None and tile.count is not None
    digest = hashlib.sha256(f"{tile.seed}:{scene_key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    largest = min(tile.max_size, width, height)
    sizes = rng.integers(tile.min_size, largest + 1, size=tile.count)
    windows = []
    for s in sizes:
        x = int(rng.integers(0, width - s + 1))
        y = int(rng.integers(0, height - s + 1))
        windows.append((x, y, int(s), int(s)))
    return sorted(set(windows), key=lambda w: (w[1], w[0], w[2]))
