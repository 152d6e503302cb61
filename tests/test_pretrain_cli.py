"""The `rspretrain` command line: run with overrides, resume, export, probe and readable errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from pretrain_fixtures import (
    TINY_OVERRIDES,
    make_corpus,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)
from typer.testing import CliRunner

from rspretrain.cli import app, model_overrides

pytestmark = pytest.mark.usefixtures("torch_single_thread")

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def sets(*extra: str) -> list[str]:
    return [a for o in [*TINY_OVERRIDES, *extra] for a in ("--set", o)]


def test_run_resume_export_probe(corpus, tmp_path):
    base = [
        "run",
        "--config",
        str(ROOT / "configs/mae_vit_tiny.yaml"),
        "--data",
        str(corpus),
        "--out",
        str(tmp_path / "run"),
        "--model",
        "selectivemae_vit_tiny",
        "--batch-size",
        "4",
        "--seed",
        "3",
        *sets(),
        "--max-steps",
        "3",
        "--checkpoint-every",
        "2",
    ]
    res = runner.invoke(app, [*base, "--stop-at", "2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, [*base, "--resume"])
    assert res.exit_code == 0, res.output
    records = [json.loads(x) for x in (tmp_path / "run/log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert "curriculum" in records[0]  # --model switched the method to SelectiveMAE
    snapshot = (tmp_path / "run/config.yaml").read_text()
    assert "method: selective_mae" in snapshot and "seed: 3" in snapshot
    from rspretrain.config import load_config

    assert load_config(tmp_path / "run/config.yaml").model.method == "selective_mae"  # reusable as --config

    res = runner.invoke(app, ["export", str(tmp_path / "run"), "--out", str(tmp_path / "export")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "export/model.safetensors").stat().st_size > 0
    res = runner.invoke(app, ["probe", str(tmp_path / "export"), "--data", str(corpus), "--k", "3",
                                   "--on-overlap", "warn", "--linear-epochs", "5"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert set(report) >= {"pretrained", "random_init", "tiles"}


def test_errors_are_one_readable_line(corpus, tmp_path):
    res = runner.invoke(
        app,
        [
            "run",
            "--config",
            str(ROOT / "configs/mae_vit_tiny.yaml"),
            "--data",
            str(corpus),
            "--out",
            str(tmp_path),
            "--set",
            "model.mask_ration=0.5",
        ],
    )
    assert res.exit_code == 1 and "unknown option" in res.output and "mask_ration" in res.output
    res = runner.invoke(
        app,
        [
            "run",
            "--config",
            str(ROOT / "configs/mae_vit_tiny.yaml"),
            "--data",
            str(tmp_path / "nowhere"),
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 1 and "no shards/ folder" in res.output
    res = runner.invoke(app, ["export", str(tmp_path / "empty"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 1 and "checkpoint" in res.output


def test_model_option_parses_config_style_names():
    assert model_overrides("mae_vit_base") == ["model.method=mae", "model.size=base"]
    assert model_overrides("selectivemae_vit_large") == ["model.method=selective_mae", "model.size=large"]
    with pytest.raises(Exception, match="METHOD_vit_SIZE"):
        model_overrides("vit_base")


@pytest.mark.parametrize("preset", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")))
def test_every_shipped_preset_is_valid(preset):
    from rspretrain.config import load_config
    from rspretrain.models import build_model

    cfg = load_config(ROOT / "configs" / f"{preset}.yaml", ["model.depth=1", "model.decoder_depth=1"])
    with torch.device("meta"):  # shapes only: the SatVision-TOA giant holds 2.65B parameters
        model = build_model(cfg.model, cfg.data.channels())
    assert model.num_patches == (cfg.model.img_size // cfg.model.patch_size) ** 2


def test_run_into_a_used_folder_needs_resume_or_overwrite(corpus, tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "step_00000009.pt").write_bytes(b"older weights")
    args = ["run", "--config", str(ROOT / "configs/mae_vit_tiny.yaml"), "--data", str(corpus), "--out", str(run),
            *sets(), "--max-steps", "1"]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert str(run) in res.output and "step_00000009.pt" in res.output and "--resume" in res.output
    assert (run / "checkpoints" / "step_00000009.pt").exists() and not (run / "log.jsonl").exists()
    res = runner.invoke(app, [*args, "--resume", "--overwrite"])
    assert res.exit_code == 2 and "one of them" in res.output
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000001.pt"], "older run deleted"


def test_version():
    from importlib.metadata import version

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == f"rspretrain {version('rsfm-toolkit')}"


def test_synthetic_names_bands_and_sets_the_difficulty(tmp_path):
    """The demo's labelled probe set: RGB-named bands, and a contrast knob that really weakens the class signal."""
    from rspretrain.corpus import Corpus

    def band_gap(folder: Path, contrast: str) -> float:
        res = runner.invoke(app, ["synthetic", "--out", str(folder), "--tiles", "32", "--size", "16",
                                  "--band-names", "blue,green,red,nir", "--contrast", contrast, "--noise", "0.05"])
        assert res.exit_code == 0, res.output
        rows = Corpus(folder).read_row_group(Corpus(folder).row_groups[0], ["bands", "label", "band_std"]).to_pylist()
        assert all(r["bands"] == ["blue", "green", "red", "nir"] for r in rows)
        std = {c: sum(r["band_std"][0] for r in rows if r["label"] == c) for c in ("built", "natural")}
        return std["built"] / std["natural"]

    assert band_gap(tmp_path / "easy", "1") > 2 * band_gap(tmp_path / "hard", "0.1")
    res = runner.invoke(app, ["synthetic", "--out", str(tmp_path / "x"), "--band-names", "red,green,blue"])
    assert res.exit_code != 0 and "four distinct names" in res.output
