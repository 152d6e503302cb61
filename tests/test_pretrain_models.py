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
    cfg = ModelConfig(method="selective_mae", size="base", depth=1, decoder_depth=1)
    sel = build_model(cfg, 3)
    assert (sel.num_patches, sel.num_visible, sel.num_targets) == (196, 29, 41)
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
    assert bool((cols_hog >= 2).all())
    assert bool((cols_rnd < 2).any())


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
