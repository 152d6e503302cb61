"""Training-step time of SatVision-TOA SimMIM (SwinV2) for a preset: forward + backward + AdamW update on random
14-band chips at the preset's geometry (128 px, patch 4, window 8, 8 px mask cells at 0.6). Reports the median and
the fastest step (robust to other load on a shared machine) after warm-up steps. Prints one JSON line.

    OMP_NUM_THREADS=1 python bench/simmim_step.py --preset satvision_toa_tiny --batch 8 --steps 10 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from rspretrain.config import load_config
from rspretrain.models import build_model
from rspretrain.optim import build_optimizer

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="satvision_toa_tiny")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(REPO / "configs" / f"{args.preset}.yaml")
    device = torch.device(args.device)
    channels = cfg.data.channels()
    model = build_model(cfg.model, channels).to(device)
    optimizer = build_optimizer(model, 1e-4, cfg.train.weight_decay, tuple(cfg.train.betas))
    images = torch.randn(args.batch, channels, cfg.model.img_size, cfg.model.img_size, device=device)
    times = []
    for step in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model(images).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    print(json.dumps({
        "preset": args.preset,
        "params": sum(p.numel() for p in model.parameters()),
        "batch": args.batch,
        "bands": channels,
        "img_size": cfg.model.img_size,
        "threads": args.threads,
        "device": args.device,
        "step_s_median": round(statistics.median(times), 4),
        "step_s_min": round(min(times), 4),
        "chips_per_s": round(args.batch / statistics.median(times), 1),
        "machine": platform.machine(),
        "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
