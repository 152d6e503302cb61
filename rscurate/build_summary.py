"""What a user should see at the end of a build without opening excluded.parquet: inputs that could not be read."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq


def unreadable_summary(corpus: Path, first: int = 5) -> list[str]:
    """Lines naming how many items were excluded as `unreadable` and the first few scenes with their error."""
    path = corpus / "excluded.parquet"
    table = pq.read_table(path, columns=["source", "scene", "detail"], filters=[("reason", "==", "unreadable")])
    if not len(table):
        return []
    by_scene: dict[tuple[str, str], tuple[int, str]] = {}
    for source, scene, detail in zip(*(table[c].to_pylist() for c in ("source", "scene", "detail")), strict=True):
        count, first_detail = by_scene.get((source, scene), (0, detail))
        by_scene[(source, scene)] = (count + 1, first_detail)
    n = len(table)
    lines = [f"warning: {n} item{'s' * (n != 1)} excluded as unreadable, from {len(by_scene)} "
             f"scene{'s' * (len(by_scene) != 1)} (all of them in {path}):"]
    for (source, scene), (count, detail) in list(by_scene.items())[:first]:
        tiles = f" ({count} tiles)" if count > 1 else ""
        lines.append(f"  {source}:{scene}{tiles}: {detail}")
    if len(by_scene) > first:
        lines.append(f"  ... and {len(by_scene) - first} more scenes")
    return lines
