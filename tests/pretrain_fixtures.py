"""Shared helpers for the rspretrain tests: the synthetic corpus and a CPU-second-sized run config."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from rscurate.schema import SHARD
from rspretrain.synthetic import RGB_BANDS, S2_BANDS, S2_WAVES, make_corpus, smooth_field, textured_tile

__all__ = [
    "RGB_BANDS",
    "S2_BANDS",
    "S2_WAVES",
    "TINY_OVERRIDES",
    "make_corpus",
    "rewrite_rows",
    "smooth_field",
    "textured_tile",
    "tiny_config",
    "torch_single_thread",
]


TINY_OVERRIDES = [
    "data.bands=[B02, B03, B04, B08]",
    "model.img_size=32",
    "model.depth=2",
    "model.decoder_depth=1",
    "train.batch_size=4",
    "data.shuffle_buffer=16",
    "data.num_workers=0",
    "train.tensorboard=false",
    "train.warmup_steps=2",
]


def rewrite_rows(root: Path, change: Callable[[dict], dict]) -> None:
    """Rewrite every shard row of a corpus through `change`, keeping shards and row groups (4 rows) as they were."""
    for shard in sorted((Path(root) / "shards").glob("*.parquet")):
        rows = [change(row) for row in pq.read_table(shard).to_pylist()]
        pq.write_table(pa.Table.from_pylist(rows, schema=SHARD), shard, row_group_size=4)


def tiny_config(preset: str = "selectivemae_vit_tiny", *overrides: str):
    """A CPU-second-sized run config from a shipped preset, for the fixture corpus."""
    from rspretrain.config import load_config

    root = Path(__file__).resolve().parent.parent
    return load_config(root / "configs" / f"{preset}.yaml", [*TINY_OVERRIDES, *overrides])


@pytest.fixture
def torch_single_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine two threads per op
    make every small kernel wait for a descheduled peer (tests ran 40x slower under load)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
