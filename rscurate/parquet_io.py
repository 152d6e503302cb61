"""Parquet writing shared by staging and shards: atomic renames, no second compression of image bytes."""

from __future__ import annotations

import os
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP_ROWS = 64  # small row groups stream well: a reader holds one group, not a file


def writer_options(schema: pa.Schema) -> dict[str, Any]:
    """Image bytes are compressed already: compressing, dictionary-encoding or min/max statistics of them
    cost CPU for nothing."""
    plain = [f.name for f in schema if not pa.types.is_binary(f.type)]
    return {
        "compression": {f.name: ("zstd" if f.name in plain else "none") for f in schema},
        "use_dictionary": plain,
        "write_statistics": plain,
    }


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary name to write to, renamed over `path` only when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(table: pa.Table, path: Path, row_group_size: int | None = None) -> None:
    """Write a whole table so that a killed write never leaves a half file behind."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, row_group_size=row_group_size, **writer_options(table.schema))


def read_file(path: Path) -> pa.Table:
    """One whole Parquet file, read without pq.read_table's dataset discovery: ~1 ms against ~5 for a staged unit's
    small tables, which the client reads once per unit (shards linked, resumed units, probes)."""
    with pq.ParquetFile(path) as pf:
        return pf.read()


def row_group_starts(pf: pq.ParquetFile) -> list[int]:
    """First row of each row group, plus the row count: row r is in group bisect_right(starts, r) - 1."""
    return np.cumsum([0] + [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]).tolist()


def read_rows(root: Path, where: list[tuple[str, int]], columns: list[str]) -> list[dict[str, Any]]:
    """Columns of the rows at (parquet file relative to root, row) positions, in order, reading only the row
    groups that hold them (a shard, or a build's staged unit that still holds its dropped tiles). The file is
    memory-mapped: a group's image column is the bytes of all its tiles, of which one is wanted (a third less time
    a tile than reading the group through a buffer)."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for name in sorted({f for f, _ in where}):
        with pa.memory_map(str(root / name)) as source:
            pf = pq.ParquetFile(source)
            starts = row_group_starts(pf)
            groups: dict[int, pa.Table] = {}
            for row in [r for f, r in where if f == name]:
                g = bisect_right(starts, row) - 1
                if g not in groups:
                    groups[g] = pf.read_row_group(g, columns=columns)
                out[(name, row)] = groups[g].slice(row - starts[g], 1).to_pylist()[0]
    return [out[w] for w in where]
