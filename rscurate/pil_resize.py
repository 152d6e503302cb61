"""Many same-shape images resized by PIL in two calls, each exactly as PIL resizes it alone.

PIL's cost per call, not its arithmetic, dominates small images (a pixel check's 13 band layers of a 16 x 16
part, a unit's 256 grey tiles for pHash). A resize is two separable passes, rows then columns or columns then
rows, each output line computed from its own input line alone: images stacked one above another share the row
pass, set side by side the column pass. Which pass PIL runs first depends on the sizes (and the intermediate is
rounded, so the order shows in the result); it is found once per shape by resizing a probe both ways, and where
the probe cannot tell, each image is resized alone.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image

_PROBE_SEED = 7


def _alone(image: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    mode = "F" if image.dtype == np.float32 else "L"
    return np.asarray(Image.fromarray(image, mode).resize((size[1], size[0]), resample))


def _rows_first(stack: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Each row resized to `size[1]` (images stacked vertically), then each column to `size[0]` (side by side)."""
    n, h, w = stack.shape
    rows, cols = size
    across = _alone(stack.reshape(n * h, w), (n * h, cols), resample)
    side = np.ascontiguousarray(across.reshape(n, h, cols).transpose(1, 0, 2)).reshape(h, n * cols)
    return _alone(side, (rows, n * cols), resample).reshape(rows, n, cols).transpose(1, 0, 2)


def _columns_first(stack: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    n, h, w = stack.shape
    rows, cols = size
    side = np.ascontiguousarray(stack.transpose(1, 0, 2)).reshape(h, n * w)
    down = _alone(side, (rows, n * w), resample)
    tall = np.ascontiguousarray(down.reshape(rows, n, w).transpose(1, 0, 2)).reshape(n * rows, w)
    return _alone(tall, (n * rows, cols), resample).reshape(n, rows, cols)


_ORDERS = (_rows_first, _columns_first)


@lru_cache(maxsize=4096)
def _order(shape: tuple[int, int], size: tuple[int, int], dtype: str, resample: Image.Resampling) -> int | None:
    """Index in _ORDERS of the pass order PIL uses for this resize; None when a probe cannot tell."""
    if shape[0] == size[0] or shape[1] == size[1]:
        return 0  # one pass at most: no order to find
    rng = np.random.default_rng(_PROBE_SEED)
    probe = (rng.integers(0, 256, (1, *shape), dtype=np.uint8) if dtype == "uint8"
             else (rng.standard_normal((1, *shape)) * 1000).astype(np.float32))
    want = _alone(probe[0], size, resample)
    fits = [k for k, order in enumerate(_ORDERS) if np.array_equal(order(probe, size, resample)[0], want)]
    return fits[0] if len(fits) == 1 else None


def resize_stack(stack: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """(n, h, w) uint8 or float32 images resized to `size` (rows, cols): (n, rows, cols), each bit for bit what
    `Image.fromarray(image).resize((cols, rows), resample)` gives."""
    order = _order(stack.shape[1:], size, stack.dtype.name, resample)
    if order is None:
        return np.stack([_alone(image, size, resample) for image in stack])
    return _ORDERS[order](stack, size, resample)
