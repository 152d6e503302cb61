"""Export: timm loads the encoder (no hub) and computes the same features (probes: test_pretrain_probe.py)."""

from __future__ import annotations

import json

import pytest
import timm
import torch
from pretrain_fixtures import (
    make_corpus,
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rspretrain import checkpoint as ckpt
from rspretrain.engine import train
from rspretrain.export import encoder_from_checkpoint, export

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize("patch_embed", ["conv", "wavelength"])
def test_exported_timm_model_matches_trained_encoder(corpus, tmp_path, patch_embed):
    cfg = tiny_config("selectivemae_vit_tiny", "train.max_steps=2", f"model.patch_embed={patch_embed}")
    result = train(cfg, corpus, tmp_path / "run")
    out = export(tmp_path / "run", tmp_path / "export")
    config = json.loads((out / "config.json").read_text())
    assert config["bands"] == ["B02", "B03", "B04", "B08"]
    assert config["wavelengths_um"] == pytest.approx([0.49, 0.56, 0.665, 0.842])
    assert config["in_chans"] == 4 and config["img_size"] == 32 and config["patch_size"] == 8
    stats = json.loads((corpus / "stats.json").read_text())["bands"]
    assert config["mean"] == pytest.approx([stats[b]["mean"] for b in config["bands"]])
    assert config["std"] == pytest.approx([stats[b]["std"] for b in config["bands"]])

    model = timm.create_model(
        config["architecture"],
        pretrained=True,
        in_chans=4,
        num_classes=0,
        img_size=32,
        patch_size=8,
        depth=2,
        pretrained_cfg_overlay=dict(file=str(out / "model.safetensors")),  # the call users make, as is
    ).eval()
    state = ckpt.load(result.last_checkpoint)
    encoder = encoder_from_checkpoint(state)
    x = torch.randn(3, 4, 32, 32)
    with torch.no_grad():
        ours = encoder(x, wavelengths=torch.tensor(config["wavelengths_um"]))
        theirs = model.forward_features(x)
        hub_style = timm.create_model("local-dir:" + str(out), pretrained=True).eval().forward_features(x)
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert torch.allclose(ours, hub_style, atol=1e-5)
    assert not torch.allclose(
        theirs,
        timm.create_model(config["architecture"], num_classes=0, **config["model_args"])
        .eval()
        .forward_features(x),
    )
