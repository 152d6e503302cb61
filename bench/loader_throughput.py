"""Images/s of the training stream (read row groups, decode, select bands, crop, resize, flip, normalise) per
DataLoader worker count and data.finish_on. Prints one JSON line.

Each setting is timed twice with fresh loaders: `stream_per_s` while the loop only receives batches (what the
workers deliver; with finish_on device on a GPU this is what the trainer gets, the device finishing a batch in
microseconds), `images_per_s` while the loop also finishes every batch (batch_images) on --device, as the
trainer does; on a CPU that finishing competes with the workers for the same cores.

    python bench/loader_throughput.py --data corpus/ --bands red green blue --img-size 224 --workers 0 1 2
    python bench/loader_throughput.py --synthetic 512 --tile 256      # no corpus at hand: a synthetic one
    python bench/loader_throughput.py --in-chans 3 --finish-on worker device --repeat 3 --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from pathlib import Path

import torch

from rspretrain.config import DataConfig
from rspretrain.corpus import Corpus
from rspretrain.data import CorpusDataset, batch_images, make_loader
from rspretrain.synthetic import S2_BANDS, make_corpus


def _timed(loader, batches: int, finish) -> tuple[int, float, int]:
    """Images, seconds and bytes sent of `batches` batches, each passed to `finish` (None: only received)."""
    images, sent = 0, 0
    start = time.perf_counter()
    for b in itertools.islice(loader, batches):
        images += len(b["crop_shape"]) if "crops" in b else len(b["image"])
        sent += sum(v.nbytes for k, v in b.items() if k in ("image", "crops"))
        if finish is not None:
            finish(b)
    return images, time.perf_counter() - start, sent


def measure(
    corpus: Corpus, cfg: DataConfig, img_size: int, workers: int, batch: int, batches: int, device: torch.device
) -> dict:
    """Two passes of fresh loaders: the stream alone (the loop only receives batches, as a GPU trainer's host does
    when the device finishes them) and the finished images (batch_images on `device`, as the trainer does)."""

    def finish(b: dict) -> None:
        batch_images(b, img_size, device)
        if device.type == "cuda":
            torch.cuda.synchronize()

    rates = []
    for finisher in (None, finish):
        dataset = CorpusDataset(corpus, img_size, cfg, seed=0, num_workers=workers)
        loader = iter(make_loader(dataset, batch, pin_memory=device.type == "cuda"))
        next(loader)  # worker start-up and first row groups are not throughput
        images, seconds, sent = _timed(loader, batches, finisher)
        rates.append(images / seconds)
        del loader
    stream, finished = rates
    return {
        "finish_on": cfg.finish_on,
        "workers": workers,
        "images_per_s": round(finished, 1),
        "stream_per_s": round(stream, 1),
        "stream_per_worker": round(stream / max(workers, 1), 1),
        "kb_per_image": round(sent / images / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, help="corpus folder (default: a synthetic one)")
    parser.add_argument("--synthetic", type=int, default=512, help="tiles of the synthetic corpus")
    parser.add_argument("--tile", type=int, default=256, help="synthetic tile size in pixels")
    parser.add_argument(
        "--bands", nargs="*", help="band names (default: the synthetic corpus' four S2 bands)"
    )
    parser.add_argument("--in-chans", type=int, help="take the first C bands instead of naming them")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--finish-on", nargs="+", default=["worker"], choices=["worker", "device"])
    parser.add_argument("--device", default="cpu", help="where batches are finished (cpu or cuda)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over all settings (noise)")
    args = parser.parse_args()

    torch.set_num_threads(1)  # the main process only collates here; workers are what is measured
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = make_corpus(
                Path(tmp),
                n_s2=args.synthetic,
                n_rgb=0,
                n_corrupt=0,
                size=args.tile,
                rows_per_group=16,
                rows_per_shard=256,
            )
        bands = args.bands or (None if args.in_chans else list(S2_BANDS))
        corpus = Corpus(root)
        device = torch.device(args.device)
        results = [
            measure(corpus, cfg, args.img_size, w, args.batch, args.batches, device)
            for _ in range(args.repeat)
            for cfg in (
                DataConfig(bands=bands, in_chans=args.in_chans, shuffle_buffer=256, finish_on=f)
                for f in args.finish_on
            )
            for w in args.workers
        ]
    print(
        json.dumps(
            {
                "bench": "loader_throughput",
                "corpus": "synthetic" if args.data is None else str(args.data),
                "tiles": corpus.num_rows,
                "tile_px": args.tile if args.data is None else None,
                "bands": len(bands) if bands else args.in_chans,
                "device": args.device,
                "img_size": args.img_size,
                "batch": args.batch,
                "results": results,
            }
        )
    )


if __name__ == "__main__":
    main()
