"""`rspretrain probe`: temperature-weighted k-NN, BatchNorm linear probe, efficient attentive probe on patch tokens,
stratified repeated splits, our random init as the baseline, cached features, JSON + Markdown report, and the
pretraining-overlap check."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from pretrain_fixtures import (
    make_corpus,
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)
from typer.testing import CliRunner

from rspretrain.cli import app
from rspretrain.corpus import Corpus
from rspretrain.engine import train
from rspretrain.export import export
from rspretrain.models import ViTEncoder
from rspretrain.models.pos_embed import sincos_2d
from rspretrain.probe import run_probe
from rspretrain.probe_attentive import attentive_predict
from rspretrain.probe_classifiers import knn_predict, linear_predict
from rspretrain.probe_features import random_init_model, select_tiles
from rspretrain.probe_overlap import ProbeOverlap, check_overlap
from rspretrain.probe_splits import stratified_split

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    corpus = make_corpus(root / "corpus")
    train(tiny_config("mae_vit_tiny", "train.max_steps=2"), corpus, root / "run")
    return export(root / "run", root / "export"), corpus


def test_knn_votes_are_temperature_weighted():
    # one near neighbour of class 0 (cos 0.99) against four far ones of class 1 (cos 0.5): linear similarity
    # votes (the old rule) give class 1 (0.99 < 2.0), exp(sim / 0.07) votes give class 0
    train_x = torch.tensor([[0.99, 0.141], [0.5, 0.866], [0.5, -0.866], [0.5, 0.866], [0.5, -0.866]])
    train_y = torch.tensor([0, 1, 1, 1, 1])
    pred = knn_predict(train_x, train_y, torch.tensor([[1.0, 0.0]]), ks=(1, 5), num_classes=2)
    assert pred[1].tolist() == [0] and pred[5].tolist() == [0]


def test_linear_probe_standardises_features_with_batchnorm():
    # the class lives in a feature offset by 3 whose class difference is 0.01: unstandardised, SGD sees only the
    # offset (0.55 accuracy measured); BatchNorm statistics averaged over the whole short run make it +-1
    torch.manual_seed(0)
    y = torch.arange(80) % 2
    x = torch.randn(80, 8)
    x[:, 0] = 3.0 + 0.01 * (y.float() * 2 - 1) + 0.001 * torch.randn(80)
    pred = linear_predict(x[:60], y[:60], x[60:], num_classes=2, seed=0, epochs=30)
    assert bool((pred == y[60:]).all())


def test_attentive_probe_sees_where_a_pattern_sits_which_mean_pooling_erases():
    # 16 tokens = fixed position vectors + noise; one token also carries a pattern, in the top half (class 0) or the
    # bottom half (class 1). The mean token is the same for both classes: the linear probe stays near chance
    # (0.43-0.56 measured over torch seeds 0-4); queries that attend to the pattern read its position (EP 0.97-1.0)
    torch.manual_seed(0)
    n, patches, width = 400, 16, 32
    pos = torch.randn(patches, width)
    y = torch.arange(n) % 2
    where = torch.randint(0, patches // 2, (n,)) + y * (patches // 2)
    tokens = pos + 0.3 * torch.randn(n, patches, width)
    tokens[torch.arange(n), where] += 2 * torch.randn(width)
    tokens = tokens.half()  # as cached
    tr, te = slice(0, 300), slice(300, n)
    linear = linear_predict(tokens[tr].float().mean(1), y[tr], tokens[te].float().mean(1), 2, seed=0, epochs=30)
    ep = attentive_predict(tokens[tr], y[tr], tokens[te], 2, seed=0, epochs=60, queries=4)
    linear_acc, ep_acc = (linear == y[te]).float().mean(), (ep == y[te]).float().mean()
    assert linear_acc <= 0.7 and ep_acc >= 0.9, (linear_acc, ep_acc)


def test_attentive_probe_needs_queries_that_divide_the_width():
    with pytest.raises(ValueError, match="--ep-queries must divide the token width 32, got 5"):
        attentive_predict(torch.zeros(4, 3, 32), torch.tensor([0, 1, 0, 1]), torch.zeros(2, 3, 32), 2, 0, queries=5)


def test_stratified_split_keeps_class_shares_and_varies_with_seed():
    y = torch.tensor([0] * 40 + [1] * 10 + [2] * 3)
    splits = [stratified_split(y, 0.3, seed) for seed in range(3)]
    for tr, test in splits:
        assert sorted(torch.cat([tr, test]).tolist()) == list(range(len(y)))
        assert torch.bincount(y[test], minlength=3).tolist() == [12, 3, 1]  # every class tested, in proportion
    assert splits[0][1].tolist() != splits[1][1].tolist()


def test_max_tiles_is_a_stratified_sample_not_the_first_tiles(exported):
    _, corpus = exported
    everything = select_tiles(Corpus(corpus), ["B02", "B03", "B04", "B08"], None, seed=0)
    sample = select_tiles(Corpus(corpus), ["B02", "B03", "B04", "B08"], 12, seed=0)
    assert len(everything.labels) == 48
    assert sorted(sample.labels) == ["built"] * 6 + ["natural"] * 6
    assert sample.ids != everything.ids[:12]


def test_random_init_baseline_is_our_initialisation(exported):
    export_dir, _ = exported
    model = random_init_model(export_dir, seed=1)
    torch.manual_seed(1)
    ours = ViTEncoder(in_chans=4, img_size=32, patch_size=8, embed_dim=192, depth=2, num_heads=3)
    assert torch.allclose(model.pos_embed[0, 1:], sincos_2d(192, 4)[0, 1:])  # timm's own init is random
    x = torch.randn(2, 4, 32, 32)
    assert torch.allclose(model.eval().forward_features(x), ours.eval()(x), atol=1e-5)
    assert not torch.allclose(random_init_model(export_dir, seed=2).patch_embed.proj.weight,
                              model.patch_embed.proj.weight)


def test_overlap_with_pretraining_is_found_by_id_or_content(exported):
    export_dir, corpus = exported
    tiles = select_tiles(Corpus(corpus), ["B02", "B03", "B04", "B08"], None, seed=0)
    with pytest.raises(ProbeOverlap, match="48 of 48 probe tiles are also in the pretraining corpus"):
        check_overlap(tiles, export_dir, None, "refuse")  # the corpus recorded in the export's checkpoint
    # tiles 0-9 get new ids but keep their pixels (caught by sha256); 10-19 are new ids and new pixels
    renamed = replace(
        tiles,
        ids=[f"new{i}" if i < 20 else t for i, t in enumerate(tiles.ids)],
        sha256=[f"other{i}" if 10 <= i < 20 else s for i, s in enumerate(tiles.sha256)],
    )
    kept, record = check_overlap(renamed, export_dir, corpus, "drop")
    assert kept.ids == [f"new{i}" for i in range(10, 20)] and record["overlapping"] == 38
    fresh = replace(renamed, ids=renamed.ids[10:20], sha256=renamed.sha256[10:20], labels=renamed.labels[10:20],
                    locations=renamed.locations[10:20])
    assert check_overlap(fresh, export_dir, corpus, "refuse")[1] == {
        "checked": True, "pretrain_data": str(corpus), "overlapping": 0, "mode": "refuse"}


def test_probe_reports_seeds_spread_per_class_and_caches_features(exported, tmp_path):
    export_dir, corpus = exported
    report = run_probe(export_dir, corpus, out=tmp_path / "probe", on_overlap="warn", linear_epochs=20, ep_epochs=5)
    assert report["tiles"] == 48 and report["classes"] == ["built", "natural"]
    assert report["train"] + report["test"] == 48 and report["seeds"] == [0, 1, 2]
    assert report["metrics"] == ["knn_k5", "knn_k10", "knn_k20", "linear", "ep"]
    assert report["per_class_metrics"] == ["knn_k20", "linear", "ep"]
    assert report["settings"] == {"linear_epochs": 20, "ep_epochs": 5, "ep_queries": 8}
    for name in ("pretrained", "random_init"):
        for metric in report["metrics"]:
            summary = report[name][metric]
            assert len(summary["seeds"]) == 3 and summary["std"] >= 0
            assert summary["mean"] == pytest.approx(sum(summary["seeds"]) / 3)
        for metric in report["per_class_metrics"]:
            assert set(report[name]["per_class"][metric]) == {"built", "natural"}
    assert report["overlap"]["overlapping"] == 48 and report["cache"]["misses"] == 4  # pretrained + 3 inits
    tokens = [torch.load(f, weights_only=True) for f in sorted((tmp_path / "probe/features").glob("*.tokens.pt"))]
    assert len(tokens) == 4 and all(t.dtype == torch.float16 and t.shape == (48, 16, 192) for t in tokens)
    assert json.loads((tmp_path / "probe/report.json").read_text()) == report
    md = (tmp_path / "probe/report.md").read_text()
    assert "| random_init |" in md and "Per-class accuracy, linear" in md and "48 of 48" in md
    assert "Per-class accuracy, ep" in md and "| knn_k20 | linear | ep |" in md
    assert "8 queries over the patch tokens, 5 epochs" in md
    again = run_probe(export_dir, corpus, out=tmp_path / "probe", on_overlap="warn", linear_epochs=20, ep_epochs=5)
    assert again["cache"] == {**report["cache"], "hits": 4, "misses": 0}
    assert again["random_init"] == report["random_init"]
    without = run_probe(export_dir, corpus, out=tmp_path / "probe", on_overlap="warn", linear_epochs=20, ep_epochs=0)
    assert without["metrics"] == ["knn_k5", "knn_k10", "knn_k20", "linear"] and "ep" not in without["pretrained"]


def test_cli_refuses_probe_tiles_that_were_pretraining_tiles(exported, tmp_path):
    export_dir, corpus = exported
    runner = CliRunner()
    res = runner.invoke(app, ["probe", str(export_dir), "--data", str(corpus), "--out", str(tmp_path / "p")])
    assert res.exit_code == 1 and "--on-overlap drop" in res.output and "48 of 48" in res.output
    res = runner.invoke(app, ["probe", str(export_dir), "--data", str(corpus), "--out", str(tmp_path / "p"),
                              "--on-overlap", "warn", "--k", "3", "--seeds", "2", "--linear-epochs", "5",
                              "--ep-epochs", "2", "--ep-queries", "4"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert report["metrics"] == ["knn_k3", "linear", "ep"] and report["seeds"] == [0, 1]
    assert report["settings"]["ep_queries"] == 4
    res = runner.invoke(app, ["probe", str(export_dir), "--data", str(corpus), "--out", str(tmp_path / "q"),
                              "--on-overlap", "warn", "--ep-queries", "5"])
    assert res.exit_code == 1 and "--ep-queries must divide the token width 192, got 5" in res.output
    assert not (tmp_path / "q/features").exists()  # refused before any encoder ran
    assert (tmp_path / "p/report.md").is_file()
