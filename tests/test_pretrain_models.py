"""MAE and SelectiveMAE: shapes, token budgets, in_chans everywhere, losses, gradients, patch embeddings."""

from __future__ import annotations

import pytest
import torch
from pretrain_fixtures import torch_single_thread  # noqa: F401  (a fixture, used by pytestmark)

from rspretrain.config import ModelConfig
from rspretrain.models import MAE, SelectiveMAE, build_model
from rspretrain.models.patch_embed import ConvPatchEmbed, WavelengthPatchEmbed
from rspretrain.models.patches import patchify, unpatchify

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def tiny(method: str, **kw) -> ModelConfig:
    base = dict(
        method=method,
        size="tiny",
        img_size=32,
        patch_size=8,
        depth=2,
        decoder_dim=64,
        decoder_depth=2,
        decoder_heads=4,
    )
    return ModelConfig(**{**base, **kw})


@pytest.mark.parametrize("channels", [1, 5, 14])
def test_patchify_roundtrip_any_band_count(channels):
    x = torch.randn(2, channels, 32, 32)
    p = patchify(x, 8)
    assert p.shape == (2, 16, 8 * 8 * channels)
    assert torch.equal(unpatchify(p, 8, channels), x)
    # patch 1 (row 0, col 1) holds pixels [0:8, 8:16] of every band
    assert torch.equal(p[0, 1].reshape(8, 8, channels).permute(2, 0, 1), x[0, :, 0:8, 8:16])


def test_vit_b_geometry_token_budgets():
    """Published budgets: 29 seen, 49 (25 % of all 196) reconstructed; 41 was 25 % of the masked."""
    cfg = ModelConfig(method="selective_mae", size="base", depth=1, decoder_depth=1)
    sel = build_model(cfg, 3)
    assert (sel.num_patches, sel.num_visible, sel.num_targets) == (196, 29, 49)
    assert (sel.seed_fraction, sel.similarity, sel.growth_rounds) == (0.5, "embedding", 2)
    ours = build_model(ModelConfig(method="selective_mae", size="base", depth=1, decoder_depth=1, keep_of="masked"), 3)
    assert ours.num_targets == 41
    mae = build_model(ModelConfig(method="mae", size="base", depth=1, decoder_depth=1), 3)
    assert mae.num_visible == 49
    assert sel.decoder_pred.out_features == 16 * 16 * 3


@pytest.mark.parametrize("method,cls", [("mae", MAE), ("selective_mae", SelectiveMAE)])
@pytest.mark.parametrize("channels", [3, 6])
def test_forward_backward_reaches_every_trainable_parameter(method, cls, channels):
    torch.manual_seed(0)
    model = build_model(tiny(method), channels)
    assert isinstance(model, cls)
    out = model(torch.randn(3, channels, 32, 32))
    assert out.pred.shape == (3, out.targets.shape[1], 8 * 8 * channels)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []  # DDP without find_unused_parameters needs every parameter used
    assert not model.encoder.pos_embed.requires_grad


def test_mae_masks_disjoint_and_loss_only_on_masked():
    torch.manual_seed(0)
    model = build_model(tiny("mae"), 3)
    out = model(torch.randn(2, 3, 32, 32))
    for v, t in zip(out.visible.tolist(), out.targets.tolist(), strict=True):
        assert sorted(v + t) == list(range(16))
    assert out.tokens_encoded == 5 and out.decoder_queries == 17


@pytest.mark.parametrize("method", ["mae", "selective_mae"])
def test_overfits_one_batch(method):
    torch.manual_seed(0)
    model = build_model(tiny(method, mask_ratio=0.5), 3)
    x = torch.randn(1, 3, 32, 32).expand(4, -1, -1, -1)  # one image: each position's patch can be memorised
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(30):
        loss = model(x).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.75 * sum(losses[:5]) / 5


def test_selective_random_variant_and_hog_variant_differ():
    x = torch.zeros(2, 3, 32, 32)
    x[..., 16:] = torch.randn(2, 3, 32, 16)  # only the right half has texture
    hog = build_model(tiny("selective_mae", selection="hog"), 3)
    rnd = build_model(tiny("selective_mae", selection="random"), 3)
    torch.manual_seed(1)
    cols_hog = hog.select(x) % 4
    cols_rnd = torch.cat([rnd.select(x) % 4 for _ in range(20)])
    # column 1 borders the texture (its last pixels have gradient); column 0 is flat and never grown into
    assert bool((cols_hog >= 1).all())
    assert bool((cols_rnd < 1).any())


def test_wavelength_patch_embed_depends_on_wavelengths_and_bakes_to_conv():
    torch.manual_seed(0)
    emb = WavelengthPatchEmbed(in_chans=3, embed_dim=32, patch_size=8)
    x = torch.randn(2, 3, 16, 16)
    rgb = torch.tensor([0.665, 0.56, 0.49])
    nir = torch.tensor([0.842, 0.56, 0.49])
    assert not torch.allclose(emb(x, rgb), emb(x, nir))
    conv = ConvPatchEmbed(3, 32, 8)
    w, b = emb.conv_weights(rgb)
    conv.proj.weight.data.copy_(w)
    conv.proj.bias.data.copy_(b)
    assert torch.allclose(conv(x), emb(x, rgb.expand(2, 3)), atol=1e-6)
    with pytest.raises(ValueError, match="wavelength"):
        emb(x, torch.tensor([0.665, float("nan"), 0.49]))


@pytest.mark.parametrize("kind", ["conv", "wavelength"])
def test_embedding_only_visible_patches_equals_embedding_all_then_gathering(kind):
    from rspretrain.models import build_encoder
    from rspretrain.models.patches import gather_tokens

    torch.manual_seed(0)
    enc = build_encoder(tiny("mae", patch_embed=kind), 5)
    x = torch.randn(2, 5, 32, 32)
    waves = torch.tensor([0.49, 0.56, 0.665, 0.842, 1.61])
    visible = torch.stack([torch.randperm(16)[:6] for _ in range(2)])
    full = enc.embed(x, None, waves)
    assert torch.allclose(enc.embed(x, visible, waves), gather_tokens(full, visible), atol=1e-5)


def test_loss_equals_a_direct_per_sample_computation():
    """The loss is the norm-pix MSE over exactly the reconstructed patches, cut straight from each image."""
    torch.manual_seed(0)
    model = build_model(tiny("selective_mae"), 3)
    images = torch.randn(3, 3, 32, 32)
    out = model(images)
    errors = []
    for b in range(images.shape[0]):
        for q, index in enumerate(out.targets[b].tolist()):
            row, col = divmod(index, 4)
            patch = images[b, :, row * 8 : (row + 1) * 8, col * 8 : (col + 1) * 8]
            patch = patch.permute(1, 2, 0).reshape(-1)  # (p, p, C) order, like MAE's patch vectors
            target = (patch - patch.mean()) / (patch.var() + 1e-6) ** 0.5
            errors.append(((out.pred[b, q] - target) ** 2).mean())
    assert out.targets.shape[1] == 4  # 25 % of all 16 patches
    assert torch.allclose(out.loss, torch.stack(errors).mean(), rtol=1e-5)


def test_reconstruction_budget_over_all_patches_must_fit_the_masked_ones():
    with pytest.raises(ValueError, match="keep_ratio"):
        build_model(tiny("selective_mae", mask_ratio=0.5, keep_ratio=0.75), 3)


def test_lr_scaling_is_the_published_kept_over_masked_ratio():
    from rspretrain.optim import effective_lr, reconstruction_lr_scale

    sel = ModelConfig(method="selective_mae")
    assert reconstruction_lr_scale(sel, "kept_masked") == pytest.approx(0.25 / 0.85)
    assert reconstruction_lr_scale(ModelConfig(method="selective_mae", keep_of="masked"), "kept_masked") == 0.25
    assert reconstruction_lr_scale(sel, "none") == 1.0
    assert reconstruction_lr_scale(ModelConfig(method="mae"), "kept_masked") == 1.0
    assert effective_lr(1.5e-4, None, 2048, 0.25 / 0.85) == pytest.approx(1.5e-4 * 8 * 0.2941, rel=1e-3)
    assert effective_lr(1.5e-4, 1e-3, 2048, 0.25 / 0.85) == 1e-3  # an absolute lr is taken as given


def test_trainer_applies_the_lr_scaling(tmp_path):
    from pretrain_fixtures import make_corpus, tiny_config

    from rspretrain.engine import Trainer

    corpus = make_corpus(tmp_path / "corpus", n_s2=8, n_rgb=0, n_corrupt=0)
    scaled = Trainer(tiny_config("selectivemae_vit_tiny"), corpus, tmp_path / "a")
    plain = Trainer(tiny_config("selectivemae_vit_tiny", "train.lr_scaling=none"), corpus, tmp_path / "b")
    assert scaled.base_lr == pytest.approx(plain.base_lr * 0.25 / 0.85)


def test_growth_depends_on_the_patch_embedding_by_default():
    """Published growth compares patch embeddings: other embedding weights, another visible set."""
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(0)
    model = build_model(tiny("selective_mae", mask_ratio=0.5), 3)
    hog = build_model(tiny("selective_mae", mask_ratio=0.5, similarity="hog"), 3)

    def grown(m):
        torch.manual_seed(1)
        return m.select(x)[:, 4:]  # 8 visible: 4 seeds by HOG richness, 4 grown

    before, before_hog = grown(model), grown(hog)
    for m in (model, hog):
        with torch.no_grad():
            m.encoder.patch_embed.proj.weight.normal_()
    assert not torch.equal(grown(model), before)
    assert torch.equal(grown(hog), before_hog)
