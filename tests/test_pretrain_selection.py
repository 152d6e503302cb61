"""HOG richness really ranks patches, and the selection curriculum does what its stages say."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pretrain_fixtures import (
    textured_tile,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rspretrain.models.hog import flat_patches, hog_cells, patch_hog, richness
from rspretrain.models.selection import curriculum_mix, curriculum_stage, grow_visible, sample_targets

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def half_textured(channels: int, size: int = 64, seed: int = 0) -> torch.Tensor:
    """Left half flat (with faint noise), right half sharp rectangles and stripes."""
    rng = np.random.default_rng(seed)
    img = np.full((channels, size, size), 0.5) + rng.normal(0, 1e-3, (channels, size, size))
    img[:, :, size // 2 :] = textured_tile(rng, channels, size, built=True)[:, :, size // 2 :]
    return torch.from_numpy(img).float()[None]


@pytest.mark.parametrize("channels", [1, 3, 14])
def test_richness_differs_across_patches_and_prefers_texture(channels):
    images = half_textured(channels)
    scores = richness(patch_hog(images, patch=8, cell=4)).reshape(8, 8)
    flat, textured = scores[:, :3], scores[:, 5:]  # keep clear of the boundary column
    assert scores.std() > 0.1 * scores.mean()
    assert textured.min() > 10 * flat.max()


def test_published_zscore_mean_score_cannot_rank():
    """The released code's score (mean of the z-scored HOG vector) is ~0 for every patch: a random pick."""
    feats = patch_hog(half_textured(3), patch=8, cell=4)
    z = (feats - feats.mean(-1, keepdim=True)) / (feats.std(-1, keepdim=True) + 1e-6)
    assert z.mean(-1).abs().max() < 1e-5
    assert richness(feats).std() > 1.0


def test_hog_orientation_bins_follow_edge_direction():
    img = torch.zeros(1, 1, 16, 16)
    img[..., 8:] = 1.0  # a vertical edge: horizontal gradient, angle 0
    cells = hog_cells(img, cell=16, bins=9)[0, :, 0, 0]
    assert int(cells.argmax()) in (0, 8)  # 0 rad sits between the first and last unsigned bins
    img_t = img.transpose(-1, -2)  # a horizontal edge: vertical gradient, angle pi/2
    assert int(hog_cells(img_t, cell=16, bins=9)[0, :, 0, 0].argmax()) == 4


def test_hog_is_batched_and_band_count_agnostic():
    images = torch.randn(5, 14, 32, 32)
    feats = patch_hog(images, patch=16, cell=8, bins=9)
    assert feats.shape == (5, 4, 2 * 2 * 9)
    assert torch.allclose(patch_hog(images[2:3], 16, 8, 9), feats[2:3])


def test_seed_patches_come_from_the_textured_half():
    images = half_textured(3).repeat(4, 1, 1, 1)
    feats = patch_hog(images, patch=8, cell=4)
    visible = grow_visible(feats, richness(feats), num_visible=12, num_seed=6, mix=(1.0, 0.0, 0.0))
    cols = visible[:, :6] % 8
    assert bool((cols >= 4).all())
    assert visible.shape == (4, 12)
    assert all(len(set(row.tolist())) == 12 for row in visible)


def test_near_grows_by_similarity_far_by_dissimilarity():
    torch.manual_seed(0)
    feats = torch.rand(16, 64, 36)
    scores = richness(feats)
    near = grow_visible(feats, scores, 16, 4, (1.0, 0.0, 0.0))
    far = grow_visible(feats, scores, 16, 4, (0.0, 1.0, 0.0))

    def mean_sim(visible):
        unit = torch.nn.functional.normalize(feats, dim=-1)
        seeds = torch.gather(unit, 1, visible[:, :4, None].expand(-1, -1, 36))
        grown = torch.gather(unit, 1, visible[:, 4:, None].expand(-1, -1, 36))
        return float((grown @ seeds.transpose(1, 2)).amax(-1).mean())

    assert torch.equal(near[:, :4], far[:, :4])
    assert mean_sim(near) > mean_sim(far) + 0.02


def test_curriculum_boundaries_scale_with_run_length():
    bounds = [280 / 800, 300 / 800, 580 / 800, 600 / 800]
    assert curriculum_mix(0.0, bounds) == (1.0, 0.0, 0.0)
    near, far, rand = curriculum_mix(290 / 800, bounds)
    assert math.isclose(near, 0.5) and math.isclose(far, 0.5) and rand == 0.0
    assert curriculum_mix(400 / 800, bounds) == (0.0, 1.0, 0.0)
    assert curriculum_mix(0.99, bounds) == (0.0, 0.0, 1.0)
    assert curriculum_stage(290 / 800, bounds) == "near->far"
    assert curriculum_stage(590 / 800, bounds) == "far->random"
    with pytest.raises(ValueError):
        curriculum_mix(0.1, [0.5, 0.4, 0.6, 0.7])


def test_targets_are_masked_patches_only():
    visible = torch.stack([torch.randperm(196)[:29] for _ in range(8)])
    targets = sample_targets(visible, 196, 41)
    for v, t in zip(visible.tolist(), targets.tolist(), strict=True):
        assert not set(v) & set(t) and len(set(t)) == 41


def with_fill_columns(batch: int = 4, size: int = 64) -> torch.Tensor:
    """Textured tiles whose two left patch columns are nodata fill (the band mean: 0 after normalising)."""
    rng = np.random.default_rng(3)
    tiles = np.stack([textured_tile(rng, 3, size, built=True) for _ in range(batch)])
    images = torch.from_numpy(tiles).float()
    images = (images - images.mean()) / images.std()
    images[..., :16] = 0.0
    return images


def test_flat_patches_are_the_fill_and_nothing_else():
    images = with_fill_columns()
    flat = flat_patches(patch_hog(images, patch=8, cell=4), patch=8).reshape(-1, 8, 8)
    assert bool(flat[..., :1].all())  # column 1 touches the texture: its last pixels have a gradient
    assert not bool(flat[..., 2:].any())


@pytest.mark.parametrize("rule", [(1.0, 0.0, 0.0), (0.0, 1.0, 0.0)])
def test_near_and_far_growth_never_prefer_fill(rule):
    """A flat patch's HOG vector normalises to zero, the least similarity: "far" took fill first."""
    images = with_fill_columns()
    feats = patch_hog(images, patch=8, cell=4)
    flat = flat_patches(feats, patch=8)
    visible = grow_visible(feats, richness(feats), 16, 8, rule, flat=flat)
    assert not bool(flat.gather(1, visible).any())


@pytest.mark.parametrize("similarity", ["embedding", "hog"])
def test_far_stage_of_the_model_encodes_no_fill(similarity):
    from rspretrain.config import ModelConfig
    from rspretrain.models import build_model

    cfg = ModelConfig(
        method="selective_mae", size="tiny", img_size=64, patch_size=8, depth=1, decoder_dim=32,
        decoder_depth=1, decoder_heads=4, hog_cell=4, similarity=similarity,
    )
    torch.manual_seed(0)
    model = build_model(cfg, 3)
    model.set_progress(0.5)  # the far stage of the default curriculum
    visible = model.select(with_fill_columns())
    assert bool((visible % 8 >= 1).all())


def test_two_growth_rounds_measure_similarity_to_the_first_rounds_picks():
    """Round 2 compares to the seeds and round 1's patches: B (like A, unlike the seed) beats C."""
    seed, a, b, c = [10.0, 0, 0], [1.0, 1, 0], [0.2, 1, 0], [1.0, 0, 1.2]
    feats = torch.tensor([[seed, a, b, c]])
    near = (1.0, 0.0, 0.0)
    one = grow_visible(feats, richness(feats), 3, 1, near, rounds=1)
    two = grow_visible(feats, richness(feats), 3, 1, near, rounds=2)
    assert one.tolist() == [[0, 1, 3]]
    assert two.tolist() == [[0, 1, 2]]
