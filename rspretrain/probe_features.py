"""Which tiles a probe uses, the encoders it compares, and their cached features.

Tiles are chosen from metadata (id, sha256, bands, label: no image bytes), so `max_tiles` samples each class in
proportion instead of taking the first tiles in storage order, and cached features are found before any decoding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rspretrain.augment import resize
from rspretrain.corpus import Corpus
from rspretrain.export import WEIGHTS, encoder_from_model_args, load_timm, timm_state_dict
from rspretrain.tiles import ROW_COLUMNS, CorruptTile, MissingBands, TileReader

FEATURE_VERSION = "mean-and-patch-tokens-v2"  # part of the cache key: bump when features change meaning


@dataclass
class ProbeTiles:
    """The labelled tiles of a probe: where they are, what they are called, and their content hashes."""

    ids: list[str]
    sha256: list[str | None]
    labels: list[str]
    locations: list[tuple[int, int]]  # (row group index in corpus.row_groups, row within it)

    def __add__(self, other: ProbeTiles) -> ProbeTiles:
        """These tiles then `other`'s (one feature pass over a query and a gallery)."""
        return ProbeTiles(self.ids + other.ids, self.sha256 + other.sha256, self.labels + other.labels,
                          self.locations + other.locations)


def export_config(export_dir: Path) -> dict[str, Any]:
    """An export's config.json (what probe and retrieve need of it), or an error naming the folder and the fix."""
    path = Path(export_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{export_dir}: no config.json; pass a folder written by `rspretrain export`")
    return json.loads(path.read_text())


def select_tiles(corpus: Corpus, bands: list[str], max_tiles: int | None, seed: int) -> ProbeTiles:
    """Labelled tiles carrying every band; with max_tiles, a seeded sample stratified by class."""
    ids, shas, labels, locs = [], [], [], []
    for g, group in enumerate(corpus.row_groups):
        table = corpus.read_row_group(group, ["id", "sha256", "bands", "label"]).to_pydict()
        for i, label in enumerate(table.get("label", [None] * group.num_rows)):
            if label is None or not set(bands) <= set(table["bands"][i] or []):
                continue
            ids.append(table["id"][i])
            shas.append(table.get("sha256", [None] * group.num_rows)[i])
            labels.append(str(label))
            locs.append((g, i))
    if not labels:
        raise ValueError(
            f"{corpus.root}: no labelled tile with bands {bands}; probes need a `label` column "
            "(build the corpus with `labels: {mode: folder}` or `labels: {file, column}` in the manifest; "
            "docs/manifests.md, Labels)"
        )
    keep = np.arange(len(labels))
    if max_tiles and max_tiles < len(labels):
        rng = np.random.default_rng(seed)
        names, counts = np.unique(labels, return_counts=True)
        quota = {n: max(1, round(c * max_tiles / len(labels))) for n, c in zip(names, counts, strict=True)}
        arr = np.asarray(labels)
        keep = np.sort(np.concatenate([rng.permutation(np.nonzero(arr == n)[0])[: quota[n]] for n in names]))
    return ProbeTiles(
        [ids[i] for i in keep], [shas[i] for i in keep], [labels[i] for i in keep], [locs[i] for i in keep]
    )


def load_images(corpus: Corpus, tiles: ProbeTiles, bands: list[str], img_size: int, normalise: str) -> torch.Tensor:
    """The tiles decoded, band-selected, resized to img_size and normalised as in training (`data.normalise`)."""
    reader = TileReader(corpus, bands=bands, normalise=normalise)
    wanted: dict[int, list[int]] = {}
    for g, i in tiles.locations:
        wanted.setdefault(g, []).append(i)
    decoded: dict[tuple[int, int], torch.Tensor] = {}
    for g, rows in wanted.items():
        table = corpus.read_row_group(corpus.row_groups[g], ROW_COLUMNS).to_pydict()
        for i in rows:
            try:
                tile, plan = reader.raw({k: v[i] for k, v in table.items()})
            except (CorruptTile, MissingBands) as err:
                raise ValueError(f"{corpus.root}: labelled tile {table['id'][i]} cannot be read ({err})") from err
            decoded[(g, i)] = TileReader.normalise(resize(tile, img_size), plan)
    return torch.stack([decoded[loc] for loc in tiles.locations])


def random_init_model(export_dir: Path, seed: int) -> nn.Module:
    """The export's timm architecture holding *our* initialisation (the ViT: MAE's xavier/LayerNorm init, sin-cos
    positions; the SwinV2: timm's init with our patch embedding): the baseline a pretrained encoder must beat is
    what pretraining started from."""
    config = export_config(export_dir)
    torch.manual_seed(seed)
    encoder = encoder_from_model_args(config)
    model = load_timm(export_dir, pretrained=False)
    model.load_state_dict(timm_state_dict(encoder, None))
    return model


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled, tokens): the mean of the final (normed) patch tokens in float32 (MAE-style encoders probe better
    by patches than by cls) and the patch tokens themselves in float16 (half the memory; the attentive probe)."""
    model.eval()
    pooled, tokens = [], []
    for i in range(0, len(images), batch):
        features = model.forward_features(images[i : i + batch])
        # a ViT's (B, prefix + N, D) tokens, or a SwinV2's final (B, h, w, F) map, as (B, N, width) patch tokens
        patches = features.flatten(1, 2) if features.ndim == 4 else features[:, model.num_prefix_tokens :]
        pooled.append(patches.mean(1).float())
        tokens.append(patches.half())
    return torch.cat(pooled), torch.cat(tokens)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_key(encoder: str, tiles: ProbeTiles, config: dict[str, Any]) -> str:
    """Features depend on the weights (or the random-init seed), the tiles and the input recipe: hash them all."""
    recipe = {
        "encoder": encoder,
        "version": FEATURE_VERSION,
        "model_args": config["model_args"],
        "bands": config["bands"],
        "img_size": config["img_size"],
        "normalise": config.get("normalise", "global"),
        "tiles": [f"{i}:{s}" for i, s in zip(tiles.ids, tiles.sha256, strict=True)],
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:32]


class FeatureCache:
    """Features per (encoder, tiles, recipe) as .pt files, so repeated probes (new seeds, classifiers) skip the
    encoder; images are decoded only when some encoder misses. Pooled features (KEY.pt) stay in memory; patch
    tokens (KEY.tokens.pt, float16) are read from disk when asked for, so only one encoder's are held at a time."""

    def __init__(self, folder: Path, export_dir: Path, corpus: Corpus, tiles: ProbeTiles):
        self.folder, self.export_dir, self.corpus, self.tiles = Path(folder), Path(export_dir), corpus, tiles
        self.config = export_config(self.export_dir)
        self._images: torch.Tensor | None = None
        self._memo: dict[str, torch.Tensor] = {}
        self.hits = self.misses = 0

    def images(self) -> torch.Tensor:
        if self._images is None:
            self._images = load_images(
                self.corpus, self.tiles, self.config["bands"], self.config["img_size"],
                self.config.get("normalise", "global"),
            )
        return self._images

    def _path(self, encoder: str) -> Path:
        name = f"pretrained:{file_sha256(self.export_dir / WEIGHTS)}" if encoder == "pretrained" else encoder
        return self.folder / f"{cache_key(name, self.tiles, self.config)}.pt"

    def features(self, encoder: str) -> torch.Tensor:
        """Pooled features; `encoder` is "pretrained" or "random_init:SEED"."""
        if encoder in self._memo:
            return self._memo[encoder]
        path = self._path(encoder)
        tokens_path = path.with_suffix(".tokens.pt")
        if path.is_file() and tokens_path.is_file():
            self.hits += 1
            self._memo[encoder] = torch.load(path, map_location="cpu", weights_only=True)
            return self._memo[encoder]
        self.misses += 1
        if encoder == "pretrained":
            model = load_timm(self.export_dir)
        else:
            model = random_init_model(self.export_dir, int(encoder.split(":")[1]))
        feats, tokens = embed(model, self.images())
        self.folder.mkdir(parents=True, exist_ok=True)
        for value, target in ((tokens, tokens_path), (feats, path)):  # pooled last: its file marks both complete
            tmp = target.with_suffix(".tmp")
            torch.save(value, tmp)
            tmp.replace(target)
        self._memo[encoder] = feats
        return feats

    def tokens(self, encoder: str) -> torch.Tensor:
        """(tiles, patches, width) float16 patch tokens of `encoder`, computed with its pooled features."""
        self.features(encoder)
        return torch.load(self._path(encoder).with_suffix(".tokens.pt"), map_location="cpu", weights_only=True)
