"""What a user should see at the end of a build without opening excluded.parquet: inputs whose file is the problem
(unreadable, too large to be real, without a usable georeference, or changed while the build ran)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

FILE_FAULTS = ("unreadable", "too_large", "bad_georeference", "changed")


def file_fault_summary(corpus: Path, first: int = 5) -> list[str]:
    """Per reason of FILE_FAULTS: a line naming how many items it excluded, then the first few scenes with detail."""
    path = corpus / "excluded.parquet"
    table = pq.read_table(path, columns=["source", "scene", "reason", "detail"],
                          filters=[("reason", "in", FILE_FAULTS)])
    lines: list[str] = []
    for reason in FILE_FAULTS:
        rows = table.filter(table["reason"].to_numpy(zero_copy_only=False) == reason)
        if len(rows):
            lines += _reason_lines(rows, reason, path, first)
    return lines


def _reason_lines(table: pa.Table, reason: str, path: Path, first: int) -> list[str]:
    by_scene: dict[tuple[str, str], tuple[int, str]] = {}
    for source, scene, detail in zip(*(table[c].to_pylist() for c in ("source", "scene", "detail")), strict=True):
        count, first_detail = by_scene.get((source, scene), (0, detail))
        by_scene[(source, scene)] = (count + 1, first_detail)
    n = len(table)
    lines = [f"warning: {n} item{'s' * (n != 1)} excluded as {reason}, from {len(by_scene)} "
             f"scene{'s' * (len(by_scene) != 1)} (all of them in {path}):"]
    for (source, scene), (count, detail) in list(by_scene.items())[:first]:
        tiles = f" ({count} tiles)" if count > 1 else ""
        lines.append(f"  {source}:{scene}{tiles}: {detail}")
    if len(by_scene) > first:
        lines.append(f"  ... and {len(by_scene) - first} more scenes")
    return lines
