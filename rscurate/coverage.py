"""How many of a scene's pixels its tiles cover, so the pixels no tile holds (margins) are counted, not lost.

Windows may overlap (a grid stride below the tile size, random crops), so coverage is the area of their union,
not the sum of their areas. It is computed on the grid of distinct window edges (a 2-D difference array), which
is exact and costs the number of distinct edges squared, never the scene's pixel count; the rows of that grid
are summed in blocks so memory stays bounded however many windows a scene has.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

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

    def free_runs() -> Iterator[set[tuple[int, int]]]:
        for band in range(len(ys) - 1):
            over = (rows0 <= band) & (rows1 > band)
            diff = np.zeros(len(xs), np.int64)
            np.add.at(diff, cols0[over], 1)
            np.add.at(diff, cols1[over], -1)
            edges = np.diff(np.concatenate([[0], (np.cumsum(diff)[:-1] == 0).astype(np.int8), [0]]))
            yield set(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(), strict=True))

    return _rectangles(free_runs(), xs, ys)


def owned_parts(windows: Sequence[tuple[int, int, int, int]], width: int, height: int,
                mine: Sequence[int]) -> list[list[tuple[int, int, int, int]]]:
    """For each window index in `mine`, the disjoint parts of that window (clipped to the scene) that no earlier
    window of `windows` covers. Every pixel under some window lies in exactly one window's parts, so a sum over
    the parts adds each pixel once however much the windows overlap (an interior window of a 256 px grid at
    stride 64 owns its last 64 x 64 corner). Only the earlier windows near `mine` are looked at: the cost is a
    unit's, not the scene's."""
    if not len(mine):
        return []
    w = np.asarray(windows, np.int64).reshape(-1, 4)
    x0, x1 = np.clip(w[:, 0], 0, width), np.clip(w[:, 0] + w[:, 2], 0, width)
    y0, y1 = np.clip(w[:, 1], 0, height), np.clip(w[:, 1] + w[:, 3], 0, height)
    ks = np.asarray(mine, np.int64)
    bx0, bx1, by0, by1 = x0[ks].min(), x1[ks].max(), y0[ks].min(), y1[ks].max()
    near = np.flatnonzero((np.arange(len(w)) <= ks.max()) & (x0 < bx1) & (x1 > bx0) & (y0 < by1) & (y1 > by0))
    cx0, cx1 = np.clip(x0[near], bx0, bx1), np.clip(x1[near], bx0, bx1)
    cy0, cy1 = np.clip(y0[near], by0, by1), np.clip(y1[near], by0, by1)
    xs, ys = np.unique(np.concatenate([cx0, cx1])), np.unique(np.concatenate([cy0, cy1]))
    cols0, cols1 = np.searchsorted(xs, cx0), np.searchsorted(xs, cx1)
    rows0, rows1 = np.searchsorted(ys, cy0), np.searchsorted(ys, cy1)
    owner = np.full((max(len(ys) - 1, 0), max(len(xs) - 1, 0)), len(w), np.int64)
    for j in range(len(near) - 1, -1, -1):  # painted last to first: each cell ends with its first window
        owner[rows0[j] : rows1[j], cols0[j] : cols1[j]] = near[j]
    slot = {int(k): j for j, k in enumerate(near)}
    out = []
    for k in mine:
        j = slot.get(int(k))
        if j is None or rows0[j] == rows1[j] or cols0[j] == cols1[j]:  # outside the scene
            out.append([])
            continue
        r0, c0 = rows0[j], cols0[j]
        mask = owner[r0 : rows1[j], c0 : cols1[j]] == k
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if not len(rows):
            out.append([])
        elif mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all():  # one rectangle (any regular grid)
            top, left = r0 + rows[0], c0 + cols[0]
            bottom, right = r0 + rows[-1] + 1, c0 + cols[-1] + 1
            out.append([(int(xs[left]), int(ys[top]), int(xs[right] - xs[left]), int(ys[bottom] - ys[top]))])
        else:
            out.append(_rectangles((_true_runs(row, c0) for row in mask), xs, ys, r0))
    return out


def _true_runs(row: np.ndarray, offset: int) -> set[tuple[int, int]]:
    """(start, end) column runs of True cells in a boolean row, shifted by `offset`."""
    edges = np.diff(np.concatenate([[0], row.astype(np.int8), [0]]))
    return set(zip((np.flatnonzero(edges == 1) + offset).tolist(), (np.flatnonzero(edges == -1) + offset).tolist(),
                   strict=True))


def _rectangles(bands: Iterable[set[tuple[int, int]]], xs: np.ndarray, ys: np.ndarray,
                first_band: int = 0) -> list[tuple[int, int, int, int]]:
    """Column runs of edge-grid cells, one set per row band from `first_band` down, as (x, y, w, h) rectangles: a
    run is merged downwards while the next band has the same run."""
    out: list[tuple[int, int, int, int]] = []
    tops: dict[tuple[int, int], int] = {}  # runs still open downwards -> their first row
    band = first_band
    for runs in [*bands, set()]:  # the last (empty) band closes every run
        y = int(ys[band])
        for run in [r for r in tops if r not in runs]:
            top = tops.pop(run)
            out.append((int(xs[run[0]]), top, int(xs[run[1]] - xs[run[0]]), y - top))
        for run in runs - tops.keys():
            tops[run] = y
        band += 1
    return sorted(out, key=lambda r: (r[1], r[0]))
