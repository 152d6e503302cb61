"""Per-tile quality rules: nodata, low information and cloud, each giving a reason and a detail.

The rules look only at the tile, so memory stays bounded by the tile and the verdict does not
depend on which worker or in which order tiles are seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rscurate.band_stats import BandTileStats, band_tile_stats, dense_kind, masked_band_stats
from rscurate.manifest import Cloud, Quality
from rscurate.readers import data_mask

# Default `min_std` per dtype kind when the manifest leaves it unset: one count for integer
# data (a constant 8- or 16-bit tile), a tiny value for floats (reflectance is often 0..1).
_DEFAULT_MIN_STD = {"u": 1.0, "i": 1.0, "f": 1e-4}


@dataclass
class TileStats:
    """Per-band statistics over valid pixels; also what the index stores for each tile."""

    valid_pixels: int
    nodata_fraction: float
    bands: list[BandTileStats]

    @property
    def std(self) -> list[float]:
        return [b.std for b in self.bands]

    def column(self, name: str) -> list[float]:
        return [getattr(b, name) for b in self.bands]


def tile_stats(data: np.ndarray, valid: np.ndarray, nodata: float | None = None) -> TileStats:
    """Pixel validity counts from `valid` (pixels with data in some band); each band's statistics use only the
    pixels of `valid` where that band itself has data (readers.data_mask: finite and not `nodata`)."""
    n = int(np.count_nonzero(valid))  # valid.sum() casts the mask to integers first: ~10x slower
    frac = 1.0 - n / valid.size
    if n == 0:
        return TileStats(0, frac, [])
    if dense_kind(data.dtype):  # integers: counted under `valid`, nodata's bin emptied (the same per-band mask)
        where = valid if n < valid.size else None
        return TileStats(n, frac, [masked_band_stats(band, where, nodata) for band in data])
    flat = data.reshape(data.shape[0], -1)
    per_band = data_mask(data, nodata)
    if per_band is None:
        # A 1-D mask per band selects the pixels of data[:, valid], whose 2-D mask indexing is ~8x slower.
        mask = valid.reshape(-1) if n < valid.size else slice(None)
        return TileStats(n, frac, [band_tile_stats(band[mask]) for band in flat])
    masks = per_band.reshape(per_band.shape[0], -1) & valid.reshape(1, -1)
    return TileStats(n, frac, [band_tile_stats(band[m]) for band, m in zip(flat, masks, strict=True)])


def min_std_for(quality: Quality, dtype: str) -> float:
    if quality.min_std is not None:
        return quality.min_std
    return _DEFAULT_MIN_STD.get(np.dtype(dtype).kind, 1.0)


def check_units(quality: Quality, names: list[str], dtype: str, scaled: list[bool], path: str) -> None:
    """Refuse a brightness rule in physical units over integer bands whose scale nobody declared: 0.2 compared
    with Landsat DN calls every pixel cloud. Raises ValueError naming the file, the bands and the fixes."""
    rule = quality.cloud
    if rule is None or rule.brightness is None or rule.units == "stored" or np.dtype(dtype).kind == "f":
        return
    tested = rule.bands or names
    unscaled = [n for n, s in zip(names, scaled, strict=True) if n in tested and not s]
    if unscaled:
        raise ValueError(
            f"cloud.brightness {rule.brightness} is in physical units but {path} stores {dtype} bands {unscaled} "
            "without a scale/offset (no GeoTIFF scale/offset tags or HDF scale_factor): declare `scale`/`offset` "
            "on those bands in the manifest, or set `cloud.units: stored` with a threshold in stored values")


def cloud_fraction(
    rule: Cloud, data: np.ndarray, valid: np.ndarray, qa: dict[str, np.ndarray], names: list[str],
    scales: list[float] | None = None, offsets: list[float] | None = None,
) -> float:
    """Fraction of valid pixels flagged cloudy by the QA band rule or the brightness rule.

    With `units: physical` the brightness rule tests stored * scale + offset of each band (default 1 and 0)."""
    if not valid.any():
        return 0.0
    if rule.band is not None:
        q = qa[rule.band]
        cloudy = np.isin(q, rule.classes) if rule.classes else np.zeros(q.shape, bool)
        for bit in rule.bits:
            cloudy |= ((q.astype(np.int64) >> bit) & 1).astype(bool)
    else:
        picked = [names.index(b) for b in rule.bands] if rule.bands else list(range(len(names)))
        tested = data[picked]
        if rule.units == "physical" and scales is not None and offsets is not None:
            tested = tested * np.array(scales)[picked, None, None] + np.array(offsets)[picked, None, None]
        cloudy = np.all(tested >= rule.brightness, axis=0)
    return float((cloudy & valid).sum() / valid.sum())


def judge(
    quality: Quality,
    data: np.ndarray,
    valid: np.ndarray,
    qa: dict[str, np.ndarray],
    stats: TileStats,
    names: list[str],
    scales: list[float] | None = None,
    offsets: list[float] | None = None,
) -> tuple[str, str] | None:
    """The first rule a tile fails, as (reason, detail), or None when it is kept.

    `scales`/`offsets` (per band of `data`) turn stored values into physical ones for the brightness rule."""
    if stats.valid_pixels == 0 or stats.nodata_fraction > quality.max_nodata_fraction:
        return "nodata", f"nodata_fraction={stats.nodata_fraction:.3f} > {quality.max_nodata_fraction}"
    threshold = min_std_for(quality, data.dtype.name)
    spread = max((b.std for b in stats.bands if b.count), default=0.0)
    if not spread >= threshold:  # `not >=`: a NaN spread (never expected) fails the rule rather than passing it
        return "low_information", f"max band std={spread:.4g} < min_std={threshold}"
    if quality.cloud is not None:
        frac = cloud_fraction(quality.cloud, data, valid, qa, names, scales, offsets)
        if frac > quality.cloud.max_fraction:
            return "cloud", f"cloud_fraction={frac:.3f} > {quality.cloud.max_fraction}"
    return None
