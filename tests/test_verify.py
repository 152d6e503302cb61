"""`rscurate verify` fails, with a list of problems and never a traceback, for each kind of damage: changed
pixels, an index that disagrees with its shard or its own sha256, rows past a shard's end, non-JSON statistics,
and a ledger that loses or doubles an input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rscurate import codec
from rscurate.cli import app
from rscurate.verify import VerifyError, verify
from tests.conftest import SMALL_MANIFEST as MANIFEST
from tests.conftest import run_build, textured, write_manifest, write_tif


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """a.tif: 4 kept tiles; b.tif: a copy of it (4 duplicates); c.tif: too small for a tile (one exclusion)."""
    root = tmp_path_factory.mktemp("verify")
    write_tif(root / "data" / "a.tif", textured(np.random.default_rng(5), 3, 256, 256))
    shutil.copy(root / "data" / "a.tif", root / "data" / "b.tif")
    write_tif(root / "data" / "c.tif", textured(np.random.default_rng(6), 3, 64, 64))
    out = root / "corpus"
    run_build([write_manifest(root / "small.yaml", MANIFEST)], out)
    return out


@pytest.fixture
def corpus(built: Path, tmp_path: Path) -> Path:
    return shutil.copytree(built, tmp_path / "corpus")


def _edit(path: Path, change: Callable[[pa.Table], pa.Table]) -> None:
    table = pq.read_table(path)
    pq.write_table(change(table).cast(table.schema), path)


def _set(table: pa.Table, column: str, row: int, value: object) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    return table.set_column(table.schema.get_field_index(column), column, pa.array(values, table[column].type))


def _first_tile(corpus: Path) -> tuple[Path, int]:
    index = pq.read_table(corpus / "index.parquet", columns=["shard", "row"]).to_pylist()[0]
    return corpus / index["shard"], index["row"]


def change_a_pixel(corpus: Path) -> None:
    shard, row = _first_tile(corpus)
    table = pq.read_table(shard)
    tile = codec.decode(table["image"][row].as_py(), table["encoding"][row].as_py())
    tile[0, 5, 7] ^= 1
    _edit(shard, lambda t: _set(t, "image", row, codec.encode_array(tile)))


def corrupt_the_bytes(corpus: Path) -> None:
    shard, row = _first_tile(corpus)
    table = pq.read_table(shard)
    data = bytearray(table["image"][row].as_py())
    data[len(data) // 2] ^= 0xFF
    _edit(shard, lambda t: _set(t, "image", row, bytes(data)))


def truncate_the_shard(corpus: Path) -> None:
    shard, _ = _first_tile(corpus)
    shard.write_bytes(shard.read_bytes()[:1000])


def wrong_x(corpus: Path) -> None:
    _edit(corpus / "index.parquet", lambda t: _set(t, "x", 0, t["x"][0].as_py() + 1))


def zero_sha(corpus: Path) -> None:
    _edit(corpus / "index.parquet", lambda t: _set(t, "sha256", 0, "0" * 64))


def row_past_end(corpus: Path) -> None:
    _edit(corpus / "index.parquet", lambda t: _set(t, "row", 0, 999))


def nan_in_stats(corpus: Path) -> None:
    stats = json.loads((corpus / "stats.json").read_text())
    next(iter(stats["bands"].values()))["mean"] = float("nan")
    (corpus / "stats.json").write_text(json.dumps(stats))


def _drop_rows(path: Path, keep: Callable[[dict], bool]) -> None:
    _edit(path, lambda t: pa.Table.from_pylist([r for r in t.to_pylist() if keep(r)], schema=t.schema))


def _double_rows(path: Path, which: Callable[[dict], bool]) -> None:
    _edit(path, lambda t: pa.Table.from_pylist(t.to_pylist() + [r for r in t.to_pylist() if which(r)],
                                               schema=t.schema))


def drop_scene_from_inputs(corpus: Path) -> None:
    _drop_rows(corpus / "inputs.parquet", lambda r: r["scene"] != "a.tif")


def double_scene_in_inputs(corpus: Path) -> None:
    _double_rows(corpus / "inputs.parquet", lambda r: r["scene"] == "c.tif")


def make_kept_scene_eval(corpus: Path) -> None:
    _edit(corpus / "inputs.parquet", lambda t: _set(t, "role", [r["scene"] for r in t.to_pylist()].index("a.tif"),
                                                    "eval"))


def double_exclusion(corpus: Path) -> None:
    _double_rows(corpus / "excluded.parquet", lambda r: r["scene"] == "c.tif")


def one_window_twice(corpus: Path) -> None:
    """Counts still add up (4 duplicates for 4 windows of b.tif), but one window is listed twice, one never."""
    def change(t: pa.Table) -> pa.Table:
        for col in ("x", "y"):
            t = _set(t, col, 1, t[col][0].as_py())
        return t
    _edit(corpus / "duplicates.parquet", change)


DAMAGE = [
    (change_a_pixel, "part-00000.parquet row .*pixels do not match sha256"),
    (corrupt_the_bytes, "part-00000.parquet row "),
    (truncate_the_shard, "part-00000.parquet: unreadable \\(ArrowInvalid"),
    (wrong_x, "x is .* but index.parquet says"),
    (zero_sha, "pixels do not match sha256 0{64}"),
    (row_past_end, "is at row 999 of .*part-00000.parquet, which has 4 rows"),
    (nan_in_stats, "stats.json: not strict JSON \\(NaN is not valid JSON"),
    (drop_scene_from_inputs, "index.parquet: scene small:a.tif has rows but is not in inputs.parquet"),
    (double_scene_in_inputs, "inputs.parquet: scene small:c.tif is listed more than once"),
    (make_kept_scene_eval, "index.parquet: scene small:a.tif is eval data, so has no place in this table"),
    (double_exclusion, "small:c.tif has no planned tile, so needs exactly one exclusion row; found 2 in excluded"),
    (one_window_twice, "scene small:b.tif: window x=0 y=0 128x128 is in 2 places"),
]


@pytest.mark.parametrize(("damage", "expected"), DAMAGE, ids=[d.__name__ for d, _ in DAMAGE])
def test_verify_lists_each_kind_of_damage(corpus: Path, damage: Callable[[Path], None], expected: str) -> None:
    verify(corpus)
    damage(corpus)
    with pytest.raises(VerifyError, match=expected):
        verify(corpus)
    result = CliRunner().invoke(app, ["verify", str(corpus)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), "a list of problems, no traceback"
    assert "verify failed" in result.output


def test_a_sound_corpus_passes_with_every_tile_rehashed(built: Path) -> None:
    checked = verify(built)
    assert checked == {"tiles": 4, "excluded": 1, "duplicates": 4, "scenes": 3, "rehashed": 4}
    result = CliRunner().invoke(app, ["verify", str(built)])
    assert result.exit_code == 0 and "4 rehashed" in result.output


def test_sample_rehashes_only_that_many_tiles_but_checks_every_row(corpus: Path) -> None:
    assert verify(corpus, sample=2)["rehashed"] == 2
    result = CliRunner().invoke(app, ["verify", str(corpus), "--sample", "1"])
    assert result.exit_code == 0 and "1 rehashed" in result.output
    wrong_x(corpus)  # index/shard agreement and ids are checked for every row, sampled or not
    with pytest.raises(VerifyError, match="x is"):
        verify(corpus, sample=0)


def test_every_problem_is_listed_not_only_the_first(corpus: Path) -> None:
    change_a_pixel(corpus)
    nan_in_stats(corpus)
    one_window_twice(corpus)
    with pytest.raises(VerifyError) as err:
        verify(corpus)
    assert len(err.value.problems) == 3
    result = CliRunner().invoke(app, ["verify", str(corpus)])
    assert "verify failed: 3 problem(s)" in result.output
    assert all(f"  - {p}" in result.output for p in err.value.problems)
