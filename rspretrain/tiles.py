"""Corpus row -> normalised float tensor: decode, select bands by name, normalise with stats.json.

Shared by the training stream and the probes so that a tile means the same thing everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rscurate.codec import decode, decode_mask
from rspretrain.corpus import Corpus
from rspretrain.modis_scaling import satvision_mean_std

# valid_mask is optional: corpora written before it existed lack the column (Corpus.read_row_group skips it)
ROW_COLUMNS = ["id", "source", "bands", "wavelengths_um", "encoding", "image", "label", "nodata", "valid_mask"]


def _invalid_pixels(array: np.ndarray, nodata: float | None, valid_mask: bytes | None) -> np.ndarray | None:
    """(H, W) mask of invalid pixels: the stored validity mask where the row has one (alpha, internal masks),
    else pixels whose every band equals nodata (rscurate's definition of an invalid pixel)."""
    stored = decode_mask(valid_mask)
    if stored is not None:
        if stored.shape != array.shape[1:]:
            raise ValueError(f"valid_mask of shape {stored.shape} does not fit a tile of shape {array.shape}")
        mask = ~stored
    elif nodata is None or np.isnan(nodata):
        return None
    else:
        mask = np.all(array == np.asarray(nodata).astype(array.dtype), axis=0)
    return mask if mask.any() else None


def band_normalisation(
    corpus: Corpus, names: list[str], normalise: str, source: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-band (mean, std) of `data.normalise`: stats.json's (the source's own with `source`, when `normalise` is
    source and stats.json has them) or SatVision-TOA's fixed MODIS scaling."""
    if normalise == "satvision":
        return satvision_mean_std(names)
    return corpus.band_mean_std(names, source if normalise == "source" else None)


class CorruptTile(ValueError):
    """The row's bytes do not decode to the array its metadata describes."""


class MissingBands(LookupError):
    """The tile lacks a band the run asks for."""


@dataclass(frozen=True)
class BandPlan:
    """For one tile layout (its band-name tuple): which channels to take and how to normalise them."""

    index: np.ndarray
    mean: torch.Tensor
    std: torch.Tensor
    wavelengths: torch.Tensor  # micrometres; nan where unknown


class TileReader:
    """Turns a row (bands, wavelengths, encoding, bytes) into a normalised (C, H, W) float32 tensor.

    Bands are chosen by name: `bands`, or the names `in_chans` stands for in this corpus (Corpus.in_chans_bands:
    the first C names of every tile, reordered by name, mixed band sets refused). Each chosen band is normalised
    with its own mean/std from stats.json, looked up by band name (and by the tile's source when `normalise` is
    source, see Corpus.band_mean_std), or SatVision-TOA's fixed scaling (`normalise` satvision).
    """

    def __init__(
        self,
        corpus: Corpus,
        bands: list[str] | None = None,
        in_chans: int | None = None,
        normalise: str = "source",
    ):
        if not bands and not in_chans:
            raise ValueError("choose channels with bands: [names] or in_chans: C")
        self.corpus = corpus
        self.normalise = normalise
        self.bands = list(bands) if bands else corpus.in_chans_bands(int(in_chans or 0))
        self._plans: dict[tuple, BandPlan] = {}

    def plan(
        self, row_bands: list[str], row_wavelengths: list[float | None] | None, source: str | None = None
    ) -> BandPlan:
        source = source if self.normalise == "source" else None
        key = (tuple(row_bands), tuple(row_wavelengths or ()), source)
        found = self._plans.get(key)
        if found is not None:
            return found
        missing = [b for b in self.bands if b not in row_bands]
        if missing:
            raise MissingBands(f"tile has bands {row_bands}, lacks {missing}")
        index = np.array([row_bands.index(b) for b in self.bands], dtype=np.int64)
        names = [row_bands[i] for i in index]
        mean, std = band_normalisation(self.corpus, names, self.normalise, source)
        waves = list(row_wavelengths or [])
        wl = [waves[i] if i < len(waves) and waves[i] is not None else float("nan") for i in index]
        plan = BandPlan(
            index=index,
            mean=torch.from_numpy(mean)[:, None, None],
            std=torch.from_numpy(std)[:, None, None],
            wavelengths=torch.tensor(wl, dtype=torch.float32),
        )
        self._plans[key] = plan
        return plan

    def decode(self, row: dict) -> DecodedTile:
        """The row's stored array, its plan and its invalid pixels; raises CorruptTile or MissingBands."""
        if not row.get("bands") or row.get("image") is None:
            raise CorruptTile(f"tile {row.get('id')}: no band names or no image bytes")
        plan = self.plan(row["bands"], row.get("wavelengths_um"), row.get("source"))
        try:
            array = decode(row["image"], row["encoding"])
        except Exception as err:  # any decoder failure means the stored bytes are unusable
            raise CorruptTile(f"tile {row.get('id')}: cannot decode {row['encoding']!r}: {err}") from err
        if array.ndim != 3 or array.shape[0] != len(row["bands"]):
            raise CorruptTile(
                f"tile {row.get('id')}: decoded shape {array.shape} but {len(row['bands'])} bands"
            )
        try:
            invalid = _invalid_pixels(array, row.get("nodata"), row.get("valid_mask"))
        except Exception as err:  # an undecodable or misshapen mask makes the row unusable like bad image bytes
            raise CorruptTile(f"tile {row.get('id')}: bad valid_mask: {err}") from err
        return DecodedTile(array, plan, invalid)

    def raw(self, row: dict) -> tuple[torch.Tensor, BandPlan]:
        """Decoded, band-selected float32 tile (not yet normalised) and its plan."""
        tile = self.decode(row)
        pixels = tile.window(0, 0, *tile.shape).astype(np.float32, copy=False)
        return torch.from_numpy(pixels), tile.plan

    @staticmethod
    def normalise(tile: torch.Tensor, plan: BandPlan) -> torch.Tensor:
        return normalise(tile, plan.mean, plan.std)


def normalise(tile: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Per-band standardisation; mean and std are (C, 1, 1)."""
    return (tile - mean) / std


@dataclass(frozen=True)
class DecodedTile:
    """A row's decoded array (all stored bands, stored dtype) before band selection, cropping and conversion."""

    array: np.ndarray  # (bands, H, W)
    plan: BandPlan
    invalid: np.ndarray | None  # (H, W): nodata, masked pixels (None: none)

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape[1], self.array.shape[2]

    def window(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """The chosen bands of a window, in the stored dtype where every pixel is valid, else float32 with
        nodata, masked and NaN pixels set to the band mean (i.e. 0 after normalisation: no fake edges for HOG,
        no NaN in the loss). Cropping before converting keeps the float work to the pixels a sample uses."""
        crop = self.array[self.plan.index, top : top + height, left : left + width]  # fancy index: a copy
        floating = crop.dtype.kind == "f"
        if floating:
            crop = crop.astype(np.float32, copy=False)
        if self.invalid is None and (not floating or np.isfinite(crop).all()):
            return crop
        bad = self.invalid[None, top : top + height, left : left + width] if self.invalid is not None else False
        if floating:
            bad = bad | ~np.isfinite(crop)
        return np.where(bad, self.plan.mean.numpy(), crop.astype(np.float32, copy=False))
