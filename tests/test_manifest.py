"""Manifests fail fast with file, field and fix; absent data is reported, not fatal (unless --strict)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rscurate.manifest import ManifestError, load_manifest, load_manifests
from tests.conftest import REPO, run_build, textured, write_manifest, write_tif

RSCURATE = [sys.executable, "-c", "from rscurate.cli import app; app()"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RSCURATE, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    ("body", "field", "fix"),
    [
        ("name: a\nroot: .\ninclude: ['*.tif']\n", "license", "add it"),
        ("name: a\nlicense: x\nroot: .\ninclude: ['*.tif']\ntile: {size: -4}\n", "tile.size", "greater than 0"),
        ("name: a\nlicense: x\nroot: .\ninclude: ['*.tif']\ncolour: red\n", "colour", "remove it"),
        ("name: a\nlicense: x\nroot: .\ninclude: ['*.tif']\ntile: {mode: random}\n", "tile", "min_size"),
        ("name: a\nlicense: x\nroot: .\ninclude: []\n", "include", "at least 1"),
        ("name: a\nlicense: x\nroot: .\ninclude: ['*.tif']\nrole: test\n", "role", "'train' or 'eval'"),
        ("name: a\nlicense: x\nroot: .\ninclude: ['*.tif']\nbands: [{name: b1}]\n"
         "quality: {cloud: {band: scl, classes: [8]}}\n", "(top level)", "scl"),
    ],
)
def test_bad_manifest_names_file_field_and_fix(tmp_path: Path, body: str, field: str, fix: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    text = str(err.value)
    assert str(path) in text and field in text and fix in text


@pytest.mark.parametrize(
    ("body", "line"),
    [
        ("tile: {size: 64, strde: 32}\n", "field 'tile.strde': unknown field; did you mean 'stride'?"),
        ("bands: [{name: b1, wavelength_um: 0.5}, {name: b2, wavelenth_um: 0.6}]\n",
         "field 'bands[1].wavelenth_um': unknown field; did you mean 'wavelength_um'?"),
        ("bands: [{name: b1, wavelength_um: blue}]\n",
         "field 'bands[0].wavelength_um': Input should be a valid number"),
        ("quality: {cloud: {brightnes: 3000}}\n", "field 'quality.cloud.brightnes': unknown field; did you mean"),
        ("bands: 4\n", "field 'bands': Input should be a valid list or Input should be 'rgb'"),
    ],
    ids=["typo in a section", "typo in a list item", "bad value in a list item", "typo two levels down", "union"],
)
def test_nested_fields_are_named_as_written_with_a_suggestion(tmp_path: Path, body: str, line: str) -> None:
    path = write_manifest(tmp_path / "m.yaml", "name: a\nlicense: x\nroot: .\ninclude: ['*.tif']\n" + body)
    with pytest.raises(ManifestError) as err:
        load_manifest(path)
    lines = str(err.value).splitlines()
    assert lines[0] == f"{path}: invalid manifest"
    assert any(text.strip().startswith(line) for text in lines[1:]), lines
    assert len(lines) == 2, "a list of bands is not also told it should be 'rgb'"


def test_unset_variable_and_bad_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RSCURATE_TEST_UNSET", raising=False)
    body = "name: a\nlicense: x\nroot: ${RSCURATE_TEST_UNSET}/x\ninclude: ['*']\n"
    path = write_manifest(tmp_path / "env.yaml", body)
    with pytest.raises(ManifestError, match="RSCURATE_TEST_UNSET is not set"):
        load_manifest(path)
    monkeypatch.setenv("RSCURATE_TEST_UNSET", str(tmp_path))
    assert load_manifest(path).root_dir() == tmp_path / "x"
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ManifestError, match="not valid YAML"):
        load_manifest(tmp_path / "broken.yaml")


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    for n in ("a", "b"):
        write_manifest(tmp_path / f"{n}.yaml", "name: same\nlicense: x\nroot: .\ninclude: ['*']\n")
    with pytest.raises(ManifestError, match="already used"):
        load_manifests([tmp_path])


def test_cli_exits_2_before_any_work_on_a_bad_manifest(tmp_path: Path) -> None:
    write_manifest(tmp_path / "m" / "bad.yaml", "name: a\nroot: .\ninclude: ['*.tif']\n")
    out = tmp_path / "corpus"
    result = _cli("build", "--sources", str(tmp_path / "m"), "--out", str(out), "--quiet")
    assert result.returncode == 2
    assert "bad.yaml" in result.stderr and "license" in result.stderr
    assert not out.exists(), "nothing is written before manifests validate"


def test_absent_sources_are_reported_and_skipped_unless_strict(tmp_path: Path, rng) -> None:  # type: ignore[no-untyped-def]
    write_tif(tmp_path / "data" / "a.tif", textured(rng, 3, 128, 128))
    here = write_manifest(tmp_path / "m" / "here.yaml", "name: here\nlicense: x\nroot: ../data\ninclude: ['*.tif']\n"
                          "tile: {size: 128}\n")
    write_manifest(tmp_path / "m" / "gone.yaml", "name: gone\nlicense: x\nroot: ../nowhere\ninclude: ['*.tif']\n"
                   "download: https://example.org/get-it\n")
    report = run_build([here.parent], tmp_path / "c")
    assert report.kept == 1 and len(report.absent) == 1
    assert "gone" in report.absent[0] and "https://example.org/get-it" in report.absent[0]
    with pytest.raises(ManifestError, match="--strict"):
        run_build([here.parent], tmp_path / "c2", strict=True)


def test_catalog_manifests_validate_and_report_where_to_get_data() -> None:
    from rscurate.discover import discover

    manifests = load_manifests([REPO / "manifests" / "catalog"])
    names = {m.name for m in manifests}
    assert {"aid", "nwpu_resisc45", "ucmerced", "dota_v1", "dior", "loveda", "fmow_rgb", "million_aid"} <= names
    for m in manifests:
        assert m.license and m.citation and (m.homepage or m.download)
        found = discover(m)
        if found.absent:
            assert m.name in found.absent and "get it from" in found.absent
