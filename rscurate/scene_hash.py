"""Whole-scene signatures: catch a scene delivered again at another size or encoding before tiling.

Tile hashes cannot see that a 2x-resampled copy, a PNG export or a JPEG re-encode of a scene is the same
image: its tiles cover other ground or carry other pixels. So each scene that is cut into several tiles is
also hashed whole, from a decimated (averaged) read of at most SCENE_VIEW_SIDE pixels a side, which washes
out resampling and compression noise. A match needs the whole-scene pHash AND each quadrant's pHash within
the radius, and the same aspect ratio: five 64-bit hashes agreeing is strong evidence, where one hash of a
whole scene alone is too coarse to tell two landscapes apart (the matching is dedup.matching_scenes; this
module is what workers import, kept free of the client's search code). See docs/dedup.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rscurate.phash import canonical_view, signatures_batch
from rscurate.readers import SceneReader
from rscurate.scene_view import SCENE_VIEW_SIDE, ViewSum, save_view, view_path

MAX_ASPECT_DIFFERENCE = 0.02
"""Largest relative difference of width/height between two scenes that can be copies of each other."""
_MIN_SIDE = 16  # a view smaller than this has too few pixels per quadrant to hash


@dataclass(frozen=True)
class ViewHashes:
    """pHash of a whole decimated view, of each of its quarters, and its texture score."""

    phash: int
    quadrants: tuple[int, int, int, int]  # top-left, top-right, bottom-left, bottom-right
    texture: float  # phash.texture_score of the whole view


@dataclass(frozen=True)
class SceneSignature:
    view: ViewHashes  # the canonical view (all bands, as tiles are hashed)
    bands: tuple[tuple[str, ViewHashes], ...]  # each data band alone: compares scenes with other band sets
    aspect: float  # width / height


def _view_hashes(grays: list[np.ndarray]) -> list[ViewHashes]:
    """ViewHashes of each grey view, all hashed in one batch: a scene's views (its canonical view and one per band)
    share a shape, so each of the five shapes is resized in one pair of PIL calls rather than one per view."""
    images = []
    for gray in grays:
        h, w = gray.shape
        images += [gray, gray[: h // 2, : w // 2], gray[: h // 2, w // 2 :], gray[h // 2 :, : w // 2],
                   gray[h // 2 :, w // 2 :]]
    hashes, textures = signatures_batch(images)
    out = []
    for k in range(0, len(images), 5):
        q = tuple(int(v) for v in hashes[k + 1 : k + 5])
        out.append(ViewHashes(int(hashes[k]), (q[0], q[1], q[2], q[3]), float(textures[k])))
    return out


def scene_signature(reader: SceneReader, band_names: list[str]) -> SceneSignature | None:
    """Signature of the whole scene from its decimated view read through the file's overviews."""
    view = reader.overview(SCENE_VIEW_SIDE)
    return view_signature(view.data, view.valid, band_names, reader.width / reader.height)


def assembled_signature(view: ViewSum, work: Path | None = None) -> SceneSignature | None:
    """Signature of a scene from the view its tiles and margins were added to; None when a read under it failed.
    With `work` (the build's `_work/`), the view is kept there for the scene-pair pixel check, which then needs
    no second decode of the scene."""
    if view.failed:
        return None
    data, valid = view.view()
    signature = view_signature(data, valid, list(view.bands), view.width / view.height)
    if signature is not None and work is not None:  # a cell is compared when at least half of it holds data, as
        # pixel_check's grid cells are: a sliver of valid pixels at a nodata edge is noise (resampled edges)
        save_view(view_path(work, view.source, view.scene), data, view.counts * 2 >= view.width * view.height)
    return signature


def view_signature(data: np.ndarray, valid: np.ndarray, band_names: list[str], aspect: float) -> SceneSignature | None:
    """Signature of a (C, h, w) decimated view; None when the view is too small to hash."""
    if min(data.shape[1:]) < _MIN_SIDE:
        return None
    grays = [canonical_view(data, band_names, valid)]
    grays += [canonical_view(data[k : k + 1], [name], valid) for k, name in enumerate(band_names)]
    whole, *bands = _view_hashes(grays)
    return SceneSignature(whole, tuple(zip(band_names, bands, strict=True)), aspect)


def signature_columns(signatures: list[SceneSignature]) -> dict[str, object]:
    """Columns of a table of scenes: the canonical view's phash, q0..q3 and texture, the aspect ratio, and
    `band_views`: per scene, a list of (band name, phash, q0, q1, q2, q3, texture)."""
    cols: dict[str, object] = {
        "phash": np.array([s.view.phash for s in signatures], np.uint64),
        "texture": np.array([s.view.texture for s in signatures], np.float64),
        "aspect": np.array([s.aspect for s in signatures], np.float64),
        "band_views": [[(n, v.phash, *v.quadrants, v.texture) for n, v in s.bands] for s in signatures],
    }
    for k in range(4):
        cols[f"q{k}"] = np.array([s.view.quadrants[k] for s in signatures], np.uint64)
    return cols
