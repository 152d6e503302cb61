"""Compiled area-weighted binning of integer pixels into scene-view cells (scene_view.ViewSum.add).

Why compiled: a 256 px tile of a 2,000 px scene spans 32 x 32 view cells of ~8 pixels a side, and numpy's
`add.reduceat` pays a call per run of 8 pixels (0.6 ms a 3-band tile; 2.4 ms on a 600 px scene, whose cells are
2 pixels wide), a third of a tile's whole cost at stride = tile size. Here each pixel costs two multiply-adds in
a sequential sweep: rows of the part are folded into rows of cells, then columns into cells.

Integer arithmetic (int64) is exact, so the sums equal numpy's float64 ones whatever the order, as long as those
are exact (below 2^53: integer bands of at most 16 bits; scene_view.exact_ints checks). Float bands keep numpy's:
their rounding depends on the order of the additions, and the stored views must not change.

Imported only where it pays for numba's import and cached-code load (~0.45 s): before the first part when the
build's plan gives a worker enough views to bin (scene_view.plan_views), else once a process has binned
KERNEL_AFTER_S of numpy without a plan; small builds never load it.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

_WEIGHTS = types.Array(types.int64, 1, "C", readonly=True)
_SUMS = types.Array(types.int64, 3, "C")
# pixel types with exact view sums (scene_view.exact_ints); validity counts go in as uint8 (bool viewed)
_SIGNATURES = [types.void(types.Array(t, 3, "A", readonly=True), _WEIGHTS, _WEIGHTS, _WEIGHTS, _WEIGHTS, _WEIGHTS,
                          _WEIGHTS, _SUMS)
               for t in (types.uint8, types.int8, types.uint16, types.int16)]


@numba.njit(_SIGNATURES, cache=True, nogil=True)
def bin_sums(data: np.ndarray, row_cell: np.ndarray, row_w0: np.ndarray, row_w1: np.ndarray, col_cell: np.ndarray,
             col_w0: np.ndarray, col_w1: np.ndarray, sums: np.ndarray) -> None:  # pragma: no cover (compiled)
    """Add each (C, h, w) pixel to `sums` (C, cells down + 1, cells across + 1): pixel (i, j) of band b goes to
    cell (row_cell[i], col_cell[j]) with weight row_w0[i] * col_w0[j], and the parts past a cell edge (weights
    row_w1, col_w1; 0 when none) to the next cells down and across; the extra last row and column of `sums` take
    the zero-weight parts of pixels with no next cell."""
    bands, h, w = data.shape
    cells_down = sums.shape[1] - 1
    folded = np.zeros((cells_down + 1, w), np.int64)
    for b in range(bands):
        folded[:] = 0
        for i in range(h):
            top, below, src = folded[row_cell[i]], folded[row_cell[i] + 1], data[b, i]
            w0, w1 = row_w0[i], row_w1[i]
            for j in range(w):
                v = np.int64(src[j])
                top[j] += v * w0
                below[j] += v * w1
        for r in range(cells_down):
            out, row = sums[b, r], folded[r]
            for j in range(w):
                out[col_cell[j]] += row[j] * col_w0[j]
                out[col_cell[j] + 1] += row[j] * col_w1[j]
