"""The embedded PyPI sample (real Landsat 7/8 and 4-band imagery) builds, verifies and deduplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from rscurate import open_corpus
from rscurate.verify import verify


def test_sample_corpus_verifies(sample_corpus: Path) -> None:
    checked = verify(sample_corpus)
    assert checked["tiles"] > 50 and checked["scenes"] == 12


def test_byte_identical_rgbn_copies_keep_one(sample_corpus: Path) -> None:
    index = pd.read_parquet(sample_corpus / "index.parquet")
    dups = pd.read_parquet(sample_corpus / "duplicates.parquet")
    copies = ["rgbn.tif", "rgbn_20160101.tif", "rgbn_20160401.tif", "rgbn_20160517.tif", "rgbn_20170203.tif"]
    kept = index[index["scene"].isin(copies)]
    # 515x403 px at 128 px on the scene's own grid (tile.anchor: scene, as solaris and TorchGeo cut): 4 x 3 tiles
    assert kept["scene"].nunique() == 1 and len(kept) == 12
    assert sorted(set(kept["x"])) == [0, 128, 256, 384] and sorted(set(kept["y"])) == [0, 128, 256]
    dropped = dups[dups["scene"].isin(copies)]
    assert len(dropped) == 4 * 12 and set(dropped["kind"]) == {"exact"}
    assert set(dropped["kept_id"]) == set(kept["id"])


def test_stack_wins_over_its_band_per_file_copy_by_priority(sample_corpus: Path) -> None:
    dups = pd.read_parquet(sample_corpus / "duplicates.parquet")
    row78 = dups[dups["scene"] == "LC08_L1TP_224078_20200518_20200518_01_RT_{band}.TIF"]
    assert len(row78) > 30
    assert set(row78["kept_source"]) == {"landsat8_l1tp_stack"}
    assert set(row78["kept_scene"]) == {"LC08_L1TP_224078_20200518_20200518_01_RT.TIF"}


def test_sample_stats_and_card(sample_corpus: Path) -> None:
    stats = json.loads((sample_corpus / "stats.json").read_text())
    assert set(stats["bands"]) == {"blue", "green", "red", "nir"}
    assert stats["sources"]["landsat8_l1tp_stack"]["bands"]["red"]["dtype"] == "uint16"
    assert stats["counts"]["excluded"].get("nodata", 0) > 0  # the rotated Landsat scene borders
    card = (sample_corpus / "README.md").read_text()
    assert card.startswith("---\n") and "rgbn" in card
    for fig in ("mosaic.png", "counts.png", "footprints.png"):
        assert (sample_corpus / "card" / fig).stat().st_size > 10_000


def test_sample_tiles_decode_with_band_names(sample_corpus: Path) -> None:
    corpus = open_corpus(sample_corpus)
    index = corpus.index.to_pandas()
    row = index[index["source"] == "landsat7_l2sp_b1"].iloc[0]
    arr, meta = corpus.tile(row["id"])
    assert arr.dtype.name == "float64" and arr.shape == (1, 128, 128) and meta["bands"] == ["blue"]
    assert meta["crs"] and meta["minx"] < meta["maxx"]
