"""How many of a scene's pixels its tiles cover, so the pixels no tile holds (margins) are counted, not lost.

Windows may overlap (a grid stride below the tile size, random crops), so coverage is the area of their union,
not the sum of their areas. It is computed on the grid of distinct window edges (a 2-D difference array), which
is exact and costs the number of distinct edges squared, never the scene's pixel count; the rows of that grid
are summed in blocks so memory stays bounded however many windows a scene has.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

BLOCK_CELLS = 1 << 22  # edge-grid cells summed at a time


def covered_pixels(windows: Sequence[tuple[int, int, int, int]], width: int, height: int) -> int:
    """Pixels of a width x height scene inside at least one (x, y, w, h) window; parts outside the scene are
    ignored."""
    if not len(windows) or width <= 0 or height <= 0:
        return 0
    w = np.asarray(windows, np.int64).reshape(-1, 4)
    x0, x1 = np.clip(w[:, 0], 0, width), np.clip(w[:, 0] + w[:, 2], 0, width)
    y0, y1 = np.clip(w[:, 1], 0, height), np.clip(w[:, 1] + w[:, 3], 0, height)
    xs, ys = np.unique(np.concatenate([x0, x1])), np.unique(np.concatenate([y0, y1]))
    cols0, cols1 = np.searchsorted(xs, x0), np.searchsorted(xs, x1)
    rows0, rows1 = np.searchsorted(ys, y0), np.searchsorted(ys, y1)
    # +1 at each window's top-left cell, -1 right of it and below it, +1 diagonally past it: the 2-D prefix
    # sum of these events is, per cell, the number of windows over it
    rows = np.concatenate([rows0, rows0, rows1, rows1])
    cols = np.concatenate([cols0, cols1, cols0, cols1])
    vals = np.concatenate([np.ones_like(rows0), -np.ones_like(rows0), -np.ones_like(rows0), np.ones_like(rows0)])
    order = np.argsort(rows, kind="stable")
    rows, cols, vals = rows[order], cols[order], vals[order]
    heights, widths = np.diff(ys), np.diff(xs)
    block = max(1, BLOCK_CELLS // len(xs))
    carry = np.zeros(len(xs), np.int64)  # column sums of all events above the block
    covered = 0
    for r0 in range(0, len(heights), block):
        r1 = min(r0 + block, len(heights))
        lo, hi = np.searchsorted(rows, [r0, r1])
        diff = np.zeros((r1 - r0, len(xs)), np.int64)
        np.add.at(diff, (rows[lo:hi] - r0, cols[lo:hi]), vals[lo:hi])
        diff[0] += carry
        diff = diff.cumsum(axis=0)
        carry = diff[-1].copy()
        inside = diff.cumsum(axis=1)[:, :-1] > 0
        covered += int(heights[r0:r1] @ (inside * widths).sum(axis=1))
    return covered


def uncovered(windows: Sequence[tuple[int, int, int, int]], width: int,
              height: int) -> list[tuple[int, int, int, int]]:
    """The parts of a width x height scene outside every (x, y, w, h) window, as disjoint windows: runs of free
    cells of the grid of window edges, row band by row band, merged downwards while a run stays the same (a
    regular grid leaves at most four margin strips)."""
    if width <= 0 or height <= 0:
        return []
    w = np.asarray(windows, np.int64).reshape(-1, 4)
    x0, x1 = np.clip(w[:, 0], 0, width), np.clip(w[:, 0] + w[:, 2], 0, width)
    y0, y1 = np.clip(w[:, 1], 0, height), np.clip(w[:, 1] + w[:, 3], 0, height)
    xs = np.unique(np.concatenate([[0, width], x0, x1]))
    ys = np.unique(np.concatenate([[0, height], y0, y1]))
    cols0, cols1 = np.searchsorted(xs, x0), np.searchsorted(xs, x1)
    rows0, rows1 = np.searchsorted(ys, y0), np.searchsorted(ys, y1)
    out: list[tuple[int, int, int, int]] = []
    tops: dict[tuple[int, int], int] = {}  # free column runs still open downwards -> their first row
    for band in range(len(ys)):  # the last pass (no band) closes every run
        runs: set[tuple[int, int]] = set()
        if band < len(ys) - 1:
            over = (rows0 <= band) & (rows1 > band)
            diff = np.zeros(len(xs), np.int64)
            np.add.at(diff, cols0[over], 1)
            np.add.at(diff, cols1[over], -1)
            edges = np.diff(np.concatenate([[0], (np.cumsum(diff)[:-1] == 0).astype(np.int8), [0]]))
            runs = set(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))
        y = int(ys[band])
        for run in [r for r in tops if r not in runs]:
            top = tops.pop(run)
            out.append((int(xs[run[0]]), top, int(xs[run[1]] - xs[run[0]]), y - top))
        for run in runs - tops.keys():
            tops[run] = y
    return sorted(out, key=lambda r: (r[1], r[0]))
