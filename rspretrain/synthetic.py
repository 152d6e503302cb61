"""A synthetic corpus in the rscurate shard format: for tests, benchmarks and demos without downloads.

Tiles are structured, not white noise: a smooth field plus (for half of them, labelled "built") sharp
rectangles and stripes, so HOG has real texture to rank and a probe has something to learn. The corpus
also holds tiles the usual band selection must skip (RGB without B08) and rows whose bytes are corrupt.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rscurate.band_stats import BandTileStats, accumulate, summarise
from rscurate.codec import encode_array
from rscurate.quality import TileStats, tile_stats
from rscurate.schema import SHARD
from rscurate.units import content_sha256

S2_BANDS = ["B02", "B03", "B04", "B08"]
S2_WAVES = [0.49, 0.56, 0.665, 0.842]
RGB_BANDS = ["red", "green", "blue"]


def smooth_field(rng: np.random.Generator, channels: int, size: int, coarse: int = 4) -> np.ndarray:
    """Low-frequency noise: a coarse random grid upsampled bilinearly (C, size, size) in [0, 1]."""
    grid = rng.random((channels, coarse, coarse))
    xs = np.linspace(0, coarse - 1, size)
    i0 = np.floor(xs).astype(int).clip(0, coarse - 2)
    t = xs - i0
    rows = grid[:, i0, :] * (1 - t)[None, :, None] + grid[:, i0 + 1, :] * t[None, :, None]
    return rows[:, :, i0] * (1 - t) + rows[:, :, i0 + 1] * t


def textured_tile(rng: np.random.Generator, channels: int, size: int, built: bool, contrast: float = 1.0,
                  noise: float = 0.0) -> np.ndarray:
    """Smooth field; when `built`, add sharp-edged rectangles and a stripe pattern scaled by `contrast`; then
    Gaussian pixel noise of std `noise` on every tile (values clipped to [0, 1])."""
    tile = 0.3 * smooth_field(rng, channels, size)
    if built:
        for _ in range(3):
            y, x = rng.integers(0, size - 8, 2)
            h, w = rng.integers(4, size // 2, 2)
            tile[:, y : y + h, x : x + w] += contrast * rng.uniform(0.3, 0.6, (channels, 1, 1))
        period = int(rng.integers(3, 7))
        stripes = ((np.arange(size) // period) % 2).astype(float)
        tile += contrast * 0.2 * stripes[None, None, :]
    if noise:
        tile += rng.normal(0, noise, tile.shape)
    return np.clip(tile, 0, 1)


def _tile_stats(tile: np.ndarray, nodata: float | None) -> TileStats:
    """The statistics rscurate computes for a tile: valid pixels are those not nodata in every band."""
    valid = ~np.all(tile == nodata, axis=0) if nodata is not None else np.ones(tile.shape[1:], bool)
    return tile_stats(tile, valid, nodata)


def _row(
    tile: np.ndarray, bands, waves, label, source: str, i: int, image: bytes | None = None, nodata=None
) -> dict:
    c, h, w = tile.shape
    stats = _tile_stats(tile, nodata)
    return {
        "id": hashlib.sha1(f"{source}-{i}".encode()).hexdigest()[:16],
        "source": source,
        "scene": f"{source}/scene_{i // 8}.tif",
        "x": (i % 8) * w,
        "y": 0,
        "width": w,
        "height": h,
        "crs": "EPSG:32633",
        "minx": 0.0,
        "miny": 0.0,
        "maxx": float(w * 10),
        "maxy": float(h * 10),
        "gsd_m": 10.0,
        "bands": list(bands),
        "wavelengths_um": list(waves),
        "dtype": str(tile.dtype),
        "channels": c,
        "encoding": "npy.zst",
        "sha256": content_sha256(tile),
        "phash": int(i),
        "nodata": nodata,
        "nodata_fraction": stats.nodata_fraction,
        "valid_pixels": stats.valid_pixels,
        "band_mean": stats.column("mean"),
        "band_std": stats.std,
        "band_min": stats.column("min"),
        "band_max": stats.column("max"),
        "label": label,
        "image": encode_array(tile) if image is None else image,
    }


def make_corpus(
    root: Path,
    n_s2: int = 48,
    n_rgb: int = 8,
    n_corrupt: int = 1,
    size: int = 40,
    rows_per_group: int = 4,
    rows_per_shard: int = 24,
    seed: int = 0,
    n_s2_reflectance: int = 0,
    n_nodata: int = 0,
    s2_names: list[str] = S2_BANDS,
    contrast: float = 1.0,
    noise: float = 0.0,
) -> Path:
    """Write corpus/shards/part-NNNNN.parquet + stats.json; returns the corpus folder.

    n_s2 uint16 4-band tiles (labels built/natural alternate), n_rgb uint8 RGB tiles (these lack B08),
    n_corrupt rows whose bytes do not decode, and n_s2_reflectance float32 tiles with the same band names
    as the uint16 ones but reflectance scale (source "s2_reflectance": what per-source statistics are for).
    n_nodata uint16 S2 tiles have their left quarter set to nodata (0), as scene-edge tiles do.
    `s2_names` renames the 4-band tiles' bands (e.g. blue, green, red, nir: what an RGB preset selects);
    `contrast` and `noise` make the labelled tiles' classes harder to tell apart (textured_tile).
    Row order is shuffled so every shard mixes kinds. stats.json has global and per-source band statistics.
    """
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    stats_of: list[tuple[str, list[str], str, list[BandTileStats]]] = []  # source, bands, dtype, band stats

    def add(tile: np.ndarray, bands: list[str], waves: list, label: str | None, source: str, i: int,
            nodata: float | None = None) -> None:
        rows.append(_row(tile, bands, waves, label, source, i, nodata=nodata))
        stats_of.append((source, bands, tile.dtype.name, _tile_stats(tile, nodata).bands))

    for i in range(n_s2):
        built = i % 2 == 0
        tile = (textured_tile(rng, 4, size, built, contrast, noise) * 4000 + 500).astype(np.uint16)
        add(tile, s2_names, S2_WAVES, "built" if built else "natural", "s2", i)
    for i in range(n_s2_reflectance):
        tile = (textured_tile(rng, 4, size, i % 2 == 0) * 0.4 + 0.05).astype(np.float32)
        add(tile, S2_BANDS, S2_WAVES, None, "s2_reflectance", i)
    for i in range(n_nodata):
        tile = (textured_tile(rng, 4, size, True) * 4000 + 500).astype(np.uint16)
        tile[:, :, : size // 4] = 0
        add(tile, S2_BANDS, S2_WAVES, None, "s2_edge", i, nodata=0.0)
    for i in range(n_rgb):
        tile = (textured_tile(rng, 3, size + 8, i % 2 == 0) * 255).astype(np.uint8)
        add(tile, RGB_BANDS, [0.65, None, 0.48], None, "rgb", i)
    for i in range(n_corrupt):
        tile = np.zeros((4, size, size), np.uint16)
        rows.append(_row(tile, S2_BANDS, S2_WAVES, None, "broken", i, image=b"\x28\xb5\x2f\xfd not zstd"))
    order = rng.permutation(len(rows))
    rows = [rows[k] for k in order]
    return _write(root, rows, stats_of, rows_per_group, rows_per_shard, kept=len(rows) - n_corrupt)


def _write(
    root: Path, rows: list[dict], stats_of: list, rows_per_group: int, rows_per_shard: int, kept: int
) -> Path:
    """Shards of `rows` in order, and stats.json (global and per-source band statistics)."""
    shard_dir = Path(root) / "shards"
    shard_dir.mkdir(parents=True, exist_ok=True)
    for n, start in enumerate(range(0, len(rows), rows_per_shard)):
        chunk = rows[start : start + rows_per_shard]
        table = pa.Table.from_pylist(chunk, schema=SHARD)
        pq.write_table(table, shard_dir / f"part-{n:05d}.parquet", row_group_size=rows_per_group)

    per_source, overall = summarise(accumulate(*zip(*stats_of, strict=True)))
    stats = {
        "counts": {"kept": kept},
        "sources": {src: {"kept": sum(1 for r in rows if r["source"] == src), "bands": bands}
                    for src, bands in per_source.items()},
        "bands": overall,
    }
    (Path(root) / "stats.json").write_text(json.dumps(stats, indent=2))
    return Path(root)


MODIS_BANDS = ["B01", "B02", "B03", "B06", "B07", "B21", "B26", "B27", "B28", "B29", "B30", "B31", "B32", "B33"]
MODIS_WAVES = [0.645, 0.858, 0.469, 1.64, 2.13, 3.959, 1.375, 6.715, 7.325, 8.55, 9.73, 11.03, 12.02, 13.335]
_MODIS_EMISSIVE = {"B21", "B27", "B28", "B29", "B30", "B31", "B32", "B33"}


def make_modis_corpus(
    root: Path, n: int = 32, size: int = 128, rows_per_group: int = 4, rows_per_shard: int = 16, seed: int = 0,
    source: str = "modis",
) -> Path:
    """A corpus of SatVision-TOA-shaped chips: float32 (14, size, size) in MODIS L1B band order, reflective bands as
    TOA reflectance % (5-85), emissive ones as brightness temperature K (210-300), all bands sharing one scene: a
    smooth field plus, on every other chip (label "cloudy"), sharp-edged clouds, bright in the reflective bands and
    cold in the emissive ones."""
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    stats_of: list = []
    for i in range(n):
        scene = 0.4 * smooth_field(rng, 1, size)[0]
        for _ in range(2 if i % 2 == 0 else 0):  # clouds: sharp-edged blocks, bright and cold
            y, x = rng.integers(0, size // 2, 2)
            h, w = rng.integers(size // 8, size // 2, 2)
            scene[y : y + h, x : x + w] += rng.uniform(0.3, 0.6)
        scene = np.clip(scene, 0, 1)
        gains = rng.uniform(0.6, 1.0, len(MODIS_BANDS))
        bands = [
            300 - 90 * gain * scene if name in _MODIS_EMISSIVE else 5 + 80 * gain * scene
            for name, gain in zip(MODIS_BANDS, gains, strict=True)
        ]
        tile = np.stack(bands).astype(np.float32)
        rows.append(_row(tile, MODIS_BANDS, MODIS_WAVES, "cloudy" if i % 2 == 0 else "clear", source, i))
        stats_of.append((source, MODIS_BANDS, tile.dtype.name, _tile_stats(tile, None).bands))
    return _write(root, rows, stats_of, rows_per_group, rows_per_shard, kept=n)
