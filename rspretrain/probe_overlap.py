"""Were the probe's tiles pretraining tiles? A probe on tiles the encoder was pretrained on measures memory as much
as representation, so `rspretrain probe` compares ids and content hashes with the pretraining corpus.

The pretraining corpus is the one recorded in the export's source checkpoint (`data`), or the one given; rscurate's
`id` hashes source, scene, window and pixels, and `sha256` the decoded pixels, so a re-tiled copy of the same
pixels matches by sha256 even under another id.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from rspretrain import checkpoint as ckpt
from rspretrain.corpus import Corpus
from rspretrain.probe_features import ProbeTiles

log = logging.getLogger(__name__)

OVERLAP_MODES = ("refuse", "drop", "warn")


class ProbeOverlap(ValueError):
    """Probe tiles were pretraining tiles and the caller asked to refuse."""


def pretraining_corpus(export_dir: Path, given: Path | None) -> Path | None:
    """The corpus the exported encoder was pretrained on: `given`, else the source checkpoint's record."""
    if given is not None:
        return Path(given)
    config = json.loads((Path(export_dir) / "config.json").read_text())
    source = config.get("source_checkpoint")
    if not source or not Path(source).is_file():
        return None
    data = ckpt.load(Path(source)).get("data")
    return Path(data) if data else None


def corpus_keys(corpus: Corpus) -> tuple[set[str], set[str]]:
    """All ids and sha256 of a corpus (two metadata columns, no image bytes)."""
    ids: set[str] = set()
    shas: set[str] = set()
    for group in corpus.row_groups:
        table = corpus.read_row_group(group, ["id", "sha256"]).to_pydict()
        ids.update(table.get("id", []))
        shas.update(s for s in table.get("sha256", []) if s)
    return ids, shas


def check_overlap(
    tiles: ProbeTiles, export_dir: Path, pretrain_data: Path | None, mode: str
) -> tuple[ProbeTiles, dict[str, Any]]:
    """The probe tiles to use and a record of the check; refuses (ProbeOverlap), drops or warns on overlap."""
    if mode not in OVERLAP_MODES:
        raise ValueError(f"--on-overlap must be one of {OVERLAP_MODES}, got {mode!r}")
    root = pretraining_corpus(export_dir, pretrain_data)
    if root is None or not (root / "shards").is_dir():
        message = (
            f"not checked: the pretraining corpus ({root or 'unrecorded'}) is not readable here; "
            "pass --pretrain-data CORPUS to check that probe tiles were not pretraining tiles"
        )
        log.warning(message)
        return tiles, {"checked": False, "message": message}
    ids, shas = corpus_keys(Corpus(root))
    hit = [i for i, (tid, sha) in enumerate(zip(tiles.ids, tiles.sha256, strict=True)) if tid in ids or sha in shas]
    record: dict[str, Any] = {"checked": True, "pretrain_data": str(root), "overlapping": len(hit), "mode": mode}
    if not hit:
        return tiles, record
    message = (
        f"{len(hit)} of {len(tiles.ids)} probe tiles are also in the pretraining corpus {root} "
        f"(same id or sha256, e.g. {', '.join(tiles.ids[i] for i in hit[:3])})"
    )
    if mode == "refuse":
        raise ProbeOverlap(
            f"{message}; probe on a labelled corpus disjoint from pretraining, or pass --on-overlap drop "
            "(leave them out) or --on-overlap warn (keep them, for plumbing checks only)"
        )
    record["message"] = message
    log.warning(message)
    if mode == "warn":
        return tiles, record
    keep = sorted(set(range(len(tiles.ids))) - set(hit))
    if not keep:
        raise ProbeOverlap(f"{message}: dropping them leaves no probe tile")
    return (
        ProbeTiles(
            [tiles.ids[i] for i in keep],
            [tiles.sha256[i] for i in keep],
            [tiles.labels[i] for i in keep],
            [tiles.locations[i] for i in keep],
        ),
        record,
    )
