"""The training engine: exact resume, logs, schedule, accumulation, and stopping on a non-finite loss."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from pretrain_fixtures import (
    make_corpus,
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rspretrain import checkpoint as ckpt
from rspretrain import engine
from rspretrain.engine import NonFiniteLoss, train
from rspretrain.optim import lr_at, param_groups

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.mark.parametrize(
    "preset,extra",
    [
        ("selectivemae_vit_tiny", ["data.num_workers=2", "train.accum_steps=2"]),
        ("mae_vit_tiny", ["data.num_workers=1"]),
    ],
)
def test_resume_reproduces_the_uninterrupted_loss_curve(corpus, tmp_path, preset, extra):
    # curriculum bounds inside the 6 steps, so the resumed half runs in another selection stage
    cfg = tiny_config(
        preset,
        "train.max_steps=6",
        "train.checkpoint_every=3",
        "model.curriculum=[0.2, 0.4, 0.6, 0.8]",
        *extra,
    )
    straight = train(cfg, corpus, tmp_path / "straight")
    first = train(cfg, corpus, tmp_path / "resumed", stop_at=3)
    assert first.steps == 3 and ckpt.latest_checkpoint(tmp_path / "resumed").name == "step_00000003.pt"
    second = train(cfg, corpus, tmp_path / "resumed", resume=True)
    assert second.steps == 6
    resumed = first.losses + second.losses
    assert len(resumed) == 6
    for a, b in zip(straight.losses, resumed, strict=True):
        assert math.isclose(a, b, rel_tol=0, abs_tol=1e-6)
    # and the weights end identical
    a = ckpt.load(straight.last_checkpoint)["model"]
    b = ckpt.load(second.last_checkpoint)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    steps = [
        json.loads(line)["step"] for line in (tmp_path / "resumed" / "log.jsonl").read_text().splitlines()
    ]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_log_checkpoints_and_tensorboard(corpus, tmp_path):
    cfg = tiny_config(
        "selectivemae_vit_tiny",
        "train.max_steps=4",
        "train.checkpoint_every=2",
        "train.tensorboard=true",
        "train.keep_checkpoints=1",
    )
    result = train(cfg, corpus, tmp_path)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for r in records:
        assert {
            "step",
            "loss",
            "lr",
            "images_per_s",
            "tokens_encoded",
            "curriculum",
            "skipped_corrupt",
        } <= set(r)
        assert r["images_per_s"] > 0
        assert r["tokens_encoded"] == 4 * (2 + 1)  # batch 4 x (2 of 16 patches visible at 0.85, + cls)
    skips = [r["skipped_bands"] + r["skipped_corrupt"] for r in records]
    assert skips == sorted(skips)  # cumulative counters
    assert list((tmp_path / "tb").iterdir())
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step_00000004.pt"]  # pruned to one, no temporary file left behind
    assert result.last_checkpoint.name == "step_00000004.pt"
    assert (tmp_path / "config.yaml").exists()


def test_resume_with_another_layout_is_refused(corpus, tmp_path):
    train(tiny_config("mae_vit_tiny", "train.max_steps=2"), corpus, tmp_path)
    with pytest.raises(ValueError, match="Exact resume needs"):
        train(
            tiny_config("mae_vit_tiny", "train.max_steps=4", "train.batch_size=2"),
            corpus,
            tmp_path,
            resume=True,
        )


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    real_build = engine.build_model

    def poisoned(cfg, channels):
        model = real_build(cfg, channels)
        forward, calls = model.forward, {"n": 0}

        def forward_with_nan(*args, **kwargs):
            out = forward(*args, **kwargs)
            calls["n"] += 1
            if calls["n"] == 4:
                out.loss = out.loss * float("nan")
            return out

        model.forward = forward_with_nan
        return model

    monkeypatch.setattr(engine, "build_model", poisoned)
    cfg = tiny_config("mae_vit_tiny", "train.max_steps=6", "train.checkpoint_every=2")
    with pytest.raises(NonFiniteLoss, match=r"loss is nan at step 4.*step_00000002\.pt"):
        train(cfg, corpus, tmp_path)
    state = ckpt.load(ckpt.latest_checkpoint(tmp_path))
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_lr_schedule_warmup_then_half_cosine():
    lrs = [lr_at(s, 100, 10, 1e-3, 1e-5) for s in range(100)]
    assert math.isclose(lrs[0], 1e-4) and math.isclose(lrs[9], 1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))
    assert math.isclose(lrs[55], (1e-3 + 1e-5) / 2, rel_tol=1e-9)
    assert lrs[-1] > 1e-5 and math.isclose(lr_at(100, 100, 10, 1e-3, 1e-5), 1e-5)


def test_no_weight_decay_on_norms_biases_positions_and_tokens():
    from rspretrain.models import build_model

    model = build_model(tiny_config().model, 4)
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert "encoder.cls_token" in exempt and "mask_token" in exempt
    assert "encoder.blocks.0.norm1.weight" in exempt and "encoder.blocks.0.attn.qkv.bias" in exempt
    assert {names[id(p)] for p in decay["params"]} >= {
        "encoder.blocks.0.attn.qkv.weight",
        "decoder_pred.weight",
    }
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all("pos_embed" not in names[id(p)] for p in decay["params"])


def test_effective_batch_scales_lr_and_sets_epoch_length(corpus, tmp_path):
    cfg = tiny_config("mae_vit_tiny", "train.epochs=2", "train.accum_steps=2", "train.blr=2.56e-3", "train.lr=null")
    trainer = engine.Trainer(cfg, corpus, tmp_path)
    assert trainer.global_batch == 8
    assert math.isclose(trainer.base_lr, 2.56e-3 * 8 / 256)
    assert trainer.steps_per_epoch == 57 // 8 and trainer.total_steps == 2 * (57 // 8)


def test_bf16_autocast_on_cpu_when_asked(corpus, tmp_path):
    assert engine.autocast_dtype("auto", torch.device("cpu")) is None  # off on CPU by default
    result = train(
        tiny_config("selectivemae_vit_tiny", "train.max_steps=2", "train.amp=bf16"), corpus, tmp_path
    )
    assert len(result.losses) == 2 and all(math.isfinite(v) for v in result.losses)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile's CPU backend needs a C compiler")
def test_compiled_training_matches_eager(corpus, tmp_path):
    """`train.compile` changes kernels, not the model: the same steps give the same losses and checkpoint keys."""
    args = ("mae_vit_tiny", "train.max_steps=2", "data.num_workers=0")
    eager = train(tiny_config(*args), corpus, tmp_path / "eager")
    compiled = train(tiny_config(*args, "train.compile=true"), corpus, tmp_path / "compiled")
    for a, b in zip(eager.losses, compiled.losses, strict=True):
        assert math.isclose(a, b, rel_tol=1e-2)  # compiled kernels reorder float sums
    assert ckpt.load(eager.last_checkpoint)["model"].keys() == ckpt.load(compiled.last_checkpoint)["model"].keys()
