"""A short CPU pretraining from the synthetic corpus: the loss really goes down (the docs' demo, smaller)."""

from __future__ import annotations

import pytest
from pretrain_fixtures import (
    make_corpus,
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rspretrain.engine import train

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
