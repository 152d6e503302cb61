"""Export: timm loads the encoder (no hub) and computes the same features; probes run against random init."""

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
from rspretrain.probe import knn_accuracy, linear_accuracy, run_probe

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


def test_probe_reports_pretrained_and_random_init(corpus, tmp_path):
    train(tiny_config("mae_vit_tiny", "train.max_steps=2"), corpus, tmp_path / "run")
    out = export(tmp_path / "run", tmp_path / "export")
    report = run_probe(out, corpus, k=3, test_fraction=0.25)
    assert report["tiles"] == 48 and report["classes"] == ["built", "natural"]
    assert report["train"] + report["test"] == 48
    for name in ("pretrained", "random_init"):
        assert 0.0 <= report[name]["knn"] <= 1.0 and 0.0 <= report[name]["linear"] <= 1.0


def test_probe_classifiers_separate_separable_features():
    torch.manual_seed(0)
    y = torch.arange(60) % 3
    x = torch.nn.functional.one_hot(y, 3).float() * 4 + 0.3 * torch.randn(60, 3)
    noise = torch.randn(60, 3)
    assert knn_accuracy(x[:40], y[:40], x[40:], y[40:], k=5) == 1.0
    assert linear_accuracy(x[:40], y[:40], x[40:], y[40:]) == 1.0
    assert knn_accuracy(noise[:40], y[:40], noise[40:], y[40:], k=5) < 0.8
