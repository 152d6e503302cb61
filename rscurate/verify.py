"""`rscurate verify`: the accounting and shard/index agreement a corpus promises."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from rscurate.out_dir import completion_problem


class VerifyError(Exception):
    """The first problem found, with the file it concerns."""


def verify(root: Path) -> dict[str, int]:
    """Check a corpus; raise VerifyError with the first problem, else return what was checked."""
    problem = completion_problem(root)  # a half-written corpus must not pass for a finished one
    if problem:
        raise VerifyError(problem)
    for name in ("index.parquet", "excluded.parquet", "duplicates.parquet", "inputs.parquet", "stats.json"):
        if not (root / name).is_file():
            raise VerifyError(f"{root / name}: missing; rebuild with `rscurate build`")
    index = pq.read_table(root / "index.parquet").to_pandas()
    excluded = pq.read_table(root / "excluded.parquet").to_pandas()
    dups = pq.read_table(root / "duplicates.parquet").to_pandas()
    inputs = pq.read_table(root / "inputs.parquet").to_pandas()
    stats = json.loads((root / "stats.json").read_text())

    if index["id"].duplicated().any():
        raise VerifyError(f"index.parquet: id {index.loc[index['id'].duplicated(), 'id'].iloc[0]} appears twice")
    kept_ids = set(index["id"])
    both = kept_ids & set(dups["id"])
    if both:
        raise VerifyError(f"duplicates.parquet: {sorted(both)[0]} is both kept and dropped")
    missing_kept = set(dups["kept_id"]) - kept_ids
    if missing_kept:
        raise VerifyError(f"duplicates.parquet: kept_id {sorted(missing_kept)[0]} is not in index.parquet")

    _check_accounting(inputs, index, excluded, dups)
    _check_shards(root, index)

    counts = stats.get("counts", {})
    if counts.get("kept") != len(index):
        raise VerifyError(f"stats.json: counts.kept={counts.get('kept')} but index.parquet has {len(index)} rows")
    if sum(counts.get("duplicates", {}).values()) != len(dups):
        raise VerifyError("stats.json: duplicate counts disagree with duplicates.parquet")
    return {"tiles": len(index), "excluded": len(excluded), "duplicates": len(dups), "scenes": len(inputs)}


def _check_accounting(inputs, index, excluded, dups) -> None:  # type: ignore[no-untyped-def]
    """Each training scene is accounted for: a scene with planned tiles has every one of them kept,
    excluded or a duplicate; a scene with none (unreadable, too small, eval split) has an exclusion."""
    seen: Counter[tuple[str, str]] = Counter()
    for table in (index, dups, excluded):
        seen.update(zip(table["source"], table["scene"], strict=True))
    train = inputs[inputs["role"] == "train"]
    for src, scene, planned in zip(train["source"], train["scene"], train["tiles_planned"], strict=True):
        got = seen.get((src, scene), 0)
        if planned == 0 and got == 0:
            raise VerifyError(f"inputs.parquet: scene {src}:{scene} has no tile and no exclusion record")
        if planned > 0 and got != planned:
            raise VerifyError(f"scene {src}:{scene}: {planned} tiles planned, {got} kept/excluded/duplicate")


def _check_shards(root: Path, index) -> None:  # type: ignore[no-untyped-def]
    """Shards hold exactly the indexed tiles, in the indexed rows."""
    on_disk = sorted(p.relative_to(root).as_posix() for p in (root / "shards").glob("*.parquet"))
    indexed = sorted(set(index["shard"]))
    if on_disk != indexed:
        extra = sorted(set(on_disk) ^ set(indexed))
        raise VerifyError(f"{root / extra[0]}: shard files and index.parquet disagree about this shard")
    for name, group in index.groupby("shard"):
        ids = pq.read_table(root / name, columns=["id"])["id"].to_pylist()
        rows = group["row"].to_numpy()
        if len(ids) != len(group) or [ids[r] for r in rows] != group["id"].tolist():
            raise VerifyError(f"{root / name}: rows do not match index.parquet")
