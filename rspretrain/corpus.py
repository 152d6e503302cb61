"""Read-side view of an rscurate corpus: its shards' row groups and its per-band statistics.

Only parquet metadata is touched here (no image bytes), so planning an epoch over millions of tiles is cheap.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
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
    def _plan(self) -> tuple[list[RowGroup], set[str]]:
        """Every shard's row groups, and the shards' columns, from the footers: once, at start, so a shard that
        vanishes or is damaged during a run changes neither (its rows are then skipped by the reader)."""
        groups: list[RowGroup] = []
        columns: set[str] = set()
        for shard in self.shards:
            try:
                meta = pq.ParquetFile(shard).metadata
            except (OSError, pa.ArrowException) as err:
                raise ValueError(
                    f"{shard}: not a readable parquet shard ({err}); restore it from the corpus' origin "
                    "(`rscurate verify CORPUS` lists what the index expects) or rebuild the corpus"
                ) from err
            columns = columns or set(meta.schema.to_arrow_schema().names)
            groups += [
                RowGroup(shard.name, i, meta.row_group(i).num_rows)
                for i in range(meta.num_row_groups)
                if meta.row_group(i).num_rows > 0
            ]
        return groups, columns

    @property
    def row_groups(self) -> list[RowGroup]:
        return self._plan[0]

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

    @cached_property
    def band_layouts(self) -> dict[tuple[tuple[str, ...], tuple[float | None, ...]], int]:
        """Tile count per stored (band names, wavelengths) layout over every shard row: the corpus' own record of
        what its bands are, read once from two small columns (never the image bytes)."""
        layouts: Counter = Counter()
        for shard in self.shards:
            table = pq.read_table(shard, columns=["bands", "wavelengths_um"]).to_pydict()
            for names, waves in zip(table["bands"], table["wavelengths_um"], strict=True):
                layouts[(tuple(names or ()), tuple(waves or ()))] += 1
        return dict(layouts)

    def in_chans_bands(self, in_chans: int) -> list[str]:
        """The band names `in_chans: C` stands for: the first C names of every tile that has C bands.

        Tiles that hold the same C names in another order are reordered by name (each name keeps one meaning);
        tiles whose first C names differ (an RGB tile and a Sentinel-2 B02/B03/B04 tile: opposite colour
        order) are refused, since the first C channels would mean different bands in different tiles.
        """
        orders: Counter = Counter()
        for (names, _), n in self.band_layouts.items():
            if len(names) >= in_chans:
                orders[names[:in_chans]] += n
        if not orders:
            raise ValueError(f"{self.root}: no tile has {in_chans} bands (data.in_chans)")
        sets = {frozenset(order) for order in orders}
        if len(sets) > 1:
            found = "; ".join(f"{list(order)} ({n} tiles)" for order, n in orders.most_common())
            raise ValueError(
                f"{self.root}: in_chans: {in_chans} would mix different bands in the same channels: the first "
                f"{in_chans} bands of the tiles are {found}. Choose the bands by name with data.bands: [...] "
                "(tiles lacking one are skipped), or give each band set its own corpus."
            )
        return list(min(orders, key=lambda order: (-orders[order], order)))  # the most common order

    def band_wavelengths(self, names: list[str]) -> list[float | None]:
        """Each named band's centre wavelength over the tiles that hold all the names (the value most tiles
        give where they disagree; None where no tile gives one)."""
        votes: list[Counter] = [Counter() for _ in names]
        for (row_names, waves), n in self.band_layouts.items():
            if not set(names) <= set(row_names):
                continue
            for k, name in enumerate(names):
                i = row_names.index(name)
                if i < len(waves) and waves[i] is not None:
                    votes[k][waves[i]] += n
        return [max(v, key=lambda w: (v[w], -w)) if v else None for v in votes]

    def input_scale(self, names: list[str], source: str | None = None) -> float:
        """What timm's ToTensor divides the stored values by: 255 when every named band is stored as uint8
        (an 8-bit image becomes 0-1), else 1 (non-8-bit data enters timm's transforms as a float tensor)."""
        table = self.source_stats(names, source) if source is not None else None
        table = self.stats.get("bands", {}) if table is None else table
        return 255.0 if all(table.get(n, {}).get("dtype") == "uint8" for n in names) else 1.0

    @property
    def shard_columns(self) -> set[str]:
        return self._plan[1]

    def read_row_group(self, group: RowGroup, columns: list[str]):
        """The listed columns of one row group; optional columns that older corpora lack are left out."""
        present = [c for c in columns if c in self.shard_columns]
        return pq.ParquetFile(self.shard_dir / group.shard).read_row_group(group.index, columns=present)
