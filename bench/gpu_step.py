"""Training throughput on one device: images/s and peak memory per model and precision (issue: GPU readiness).

Each model is rspretrain's, built from its config (MAE and SelectiveMAE at ViT-B/16, 224 px by default; any method
`build_model` knows can be named), run as the engine runs it: inputs copied from pinned memory with non_blocking,
bf16 autocast when `--amp bf16`, fused AdamW, optional `torch.compile`. The baseline measured in the same run is the
straightforward MAE of bench/selective_vs_mae.py in fp32, eager: every line prints its speed-up over it.

    python bench/gpu_step.py --device cuda --batch 256 --steps 20 --amp bf16 --compile
    python bench/gpu_step.py --device cpu --batch 8 --steps 3 --amp off
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
from selective_vs_mae import StraightforwardMAE
from torch import nn

from rspretrain.config import ModelConfig
from rspretrain.models import build_model
from rspretrain.optim import build_optimizer


def measure(model: nn.Module, host: torch.Tensor, device: torch.device, steps: int, amp: torch.dtype | None,
            compiled: bool) -> dict[str, float]:
    """Median step seconds (after two warm-up steps: compilation, allocator) and peak memory in GiB."""
    model = model.to(device).train()
    opt = build_optimizer(model, 1.5e-4, 0.05, (0.9, 0.95))
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        images = host.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            out = forward(images)
        loss = out if isinstance(out, torch.Tensor) else out.loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # CPU: the process's peak RSS
    return {"step_s": statistics.median(times), "peak_gib": peak / 2**30}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--methods", nargs="+", default=["mae", "selective_mae"])
    p.add_argument("--size", default="base")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--amp", choices=["bf16", "off"], default="bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile each model (not the baseline)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    host = torch.randn(args.batch, args.bands, args.img_size, args.img_size)
    if device.type == "cuda":
        host = host.pin_memory()
    cfg = {m: ModelConfig(method=m, size=args.size, img_size=args.img_size, patch_size=args.patch_size)
           for m in args.methods}
    base = measure(StraightforwardMAE(ModelConfig(method="mae", size=args.size, img_size=args.img_size,
                                                  patch_size=args.patch_size), args.bands),
                   host, device, args.steps, None, False)
    amp = torch.bfloat16 if args.amp == "bf16" else None
    common = {"bench": "gpu_step", "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "batch": args.batch, "img_size": args.img_size, "size": args.size, "torch": torch.__version__}
    print(json.dumps({**common, "model": "baseline: straightforward MAE fp32 eager",
                      "images_per_s": round(args.batch / base["step_s"], 1), "peak_gib": round(base["peak_gib"], 2)}))
    for method, c in cfg.items():
        r = measure(build_model(c, args.bands), host, device, args.steps, amp, args.compile)
        print(json.dumps({**common, "model": method, "amp": args.amp, "compile": args.compile,
                          "images_per_s": round(args.batch / r["step_s"], 1), "peak_gib": round(r["peak_gib"], 2),
                          "speedup_vs_baseline": round(base["step_s"] / r["step_s"], 2)}), flush=True)


if __name__ == "__main__":
    main()
