"""A scene's decimated view assembled from the pixels the tile pass reads, so no scene is decoded twice.

The whole-scene signature (scene_hash) hashes a view of at most SCENE_VIEW_SIDE pixels a side. A file without
overviews can only give that view by decoding every pixel, which the tile pass does anyway; so each unit adds
the windows it reads (and the first unit of a scene the margins no window covers) to a ViewSum: per view cell,
the sum of the valid pixels under it and their count. Overlapping windows add only the part no earlier window
covers (coverage.owned_parts), so each pixel is added once and the view is the scene's own, whatever the
stride. A scene whose windows span several units is assembled from each unit's part after the tile stage.
Each source pixel falls in exactly one cell (floor mapping), and a cell is the mean of its valid pixels: a box
average, as GDAL's average resampling gives at integer ratios.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rscurate.readers import SceneReader

SCENE_VIEW_SIDE = 256
"""Longer side (pixels) of the decimated view a scene signature is computed from."""
MARGIN_STRIP_BYTES = 64 * 2**20  # decoded bytes per read of a margin: memory stays bounded on any scene


def view_shape(width: int, height: int, max_side: int = SCENE_VIEW_SIDE) -> tuple[int, int]:
    """(rows, cols) of a width x height scene shrunk so its longer side is at most `max_side` (never enlarged)."""
    scale = max(width, height) / max_side
    if scale <= 1:
        return height, width
    return max(1, round(height / scale)), max(1, round(width / scale))


def _cells(start: int, n: int, full: int, cells: int) -> tuple[np.ndarray, int, int]:
    """Where runs of source pixels start[start:start+n] change view cell, and the first and last cell."""
    first, last = start * cells // full, (start + n - 1) * cells // full
    # cell c starts at source pixel ceil(c * full / cells): the first pixel p with p * cells // full == c
    edges = -(-np.arange(first + 1, last + 1, dtype=np.int64) * full // cells) - start
    return np.concatenate([[0], edges]), first, last


@dataclass
class ViewSum:
    """Per view cell, the sum of each data band's valid pixels (float64: exact for any integer tile) and their
    count; `windows` tile windows and (with `margins`) the rest of the scene have been added; `failed`: a read
    under it did not decode, so the scene goes unsigned (its tiles record the error)."""

    source: str
    scene: str
    width: int
    height: int
    dtype: str
    bands: tuple[str, ...]
    sums: np.ndarray  # (bands, rows, cols)
    counts: np.ndarray  # (rows, cols)
    windows: int = 0
    margins: bool = False
    failed: bool = False

    @classmethod
    def empty(cls, source: str, scene: str, reader: SceneReader) -> ViewSum:
        shape = view_shape(reader.width, reader.height)
        names = tuple(b.name for b in reader.data_bands)
        return cls(source, scene, reader.width, reader.height, reader.dtype, names,
                   np.zeros((len(names), *shape)), np.zeros(shape, np.int64))

    def add(self, x: int, y: int, data: np.ndarray, valid: np.ndarray) -> None:
        """Add the (C, h, w) pixels read at column x, row y (rows summed first, in float32 where that is exact)."""
        ok = valid & np.isfinite(data).all(axis=0) if data.dtype.kind == "f" else valid
        rows, r0, r1 = _cells(y, data.shape[1], self.height, self.sums.shape[1])
        cols, c0, c1 = _cells(x, data.shape[2], self.width, self.sums.shape[2])
        full = bool(ok.all())
        masked = data if full else np.where(ok, data, 0)
        exact32 = data.dtype.kind in "ui" and data.dtype.itemsize <= 2 and (
            -(-self.height // self.sums.shape[1]) * np.iinfo(data.dtype).max < 2**24)
        by_rows = np.add.reduceat(masked.astype(np.float32 if exact32 else np.float64, copy=False), rows, axis=1)
        self.sums[:, r0 : r1 + 1, c0 : c1 + 1] += np.add.reduceat(by_rows.astype(np.float64), cols, axis=2)
        if full:  # every pixel counts: the cells' areas
            counts = np.outer(np.diff(rows, append=data.shape[1]), np.diff(cols, append=data.shape[2]))
        else:
            counts = np.add.reduceat(np.add.reduceat(ok.astype(np.int64), rows, axis=0), cols, axis=1)
        self.counts[r0 : r1 + 1, c0 : c1 + 1] += counts

    def add_parts(self, window: tuple[int, int, int, int], parts: list[tuple[int, int, int, int]],
                  data: np.ndarray, valid: np.ndarray) -> None:
        """Add the `parts` (x, y, w, h inside `window`) of the pixels read for `window`."""
        for x, y, w, h in parts:
            dx, dy = x - window[0], y - window[1]
            self.add(x, y, data[:, dy : dy + h, dx : dx + w], valid[dy : dy + h, dx : dx + w])

    def merge(self, other: ViewSum) -> None:
        """Add another unit's part of the same scene."""
        self.sums += other.sums
        self.counts += other.counts
        self.windows += other.windows
        self.margins |= other.margins
        self.failed |= other.failed

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """The view as (data in the scene's dtype, valid): each cell the mean of its valid pixels."""
        mean = self.sums / np.maximum(self.counts, 1)
        dtype = np.dtype(self.dtype)
        if dtype.kind in "ui":  # rounded and clamped, as GDAL writes an averaged integer band
            info = np.iinfo(dtype)
            mean = np.clip(np.rint(mean), info.min, info.max)
        return mean.astype(dtype), self.counts > 0


def strips(window: tuple[int, int, int, int], pixel_bytes: int) -> Iterator[tuple[int, int, int, int]]:
    """A margin window cut into full-width strips of at most MARGIN_STRIP_BYTES decoded bytes (at least one row)."""
    x, y, w, h = window
    rows = max(1, MARGIN_STRIP_BYTES // max(1, pixel_bytes * w))
    for top in range(y, y + h, rows):
        yield x, top, w, min(rows, y + h - top)
