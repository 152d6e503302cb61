"""Images resized together equal each resized alone by PIL, bit for bit: the pixel checks' thresholds were fitted
on PIL's box averages and pHash is defined by PIL's LANCZOS resize (imagehash)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from rscurate.pil_resize import _order, resize_stack


def _each_alone(stack: np.ndarray, size: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    mode = "F" if stack.dtype == np.float32 else "L"
    return np.stack([np.asarray(Image.fromarray(image, mode).resize((size[1], size[0]), resample))
                     for image in stack])


@pytest.mark.parametrize(("dtype", "resample"), [("float32", Image.Resampling.BOX),
                                                 ("uint8", Image.Resampling.LANCZOS)])
def test_a_stack_resized_in_two_calls_is_each_image_resized_alone(dtype: str, resample: Image.Resampling) -> None:
    """Any shape and target, shrinking or growing either way: PIL runs its row or its column pass first depending
    on the sizes (both occur below), and either way each image comes out as PIL makes it."""
    rng = np.random.default_rng(11)
    orders = set()
    for _ in range(300):
        h, w, rows, cols = (int(v) for v in rng.integers(1, 90, 4))
        stack = (rng.integers(0, 256, (3, h, w), dtype=np.uint8) if dtype == "uint8"
                 else (rng.standard_normal((3, h, w)) * 10.0 ** rng.integers(0, 30)).astype(np.float32))
        orders.add(_order((h, w), (rows, cols), dtype, resample))
        got = resize_stack(stack, (rows, cols), resample)
        assert got.dtype == stack.dtype and np.array_equal(got, _each_alone(stack, (rows, cols), resample)), (
            h, w, rows, cols)
    assert {0, 1} <= orders, "both pass orders were exercised"


def test_the_tiles_of_a_unit_hash_as_imagehash_resizes_them() -> None:
    """256 px grey tiles to pHash's 32 x 32 (PIL runs rows first there), and a shape where it runs columns first."""
    rng = np.random.default_rng(5)
    for shape in ((256, 256), (44, 35)):
        stack = rng.integers(0, 256, (40, *shape), dtype=np.uint8)
        got = resize_stack(stack, (32, 32), Image.Resampling.LANCZOS)
        assert np.array_equal(got, _each_alone(stack, (32, 32), Image.Resampling.LANCZOS))
    assert _order((256, 256), (32, 32), "uint8", Image.Resampling.LANCZOS) == 0
    assert _order((44, 35), (32, 32), "uint8", Image.Resampling.LANCZOS) == 1
