"""Reruns are safe: a crashed build is not a corpus until build.json says complete, another corpus or a file at
--out is refused before any work, --overwrite empties, and the same command resumes."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from rscurate.cli import app
from rscurate.out_dir import OutDirError
from rscurate.verify import VerifyError, verify
from tests.conftest import SMALL_MANIFEST as MANIFEST
from tests.conftest import run_build, textured, write_manifest, write_tif


@pytest.fixture
def source(tmp_path: Path, rng: np.random.Generator) -> Path:
    """Two 256 x 256 scenes: 8 tiles."""
    for name in ("a.tif", "b.tif"):
        write_tif(tmp_path / "data" / name, textured(rng, 3, 256, 256))
    return write_manifest(tmp_path / "small.yaml", MANIFEST)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    write_tif(root / "data" / "a.tif", textured(np.random.default_rng(5), 3, 256, 256))
    out = root / "corpus"
    run_build([write_manifest(root / "small.yaml", MANIFEST)], out)
    return out


def test_build_json_is_written_last_with_the_build_metadata(finished: Path) -> None:
    meta = json.loads((finished / "build.json").read_text())
    assert meta["complete"] is True
    assert {"command", "settings", "rscurate_version", "started", "seconds", "workers", "fingerprint"} <= set(meta)
    assert not (finished / "_work").exists()
    assert (finished / "build.json").stat().st_mtime_ns >= (finished / "README.md").stat().st_mtime_ns
    verify(finished)


@pytest.mark.parametrize(("damage", "named"), [
    (lambda c: (c / "build.json").unlink(), "build.json"),
    (lambda c: (c / "build.json").write_text(json.dumps({"complete": False})), "build.json"),
    (lambda c: (c / "_work").mkdir(), "_work"),
    (lambda c: (c / "README.md").unlink(), "README.md"),
], ids=["no build.json", "not complete", "_work left over", "no card"])
def test_verify_fails_on_an_unfinished_corpus(finished: Path, tmp_path: Path, damage, named: str) -> None:  # type: ignore[no-untyped-def]
    corpus = shutil.copytree(finished, tmp_path / "corpus")
    damage(corpus)
    with pytest.raises(VerifyError, match="rerun the same `rscurate build` command") as err:
        verify(corpus)
    assert str(corpus / named) in str(err.value)
    result = CliRunner().invoke(app, ["verify", str(corpus)])
    assert result.exit_code == 1 and named in result.output


def test_a_crash_in_the_card_leaves_no_corpus_and_the_same_command_resumes(
        source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "corpus"

    def broken_card(*args: object) -> None:
        raise RuntimeError("figure failed")

    with monkeypatch.context() as m:
        m.setattr("rscurate.card.write_card", broken_card)
        with pytest.raises(RuntimeError, match="figure failed"):
            run_build([source], out, unit_tiles=4)
    assert (out / "index.parquet").exists() and (out / "_work").exists()
    with pytest.raises(VerifyError, match="build.json"):
        verify(out)
    messages: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("rscurate")
    # caplog's own handler is not enough: an in-process LocalCluster raises the root handlers' level while it runs
    caplog.set_level(logging.INFO, logger="rscurate")
    log.addHandler(handler)
    try:
        run_build([source], out, unit_tiles=4)
    finally:
        log.removeHandler(handler)
    assert "resuming: 2 of 2 units done" in messages
    verify(out)


def test_out_that_is_a_file_is_refused_before_any_work(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus.parquet"
    out.write_text("not a folder")
    with pytest.raises(OutDirError, match=f"--out {out} is a file"):
        run_build([source], out)
    result = CliRunner().invoke(app, ["build", "--sources", str(source), "--out", str(out), "--quiet"])
    assert result.exit_code == 2 and "is a file" in result.output


def test_a_folder_of_other_files_is_refused_unless_overwrite(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    (out / "shards").mkdir(parents=True)
    (out / "shards" / "stray.parquet").write_bytes(b"PAR1")
    with pytest.raises(OutDirError, match="not an rscurate build.*--overwrite"):
        run_build([source], out)
    assert sorted(p.name for p in out.rglob("*")) == ["shards", "stray.parquet"], "nothing was touched"
    run_build([source], out, overwrite=True)
    assert not (out / "shards" / "stray.parquet").exists()
    assert verify(out)["tiles"] == 8


def test_another_corpus_is_refused_and_the_same_one_rebuilt(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    run_build([source], out)
    run_build([source], out, workers=1)  # the same inputs again (worker count does not decide the output)
    verify(out)
    with pytest.raises(OutDirError, match="corpus of other manifests or settings"):
        run_build([source], out, radius=0)
    source.write_text(source.read_text().replace("size: 128", "size: 64"))
    with pytest.raises(OutDirError, match="--overwrite"):
        run_build([source], out)
    assert run_build([source], out, overwrite=True).kept == 32
    source.write_text(source.read_text().replace("license: CC0-1.0", "license: CC0-1.0\ncitation: edited"))
    run_build([source], out)  # card text changes no tile: still the same corpus
    verify(out)


def test_a_killed_build_of_other_inputs_is_refused(source: Path, tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    (out / "_work").mkdir(parents=True)
    (out / "_work" / "inputs.json").write_text(json.dumps({"fingerprint": "another build"}))
    with pytest.raises(OutDirError, match="killed build of other manifests"):
        run_build([source], out)
