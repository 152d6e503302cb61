"""The Markdown face of a probe report (the JSON is the report itself)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _cell(summary: dict[str, Any]) -> str:
    return f"{summary['mean']:.3f} ± {summary['std']:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """Accuracy mean ± std over seeds per encoder and metric, then per-class accuracy, then what was checked."""
    metrics = report["metrics"]
    encoders = report["encoders"]
    lines = [
        f"# Probe of `{report['export']}` on `{report['data']}`",
        "",
        f"{report['tiles']} labelled tiles, {len(report['classes'])} classes "
        f"({', '.join(f'{c}: {n}' for c, n in report['class_counts'].items())}); stratified splits, "
        f"{report['train']} train / {report['test']} test, seeds {report['seeds']}. "
        "Accuracy: mean ± sample std over seeds."
        + (f" ep: efficient attentive probe, {report['settings']['ep_queries']} queries over the patch tokens, "
           f"{report['settings']['ep_epochs']} epochs." if "ep" in metrics else ""),
        "",
        "| encoder | " + " | ".join(metrics) + " |",
        "| --- |" + " --- |" * len(metrics),
    ]
    lines += [f"| {e} | " + " | ".join(_cell(report[e][m]) for m in metrics) + " |" for e in encoders]
    for metric in report["per_class_metrics"]:
        lines += ["", f"Per-class accuracy, {metric} (mean over seeds):", ""]
        lines += ["| class | " + " | ".join(encoders) + " |", "| --- |" + " --- |" * len(encoders)]
        for c in report["classes"]:
            vals = [report[e]["per_class"][metric][c] for e in encoders]
            lines.append(f"| {c} | " + " | ".join("-" if v is None else f"{v:.3f}" for v in vals) + " |")
    overlap = report["overlap"]
    lines += ["", "Overlap with pretraining: " + (
        overlap.get("message", f"none ({overlap['pretrain_data']})") if overlap["checked"] else overlap["message"]
    )]
    return "\n".join(lines) + "\n"


def write_report(out: Path | str | None, report: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> None:
    """report.json and report.md (as `render` writes it) in `out`, created; nothing when `out` is None."""
    if out is None:
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(render(report))
