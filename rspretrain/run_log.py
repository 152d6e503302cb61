"""Training logs: RUN_DIR/log.jsonl (one JSON object per logged step) and TensorBoard in RUN_DIR/tb."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("rspretrain")


class RunLog:
    """Written by rank 0 only; other ranks get a RunLog with enabled=False that drops everything."""

    def __init__(
        self, run_dir: Path, enabled: bool = True, tensorboard: bool = True, resume_step: int | None = None
    ):
        self.enabled = enabled
        self.path = Path(run_dir) / "log.jsonl"
        self.writer = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is not None:
            self._truncate_after(resume_step)
        elif self.path.exists():
            self.path.unlink()
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)

    def _truncate_after(self, step: int) -> None:
        """Drop lines logged after the checkpoint resumed from: the resumed run logs those steps again."""
        if not self.path.exists():
            return
        lines = [ln for ln in self.path.read_text().splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
        self.path.write_text("".join(ln + "\n" for ln in kept))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key != "step":
                    self.writer.add_scalar(f"train/{key}", value, record["step"])
        log.info(
            "step %d loss %.4f lr %.2e %.1f img/s",
            record["step"],
            record["loss"],
            record["lr"],
            record["images_per_s"],
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
