"""Read-side view of an rscurate corpus: its shards' row groups and its per-band statistics.

Only parquet metadata is touched here (no image bytes), so planning an epoch over millions of tiles is cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

STD_FLOOR = 1e-6  # a constant band has std 0; dividing by it would turn the whole tile into inf


class AmbiguousBands(ValueError):
    """A requested band name means different data in different tiles: stats.json splits it by band group."""


@dataclass(frozen=True)
class RowGroup:
    """One streamable unit: a row group of one shard."""

    shard: str
    index: int
    num_rows: int


class Corpus:
    """A corpus folder as written by `rscurate build` (shards/*.parquet + stats.json)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.shard_dir = self.root / "shards"
        if not self.shard_dir.is_dir():
            raise FileNotFoundError(
                f"{self.root}: no shards/ folder; is this a corpus built by `rscurate build`?"
            )
        self.shards = sorted(self.shard_dir.glob("*.parquet"))
        if not self.shards:
            raise FileNotFoundError(f"{self.shard_dir}: no *.parquet shards")

    @cached_property
    def row_groups(self) -> list[RowGroup]:
        groups: list[RowGroup] = []
        for shard in self.shards:
            meta = pq.ParquetFile(shard).metadata
            groups += [
                RowGroup(shard.name, i, meta.row_group(i).num_rows)
                for i in range(meta.num_row_groups)
                if meta.row_group(i).num_rows > 0
            ]
        return groups

    @property
    def num_rows(self) -> int:
        return sum(g.num_rows for g in self.row_groups)

    @cached_property
    def stats(self) -> dict:
        path = self.root / "stats.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing; rspretrain takes per-band normalisation from it")
        return json.loads(path.read_text())

    def band_mean_std(
        self, names: list[str] | tuple[str, ...], source: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-band mean and std (float32, std floored) for the named bands, from stats.json.

        With `source`, that source's own statistics are used when stats.json has them for every band (a
        corpus mixing uint8 chips and uint16 scenes under the same band names needs this); otherwise the
        statistics over all sources.
        """
        table = self.source_stats(names, source) if source is not None else None
        if table is None:
            table = self.stats.get("bands", {})
            self._refuse_split(names, table)
        missing = [n for n in names if n not in table]
        if missing:
            raise KeyError(f"stats.json has no statistics for band(s) {missing}; known: {sorted(table)}")
        empty = [n for n in names if table[n]["mean"] is None]  # null: the band has no valid pixel in the corpus
        if empty:
            raise ValueError(f"{self.root / 'stats.json'}: band(s) {empty} have no valid pixel (all NaN or nodata) "
                             "in the corpus; leave them out of `bands`")
        mean = np.array([table[n]["mean"] for n in names], dtype=np.float32)
        std = np.array([max(float(table[n]["std"]), STD_FLOOR) for n in names], dtype=np.float32)
        return mean, std

    def source_stats(self, names: list[str] | tuple[str, ...], source: str) -> dict | None:
        """The source's band statistics when stats.json has them (with pixels) for every named band.

        Raises AmbiguousBands when the source splits a named band by band group."""
        entry = self.stats.get("sources", {}).get(source)
        table = entry.get("bands", {}) if isinstance(entry, dict) else {}
        self._refuse_split(names, table)
        if all(n in table and table[n].get("count", 1) > 0 for n in names):
            return table
        return None

    def _refuse_split(self, names: list[str] | tuple[str, ...], table: dict) -> None:
        """Refuse band names that `table` also keys per band group (`name@dtypexN`, rscurate's band_stats): a
        source mixing dtypes or band counts under those names holds different data under each, and one
        mean/std would pool them."""
        split = {n: sorted(k for k in table if k.startswith(f"{n}@")) for n in names}
        split = {n: keys for n, keys in split.items() if keys}
        if not split:
            return
        groups = {f"{src} {group}: e.g. {', '.join(g.get('examples', []))}"
                  for src, entry in self.stats.get("sources", {}).items() if isinstance(entry, dict)
                  for group, g in entry.get("band_groups", {}).items()
                  if any(k.endswith(f"@{group}") for keys in split.values() for k in keys)}
        raise AmbiguousBands(
            f"{self.root / 'stats.json'}: band(s) {sorted(split)} mean different data in different tiles: "
            f"statistics are split by dtype and band count ({', '.join(k for keys in split.values() for k in keys)}"
            + (f"; {'; '.join(sorted(groups))}" if groups else "") + "). Declare the bands in the manifest, or "
            "give each band set its own manifest (include globs by file type), and rebuild the corpus."
        )

    def source_names(self) -> list[str]:
        return sorted(self.stats.get("sources", {}))

    def first_row_bands(self) -> tuple[list[str], list[float | None]]:
        """Band names and wavelengths of the first tile: the reference when only `in_chans` is configured."""
        table = pq.ParquetFile(self.shards[0]).read_row_group(0, columns=["bands", "wavelengths_um"])
        return table.column("bands")[0].as_py(), table.column("wavelengths_um")[0].as_py() or []

    @cached_property
    def shard_columns(self) -> set[str]:
        return set(pq.read_schema(self.shards[0]).names)

    def read_row_group(self, group: RowGroup, columns: list[str]):
        """The listed columns of one row group; optional columns that older corpora lack are left out."""
        present = [c for c in columns if c in self.shard_columns]
        return pq.ParquetFile(self.shard_dir / group.shard).read_row_group(group.index, columns=present)
