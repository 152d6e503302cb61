"""`rspretrain retrieve`: cross-date retrieval on real imagery, ground truth from footprints (no labels).

Two "dates" of one real Landsat crop (the second radiometrically changed, with sensor noise, same georeference),
built with --radius 0 so both are kept: each tile of one date has exactly one same-place tile in the other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_fixtures import (
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)
from typer.testing import CliRunner

from rspretrain.cli import app
from rspretrain.corpus import Corpus
from rspretrain.engine import train
from rspretrain.export import export
from rspretrain.probe_features import ProbeTiles, load_images
from rspretrain.retrieval import PlacedTiles, placed_tiles, recall_at, run_retrieval, true_matches
from tests.conftest import landsat_dates, run_build

pytestmark = pytest.mark.usefixtures("torch_single_thread")
BANDS = ["blue", "green", "red"]


@pytest.fixture(scope="module")
def two_dates(tmp_path_factory, sample_dir: Path) -> Path:
    """A corpus of 2 x 36 tiles (64 px): the Landsat crop and a later, greener, noisy acquisition of it."""
    root = tmp_path_factory.mktemp("retrieval")
    rng = np.random.default_rng(0)
    manifest = landsat_dates(sample_dir, root, 384, lambda data: {
        "date1": data,
        "date2": data * np.array([0.95, 1.10, 0.85])[:, None, None] * (1 + rng.normal(0, 0.02, data.shape)),
    }, tile=64)
    run_build([manifest], root / "corpus", radius=0)
    return root / "corpus"


@pytest.fixture(scope="module")
def exported(two_dates: Path) -> Path:
    run = two_dates.parent / "run"
    train(tiny_config("mae_vit_tiny", "data.bands=[blue, green, red]", "train.max_steps=2"), two_dates, run)
    return export(run, two_dates.parent / "export")


def test_footprints_pair_same_place_in_same_crs_only() -> None:
    """The largest-IoU gallery tile is the match when IoU >= 0.5; half-shifted tiles (IoU 1/3) and another CRS
    at the same coordinates are no match."""
    def placed(boxes: list[list[float]], crs: list[str]) -> PlacedTiles:
        n = len(boxes)
        return PlacedTiles(ProbeTiles([str(i) for i in range(n)], [None] * n, ["x"] * n, [(0, i) for i in range(n)]),
                           list(crs), np.asarray(boxes, dtype=float))

    query = placed([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], ["EPSG:1", "EPSG:1", "EPSG:1"])
    gallery = placed([[25, 0, 35, 10], [1, 1, 11, 11], [0, 0, 10, 10], [40, 0, 50, 10]],
                     ["EPSG:1", "EPSG:1", "EPSG:2", "EPSG:2"])
    assert true_matches(query, gallery).tolist() == [1, -1, -1]


def test_a_global_shift_of_one_date_does_not_make_every_query_find_the_same_tiles() -> None:
    """Gallery = the query features plus a large common offset (a hazier date): plain cosine sends every query to
    the gallery tiles most aligned with the offset (recall@1 0.5); centring each date finds them all."""
    gen = torch.Generator().manual_seed(0)
    query = torch.randn(30, 16, generator=gen) + 3
    gallery = query + 0.05 * torch.randn(30, 16, generator=gen) + torch.linspace(0, 40, 16)
    assert recall_at(query, gallery, np.arange(30), (1,))[1] == 1.0


def test_raw_pixels_find_the_other_date_and_wrong_pairs_do_not(two_dates: Path) -> None:
    """An identity "encoder" (the normalised pixels themselves) retrieves the same place at recall@1 >= 0.9
    (chance: 1/36); scoring it against a wrong pairing (each query's true match shifted by one) gives <= 0.2."""
    corpus = Corpus(two_dates)
    q, g = placed_tiles(corpus, "date1.tif", BANDS), placed_tiles(corpus, "date2.tif", BANDS)
    match = true_matches(q, g)
    assert len(q.tiles.ids) == len(g.tiles.ids) == 36 and (match >= 0).all() and len(set(match)) == 36
    both = ProbeTiles(*(getattr(q.tiles, f) + getattr(g.tiles, f) for f in ("ids", "sha256", "labels", "locations")))
    pixels = load_images(corpus, both, BANDS, 64, normalise="global").flatten(1)
    recall = recall_at(pixels[:36], pixels[36:], match, (1, 5))
    assert recall[1] >= 0.9 and recall[5] >= recall[1]
    assert recall_at(pixels[:36], pixels[36:], np.roll(match, 1), (1,))[1] <= 0.2


def test_cli_reports_recall_for_export_and_random_inits(exported: Path, two_dates: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["retrieve", str(exported), "--data", str(two_dates), "--query", "date1.tif", "--gallery", "date2.tif",
            "--seeds", "2", "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["query_tiles"] == report["gallery_tiles"] == report["scored_queries"] == 36
    assert report["chance"] == {"recall@1": 1 / 36, "recall@5": 5 / 36}
    assert len(report["random_init"]["recall@1"]["seeds"]) == 2 and len(report["pretrained"]["recall@1"]["seeds"]) == 1
    for encoder in ("pretrained", "random_init"):
        for metric in ("recall@1", "recall@5"):
            assert 0 <= report[encoder][metric]["mean"] <= 1
    assert "| random_init |" in (out / "report.md").read_text() and report["cache"]["misses"] == 3
    again = run_retrieval(exported, two_dates, "date1.tif", "date2.tif", out=out, seeds=2)
    assert again["cache"] == {"folder": str(out / "features"), "hits": 3, "misses": 0}
    assert again["random_init"] == report["random_init"]


def test_cli_names_unknown_acquisitions_and_refuses_one_date_against_itself(exported: Path, two_dates: Path) -> None:
    base = ["retrieve", str(exported), "--data", str(two_dates)]
    result = CliRunner().invoke(app, [*base, "--query", "date9.tif", "--gallery", "date2.tif"])
    assert result.exit_code == 1 and "date9.tif" in result.output and "date1.tif" in result.output
    result = CliRunner().invoke(app, [*base, "--query", "l8_dates", "--gallery", "date2.tif"])
    assert result.exit_code == 1 and "share tiles" in result.output
