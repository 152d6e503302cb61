"""Training-step time of SelectiveMAE vs MAE at ViT-B geometry (224 px, patch 16), same batch, same process.

A step is forward + backward + AdamW update. Three models are timed in interleaved rounds so that
machine load hits them alike: rspretrain's MAE, a straightforward MAE written here the textbook way
(decoder predicts every patch, loss weighted by the mask), and rspretrain's SelectiveMAE. Medians are
reported, and the fastest step of each as a second view that is robust to other load on a shared
machine. Prints one JSON line.

    python bench/selective_vs_mae.py --bands 3 --batch 8 --steps 3 --decoder-depth 8
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from timm.models.vision_transformer import Block
from torch import nn

from rspretrain.config import ModelConfig
from rspretrain.models import build_encoder, build_model
from rspretrain.models.encoder import norm_layer
from rspretrain.models.patches import norm_pix_target, patchify
from rspretrain.models.pos_embed import sincos_2d
from rspretrain.optim import build_optimizer


class StraightforwardMAE(nn.Module):
    """The reference shape of MAE: embed all patches, shuffle, keep a prefix, decode the full unshuffled
    sequence, predict all patches, average the loss over masked ones via a 0/1 mask."""

    def __init__(self, cfg: ModelConfig, in_chans: int):
        super().__init__()
        self.encoder = build_encoder(cfg, in_chans)
        d, dd = self.encoder.embed_dim, cfg.decoder_dim
        self.mask_ratio, self.patch = cfg.resolved_mask_ratio(), cfg.patch_size
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(dd, self.encoder.grid), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [
                Block(dd, cfg.decoder_heads, 4.0, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(cfg.decoder_depth)
            ]
        )
        self.decoder_norm = norm_layer(dd)
        self.decoder_pred = nn.Linear(dd, cfg.patch_size**2 * in_chans)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        enc = self.encoder
        tokens = enc.patch_embed(images) + enc.pos_embed[:, 1:]
        b, n, d = tokens.shape
        keep = int(n * (1 - self.mask_ratio))
        shuffle = torch.rand(b, n).argsort(1)
        restore = shuffle.argsort(1)
        kept = torch.gather(tokens, 1, shuffle[:, :keep, None].expand(-1, -1, d))
        x = torch.cat([(enc.cls_token + enc.pos_embed[:, :1]).expand(b, -1, -1), kept], 1)
        for blk in enc.blocks:
            x = blk(x)
        x = self.decoder_embed(enc.norm(x))
        masks = self.mask_token.expand(b, n - keep, -1)
        seq = torch.cat([x[:, 1:], masks], 1)
        seq = torch.gather(seq, 1, restore[..., None].expand(-1, -1, seq.shape[-1]))
        x = torch.cat([x[:, :1], seq], 1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        mask = torch.ones(b, n)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, restore)
        target = norm_pix_target(patchify(images, self.patch), True)
        return (((pred - target) ** 2).mean(-1) * mask).sum() / mask.sum()


def step_fn(model: nn.Module, images: torch.Tensor) -> Callable[[], None]:
    opt = build_optimizer(model, 1.5e-4, 0.05, (0.9, 0.95))

    def step() -> None:
        out = model(images)
        loss = out if isinstance(out, torch.Tensor) else out.loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bands", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per model (after one warm-up step)")
    parser.add_argument("--decoder-depth", type=int, default=8)
    parser.add_argument("--size", default="base")
    parser.add_argument("--no-reference", action="store_true", help="skip the straightforward-MAE baseline")
    args = parser.parse_args()

    torch.manual_seed(0)
    common = dict(size=args.size, img_size=224, patch_size=16, decoder_depth=args.decoder_depth)
    mae_cfg = ModelConfig(method="mae", **common)
    sel_cfg = ModelConfig(method="selective_mae", **common)
    mae, sel = build_model(mae_cfg, args.bands), build_model(sel_cfg, args.bands)
    images = torch.randn(args.batch, args.bands, 224, 224)
    steps = {"mae": step_fn(mae, images), "selective": step_fn(sel, images)}
    if not args.no_reference:
        steps["reference_mae"] = step_fn(StraightforwardMAE(mae_cfg, args.bands), images)
    for fn in steps.values():  # warm-up: allocator, optimizer state
        fn()
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(args.steps):
        for name, fn in steps.items():
            times[name].append(timed(fn))
    with torch.no_grad():
        select_s = statistics.median(timed(lambda: sel.select(images)) for _ in range(3))
    med = {k: statistics.median(v) for k, v in times.items()}
    best = {k: min(v) for k, v in times.items()}  # least disturbed by other load on a shared machine
    probe = sel(images)
    result = {
        "bench": "selective_vs_mae",
        "bands": args.bands,
        "batch": args.batch,
        "steps": args.steps,
        "size": args.size,
        "decoder_depth": args.decoder_depth,
        "mae_step_s": round(med["mae"], 4),
        "selective_step_s": round(med["selective"], 4),
        "ratio": round(med["mae"] / med["selective"], 3),
        "ratio_of_fastest": round(best["mae"] / best["selective"], 3),
        "encoder_tokens": {"mae": mae.num_visible + 1, "selective": probe.tokens_encoded},
        "decoder_queries": {"mae": mae.num_patches + 1, "selective": probe.decoder_queries},
        "selection_s": round(select_s, 4),
        "step_times_s": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    if "reference_mae" in med:
        result["reference_mae_step_s"] = round(med["reference_mae"], 4)
        result["mae_vs_reference"] = round(med["mae"] / med["reference_mae"], 3)
        result["mae_vs_reference_fastest"] = round(best["mae"] / best["reference_mae"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
