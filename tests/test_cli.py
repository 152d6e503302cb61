"""`rscurate` command-line conventions: --version, several values after --sources, the unreadable-input summary
and `inspect`, the dry run without Dask."""

from __future__ import annotations

import dataclasses
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from rscurate.cli import app
from rscurate.inspect_sources import inspect_source
from rscurate.manifest import load_manifest
from rscurate.pipeline import BuildOptions, BuildReport, build
from tests.conftest import textured, write_manifest, write_tif

runner = CliRunner()


def _manifest(folder: Path, name: str, extra: str = "") -> Path:
    return write_manifest(folder / f"{name}.yaml", f"name: {name}\nlicense: CC0-1.0\nroot: data/{name}\n"
                          f"include: ['*.tif']\ntile: {{size: 128}}\n{extra}")


@pytest.fixture
def sources(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Two sources: `a` with a 256 x 256 scene and a corrupt file, `b` with one 128 x 128 scene and an eval split."""
    write_tif(tmp_path / "data" / "a" / "big.tif", textured(rng, 3, 256, 256))
    (tmp_path / "data" / "a" / "corrupt.tif").write_bytes(b"II*\x00" + bytes(400))
    write_tif(tmp_path / "data" / "b" / "small.tif", textured(rng, 4, 128, 128, "int16"), nodata=-1)
    write_tif(tmp_path / "data" / "b" / "test_split.tif", textured(rng, 4, 128, 128, "int16"))
    _manifest(tmp_path, "a")
    _manifest(tmp_path, "b", "exclude: {files: ['test_*']}\n")
    return tmp_path


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"rscurate {version('rsfm-toolkit')}"


@pytest.mark.parametrize("args", [
    ["--sources", "{d}/a.yaml", "{d}/b.yaml"],  # what the shell makes of --sources {d}/*.yaml
    ["--sources", "{d}/a.yaml", "--sources", "{d}/b.yaml"],
    ["--sources={d}/a.yaml", "{d}/b.yaml"],
], ids=["several values after one flag", "repeated flag", "flag=value then more"])
def test_sources_take_several_values_and_unreadable_inputs_are_summarised(
        sources: Path, monkeypatch: pytest.MonkeyPatch, args: list[str]) -> None:
    seen: list[BuildOptions] = []

    def in_process(opts: BuildOptions) -> BuildReport:  # the real build, with threads instead of processes
        seen.append(opts)
        return build(dataclasses.replace(opts, processes=False, workers=1))

    monkeypatch.setattr("rscurate.cli.build", in_process)
    out = sources / "corpus"
    result = runner.invoke(app, ["build", *(a.format(d=sources) for a in args), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    assert seen[0].sources == [sources / "a.yaml", sources / "b.yaml"]
    assert set(pd.read_parquet(out / "index.parquet")["source"]) == {"a", "b"}
    assert "1 item excluded as unreadable, from 1 scene" in result.stderr
    assert "a:corrupt.tif: " in result.stderr and "not recognized as being in a supported file format" in result.stderr


def test_inspect_lists_scenes_tiles_eval_splits_and_unreadable_files(sources: Path) -> None:
    (sources / "gone.yaml").write_text("name: gone\nlicense: x\nroot: nowhere\ninclude: ['*.tif']\n")
    result = runner.invoke(app, ["inspect", "--sources", *(str(sources / f"{n}.yaml") for n in "ab"),
                                 str(sources / "gone.yaml")], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for text in ("big.tif", "b1 b2 b3", "256x256", "EPSG:32633", "corrupt.tif: unreadable: RasterioIOError",
                 "test_split.tif: eval split: matches exclude.files 'test_*'", "absent: gone: data folder",
                 "2 of 3 sources on disk, 5 training tiles planned"):
        assert text in result.output, text
    assert not (sources / "corpus").exists()

    rows = {r.scene: r for r in inspect_source(load_manifest(sources / "b.yaml")).rows}
    assert dataclasses.asdict(rows["small.tif"]) == {
        "scene": "small.tif", "bands": "b1 b2 b3 b4", "dtype": "int16", "size": "128x128", "crs": "EPSG:32633",
        "nodata": "-1", "tiles": 1, "note": "", "detail": ""}
    assert (rows["test_split.tif"].tiles, rows["test_split.tif"].note) == (0, "eval split")


def test_inspect_reports_a_bad_manifest_like_build(tmp_path: Path) -> None:
    write_manifest(tmp_path / "bad.yaml", "name: a\nroot: .\ninclude: ['*.tif']\n")
    result = runner.invoke(app, ["inspect", "--sources", str(tmp_path / "bad.yaml")])
    assert result.exit_code == 2 and "bad.yaml" in result.output and "license" in result.output
