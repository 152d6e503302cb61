"""The training stream: coverage without overlap across workers and ranks, skips, normalisation, resume."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from pretrain_fixtures import (
    S2_BANDS,
    make_corpus,
    rewrite_rows,
    torch_single_thread,  # noqa: F401  (a fixture, used by pytestmark)
)

from rscurate.codec import decode, encode_array
from rspretrain.config import DataConfig
from rspretrain.corpus import Corpus
from rspretrain.data import CorpusDataset, DataPosition, batch_images, make_loader

pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Corpus:
    return Corpus(make_corpus(tmp_path_factory.mktemp("corpus")))


def s2_cfg(**kw) -> DataConfig:
    return DataConfig(bands=list(S2_BANDS), shuffle_buffer=kw.pop("shuffle_buffer", 8), **kw)


def good_ids(corpus: Corpus) -> set[str]:
    ids = set()
    for shard in corpus.shards:
        t = pq.read_table(shard, columns=["id", "source"]).to_pydict()
        ids |= {i for i, s in zip(t["id"], t["source"], strict=True) if s == "s2"}
    return ids


def take(loader, n: int) -> list[dict]:
    return list(itertools.islice(iter(loader), n))


@pytest.mark.parametrize("world,workers", [(1, 0), (1, 2), (2, 2)])
def test_first_epoch_covers_every_good_tile_exactly_once(corpus, world, workers):
    seen = Counter()
    skipped = Counter()
    for rank in range(world):
        ds = CorpusDataset(corpus, 16, s2_cfg(), seed=3, num_workers=workers, rank=rank, world=world)
        # three nominal epochs' worth, so every stream has drained epoch 0 through its shuffle buffer
        for batch in take(make_loader(ds, 4), 3 * corpus.num_rows // (4 * world)):
            for i, epoch in zip(batch["id"], batch["epoch"].tolist(), strict=True):
                if epoch == 0:
                    seen[i] += 1
            skipped["corrupt"] += int(batch["skipped_corrupt"].sum())
            skipped["bands"] += int(batch["skipped_bands"].sum())
    assert set(seen) == good_ids(corpus)
    assert max(seen.values()) == 1
    # each epoch skips the 8 RGB tiles (no B08) and the corrupt row; epoch 0 has been drained completely
    assert skipped["bands"] >= 8
    assert skipped["corrupt"] >= 1


def test_a_finite_pass_yields_each_good_tile_once_and_counts_every_skip(corpus):
    ds = CorpusDataset(corpus, 16, s2_cfg(), num_workers=0, epochs=1)
    ids = [sample["id"] for sample in ds]
    assert sorted(ids) == sorted(good_ids(corpus))
    assert ds.stats == {"rows": 57, "samples": 48, "skipped_corrupt": 1, "skipped_unreadable": 0, "skipped_bands": 8}


def test_normalisation_uses_stats_json_by_band_name(corpus):
    cfg = DataConfig(bands=["B08", "B02"], shuffle_buffer=1)
    ds = CorpusDataset(corpus, 40, cfg, num_workers=0, augment=False)
    sample = next(iter(ds))
    rows = {}
    for shard in corpus.shards:
        t = pq.read_table(shard).to_pylist()
        rows.update({r["id"]: r for r in t})
    row = rows[sample["id"]]
    raw = decode(row["image"], row["encoding"]).astype(np.float32)
    bands = corpus.stats["bands"]
    expected = np.stack(
        [
            (raw[3] - bands["B08"]["mean"]) / bands["B08"]["std"],
            (raw[0] - bands["B02"]["mean"]) / bands["B02"]["std"],
        ]
    )
    np.testing.assert_allclose(sample["image"].numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sample["wavelengths"].numpy(), [0.842, 0.49], rtol=1e-6)


def test_in_chans_refuses_tiles_whose_first_bands_are_other_bands(corpus):
    """RGB tiles (red, green, blue) and S2 tiles (B02 blue, B03, B04 red): the first three channels would be
    opposite colours in the two; the old reader took them as is and the model learned a mixture."""
    with pytest.raises(ValueError, match=r"\['B02', 'B03', 'B04'\] \(49 tiles\); \['red', 'green', 'blue'\] \(8 "):
        CorpusDataset(corpus, 24, DataConfig(in_chans=3, shuffle_buffer=4), num_workers=0)


def test_in_chans_reorders_tiles_that_store_the_same_bands_in_another_order(tmp_path):
    root = make_corpus(tmp_path, n_s2=12, n_rgb=0, n_corrupt=0)
    flipped = set()

    def store_reversed(row: dict) -> dict:  # a third of the tiles store B04, B03, B02 (and no B08)
        if len(flipped) == 4:
            return row
        flipped.add(row["id"])
        array = decode(row["image"], row["encoding"])[2::-1]
        return {**row, "image": encode_array(np.ascontiguousarray(array)), "bands": row["bands"][2::-1],
                "wavelengths_um": row["wavelengths_um"][2::-1], "channels": 3}

    rewrite_rows(root, store_reversed)
    corpus = Corpus(root)
    names = ["B02", "B03", "B04"]
    mean, std = corpus.band_mean_std(names, "s2")
    raw = {}
    for shard in corpus.shards:
        raw.update({r["id"]: r for r in pq.read_table(shard).to_pylist()})
    samples = list(CorpusDataset(corpus, 40, DataConfig(in_chans=3, shuffle_buffer=1), num_workers=0,
                                 augment=False, epochs=1))
    assert len(samples) == 12 and len(flipped) == 4
    for sample in samples:
        row = raw[sample["id"]]
        by_name = decode(row["image"], row["encoding"])[[row["bands"].index(n) for n in names]]
        expected = (by_name.astype(np.float32) - mean[:, None, None]) / std[:, None, None]
        np.testing.assert_allclose(sample["image"].numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(sample["wavelengths"].numpy(), [0.49, 0.56, 0.665], rtol=1e-6)


def test_small_tiles_are_resized_up_and_augmentation_is_seeded(corpus):
    a = next(iter(CorpusDataset(corpus, 64, s2_cfg(), seed=1, num_workers=0)))
    b = next(iter(CorpusDataset(corpus, 64, s2_cfg(), seed=1, num_workers=0)))
    c = next(iter(CorpusDataset(corpus, 64, s2_cfg(), seed=2, num_workers=0)))
    assert a["image"].shape == (4, 64, 64)  # tiles are 40 px
    assert torch.equal(a["image"], b["image"])
    assert not torch.equal(a["image"], c["image"])


@pytest.mark.parametrize("workers,consumed", [(0, 5), (2, 5), (2, 6)])
def test_resume_continues_with_the_exact_next_batches(corpus, workers, consumed):
    def loader(position=None):
        ds = CorpusDataset(corpus, 16, s2_cfg(), seed=7, num_workers=workers)
        if position is not None:
            ds.resume_from(position)
        return make_loader(ds, 4)

    straight = take(loader(), consumed + 6)
    position = DataPosition()
    for batch in straight[:consumed]:
        position.advance(batch)
    resumed = take(loader(DataPosition.from_dict(position.to_dict())), 6)
    for a, b in zip(straight[consumed:], resumed, strict=True):
        assert a["id"] == b["id"]
        assert torch.equal(a["image"], b["image"])


def test_too_few_row_groups_for_the_streams_is_a_clear_error(corpus):
    with pytest.raises(ValueError, match="row groups cannot feed"):
        CorpusDataset(corpus, 16, s2_cfg(), num_workers=8, rank=0, world=4)


@pytest.mark.parametrize("mode", ["source", "global"])
def test_per_source_statistics_normalise_sources_that_share_band_names(tmp_path, mode):
    """uint16 DN and float reflectance tiles, both named B02..B08: per-source stats put both near N(0, 1)."""
    corpus = Corpus(make_corpus(tmp_path, n_s2=16, n_rgb=0, n_corrupt=0, n_s2_reflectance=16))
    cfg = DataConfig(bands=list(S2_BANDS), shuffle_buffer=1, normalise=mode)
    ds = CorpusDataset(corpus, 40, cfg, num_workers=0, augment=False, epochs=1)
    ids = {}
    for shard in corpus.shards:
        t = pq.read_table(shard, columns=["id", "source"]).to_pydict()
        ids.update(zip(t["id"], t["source"], strict=True))
    by_source: dict[str, list[torch.Tensor]] = {}
    for sample in ds:
        by_source.setdefault(ids[sample["id"]], []).append(sample["image"])
    means = {src: float(torch.stack(v).mean()) for src, v in by_source.items()}
    if mode == "source":
        assert all(abs(m) < 0.1 for m in means.values()), means
    else:
        assert means["s2_reflectance"] < -0.5 < means["s2"], means


def test_nodata_pixels_become_the_band_mean(tmp_path):
    corpus = Corpus(make_corpus(tmp_path, n_s2=0, n_rgb=0, n_corrupt=0, n_nodata=4, size=40))
    cfg = DataConfig(bands=list(S2_BANDS), shuffle_buffer=1)
    samples = list(CorpusDataset(corpus, 40, cfg, num_workers=0, augment=False, epochs=1))
    assert len(samples) == 4
    for sample in samples:
        image = sample["image"]
        assert torch.isfinite(image).all()
        assert torch.equal(image[:, :, :10], torch.zeros(4, 40, 10))  # the nodata quarter: mean -> 0
        assert image[:, :, 10:].abs().sum() > 0


def test_a_band_without_valid_pixels_is_refused_by_name(corpus):
    """stats.json writes a band with no valid pixel as null (issue 9.1); normalising by it would give NaN."""
    fake = Corpus(corpus.root)
    fake.__dict__["stats"] = {"bands": {"B02": {"count": 5, "mean": 1.0, "std": 2.0},
                                        "B08": {"count": 0, "mean": None, "std": None}}}
    with pytest.raises(ValueError, match=r"\['B08'\] have no valid pixel"):
        fake.band_mean_std(["B02", "B08"])
    assert fake.band_mean_std(["B02"])[0].tolist() == [1.0]


@pytest.mark.parametrize("workers", [0, 2])
def test_finishing_on_the_device_gives_the_same_images_as_finishing_in_the_workers(corpus, tmp_path, workers):
    """data.finish_on device: workers send stored-dtype crops, the consumer resizes, flips and normalises them:
    bit for bit the images the workers make with finish_on worker, for the same seed. uint16 DN tiles travel as
    uint16; beside float32 reflectance and nodata-filled tiles, a batch travels as float32."""
    mixed = Corpus(make_corpus(tmp_path, n_s2=16, n_rgb=0, n_corrupt=0, n_nodata=8, n_s2_reflectance=8))
    for source, dtype in ((corpus, torch.uint16), (mixed, torch.float32)):
        in_workers, on_device = (
            take(make_loader(CorpusDataset(source, 24, s2_cfg(finish_on=f), seed=4, num_workers=workers), 8), 6)
            for f in ("worker", "device")
        )
        for a, b in zip(in_workers, on_device, strict=True):
            assert a["id"] == b["id"] and "image" not in b
            assert b["crops"].dtype == dtype
            assert torch.equal(batch_images(b, 24, torch.device("cpu")), a["image"])


def test_finish_on_must_be_auto_worker_or_device():
    with pytest.raises(ValueError, match="data.finish_on must be auto, worker or device"):
        s2_cfg(finish_on="gpu")


def test_finish_on_auto_finishes_on_a_gpu_and_in_the_workers_on_a_cpu(corpus):
    """auto (the default): a CUDA trainer gets stored-dtype crops, a CPU trainer finished images; a setting wins."""
    assert s2_cfg().finish_on == "auto"
    for device_type, sent in (("cuda", "crops"), ("cpu", "image")):
        dataset = CorpusDataset(corpus, 24, s2_cfg(), seed=4, num_workers=0, device_type=device_type)
        assert sent in take(make_loader(dataset, 4), 1)[0]
    assert s2_cfg(finish_on="worker").finishing_on("cuda") == "worker"
    assert s2_cfg(finish_on="device").finishing_on("cpu") == "device"
