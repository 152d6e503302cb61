"""Export: timm loads the encoder (no hub) and computes the same features (probes: test_pretrain_probe.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import timm
import torch
from conftest import REPO, run_build
from PIL import Image
from pretrain_fixtures import (
    S2_WAVES,
    make_corpus,
    rewrite_rows,
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rscurate.codec import decode
from rspretrain import checkpoint as ckpt
from rspretrain.config import DataConfig
from rspretrain.corpus import Corpus
from rspretrain.data import CorpusDataset
from rspretrain.engine import train
from rspretrain.export import encoder_from_checkpoint, export, source_data_config

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


def test_band_record_comes_from_the_corpus_not_the_first_batch(tmp_path):
    """The tile the run happens to see first lacks wavelengths; the record still has every band's."""
    root = make_corpus(tmp_path / "corpus")
    cfg = tiny_config("mae_vit_tiny", "train.max_steps=1")
    stream = CorpusDataset(Corpus(root), cfg.model.img_size, cfg.data, seed=cfg.train.seed, num_workers=0)
    first = next(iter(stream))["id"]
    rewrite_rows(root, lambda row: {**row, "wavelengths_um": None} if row["id"] == first else row)
    train(cfg, root, tmp_path / "run")
    config = json.loads((export(tmp_path / "run", tmp_path / "export") / "config.json").read_text())
    assert config["wavelengths_um"] == pytest.approx(S2_WAVES)


def _real_corpus(tmp_path: Path, manifests: list[str]) -> Path:
    out = tmp_path / "corpus"
    run_build([REPO / "manifests" / "samples" / f"{name}.yaml" for name in manifests], out)
    return out


def _training_view(corpus: Path, export_dir: Path) -> dict[str, tuple[dict, torch.Tensor]]:
    """Each complete tile (no nodata) with the tensor training makes of it (evaluation path, no augmentation)."""
    config = json.loads((export_dir / "config.json").read_text())
    cfg = DataConfig(bands=config["bands"], normalise=config["normalise"], shuffle_buffer=1)
    seen = {s["id"]: s["image"] for s in CorpusDataset(Corpus(corpus), config["img_size"], cfg, num_workers=0,
                                                        augment=False, epochs=1)}
    rows = [r for shard in Corpus(corpus).shards for r in pq.read_table(shard).to_pylist()]
    return {r["id"]: (r, seen[r["id"]]) for r in rows if r["nodata_fraction"] == 0 and r["id"] in seen}


def _timm_input(row: dict, bands: list[str]) -> Image.Image | torch.Tensor:
    """What a timm user hands to timm's transforms: an 8-bit image as PIL, anything else as a float tensor."""
    array = decode(row["image"], row["encoding"])[[row["bands"].index(b) for b in bands]]
    if array.dtype == np.uint8:
        return Image.fromarray(np.moveaxis(array, 0, -1))
    return torch.from_numpy(array.astype(np.float32))


RGB_RUN = ("train.max_steps=1", "data.bands=[red, green, blue]", "model.img_size=128", "model.patch_size=16")


@pytest.mark.parametrize("manifest", ["rgbn", "landsat8_l1tp_stack"])  # uint8 (PIL) and uint16 (tensor) tiles
def test_timm_data_pipeline_gives_the_training_tensor_on_real_tiles(sample_dir, tmp_path, manifest):
    """timm.data.create_transform(**resolve_data_config({}, model=m)), the way timm models are fed, must turn a
    real tile into the tensor training used; before, 8-bit statistics in stored units left inputs near -2."""
    corpus = _real_corpus(tmp_path, [manifest])
    train(tiny_config("mae_vit_tiny", *RGB_RUN), corpus, tmp_path / "run")
    out = export(tmp_path / "run", tmp_path / "export")
    model = timm.create_model("local-dir:" + str(out), pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    tiles = _training_view(corpus, out)
    assert tiles
    for row, trained in tiles.values():
        fed = transform(_timm_input(row, ["red", "green", "blue"]))
        torch.testing.assert_close(fed, trained, atol=1e-5, rtol=1e-5)


def test_per_source_statistics_reach_timm_through_source_data_config(sample_dir, tmp_path):
    """A run normalised per source (uint8 rgbn, uint16 Landsat) is fed like either source with its own config."""
    corpus = _real_corpus(tmp_path, ["rgbn", "landsat8_l1tp_stack"])
    train(tiny_config("mae_vit_tiny", *RGB_RUN), corpus, tmp_path / "run")
    out = export(tmp_path / "run", tmp_path / "export")
    config = json.loads((out / "config.json").read_text())
    assert {s: e["input_scale"] for s, e in config["per_source"].items()} == {
        "rgbn": 255.0, "landsat8_l1tp_stack": 1.0}
    sources = set()
    for row, trained in _training_view(corpus, out).values():
        transform = timm.data.create_transform(**source_data_config(out, row["source"]))
        torch.testing.assert_close(transform(_timm_input(row, config["bands"])), trained, atol=1e-5, rtol=1e-5)
        sources.add(row["source"])
    assert sources == {"rgbn", "landsat8_l1tp_stack"}
    with pytest.raises(KeyError, match="no per-source statistics for 'elsewhere'"):
        source_data_config(out, "elsewhere")
