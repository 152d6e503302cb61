"""Shards: one per work unit that kept tiles, numbered in unit order.

A staged unit already has the shard schema and row groups, so a unit that lost no tile to
deduplication becomes its shard by a hard link (no copy), its staged meta is its index part and its
statistics came back with the unit; the client does that itself. Only units with dropped duplicates are
rewritten in Dask tasks, streaming one row group at a time; each such task writes its index part,
merges the kept tiles' band statistics and leaves a marker so a resumed build skips it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rscurate import schema
from rscurate.parquet_io import (
    ROW_GROUP_ROWS,
    atomic_path,
    read_file,
    row_group_starts,
    write_atomic,
    writer_options,
)
from rscurate.units import BandParts, StagedUnit, unit_band_parts


def shard_name(number: int) -> str:
    return f"shards/part-{number:05d}.parquet"


def _index_part(work: Path, number: int) -> Path:
    return work / "shards" / f"part-{number:05d}.index.parquet"


def shard_index(meta: pa.Table, rows: list[int], number: int) -> pa.Table:
    """Index rows of shard `number`: the kept rows of a unit's meta, with where each is stored."""
    index = meta.take(pa.array(rows, pa.int64()))
    index = index.append_column("shard", pa.array([shard_name(number)] * len(index), pa.string()))
    index = index.append_column("row", pa.array(range(len(index)), pa.int64()))
    return index.cast(schema.INDEX)


def link_shard(number: int, key: str, work_dir: Path, out_dir: Path) -> pa.Table:
    """Shard `number` from a unit that lost no tile: its staged file, hard-linked; returns the index part.
    Cheap (a link and a small read), so the client does it without a task."""
    staged = StagedUnit.of(work_dir, key)
    with atomic_path(out_dir / shard_name(number)) as tmp:
        _link_or_copy(staged.kept, tmp)
    meta = read_file(staged.meta)
    return shard_index(meta, list(range(len(meta))), number)


def write_shard(number: int, key: str, rows: list[int], work_dir: str, out_dir: str) -> BandParts:
    """Make shard `number` from the kept `rows` (ascending) of staged unit `key`, which lost some tiles to
    deduplication; write its index part and return its band statistics."""
    work, out = Path(work_dir), Path(out_dir)
    staged = StagedUnit.of(work, key)
    digest = hashlib.sha256(f"{key}:{rows}".encode()).hexdigest()[:16]
    marker = work / "shards" / f"part-{number:05d}.{digest}.done"
    dest = out / shard_name(number)
    if marker.exists() and dest.exists():
        return pickle.loads(marker.read_bytes())

    with atomic_path(dest) as tmp:
        _write_rows(staged.kept, rows, tmp)
    meta = read_file(staged.meta)
    write_atomic(shard_index(meta, rows, number), _index_part(work, number))
    acc = unit_band_parts(meta, pickle.loads(staged.band_stats.read_bytes()), rows)
    with atomic_path(marker) as tmp:  # a kill mid-write must leave no marker, never a truncated one
        tmp.write_bytes(pickle.dumps(acc))
    return acc


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another file system, or links not supported
        shutil.copyfile(src, dst)


def _write_rows(src: Path, rows: list[int], dst: Path) -> None:
    """Copy the given rows, streaming one staged row group at a time."""
    pf = pq.ParquetFile(src)
    starts = np.asarray(row_group_starts(pf))
    groups = np.searchsorted(starts, rows, side="right") - 1
    with pq.ParquetWriter(dst, schema.SHARD, **writer_options(schema.SHARD)) as writer:
        for g in np.unique(groups):
            local = np.asarray(rows)[groups == g] - starts[g]
            part = pf.read_row_group(int(g)).take(pa.array(local, pa.int64()))
            writer.write_table(part.cast(schema.SHARD), row_group_size=ROW_GROUP_ROWS)


def read_index_part(work_dir: Path, number: int) -> pa.Table:
    return read_file(_index_part(work_dir, number))
