"""Reading a built corpus: the index as a table and any tile as a (C, H, W) array with its metadata."""

from __future__ import annotations

import json
from bisect import bisect_right
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rscurate import codec
from rscurate.parquet_io import row_group_starts
from rscurate.readers import valid_from_nodata


class Corpus:
    """A corpus folder opened for reading; shards are opened lazily and read one row group at a time."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / "index.parquet").is_file():
            raise FileNotFoundError(f"{self.root}: no index.parquet; is this a corpus built by `rscurate build`?")
        self.index: pa.Table = pq.read_table(self.root / "index.parquet")
        self._files: dict[str, tuple[pq.ParquetFile, list[int]]] = {}

    def __len__(self) -> int:
        return len(self.index)

    @cached_property
    def stats(self) -> dict[str, Any]:
        return json.loads((self.root / "stats.json").read_text())

    @cached_property
    def _row_of_id(self) -> dict[str, int]:
        return {tid: i for i, tid in enumerate(self.index["id"].to_pylist())}

    def _shard(self, name: str) -> tuple[pq.ParquetFile, list[int]]:
        if name not in self._files:
            pf = pq.ParquetFile(self.root / name)
            self._files[name] = (pf, row_group_starts(pf))
        return self._files[name]

    def tile(self, key: int | str) -> tuple[np.ndarray, dict[str, Any]]:
        """Tile by index position or id: its decoded pixels and its index row."""
        i = self._row_of_id[key] if isinstance(key, str) else int(key)
        meta = {name: self.index[name][i].as_py() for name in self.index.column_names}
        pf, starts = self._shard(meta["shard"])
        group = bisect_right(starts, meta["row"]) - 1
        rows = pf.read_row_group(group, columns=["id", "image", "encoding"])
        local = meta["row"] - starts[group]
        if rows["id"][local].as_py() != meta["id"]:
            raise ValueError(f"{meta['shard']} row {meta['row']} holds {rows['id'][local]}, not {meta['id']}")
        return codec.decode(rows["image"][local].as_py(), rows["encoding"][local].as_py()), meta

    def validity(self, key: int | str) -> np.ndarray:
        """The tile's (H, W) validity: its stored `valid_mask` where the build kept one (alpha, internal masks),
        else what `nodata` and NaN say, band by band (a pixel is valid where any band has data)."""
        array, meta = self.tile(key)
        pf, starts = self._shard(meta["shard"])
        if "valid_mask" in pf.schema_arrow.names:
            group = bisect_right(starts, meta["row"]) - 1
            stored = codec.decode_mask(pf.read_row_group(group, columns=["valid_mask"])["valid_mask"][
                meta["row"] - starts[group]].as_py())
            if stored is not None:
                return stored
        return valid_from_nodata(array, meta["nodata"])


def open_corpus(root: str | Path) -> Corpus:
    """Open a corpus folder written by `rscurate build`."""
    return Corpus(root)
