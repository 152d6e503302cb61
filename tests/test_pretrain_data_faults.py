"""Training data faults: corrupt rows, and shards that vanish or are truncated during a run, are counted (also
across DataLoader workers), named, and skipped; or stop the run by option or past a limit, instead of crashing
or spinning on a corpus that is gone."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from pretrain_fixtures import (
    S2_BANDS,
    make_corpus,
    rewrite_rows,
    tiny_config,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rscurate.codec import decode, encode_array
from rspretrain import checkpoint as ckpt
from rspretrain.config import DataConfig
from rspretrain.corpus import Corpus
from rspretrain.data import SKIP_KINDS, CorpusDataset, DataFault, DataPosition, make_loader
from rspretrain.engine import Trainer

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def good_corpus(root: Path) -> Path:
    """48 good 4-band tiles in two shards of six 4-row row groups."""
    return make_corpus(root, n_s2=48, n_rgb=0, n_corrupt=0)


def cfg(**kw) -> DataConfig:
    return DataConfig(bands=list(S2_BANDS), shuffle_buffer=8, **kw)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def test_rows_that_do_not_decode_are_counted_and_skipped_or_stop_the_run_naming_the_shard(tmp_path):
    root = make_corpus(tmp_path, n_s2=12, n_rgb=0, n_corrupt=0)
    damaged: dict[str, str] = {}

    def damage(row: dict) -> dict:
        if len(damaged) == 0:  # bytes cut short: the zstd frame ends early
            damaged[row["id"]] = "truncated"
            return {**row, "image": row["image"][: len(row["image"]) // 2]}
        if len(damaged) == 1:  # a valid array of the wrong length: three bands where the row says four
            damaged[row["id"]] = "short"
            return {**row, "image": encode_array(np.ascontiguousarray(decode(row["image"], row["encoding"])[:3]))}
        return row

    rewrite_rows(root, damage)
    corpus = Corpus(root)
    ds = CorpusDataset(corpus, 16, cfg(), num_workers=0, epochs=1)
    ids = [s["id"] for s in ds]
    assert len(ids) == 10 and not set(ids) & set(damaged)
    assert ds.stats["skipped_corrupt"] == 2 and ds.stats["rows"] == 12

    with pytest.raises(DataFault, match=r"part-00000\.parquet row group \d+ row \d+: tile [0-9a-f]+: ") as err:
        list(CorpusDataset(corpus, 16, cfg(on_error="stop"), num_workers=0, epochs=1))
    assert "data.on_error=skip" in str(err.value)


def test_a_shard_vanishing_mid_run_is_skipped_and_every_worker_reports_its_skips(tmp_path):
    corpus = Corpus(good_corpus(tmp_path))
    lost = corpus.shards[1]
    lost_ids = set(pq.read_table(lost, columns=["id"])["id"].to_pylist())
    ds = CorpusDataset(corpus, 16, cfg(max_skip_fraction=0.5), num_workers=2)
    batches = iter(make_loader(ds, 4))
    taken = list(itertools.islice(batches, 2))
    lost.unlink()
    taken += list(itertools.islice(batches, 14))  # 64 samples: well past epoch 0 (24 good rows left per epoch)

    position = DataPosition()
    last, used, skips = defaultdict(int), defaultdict(int), defaultdict(int)
    # epoch 2's row groups are read well after the loss (earlier ones may already be prefetched): none are served
    late = {i for b in taken for i, e in zip(b["id"], b["epoch"].tolist(), strict=True) if e >= 2}
    assert late and not late & lost_ids
    for batch in taken:
        position.advance(batch)
        for k, (s, j) in enumerate(zip(batch["stream"].tolist(), batch["ordinal"].tolist(), strict=True)):
            last[s] = max(last[s], j)
            used[s] += 1
            skips[s] += sum(int(batch[kind][k]) for kind in SKIP_KINDS)
    # each worker's rows up to its last sample are exactly its samples plus the skips it reported
    assert set(last) == {0, 1}
    assert all(last[s] + 1 == used[s] + skips[s] for s in last)
    assert position.skipped_unreadable == sum(skips.values()) > 0
    assert position.skipped_corrupt == position.skipped_bands == 0


def test_stop_mode_names_the_vanished_shard_without_the_worker_traceback(tmp_path):
    corpus = Corpus(good_corpus(tmp_path))
    ds = CorpusDataset(corpus, 16, cfg(on_error="stop"), num_workers=2)
    corpus.shards[0].unlink()
    with pytest.raises(DataFault) as err:
        list(itertools.islice(make_loader(ds, 4), 30))
    message = str(err.value)
    assert message.startswith(f"{corpus.shards[0]} row group ") and "cannot be read" in message
    assert "Traceback" not in message and "data.on_error=skip" in message


def test_a_corpus_that_is_gone_stops_the_run_at_the_skip_limit_instead_of_spinning(tmp_path):
    corpus = Corpus(good_corpus(tmp_path))
    ds = CorpusDataset(corpus, 16, cfg(), num_workers=0)
    for shard in corpus.shards:
        shard.unlink()
    with pytest.raises(DataFault, match=r"51 of the 51 rows this data worker read could not be used.*"
                                        r"max_skip_fraction=0.05"):
        next(iter(ds))


def test_a_truncated_shard_is_refused_at_start_with_its_name(tmp_path):
    root = good_corpus(tmp_path)
    truncate(root / "shards/part-00001.parquet")
    with pytest.raises(ValueError, match=r"part-00001\.parquet: not a readable parquet shard.*rscurate verify"):
        CorpusDataset(Corpus(root), 16, cfg())  # planning reads every footer


def test_training_goes_on_past_a_shard_truncated_mid_run_and_logs_the_skips(tmp_path):
    root = good_corpus(tmp_path / "corpus")
    config = tiny_config("mae_vit_tiny", "train.max_steps=16", "data.num_workers=1", "data.max_skip_fraction=0.5")
    trainer = Trainer(config, root, tmp_path / "run")
    truncate(root / "shards/part-00000.parquet")  # after planning: the run has its row groups already
    try:
        result = trainer.fit()
    finally:
        trainer.close()
    assert result.steps == 16
    last = json.loads((tmp_path / "run/log.jsonl").read_text().splitlines()[-1])
    assert last["skipped_unreadable"] > 0 and last["skipped_corrupt"] == 0
    assert ckpt.load(result.last_checkpoint)["positions"][0]["skipped_unreadable"] == last["skipped_unreadable"]
