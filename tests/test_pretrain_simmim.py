"""SimMIM on SwinV2 (SatVision-TOA): masks, loss, presets, per-sample wavelengths, training, export, probe."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from pretrain_fixtures import torch_single_thread  # noqa: F401  (a fixture, used by pytestmark)

from rspretrain import checkpoint as ckpt
from rspretrain.config import ModelConfig, load_config
from rspretrain.corpus import Corpus
from rspretrain.engine import BASELINES, train
from rspretrain.export import encoder_from_checkpoint, export
from rspretrain.models import SimMIM, SwinEncoder, ViTEncoder, build_model
from rspretrain.models.simmim import random_cell_mask
from rspretrain.modis_scaling import satvision_mean_std
from rspretrain.probe import run_probe
from rspretrain.synthetic import MODIS_BANDS, MODIS_WAVES, make_modis_corpus
from rspretrain.tiles import TileReader

pytestmark = pytest.mark.usefixtures("torch_single_thread")

REPO = Path(__file__).resolve().parent.parent
TINY = ["model.img_size=64", "data.num_workers=0", "train.tensorboard=false", "train.batch_size=4"]


def tiny_swin(**kw) -> ModelConfig:
    base = dict(method="simmim", size="tiny", img_size=64, patch_size=4, embed_dim=16, stage_depths=[1, 1, 1, 1],
                stage_heads=[1, 2, 4, 8])
    return ModelConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def modis(tmp_path_factory) -> Path:
    return make_modis_corpus(tmp_path_factory.mktemp("modis"), n=32, size=128)


@pytest.mark.parametrize(
    "preset, encoder_params, total_params, published",
    [("huge", 654_935_320, 695_320_184, 0.7e9), ("giant", 2_595_019_232, 2_653_754_336, 3e9)],
)
def test_satvision_presets_have_the_published_size(preset, encoder_params, total_params, published):
    cfg = load_config(REPO / "configs" / f"satvision_toa_{preset}.yaml")
    assert (cfg.model.img_size, cfg.model.patch_size, cfg.model.window_size) == (128, 4, 8)
    with torch.device("meta"):
        model = build_model(cfg.model, len(cfg.data.bands))
    assert isinstance(model, SimMIM) and model.in_chans == 14
    assert sum(p.numel() for p in model.encoder.parameters()) == encoder_params
    assert sum(p.numel() for p in model.parameters()) == total_params
    # the published labels are rounded: 0.7B, and "3B" for a giant one stage-4 block short of SwinV2-G's 3.0B
    assert abs(total_params - published) / published < 0.15


def test_mask_cells_cover_the_ratio_in_whole_cells():
    torch.manual_seed(0)
    mask = random_cell_mask(5, 128, 8, 4, 0.6, torch.device("cpu"))
    assert mask.shape == (5, 32, 32)
    cells = mask.view(5, 16, 2, 16, 2)
    assert torch.equal(cells.all(4).all(2), cells.any(4).any(2))  # every 2x2-patch cell is all or nothing
    assert (cells[:, :, 0, :, 0].sum((1, 2)) == math.ceil(256 * 0.6)).all()
    assert not torch.equal(mask[0], mask[1])


def test_loss_is_l1_over_masked_pixels_divided_by_band_count():
    model = build_model(tiny_swin(), 3)
    images = torch.zeros(1, 3, 64, 64)
    pred = torch.zeros(1, 3, 64, 64)
    pred[0, 0, :8] = 2.0  # error 2 in band 0 of rows 0-7 ...
    pred[0, 1, 60:] = 5.0  # ... and error 5 in unmasked rows
    pixels = torch.zeros(1, 64, 64, dtype=torch.bool)
    pixels[0, :16] = True  # 16 x 64 masked pixels
    expected = (2.0 * 8 * 64) / (16 * 64) / 3
    assert math.isclose(float(model.loss(images, pred, pixels)), expected, rel_tol=1e-4)


def test_masked_patches_reach_the_encoder_only_as_the_mask_token():
    torch.manual_seed(0)
    model = build_model(tiny_swin(), 4).eval()
    images = torch.randn(1, 4, 64, 64)
    mask = random_cell_mask(1, 64, 8, 4, 0.6, torch.device("cpu"))
    pixels = model.pixel_mask(mask)[:, None]
    altered = torch.where(pixels, torch.randn_like(images), images)
    with torch.no_grad():
        assert torch.allclose(model.reconstruct(images, mask), model.reconstruct(altered, mask), atol=1e-5)
        assert not torch.allclose(model.reconstruct(images, mask), model.reconstruct(altered, mask * False))


def test_trivial_losses_are_the_loss_of_those_predictions():
    torch.manual_seed(0)
    model = build_model(tiny_swin(), 3)
    images = torch.randn(2, 3, 64, 64).cumsum(-1)
    out = model(images)
    zeros, visible_mean = model.trivial_losses(images, out)
    assert math.isclose(zeros, float(model.loss(images, torch.zeros_like(images), out.mask)), rel_tol=1e-5)
    seen = images.masked_fill(out.mask[:, None], float("nan")).nanmean((2, 3), keepdim=True)
    assert math.isclose(visible_mean, float(model.loss(images, seen.expand_as(images), out.mask)), rel_tol=1e-5)


ENCODERS = {
    "vit": lambda: ViTEncoder(in_chans=4, img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                              patch_embed="wavelength"),
    "swin": lambda: SwinEncoder(in_chans=4, img_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2],
                                window_size=4, patch_embed="wavelength"),
}


@pytest.mark.parametrize("kind", sorted(ENCODERS))
def test_wavelength_embedding_takes_any_band_set_per_sample(kind):
    """One encoder takes 3-, 4- and 14-band batches, and a batch mixing band sets embeds each sample with its own
    wavelengths (the first sample's used to stand for the whole batch)."""
    torch.manual_seed(0)
    encoder = ENCODERS[kind]().eval()
    with torch.no_grad():
        for waves in ([0.49, 0.56, 0.665], [0.49, 0.56, 0.665, 0.842], MODIS_WAVES):
            x = torch.randn(2, len(waves), 32, 32)
            out = encoder(x, wavelengths=torch.tensor([waves, waves]))
            assert out.shape[0] == 2 and torch.isfinite(out).all()
        s2, landsat = [0.49, 0.56, 0.665, 0.842], [0.48, 0.56, 0.655, 0.865]
        x = torch.randn(3, 4, 32, 32)
        per_sample = torch.tensor([s2, landsat, s2])
        mixed = encoder(x, wavelengths=per_sample)
        for i in range(3):
            assert torch.allclose(mixed[i], encoder(x[i : i + 1], wavelengths=per_sample[i])[0], atol=1e-5)
        assert not torch.allclose(mixed[1], encoder(x[1:2], wavelengths=torch.tensor(s2))[0], atol=1e-3)
        if kind == "vit":  # the masked (visible-only) path too
            visible = torch.tensor([[0, 3, 5], [1, 2, 15], [4, 7, 9]])
            tokens = encoder.embed(x, visible, per_sample)
            for i in range(3):
                assert torch.allclose(tokens[i], encoder.embed(x[i : i + 1], visible[i : i + 1], per_sample[i])[0],
                                      atol=1e-5)


def test_satvision_scaling_is_reflectance_hundredths_and_bt_min_max(modis):
    reader = TileReader(Corpus(modis), bands=MODIS_BANDS, normalise="satvision")
    plan = reader.plan(MODIS_BANDS, MODIS_WAVES, "modis")
    tile = torch.full((14, 2, 2), 50.0)
    tile[MODIS_BANDS.index("B31")] = 263.12
    scaled = TileReader.normalise(tile, plan)[:, 0, 0]
    assert scaled[MODIS_BANDS.index("B01")] == pytest.approx(0.5)
    assert scaled[MODIS_BANDS.index("B26")] == pytest.approx(0.5)
    assert scaled[MODIS_BANDS.index("B31")] == pytest.approx((263.12 - 202.1759) / (324.0677 - 202.1759), rel=1e-5)
    with pytest.raises(ValueError, match=r"\['red'\].*normalise: source or global"):
        satvision_mean_std(["B01", "red"])


def test_simmim_run_resumes_exactly_and_logs_trivial_levels(modis, tmp_path):
    cfg = load_config(REPO / "configs" / "satvision_toa_tiny.yaml", [*TINY, "train.max_steps=4"])
    whole = train(cfg, modis, tmp_path / "whole")
    train(cfg, modis, tmp_path / "resumed", stop_at=2)
    rest = train(cfg, modis, tmp_path / "resumed", resume=True)
    assert rest.losses == pytest.approx(whole.losses[2:], rel=1e-6)
    log = [json.loads(line) for line in (tmp_path / "whole" / "log.jsonl").read_text().splitlines()]
    assert all(set(BASELINES) <= set(entry) for entry in log)
    assert log[-1]["tokens_encoded"] == 16 * 16 * 4  # every patch of 64 px at patch 4, batch 4


def test_export_loads_strictly_in_timm_and_probes(modis, tmp_path):
    cfg = load_config(REPO / "configs" / "satvision_toa_tiny.yaml", [*TINY, "train.max_steps=2",
                                                                     "model.patch_embed=wavelength"])
    result = train(cfg, modis, tmp_path / "run")
    out = export(tmp_path / "run", tmp_path / "export")
    config = json.loads((out / "config.json").read_text())
    assert config["architecture"].startswith("swinv2_")
    assert config["model_args"]["depths"] == [1, 1, 2, 1] and config["model_args"]["in_chans"] == 14
    assert config["num_features"] == 24 * 8 and config["bands"] == MODIS_BANDS
    model = timm.create_model("local-dir:" + str(out), pretrained=True).eval()  # strict load
    encoder = encoder_from_checkpoint(ckpt.load(result.last_checkpoint))
    x = torch.randn(2, 14, 64, 64)
    with torch.no_grad():
        assert torch.allclose(encoder(x, torch.tensor(MODIS_WAVES)), model.forward_features(x), atol=1e-5)
    probe_data = make_modis_corpus(tmp_path / "probe_corpus", n=16, size=64, seed=1, source="modis_probe")
    report = run_probe(out, probe_data, out=tmp_path / "probe", seeds=1, linear_epochs=5, ep_epochs=2, ep_queries=4)
    assert report["classes"] == ["clear", "cloudy"] and report["tiles"] == 16
    assert 0.0 <= report["pretrained"]["linear"]["mean"] <= 1.0


@pytest.mark.slow
def test_simmim_learns_below_the_band_mean_predictor(modis, tmp_path):
    """A short run on structured 14-band chips ends clearly below predicting each image's per-band mean (L1), both
    over its visible pixels (the logged baseline) and over the whole image (an oracle that sees the masked ones)."""
    cfg = load_config(REPO / "configs" / "satvision_toa_tiny.yaml",
                      [*TINY, "train.batch_size=8", "train.max_steps=100", "train.checkpoint_every=1000"])
    result = train(cfg, modis, tmp_path / "run")
    last = 20
    loss = sum(result.losses[-last:]) / last
    trivial = {k: sum(b[k] for b in result.baselines[-last:]) / last for k in BASELINES}
    assert loss < 0.85 * min(trivial.values()), (loss, trivial, result.losses)
    model = build_model(cfg.model, 14)
    model.load_state_dict(ckpt.load(result.last_checkpoint)["model"])
    images = torch.stack([torch.from_numpy(np.asarray(s["image"])) for s in _eval_batch(modis, cfg)])
    torch.manual_seed(1)
    with torch.no_grad():
        out = model(images)
    oracle = model.loss(images, images.mean((2, 3), keepdim=True).expand_as(images), out.mask)
    assert float(out.loss) < 0.85 * float(oracle), (float(out.loss), float(oracle))


def _eval_batch(corpus: Path, cfg) -> list[dict]:
    from rspretrain.data import CorpusDataset

    return list(CorpusDataset(Corpus(corpus), cfg.model.img_size, cfg.data, num_workers=0, augment=False, epochs=1))


def test_cli_runs_the_tiny_preset_on_a_14_band_corpus(modis, tmp_path):
    """The MODIS demo's pretraining step, as documented: the shipped preset on 128 px 14-band chips (in-process
    data loading only to keep the test fast)."""
    from typer.testing import CliRunner

    from rspretrain.cli import app

    args = ["run", "--config", str(REPO / "configs" / "satvision_toa_tiny.yaml"), "--data", str(modis),
            "--out", str(tmp_path / "run"), "--max-steps", "2", "--set", "data.num_workers=0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [entry["step"] for entry in log] == [1, 2] and all(math.isfinite(e["loss"]) for e in log)
    assert (tmp_path / "run" / "checkpoints" / "step_00000002.pt").is_file()
