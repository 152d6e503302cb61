"""Per-tile augmentation: RandomResizedCrop + horizontal flip of (C, H, W) tiles of any band count.

Parameters come from a caller-supplied numpy Generator so that a sample's augmentation is a pure function of
its seed (which is what makes exact resume possible without replaying augmentations).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from rspretrain.tiles import normalise


def crop_box(
    height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a crop covering `scale` of the area with aspect in `ratio` (torchvision rule)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    # fallback: the central crop with the aspect clamped into range
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, int(round(width / ratio[0]))
    elif in_ratio > ratio[1]:
        h, w = height, int(round(height * ratio[1]))
    else:
        h, w = height, width
    return (height - h) // 2, (width - w) // 2, h, w


def resize(tile: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased when shrinking) resize of a (C, H, W) float tensor to size x size."""
    if tile.shape[-2:] == (size, size):
        return tile
    shrink = tile.shape[-1] > size or tile.shape[-2] > size
    return F.interpolate(
        tile[None], size=(size, size), mode="bilinear", align_corners=False, antialias=shrink
    )[0]


def random_crop_flip(
    height: int,
    width: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip: bool = True,
) -> tuple[tuple[int, int, int, int], bool]:
    """RandomResizedCrop's box and the flip, drawn from `rng` in this order (a sample's seed fixes both)."""
    box = crop_box(height, width, scale, ratio, rng)
    return box, bool(hflip and rng.random() < 0.5)


def resize_flip_normalise(
    crop: torch.Tensor, size: int, flip: bool, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """A cropped (C, h, w) tile of any dtype as the model sees it: float32, resized to size x size (tiles smaller
    than size are upsampled), maybe flipped, normalised with (C, 1, 1) mean and std. The same function runs in
    a DataLoader worker or, with data.finish_on device, on the training device."""
    out = resize(crop.float(), size)
    if flip:
        out = out.flip(-1)
    return normalise(out, mean, std)
