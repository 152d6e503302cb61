"""Does curation pay off? Tiny MAE and SelectiveMAE pretrained on a curated and an uncurated corpus of the same
inputs, for the same wall-clock budget, then evaluated against our random initialisation (docs/results.md).

1. `rscurate build` the sources twice: as it curates (`--radius 8`, quality rules) and with `--no-curate`.
2. Equal wall clock: MAE gets `--mae-steps`; SelectiveMAE gets as many steps as fit in the same time, from step
   times measured interleaved in this process (so machine load hits both alike).
3. `rspretrain run` + `rspretrain export` per (corpus, method, seed).
4. Every export: cross-date retrieval (`rspretrain retrieve`) on a multi-date corpus, and probes (`rspretrain probe`)
   on a labelled corpus, when given; random init (3 seeds) comes with each report.
5. results.json and results.md in --out: mean ± sample std over pretraining seeds, with every command.

    python bench/curation_experiment.py --sources manifests/samples --out /tmp/curation \
        --retrieval-corpus /tmp/s2dates --pair date2:date3 --pair date3:date4 --labelled /tmp/landcover
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rspretrain.config import load_config
from rspretrain.models import build_model
from rspretrain.optim import build_optimizer
from rspretrain.probe import run_probe
from rspretrain.probe_features import load_images
from rspretrain.retrieval import KS, placed_tiles, recall_at, run_retrieval, true_matches

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONFIGS = {"mae": ROOT / "configs/mae_vit_tiny.yaml", "selective_mae": ROOT / "configs/selectivemae_vit_tiny.yaml"}
ARMS = {"curated": [], "uncurated": ["--no-curate"]}


def sh(cmd: list[str], log: list[str]) -> None:
    """Run a command (its output goes to the terminal) and record it for the results."""
    line = shlex.join(cmd)
    log.append(line)
    print("$", line, flush=True)
    subprocess.run(cmd, check=True)


def step_seconds(methods: list[str], bands: int, batch: int, rounds: int = 12) -> dict[str, float]:
    """Median seconds per optimizer step of each tiny config, timed in interleaved rounds on random input."""
    steps = {}
    for method in methods:
        cfg = load_config(CONFIGS[method])
        model = build_model(cfg.model, bands)
        opt = build_optimizer(model, 1e-3, 0.05, (0.9, 0.95))
        images = torch.randn(batch, bands, cfg.model.img_size, cfg.model.img_size)

        def step(model=model, opt=opt, images=images) -> None:
            model(images).loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        step()
        steps[method] = step
    times: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(rounds):
        for method, step in steps.items():
            start = time.perf_counter()
            step()
            times[method].append(time.perf_counter() - start)
    return {m: statistics.median(v) for m, v in times.items()}


def raw_pixel_recall(corpus: Path, query: str, gallery: str, bands: list[str], img_size: int) -> dict[str, float]:
    """Recall of the encoders' own input (normalised pixels, flattened) compared by the same centred cosine: the
    baseline an encoder has to beat to have added anything for retrieval."""
    from rspretrain.corpus import Corpus

    data = Corpus(corpus)
    q, g = placed_tiles(data, query, bands), placed_tiles(data, gallery, bands)
    pixels = load_images(data, q.tiles + g.tiles, bands, img_size, "source").flatten(1)
    n = len(q.tiles.ids)
    return {f"recall@{k}": r for k, r in recall_at(pixels[:n], pixels[n:], true_matches(q, g), KS).items()}


def final_losses(run: Path, last: int = 20) -> dict[str, float]:
    """The steps run, and the mean of the last logged steps: the loss and the trivial predictors' on the same
    batches."""
    rows = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    tail = rows[-last:]
    return {"steps": rows[-1]["step"],
            **{k: statistics.fmean(r[k] for r in tail) for k in ("loss", "loss_zeros", "loss_visible_mean", "step_s")}}


def spread(values: list[float]) -> dict[str, Any]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sources", type=Path, default=ROOT / "manifests/samples")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", type=int, default=3, help="pretraining seeds per arm (weights, masks, data order)")
    p.add_argument("--mae-steps", type=int, default=1000, help="MAE's steps; sets the wall-clock budget")
    p.add_argument("--bands", default="red,green,blue")
    p.add_argument("--set", action="append", default=["data.crop_scale=[0.0625, 0.25]", "train.tensorboard=false"],
                   help="extra rspretrain --set overrides for every run")
    p.add_argument("--retrieval-corpus", type=Path, action="append", default=[],
                   help="a corpus with co-registered acquisitions (repeatable: e.g. two tile sizes)")
    p.add_argument("--pair", action="append", default=[], help="QUERY:GALLERY source or scene names")
    p.add_argument("--labelled", type=Path, help="a corpus with a label column, for rspretrain probe")
    p.add_argument("--eval-seeds", type=int, default=3)
    args = p.parse_args()
    out, bands, log = args.out, args.bands.split(","), []
    out.mkdir(parents=True, exist_ok=True)

    for arm, flags in ARMS.items():
        if not (out / arm / "build.json").is_file():
            sh([str(BIN / "rscurate"), "build", "--sources", str(args.sources), "--out", str(out / arm), "--quiet",
                "--overwrite", *flags], log)
    step_s = step_seconds(args.methods, len(bands), load_config(CONFIGS["mae"]).train.batch_size)
    budget_s = args.mae_steps * step_s["mae"] if "mae" in step_s else None
    steps = {m: args.mae_steps if budget_s is None else max(1, round(budget_s / s)) for m, s in step_s.items()}
    print("step seconds", step_s, "-> steps", steps, flush=True)

    runs: list[dict[str, Any]] = []
    for arm in ARMS:
        for method in args.methods:
            for seed in range(args.seeds):
                run = out / "runs" / f"{arm}-{method}-{seed}"
                export = run / "export"
                if not (export / "config.json").is_file():
                    sets = [f"data.bands=[{', '.join(bands)}]", f"train.seed={seed}", *args.set]
                    start = time.perf_counter()
                    sh([str(BIN / "rspretrain"), "run", "--config", str(CONFIGS[method]), "--data", str(out / arm),
                        "--out", str(run), "--overwrite", "--max-steps", str(steps[method]),
                        *[a for s in sets for a in ("--set", s)]], log)
                    (run / "wall_s.txt").write_text(f"{time.perf_counter() - start:.1f}")
                    sh([str(BIN / "rspretrain"), "export", str(run), "--out", str(export)], log)
                record = {"arm": arm, "method": method, "seed": seed,
                          "wall_s": float((run / "wall_s.txt").read_text()), **final_losses(run)}
                for corpus in args.retrieval_corpus:
                    for pair in args.pair:
                        query, gallery = pair.split(":")
                        rep = run_retrieval(export, corpus, query, gallery, seeds=args.eval_seeds,
                                            out=export / "retrieval" / corpus.name / f"{query}--{gallery}")
                        key = f"retrieval {corpus.name} {pair}"
                        record[key] = scores(rep)
                        record[key]["chance"] = rep["chance"]
                if args.labelled:
                    rep = run_probe(export, args.labelled, out=export / "probe", seeds=args.eval_seeds,
                                    on_overlap="warn")
                    record["probe"] = scores(rep)
                runs.append(record)
    img_size = load_config(CONFIGS[args.methods[0]]).model.img_size
    raw = {f"retrieval {c.name} {pair}": raw_pixel_recall(c, *pair.split(":"), bands, img_size)
           for c in args.retrieval_corpus for pair in args.pair}
    summary = summarise(runs)
    summary["raw pixels"] = {f"{ev} {m}": {"mean": v, "std": 0.0} for ev, by_m in raw.items() for m, v in by_m.items()}
    (out / "results.json").write_text(json.dumps(
        {"step_seconds": step_s, "steps_for_new_runs": steps, "budget_s": budget_s, "commands": log, "runs": runs,
         "summary": summary}, indent=2))
    (out / "results.md").write_text(markdown(summary, step_s, {f"{r['arm']} {r['method']}": r["steps"] for r in runs}))
    print((out / "results.md").read_text())


def scores(report: dict[str, Any]) -> dict[str, dict[str, list[float]]]:
    """Per encoder and metric, the per-seed values of an evaluation report (one value for the pretrained encoder)."""
    return {e: {m: report[e][m]["seeds"] for m in report["metrics"]} for e in report["encoders"]}


def metric_paths(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(evaluation, encoder, metric) of every score in a run record."""
    return [(ev, enc, m) for ev, by_enc in record.items() if ev.startswith(("retrieval", "probe"))
            for enc, by_m in by_enc.items() if enc != "chance" for m in by_m]


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per (arm, method): losses and every score as mean ± std over pretraining seeds; random init over its own
    seeds (the evaluation's --eval-seeds)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault(f"{r['arm']} {r['method']}", []).append(r)
    summary: dict[str, dict[str, Any]] = {}
    for name, rs in groups.items():
        row = {k: spread([r[k] for r in rs]) for k in ("loss", "loss_zeros", "loss_visible_mean", "wall_s")}
        for ev, enc, m in metric_paths(rs[0]):
            if enc == "pretrained":
                row[f"{ev} {m}"] = spread([v for r in rs for v in r[ev][enc][m]])
        summary[name] = row
    baseline = {f"{ev} {m}": spread(runs[0][ev][enc][m])  # the same seeds in every run's report
                for ev, enc, m in metric_paths(runs[0]) if enc == "random_init"}
    summary["random init"] = baseline
    chance = {f"{ev} {m}": {"mean": runs[0][ev]["chance"][m], "std": 0.0}
              for ev in runs[0] if ev.startswith("retrieval") for m in runs[0][ev]["chance"]}
    summary["chance"] = chance
    return summary


def markdown(summary: dict[str, dict[str, Any]], step_s: dict[str, float], steps: dict[str, int]) -> str:
    """The losses, then one table per evaluation: encoders as rows, metrics as columns, mean ± std over seeds."""
    fmt = lambda v: f"{v['mean']:.3f} ± {v['std']:.3f}"  # noqa: E731
    lines = [f"Step seconds (interleaved, median): {step_s}; steps per run: {steps}.", "",
             "| encoder | final loss | predict zeros | visible mean | wall s |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {name} | {fmt(r['loss'])} | {fmt(r['loss_zeros'])} | {fmt(r['loss_visible_mean'])} | "
              f"{r['wall_s']['mean']:.0f} |" for name, r in summary.items() if "loss" in r]
    keys = list(dict.fromkeys(k for row in summary.values() for k in row if k.startswith(("retrieval", "probe"))))
    for ev in dict.fromkeys(k.rsplit(" ", 1)[0] for k in keys):
        metrics = [k.rsplit(" ", 1)[1] for k in keys if k.rsplit(" ", 1)[0] == ev]
        lines += ["", f"**{ev}**", "", "| encoder | " + " | ".join(metrics) + " |", "| --- |" + " --- |" * len(metrics)]
        lines += [f"| {name} | " + " | ".join(fmt(row[f"{ev} {m}"]) if f"{ev} {m}" in row else "-" for m in metrics)
                  + " |" for name, row in summary.items() if any(f"{ev} {m}" in row for m in metrics)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
