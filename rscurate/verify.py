"""`rscurate verify`: a corpus holds what its index says it holds.

Checks, in order: the build finished (build.json); the tables are present and readable; ids are unique and
derive from each tile's provenance and sha256; every input scene is in the ledger once and each planned window
in exactly one place (kept, excluded or duplicate); shard files and rows are exactly those the index names and
repeat its columns; each tile's bytes decode to the array its sha256, dtype and shape describe (all tiles, or
a random sample); stats.json is strict JSON whose counts agree with the tables. Every problem found is listed
(capped per check), so one run shows the whole extent of the damage.
"""

from __future__ import annotations

import json
import math
import warnings
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from rasterio.errors import NotGeoreferencedWarning

from rscurate import codec, schema
from rscurate.out_dir import completion_problem
from rscurate.parquet_io import row_group_starts
from rscurate.units import content_sha256, tile_id

TABLES = ("index.parquet", "excluded.parquet", "duplicates.parquet", "inputs.parquet")
MAX_PER_CHECK = 20  # problems listed per check; the rest are counted, so a badly damaged corpus stays readable
REBUILD = "rebuild with `rscurate build --overwrite`"
WINDOW = ["x", "y", "width", "height"]


class VerifyError(Exception):
    """What is wrong with a corpus: one problem a line, each naming the file it concerns."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def verify(root: Path, sample: int | None = None) -> dict[str, int]:
    """Check a corpus; raise VerifyError listing every problem, else return what was checked.
    `sample`: re-hash this many randomly chosen tiles instead of all of them."""
    problem = completion_problem(root)  # a half-written corpus must not pass for a finished one
    if problem:
        raise VerifyError([problem])
    missing = [f"{root / n}: missing; {REBUILD}" for n in (*TABLES, "stats.json") if not (root / n).is_file()]
    if missing:
        raise VerifyError(missing)
    tables, problems = {}, []
    for name in TABLES:
        try:
            tables[name] = pq.read_table(root / name).to_pandas()
        except Exception as err:  # noqa: BLE001 - any reader error means the same: the file is damaged
            problems.append(f"{root / name}: unreadable ({type(err).__name__}: {err}); {REBUILD}")
    if problems:
        raise VerifyError(problems)
    index, excluded, dups, inputs = (tables[n] for n in TABLES)
    stats, stats_problem = _read_stats(root / "stats.json")
    problems += [stats_problem] if stats_problem else []

    rehashed: list[int] = []
    checks: list[tuple[str, Callable[[], Iterator[str]]]] = [
        ("ids", lambda: _check_ids(index, dups)),
        ("ledger", lambda: _check_ledger(inputs, index, excluded, dups)),
        ("shards", lambda: _check_shards(root, index, _rows_to_hash(len(index), sample), rehashed)),
        ("stats.json counts", lambda: _check_counts(stats, index, excluded, dups) if stats is not None else iter(())),
    ]
    for what, check in checks:
        problems += _capped(what, check)
    if problems:
        raise VerifyError(problems)
    return {"tiles": len(index), "excluded": len(excluded), "duplicates": len(dups), "scenes": len(inputs),
            "rehashed": sum(rehashed)}


def _capped(what: str, check: Callable[[], Iterator[str]]) -> list[str]:
    """The check's first MAX_PER_CHECK problems and a count of the rest; a check that crashes on damage it did
    not foresee is itself a problem, never a traceback."""
    found: list[str] = []
    extra = 0
    try:
        for line in check():
            if len(found) < MAX_PER_CHECK:
                found.append(line)
            else:
                extra += 1
    except Exception as err:  # noqa: BLE001 - a damaged corpus can fail in any way; report it and go on
        found.append(f"{what}: could not be checked ({type(err).__name__}: {err}); {REBUILD}")
    if extra:
        found.append(f"{what}: {extra} more problems like the above")
    return found


def _read_stats(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """stats.json parsed, and why it is not strict JSON (NaN and Infinity are not JSON: most readers refuse
    them). Its counts are still checked when only such constants are wrong."""
    text = path.read_text()

    def refuse(constant: str) -> float:
        raise ValueError(f"{constant} is not valid JSON")

    try:
        json.loads(text, parse_constant=refuse)
        problem = None
    except ValueError as err:
        problem = f"{path}: not strict JSON ({err}); {REBUILD}"
    try:
        data = json.loads(text)
    except ValueError:
        return None, problem
    return (data if isinstance(data, dict) else None), problem


def _check_ids(index: pd.DataFrame, dups: pd.DataFrame) -> Iterator[str]:
    """Ids are unique, each derives from its tile's provenance and sha256, and dropped tiles point at kept ones."""
    for tid in index.loc[index["id"].duplicated(), "id"].unique():
        yield f"index.parquet: id {tid} appears more than once"
    for row in index.itertuples(index=False):
        if tile_id(row.source, row.scene, (row.x, row.y, row.width, row.height), row.sha256) != row.id:
            yield (f"index.parquet: tile {row.id} ({row.source}:{row.scene} at x={row.x} y={row.y}) does not match "
                   "its source, scene, window and sha256: one of them was changed")
    kept = set(index["id"])
    for tid in sorted(kept & set(dups["id"])):
        yield f"duplicates.parquet: {tid} is both kept and dropped"
    for tid in sorted(set(dups["kept_id"]) - kept):
        yield f"duplicates.parquet: kept_id {tid} is not in index.parquet"


def _check_ledger(inputs: pd.DataFrame, index: pd.DataFrame, excluded: pd.DataFrame,
                  dups: pd.DataFrame) -> Iterator[str]:
    """Every input file is in one scene of inputs.parquet (the frames of one .npy stack share their file), every
    tile row belongs to a listed training scene, and each planned window of a training scene is in exactly one place:
    kept, excluded or a duplicate; a training scene with no planned window has exactly one exclusion row."""
    keys = list(zip(inputs["source"], inputs["scene"], strict=True))
    for source, scene in sorted(k for k, n in Counter(keys).items() if n > 1):
        yield f"inputs.parquet: scene {source}:{scene} is listed more than once"
    owners: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for (source, scene), files in zip(keys, inputs["files"], strict=True):
        for f in files:
            owners[f].add((source, scene.rsplit("#", 1)[0]))  # frames `name#t` of one stack share a file
    for f, scenes in sorted(owners.items()):
        if len(scenes) > 1:
            yield f"inputs.parquet: file {f} is in {len(scenes)} scenes: {sorted(f'{s}:{n}' for s, n in scenes)}"

    places = pd.concat([t.assign(place=name)[["source", "scene", *WINDOW, "place"]] for name, t in
                        (("index.parquet", index), ("excluded.parquet", excluded), ("duplicates.parquet", dups))])
    role = dict(zip(keys, inputs["role"], strict=True))
    for source, scene, place in sorted({(s, n, p) for s, n, p in zip(places["source"], places["scene"],
                                                                      places["place"], strict=True)}):
        if (source, scene) not in role:
            yield f"{place}: scene {source}:{scene} has rows but is not in inputs.parquet"
        elif role[(source, scene)] != "train":
            yield f"{place}: scene {source}:{scene} is {role[(source, scene)]} data, so has no place in this table"
    by_scene = {k: g for k, g in places.groupby(["source", "scene"], sort=False)}
    train = inputs[inputs["role"] == "train"]
    for source, scene, planned in zip(train["source"], train["scene"], train["tiles_planned"], strict=True):
        rows = by_scene.get((source, scene), places.iloc[:0])
        if planned == 0:
            if len(rows) != 1 or rows["place"].iat[0] != "excluded.parquet":
                got = ", ".join(f"{n} in {p}" for p, n in Counter(rows["place"]).items()) or "none"
                yield (f"inputs.parquet: scene {source}:{scene} has no planned tile, so needs exactly one "
                       f"exclusion row; found {got}")
            continue
        for window, group in rows.groupby(WINDOW):
            if len(group) > 1:
                yield (f"scene {source}:{scene}: window x={window[0]} y={window[1]} {window[2]}x{window[3]} is in "
                       f"{len(group)} places ({', '.join(group['place'])})")
        if len(rows) != planned:
            yield f"scene {source}:{scene}: {planned} tiles planned, {len(rows)} kept/excluded/duplicate"


def _rows_to_hash(n: int, sample: int | None) -> np.ndarray:
    """Index rows to re-hash: all of them, or `sample` drawn afresh each run (repeated runs cover more tiles)."""
    if sample is None or sample >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng().choice(n, size=sample, replace=False))


def _check_shards(root: Path, index: pd.DataFrame, to_hash: np.ndarray, rehashed: list[int]) -> Iterator[str]:
    """Shard files are exactly those the index names; in each, the index's rows exist, are each named once, are
    the only rows, repeat the index's columns, and (for rows in `to_hash`) decode to what the index says."""
    on_disk = {p.relative_to(root).as_posix() for p in (root / "shards").glob("*.parquet")}
    named = set(index["shard"])
    for name in sorted(on_disk - named):
        yield f"{root / name}: a shard file index.parquet does not name; {REBUILD}"
    for name in sorted(named - on_disk):
        yield f"{root / name}: missing, but index.parquet has tiles in it; {REBUILD}"
    hash_rows = np.zeros(len(index), bool)
    hash_rows[to_hash] = True
    index = index.assign(_hash=hash_rows)
    for name, group in index.groupby("shard"):
        if name in on_disk:
            yield from _check_shard(root, name, group, rehashed)


def _check_shard(root: Path, name: str, group: pd.DataFrame, rehashed: list[int]) -> Iterator[str]:
    path = root / name
    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # noqa: BLE001 - any reader error means the same: the file is damaged
        yield f"{path}: unreadable ({type(err).__name__}: {err}); {REBUILD}"
        return
    n = pf.metadata.num_rows
    rows = group["row"].to_numpy()
    for tid, row in zip(group["id"], rows, strict=True):
        if not 0 <= row < n:
            yield f"index.parquet: tile {tid} is at row {row} of {path}, which has {n} rows"
    for row in sorted(r for r, c in Counter(rows.tolist()).items() if c > 1):
        yield f"index.parquet: {Counter(rows.tolist())[row]} tiles are at row {row} of {path}"
    if n > len(set(rows.tolist())):
        yield f"{path}: {n} rows, but index.parquet names {len(set(rows.tolist()))} of them"
    group = group[(rows >= 0) & (rows < n)]
    columns = [c for c in pf.schema_arrow.names if c in group.columns]
    for field in schema.TILE_META:
        if field.name not in columns:
            yield f"{path}: column {field.name} missing from the shard or index.parquet; {REBUILD}"
    shard = pf.read(columns=columns).take(pa.array(group["row"].to_numpy(), pa.int64())).to_pandas()
    for col in columns:
        if shard[col].reset_index(drop=True).equals(group[col].reset_index(drop=True)):
            continue  # pandas' equals (NaN equals NaN): a fast path; rows are compared one by one only on a mismatch
        for tid, row, got, want in zip(group["id"], group["row"], shard[col], group[col], strict=True):
            if not _same(got, want):
                yield f"{path} row {row}: {col} is {got!r} but index.parquet says {want!r} (tile {tid})"
    yield from _check_content(path, pf, group[group["_hash"]], rehashed)


def _check_content(path: Path, pf: pq.ParquetFile, group: pd.DataFrame, rehashed: list[int]) -> Iterator[str]:
    """Decode the stored bytes of the given tiles, one row group at a time, and compare with the index."""
    starts = row_group_starts(pf)
    by_group: dict[int, list[Any]] = defaultdict(list)
    for row in group.itertuples(index=False):
        by_group[bisect_right(starts, row.row) - 1].append(row)
    has_mask = "valid_mask" in pf.schema_arrow.names  # corpora from before masks were stored lack the column
    for g, tiles in sorted(by_group.items()):
        part = pf.read_row_group(g, columns=["image", "valid_mask"] if has_mask else ["image"])
        images = part["image"]
        masks = part["valid_mask"] if has_mask else None
        for t in tiles:
            where = f"{path} row {t.row} (tile {t.id})"
            try:
                with warnings.catch_warnings():  # a PNG/JPEG chip has no geotransform, as the build knew
                    warnings.simplefilter("ignore", NotGeoreferencedWarning)
                    arr = codec.decode(images[t.row - starts[g]].as_py(), t.encoding)
            except Exception as err:  # noqa: BLE001 - damaged bytes fail in whatever way their decoder does
                yield f"{where}: image does not decode as {t.encoding} ({type(err).__name__}: {err}); {REBUILD}"
                continue
            rehashed.append(1)
            if (arr.dtype.name, arr.shape) != (t.dtype, (t.channels, t.height, t.width)):
                yield (f"{where}: image decodes to {arr.dtype.name} {arr.shape}, but index.parquet says "
                       f"{t.dtype} {(t.channels, t.height, t.width)}")
            elif content_sha256(arr) != t.sha256:
                yield f"{where}: pixels do not match sha256 {t.sha256}: the stored bytes changed; {REBUILD}"
            if masks is not None:
                yield from _check_mask(where, masks[t.row - starts[g]].as_py(), t)


def _check_mask(where: str, data: bytes | None, t: Any) -> Iterator[str]:
    """A stored validity mask decodes to an (H, W) mask of the tile whose valid count is the index's."""
    if data is None:
        return
    try:
        mask = codec.decode_mask(data)
    except Exception as err:  # noqa: BLE001 - damaged bytes fail in whatever way zstd/numpy do
        yield f"{where}: valid_mask does not decode ({type(err).__name__}: {err}); {REBUILD}"
        return
    assert mask is not None
    if mask.shape != (t.height, t.width) or mask.dtype != bool:
        yield f"{where}: valid_mask is {mask.dtype.name} {mask.shape}, not bool {(t.height, t.width)}; {REBUILD}"
    elif int(mask.sum()) != t.valid_pixels:
        yield (f"{where}: valid_mask marks {int(mask.sum())} pixels valid but index.parquet says "
               f"{t.valid_pixels}; {REBUILD}")


def _same(a: Any, b: Any) -> bool:
    """Equal, with null and NaN equal to each other and lists (numpy arrays from pandas) compared by element."""
    if _missing(a) or _missing(b):
        return _missing(a) and _missing(b)
    if isinstance(a, np.ndarray | list) or isinstance(b, np.ndarray | list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _check_counts(stats: dict[str, Any], index: pd.DataFrame, excluded: pd.DataFrame,
                  dups: pd.DataFrame) -> Iterator[str]:
    counts = stats.get("counts", {})
    if counts.get("kept") != len(index):
        yield f"stats.json: counts.kept={counts.get('kept')} but index.parquet has {len(index)} rows"
    for key, table, column in (("excluded", excluded, "reason"), ("duplicates", dups, "kind")):
        if dict(counts.get(key, {})) != dict(Counter(table[column])):
            yield (f"stats.json: counts.{key}={counts.get(key)} but {key}.parquet has "
                   f"{dict(Counter(table[column]))}")
