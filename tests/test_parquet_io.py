"""read_rows: single rows out of shards' row groups (pixel checks, the card), against reading the files whole."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rscurate.parquet_io import read_rows, write_atomic


def test_read_rows_returns_the_asked_rows_in_order_across_files_and_row_groups(tmp_path: Path) -> None:
    """Rows of three files with row groups of 5 (one file a single short group), asked in random order with
    repeats: each equals the row of a whole-file read; the bytes stay valid after the file is replaced (the files
    are memory-mapped while read)."""
    rng = np.random.default_rng(0)
    whole = {}
    for k, rows in enumerate((23, 3, 11)):
        table = pa.table({"image": [rng.bytes(int(rng.integers(0, 5000))) for _ in range(rows)],
                          "n": pa.array(np.arange(rows) + 100 * k, pa.int64()),
                          "bands": [["b", "g", "r"][: 1 + r % 3] for r in range(rows)]})
        name = f"sub/part-{k}.parquet"
        (tmp_path / "sub").mkdir(exist_ok=True)
        write_atomic(table, tmp_path / name, row_group_size=5)
        whole[name] = pq.read_table(tmp_path / name).to_pylist()
    where = [(name, int(rng.integers(0, len(rows)))) for name, rows in whole.items() for _ in range(6)]
    where = [where[k] for k in rng.permutation(len(where))] + where[:3]
    found = read_rows(tmp_path, where, ["image", "n", "bands"])
    assert found == [whole[name][row] for name, row in where]
    first = where[0]
    write_atomic(pa.table({"image": [b""], "n": pa.array([0], pa.int64()), "bands": [["x"]]}), tmp_path / first[0])
    assert found[0] == whole[first[0]][first[1]]
    assert read_rows(tmp_path, [], ["n"]) == []
