"""Shard writing: kept tiles copied from staged unit files into numbered Parquet shards.

Each shard task writes its shard and index part atomically, plus a marker keyed by the ids it
holds, so a resumed build skips shards that are already right and rewrites any that are not.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rscurate import schema
from rscurate.band_stats import BandAccumulator
from rscurate.units import unit_paths, write_atomic

ROW_GROUP_ROWS = 64  # small row groups stream well: a loader holds one group, not a shard


def shard_name(number: int) -> str:
    return f"shards/part-{number:05d}.parquet"


def _marker(work_dir: Path, number: int, ids: list[str]) -> Path:
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return work_dir / "shards" / f"part-{number:05d}.{digest}.done"


def write_shard(
    number: int, rows: list[tuple[str, int, str]], work_dir: str, out_dir: str
) -> dict[tuple[str, str], BandAccumulator]:
    """Write shard `number` from (unit key, row in unit, tile id) triples; return its band statistics."""
    work, out = Path(work_dir), Path(out_dir)
    marker = _marker(work, number, [r[2] for r in rows])
    if marker.exists() and (out / shard_name(number)).exists():
        return pickle.loads(marker.read_bytes())

    parts = []
    for key in dict.fromkeys(r[0] for r in rows):  # unit order as given
        wanted = [r[1] for r in rows if r[0] == key]
        staged = pq.read_table(unit_paths(work, key)[0])
        parts.append(staged.take(pa.array(wanted, pa.int64())))
    staged = pa.concat_tables(parts)
    table = staged.select(schema.SHARD.names).cast(schema.SHARD)

    acc: dict[tuple[str, str], BandAccumulator] = {}
    columns = [staged[c].to_pylist() for c in ("source", "bands", "dtype", "hist")]
    for source, bands, dtype, hist in zip(*columns, strict=True):
        for name, band in zip(bands, pickle.loads(hist), strict=True):
            acc.setdefault((source, name), BandAccumulator()).add(band, dtype)

    write_atomic(table, out / shard_name(number), row_group_size=ROW_GROUP_ROWS)
    index = table.drop_columns(["image"])
    index = index.append_column("shard", pa.array([shard_name(number)] * len(index), pa.string()))
    index = index.append_column("row", pa.array(range(len(index)), pa.int64()))
    write_atomic(index.cast(schema.INDEX), work / "shards" / f"part-{number:05d}.index.parquet")
    marker.write_bytes(pickle.dumps(acc))
    return acc


def read_index_part(work_dir: Path, number: int) -> pa.Table:
    return pq.read_table(work_dir / "shards" / f"part-{number:05d}.index.parquet")


def ids_in_shard(path: Path) -> list[str]:
    return pc.cast(pq.read_table(path, columns=["id"])["id"], pa.string()).to_pylist()
