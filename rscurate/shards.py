"""Shard writing: kept tiles copied from staged unit files into numbered Parquet shards.

Each shard task writes its shard and index part atomically, plus a marker keyed by the ids it
holds, so a resumed build skips shards that are already right and rewrites any that are not.
"""

from __future__ import annotations

import hashlib
import itertools
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rscurate import schema
from rscurate.band_stats import BandAccumulator
from rscurate.parquet_io import atomic_path, write_atomic, writer_options
from rscurate.units import unit_paths

ROW_GROUP_ROWS = 64  # small row groups stream well: a loader holds one group, not a shard


def shard_name(number: int) -> str:
    return f"shards/part-{number:05d}.parquet"


def _marker(work_dir: Path, number: int, ids: list[str]) -> Path:
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return work_dir / "shards" / f"part-{number:05d}.{digest}.done"


def write_shard(
    number: int, rows: list[tuple[str, int, str]], work_dir: str, out_dir: str
) -> dict[tuple[str, str], BandAccumulator]:
    """Write shard `number` from (unit key, row in unit, tile id) triples; return its band statistics.

    Rows stream through one staged row group at a time, so memory follows the row group, not the shard.
    """
    work, out = Path(work_dir), Path(out_dir)
    marker = _marker(work, number, [r[2] for r in rows])
    if marker.exists() and (out / shard_name(number)).exists():
        return pickle.loads(marker.read_bytes())

    acc: dict[tuple[str, str], BandAccumulator] = {}
    index_parts = []
    with atomic_path(out / shard_name(number)) as tmp, \
            pq.ParquetWriter(tmp, schema.SHARD, **writer_options(schema.SHARD)) as writer:
        for part in _staged_rows(work, rows):
            _accumulate(acc, part)
            table = part.select(schema.SHARD.names).cast(schema.SHARD)
            writer.write_table(table, row_group_size=ROW_GROUP_ROWS)
            index_parts.append(table.drop_columns(["image"]))
    index = pa.concat_tables(index_parts)
    index = index.append_column("shard", pa.array([shard_name(number)] * len(index), pa.string()))
    index = index.append_column("row", pa.array(range(len(index)), pa.int64()))
    write_atomic(index.cast(schema.INDEX), work / "shards" / f"part-{number:05d}.index.parquet")
    marker.write_bytes(pickle.dumps(acc))
    return acc


def _staged_rows(work: Path, rows: list[tuple[str, int, str]]) -> Iterator[pa.Table]:
    """The wanted staged rows, in the given order, one staged row group's worth at a time."""
    for key, group in itertools.groupby(rows, key=lambda r: r[0]):
        wanted = [r[1] for r in group]
        pf = pq.ParquetFile(unit_paths(work, key)[0])
        starts = np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)])
        groups = np.searchsorted(starts, wanted, side="right") - 1
        for g, members in itertools.groupby(zip(groups, wanted, strict=True), key=lambda t: t[0]):
            local = [w - starts[g] for _, w in members]
            yield pf.read_row_group(int(g)).take(pa.array(local, pa.int64()))


def _accumulate(acc: dict[tuple[str, str], BandAccumulator], part: pa.Table) -> None:
    columns = [part[c].to_pylist() for c in ("source", "bands", "dtype", "hist")]
    for source, bands, dtype, hist in zip(*columns, strict=True):
        for name, band in zip(bands, pickle.loads(hist), strict=True):
            acc.setdefault((source, name), BandAccumulator()).add(band, dtype)


def read_index_part(work_dir: Path, number: int) -> pa.Table:
    return pq.read_table(work_dir / "shards" / f"part-{number:05d}.index.parquet")
