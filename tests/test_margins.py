"""Margins are counted: every pixel of a readable scene is in a tile or in `inputs.parquet`'s margin count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rscurate import coverage
from rscurate.coverage import covered_pixels
from tests.conftest import run_build, textured, write_manifest, write_tif


def _mask_count(windows: list[tuple[int, int, int, int]], width: int, height: int) -> int:
    mask = np.zeros((height, width), bool)
    for x, y, w, h in windows:
        mask[max(y, 0) : max(y + h, 0), max(x, 0) : max(x + w, 0)] = True
    return int(mask.sum())


@pytest.mark.parametrize("block_cells", [1, 7, 1 << 22])
def test_covered_pixels_is_the_union_of_windows(block_cells: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(coverage, "BLOCK_CELLS", block_cells)  # small blocks: the carry between blocks
    rng = np.random.default_rng(5)
    for _ in range(200):
        width, height = (int(v) for v in rng.integers(1, 50, 2))
        windows = [tuple(int(v) for v in (*rng.integers(-5, 50, 2), *rng.integers(0, 30, 2)))
                   for _ in range(int(rng.integers(0, 10)))]
        assert covered_pixels(windows, width, height) == _mask_count(windows, width, height), (windows, width, height)


def test_overlapping_grid_counts_each_pixel_once() -> None:
    windows = [(x, y, 128, 128) for y in (0, 64) for x in (0, 64, 128)]  # stride 64: sum 98,304 pixels
    assert covered_pixels(windows, 300, 200) == 256 * 192


@pytest.fixture(scope="module")
def margins_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("margins")
    rng = np.random.default_rng(11)
    write_tif(root / "data" / "wide.tif", textured(rng, 2, 200, 300))
    write_tif(root / "data" / "tiny.tif", textured(rng, 2, 60, 40))
    (root / "data" / "corrupt.tif").write_bytes(b"II*\x00" + bytes(200))
    manifest = write_manifest(root / "manifests" / "m.yaml", """\
        name: strided
        license: CC0-1.0
        root: ../data
        include: ["*.tif"]
        tile: {size: 128, stride: 64}
        """)
    run_build([manifest.parent], root / "corpus")
    return root / "corpus"


def test_inputs_record_pixels_read_and_pixels_in_tiles(margins_corpus: Path) -> None:
    inputs = pd.read_parquet(margins_corpus / "inputs.parquet").set_index("scene")
    cols = ["width", "height", "pixels", "pixels_tiled", "tiles_planned"]
    assert inputs.loc["wide.tif", cols].tolist() == [300, 200, 60_000, 256 * 192, 6]
    assert inputs.loc["tiny.tif", cols].tolist() == [40, 60, 2_400, 0, 0]  # too small: all margin
    assert inputs.loc["corrupt.tif", cols].tolist() == [0, 0, 0, 0, 0]  # unreadable: nothing was read


def test_card_and_stats_show_margins_per_source(margins_corpus: Path) -> None:
    source = json.loads((margins_corpus / "stats.json").read_text())["sources"]["strided"]
    assert (source["pixels"], source["pixels_tiled"]) == (62_400, 49_152)
    text = (margins_corpus / "README.md").read_text()
    section = text.split("\n## Pixels read and pixels in tiles\n", 1)[1].split("\n## ", 1)[0]
    assert "Grid tiling keeps only full tiles" in section
    assert "| strided | 62,400 | 49,152 | 13,248 | 21.2 % |" in section
