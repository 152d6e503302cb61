"""Windowed scene readers: memory follows the window, never the scene.

Every reader exposes the same small surface (size, dtype, georeferencing, band names and
`read(window)`), so slicing and quality code never knows which container a scene came from.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio._err import CPLE_BaseError
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import CRSError
from rasterio.transform import Affine
from rasterio.warp import reproject, transform
from rasterio.windows import Window, from_bounds

from rscurate.file_names import as_text, native_path
from rscurate.manifest import Band
from rscurate.object_store import Stamp, gdal_path, is_remote, local_copy, open_input
from rscurate.scene_view import view_shape

RGB_NAMES = ["red", "green", "blue"]
IMAGE_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}
GEOTIFF_SUFFIXES = {".tif", ".tiff"}
# GDAL drivers that decode a file as one compressed stream: damage anywhere leaves the rows after it suspect,
# and a window above the damage reads cleanly, so such a file is checked whole before any of its windows is used.
ONE_STREAM_DRIVERS = {"JPEG", "PNG"}
# GDAL settings under which a damaged file fails to read instead of yielding made-up pixels: libjpeg's
# "Corrupt JPEG data" warnings become errors, and PNGs decode row by row through libpng (GDAL's whole-image
# fast path returns a truncated PNG's missing rows as uninitialised memory, without an error or a warning).
STRICT_DECODE = {"GDAL_ERROR_ON_LIBJPEG_WARNING": "TRUE", "GDAL_PNG_WHOLE_IMAGE_OPTIM": "NO"}
CHECK_STRIP_BYTES = 16 * 2**20  # memory of one strip of rows when a whole file is decoded to check it


class DecodeError(RuntimeError):
    """GDAL warned while decoding pixels: the file, or the block under the window, is damaged."""


class SceneLeftOut(Exception):
    """A readable scene that the source's rules leave out whole (a night granule of a day-only MODIS source):
    recorded with its own `reason`, not as unreadable."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


class Refused(ValueError):
    """An input the build records under `reason` instead of reading; the message says why and what to do."""

    reason = "unreadable"


class BadGeoreference(Refused):
    """A CRS that PROJ cannot place on Earth, or a rotated/sheared geotransform: no north-up footprint exists, and
    footprints drive gsd, dedup and leakage checks, so a guessed one would be silently wrong."""

    reason = "bad_georeference"


class Changed(Refused):
    """The file's size or modification time differs from what discovery saw (rewritten, replaced or deleted since):
    its planned windows may not fit it. A rerun discovers it again."""

    reason = "changed"


def refusal_reason(err: BaseException) -> str:
    """The excluded.parquet reason of an error raised while opening or reading an input."""
    return err.reason if isinstance(err, Refused) else "unreadable"


class _GdalWarnings(logging.Handler):
    """GDAL warnings (rasterio logs them on `rasterio._err`) raised while this thread reads pixels.

    GDAL reports some damage only as a warning and returns what it could make up (libjpeg's "Corrupt JPEG
    data" inside a JPEG-compressed GeoTIFF block, for one): a read that warned must not become a tile.
    The handler is per process and collects per thread, as Dask worker threads read side by side."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._local = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        found = getattr(self._local, "found", None)
        if found is not None:
            found.append(record.getMessage())

    @contextmanager
    def raising(self) -> Iterator[None]:
        """Raise DecodeError naming the warnings if the block's reads logged any."""
        outer = getattr(self._local, "found", None)
        self._local.found = found = []
        try:
            yield
        finally:
            self._local.found = outer
        if found:
            raise DecodeError("GDAL warned while decoding: " + "; ".join(dict.fromkeys(found)))


_GDAL_LOG = logging.getLogger("rasterio._err")
_WARNINGS = _GdalWarnings()
_GDAL_LOG.addHandler(_WARNINGS)
if not _GDAL_LOG.isEnabledFor(logging.WARNING):  # a quiet logging set-up must not hide damage
    _GDAL_LOG.setLevel(logging.WARNING)


def error_text(err: BaseException) -> str:
    """`Type: message` of a read error, with GDAL's own words: rasterio's read errors only say "see previous
    exception" and chain the GDAL error (e.g. "libjpeg: Premature end of JPEG file") as their cause."""
    text = f"{type(err).__name__}: {err}"
    cause = err.__cause__
    while cause is not None:
        text += f" <- {cause}"
        cause = cause.__cause__
    return as_text(text)  # an OSError names the file, whose name may not be UTF-8


@dataclass(frozen=True)
class SceneRef:
    """One scene to read: a single file, a band-per-file group, one frame of an npy stack or an HDF granule."""

    source: str
    scene: str  # stable key: path(s) relative to the manifest root, '#t' for a frame of a time stack
    paths: tuple[str, ...]  # absolute paths or URLs (object storage); one per band for band-per-file scenes
    format: str  # geotiff | image | npy | modis_hdf4 | modis_l1b
    frame: int | None = None  # time index of a (T, ...) npy stack
    label: str | None = None
    stamps: tuple[Stamp, ...] = ()  # per path (size, mtime_ns or change token) at discovery; () when not checked


@dataclass
class ReadResult:
    data: np.ndarray  # (C, h, w) stored bands
    valid: np.ndarray  # (h, w) bool: pixel has data in at least one band (statistics mask each band further)
    qa: dict[str, np.ndarray]  # QA band name -> (h, w)


def data_mask(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """(C, H, W) mask of the values that are data: finite (NaN and infinity are never measurements) and not
    `nodata`; None when every value is, so callers can skip masking. Validity is per band: a band's fill
    or NaN never enters that band's statistics because another band has data at the pixel."""
    mask = np.isfinite(data) if np.issubdtype(data.dtype, np.floating) else None
    if nodata is not None and not np.isnan(nodata):
        has = data != np.asarray(nodata).astype(data.dtype)
        mask = has if mask is None else mask & has
    return mask


def valid_from_nodata(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """(H, W) mask of pixels with data in at least one band (see data_mask)."""
    mask = data_mask(data, nodata)
    return np.ones(data.shape[1:], dtype=bool) if mask is None else mask.any(axis=0)


def checked_nodata(nodata: float | None, dtype: str, path: str) -> float | None:
    """`nodata` if `dtype` can hold it exactly, else a ValueError naming the file, the value and the fix.

    Cast unchecked, -9999 on uint16 wraps to 55537 (masking real data) and 0.5 on uint8 truncates to 0."""
    if nodata is None or np.isnan(nodata):
        return nodata
    dt = np.dtype(dtype)
    if dt.kind == "f":
        fits = np.isinf(nodata) or abs(nodata) <= float(np.finfo(dt).max)
        limits = f"finite values up to {np.finfo(dt).max:g} in magnitude"
    else:
        info = np.iinfo(dt)
        fits = float(nodata).is_integer() and info.min <= nodata <= info.max
        limits = f"whole numbers {info.min}..{info.max}"
    if not fits:
        raise ValueError(f"{path}: nodata {nodata:g} cannot be held by its {dt.name} data ({limits}); set the "
                         f"source's `nodata` in the manifest to the file's real fill value, or leave it unset")
    return nodata


class SceneReader:
    """Base reader; subclasses fill the attributes in __init__ and implement _read."""

    width: int
    height: int
    dtype: str
    crs: str = ""
    transform: Affine | None = None
    whole_file_is_tile: bool = False  # the file's own bytes decode to exactly the stored bands
    one_stream: bool = False  # the pixels are one compressed stream (JPEG, PNG): check_decodes before use
    # overview() reads a fraction of the pixels (overview levels, a memory map sampled by stride), so planning signs
    # the scene from it; otherwise the tile pass assembles the view from the pixels it decodes (scene_view)
    cheap_overview: bool = False
    nodata: float | None = None
    bands: list[Band]
    # Per data band, GDAL's convention: physical = stored * scale + offset. `scaled` says the file or the manifest
    # declared them; a band without is (1, 0) and its physical units are unknown unless it holds floats.
    scales: list[float]
    offsets: list[float]
    scaled: list[bool]

    def __init__(self, ref: SceneRef, bands: list[Band], nodata: float | None):
        self.ref = ref
        self._declared_bands = bands
        self._nodata_override = nodata

    @property
    def data_bands(self) -> list[Band]:
        return [b for b in self.bands if not b.qa]

    def _set_scales(self, found: list[tuple[float, float]]) -> None:
        """Scale and offset of each data band: the manifest's where it declares one, else the file's (`found`, one
        (scale, offset) per band of self.bands, QA bands included)."""
        pairs = [(b, sc, off) for b, (sc, off) in zip(self.bands, found, strict=True) if not b.qa]
        self.scales = [b.scale if b.scale is not None else sc for b, sc, _ in pairs]
        self.offsets = [b.offset if b.offset is not None else off for b, _, off in pairs]
        self.scaled = [b.scale is not None or b.offset is not None or (sc, off) != (1.0, 0.0) for b, sc, off in pairs]

    def gsd_m(self) -> float | None:
        if self.transform is None or not self.crs:
            return None
        if any(b.gsd_m for b in self.data_bands):
            return min(b.gsd_m for b in self.data_bands if b.gsd_m)
        return float(abs(self.transform.a))

    def read(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None = None) -> ReadResult:
        """A window at full resolution, or resampled to `out_shape` (rows, cols) for a decimated view.

        Raises DecodeError when the decoder warned (run under STRICT_DECODE for GDAL to fail on damage)."""
        with _WARNINGS.raising():
            layers = self._read(x, y, w, h, out_shape)
            qa = {b.name: layers[i] for i, b in enumerate(self.bands) if b.qa}
            if qa or not isinstance(layers, np.ndarray):
                data = np.stack([layers[i] for i, b in enumerate(self.bands) if not b.qa])
            else:
                data = layers
            data = data.astype(self.dtype, copy=False)
            valid = self._valid(data, x, y, w, h)
        return ReadResult(data=data, valid=valid, qa=qa)

    def check_decodes(self, each: Callable[[int, ReadResult], None] | None = None) -> None:
        """Decode every pixel once, a strip of rows at a time (memory bounded by the strip), raising on the
        first decoder error or warning: how a one-stream file is judged before any of its windows is used.
        `each(row, strip)` sees every strip (the scene's view is assembled from them: no second decode)."""
        row_bytes = self.width * len(self.bands) * np.dtype(self.dtype).itemsize
        rows = max(1, CHECK_STRIP_BYTES // max(1, row_bytes))
        for y in range(0, self.height, rows):
            strip = self.read(0, y, self.width, min(rows, self.height - y))
            if each is not None:
                each(y, strip)

    def overview(self, max_side: int) -> ReadResult:
        """The whole scene shrunk so its longer side is at most `max_side`: what scene-level hashing sees.

        Averaged where the format allows (GDAL), so re-encoding noise and resampling wash out."""
        shape = view_shape(self.width, self.height, max_side)
        if shape == (self.height, self.width):
            return self.read(0, 0, self.width, self.height)
        return self.read(0, 0, self.width, self.height, shape)

    def grid_origin(self) -> tuple[int, int] | None:
        """The scene's first pixel as (column, row) of its CRS's pixel lattice (pixel index of x=0, y=0).

        Grid tiles anchored there line up across scenes on one lattice (overlapping Landsat rows, a crop
        and its parent), so their overlap yields the same tiles. None without a north-up georeference."""
        t = self.transform
        if t is None or not self.crs or t.b != 0 or t.d != 0:
            return None
        return int(np.floor(t.c / t.a + 1e-6)), int(np.floor(t.f / t.e + 1e-6))

    def _read(self, x: int, y: int, w: int, h: int,
              out_shape: tuple[int, int] | None = None) -> np.ndarray | list[np.ndarray]:
        """All bands (QA included) of the window, as a (C, h, w) array or a list of (h, w) layers."""
        raise NotImplementedError

    def _data_dtype(self, dtypes: list[str]) -> str:
        return np.result_type(*[d for d, b in zip(dtypes, self.bands, strict=True) if not b.qa]).name

    def _valid(self, data: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
        return valid_from_nodata(data, self.nodata)

    def bounds(self, x: int, y: int, w: int, h: int) -> tuple[float, float, float, float] | None:
        if self.transform is None or not self.crs:
            return None
        x0, y0 = self.transform @ (x, y)
        x1, y1 = self.transform @ (x + w, y + h)
        return min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)

    def lonlat_bounds(self, x: int, y: int, w: int, h: int) -> tuple[float, float, float, float] | None:
        """(lon_min, lat_min, lon_max, lat_max) of a window of a swath without a CRS (MODIS L1B); None elsewhere,
        where `bounds` in the scene's CRS says where the window is."""
        return None

    def close(self) -> None:
        """Release file handles."""

    def _name_bands(self, count: int) -> list[Band]:
        """Declared bands when they match the file, else b1..bn; a mismatch is an error naming both."""
        if not self._declared_bands:
            return [Band(name=f"b{i + 1}") for i in range(count)]
        if len(self._declared_bands) != count:
            names = [b.name for b in self._declared_bands]
            raise ValueError(f"the manifest declares {len(names)} bands {names} but the file has {count}")
        return self._declared_bands


def _gdal_scale(ds: rasterio.DatasetReader, index: int) -> tuple[float, float]:
    """(scale, offset) of a band from GDAL (GeoTIFF scale/offset tags); (1, 0) when the file has none."""
    scale, offset = ds.scales[index - 1], ds.offsets[index - 1]
    return (1.0 if scale is None else float(scale)), (0.0 if offset is None else float(offset))


def _hdf_scale(attrs: dict) -> tuple[float, float]:
    """(scale, offset) in GDAL's convention from HDF4 attributes, whose convention (MODIS, HDF4's SDsetcal) is
    physical = scale_factor * (stored - add_offset): so offset = -scale_factor * add_offset."""
    scale = float(attrs.get("scale_factor", 1.0))
    return scale, -scale * float(attrs.get("add_offset", 0.0)) + 0.0  # + 0.0: no -0.0 in the index


def _crs_string(crs: rasterio.crs.CRS | None) -> str:
    if crs is None:
        return ""
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _open_gdal(path: str) -> rasterio.DatasetReader:
    """rasterio.open, also for a file name that is not UTF-8 (file_names.native_path) and for a URL (through GDAL's
    virtual file system: ranged reads, nothing downloaded whole)."""
    with native_path(gdal_path(path)) as native:
        return rasterio.open(native)


def _georeference(ds: rasterio.DatasetReader, path: str) -> tuple[str, Affine | None]:
    """(CRS string, transform) of a dataset, ("", None) without a CRS; BadGeoreference naming the file and the fix
    when its CRS cannot be placed on Earth or its transform is not north-up."""
    if not ds.crs:
        return "", None
    t, name = ds.transform, as_text(path)
    if t.b != 0 or t.d != 0:
        raise BadGeoreference(
            f"{name}: the geotransform is rotated or sheared (row/column terms {t.b:g}, {t.d:g}), so tiles have no "
            f"north-up footprint; warp it north-up first (gdalwarp {name} north_up.tif)")
    crs = _crs_string(ds.crs)
    if why := _unplaceable(crs):
        raise BadGeoreference(
            f"{name}: its CRS cannot be placed on Earth ({why}); CRS read: {crs[:160]}. Set the right one "
            f"(gdal_edit.py -a_srs EPSG:NNNN {name}), or remove it (gdal_edit.py -unsetsrs) to keep the pixels "
            "without a footprint")
    return crs, t


@functools.lru_cache(maxsize=256)
def _unplaceable(crs: str) -> str:
    """Why PROJ cannot take `crs` to longitude/latitude ("" when it can), e.g. a LOCAL_CS that GDAL made of GeoTIFF
    keys naming an EPSG code it does not know. Per CRS, not per scene: finding the operation takes up to 0.2 s."""
    try:
        lon, lat = transform(crs, "EPSG:4326", [0.0], [0.0])
    except (CRSError, CPLE_BaseError) as err:
        return " ".join(str(err).split(" from '")[0].split())[:200]  # PROJ then quotes the CRS as JSON
    return "" if np.isfinite(lon[0]) and np.isfinite(lat[0]) else "its origin maps to no longitude/latitude"


class RasterioReader(SceneReader):
    """GeoTIFF/COG/JPEG/PNG through GDAL, one file holding all bands.

    An alpha band is read as the validity mask, not stored; a single-band (grayscale) file in a
    source declared `bands: rgb` is stored as one band named `gray` rather than rejected. A palette
    (colour-mapped) file is expanded to the RGB its palette gives, unless the source declares one band
    (a class map, whose indices are the data); its transparent entries and nodata index mark invalid pixels.
    """

    def __init__(self, ref: SceneRef, bands: list[Band], nodata: float | None):
        super().__init__(ref, bands, nodata)
        self.ds = _open_gdal(ref.paths[0])
        self.width, self.height = self.ds.width, self.ds.height
        interp = self.ds.colorinterp
        self._alpha = interp.index(ColorInterp.alpha) + 1 if ColorInterp.alpha in interp else None
        count = self.ds.count - (self._alpha is not None)
        self._palette = self._palette_lut(bands) if count == 1 and interp[0] == ColorInterp.palette else None
        if self._palette is not None:
            count = 3
            bands = bands or [Band(name=n) for n in RGB_NAMES]
            self._declared_bands = bands
        elif count == 1 and [b.name for b in bands] == RGB_NAMES:
            bands = [Band(name="gray")]
            self._declared_bands = bands
        self.bands = self._name_bands(count)
        self._indexes = [i for i in range(1, self.ds.count + 1) if i != self._alpha]
        dtypes = ["uint8"] * 3 if self._palette is not None else [self.ds.dtypes[i - 1] for i in self._indexes]
        self.dtype = self._data_dtype(dtypes)
        self.whole_file_is_tile = self._alpha is None and self._palette is None and not any(b.qa for b in self.bands)
        self.one_stream = self.ds.driver in ONE_STREAM_DRIVERS
        self.cheap_overview = all(self.ds.overviews(i) for i in range(1, self.ds.count + 1))
        # a palette file's own nodata is an index, applied to the indices in _valid; stored RGB values have none
        file_nodata = None if self._palette is not None else self.ds.nodata
        self.nodata = checked_nodata(nodata if nodata is not None else file_nodata, self.dtype, ref.paths[0])
        self.crs, self.transform = _georeference(self.ds, ref.paths[0])
        self._dataset_mask = self.nodata is None and MaskFlags.per_dataset in self.ds.mask_flag_enums[0]
        # palette colours are display values: no scale (the palette's single index band has none to give)
        self._set_scales([_gdal_scale(self.ds, i) for i in self._indexes] if self._palette is None
                         else [(1.0, 0.0)] * len(self.bands))

    def _palette_lut(self, bands: list[Band]) -> np.ndarray | None:
        """(N, 4) uint8 RGBA of each palette index, or None when the declared single band keeps the indices."""
        if len(bands) == 1:
            return None
        colormap = self.ds.colormap(1)
        lut = np.zeros((max(256, max(colormap) + 1), 4), np.uint8)  # indices outside the palette: transparent
        for index, rgba in colormap.items():
            lut[index] = rgba
        return lut

    def _read(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        if self._palette is not None:
            return np.moveaxis(self._palette[self._indices(x, y, w, h, out_shape), :3], -1, 0)
        indexes = self._indexes if self._alpha else None
        if out_shape is None:
            return self.ds.read(indexes, window=Window(x, y, w, h))
        return self.ds.read(indexes, window=Window(x, y, w, h), out_shape=(len(self._indexes), *out_shape),
                            resampling=Resampling.average)

    def _indices(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None) -> np.ndarray:
        """A palette file's indices under the window (nearest when decimated: averaged indices mean nothing)."""
        return self.ds.read(1, window=Window(x, y, w, h), out_shape=out_shape, resampling=Resampling.nearest)

    def _valid(self, data: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
        valid = super()._valid(data, x, y, w, h)
        window, shape = Window(x, y, w, h), data.shape[1:]
        if self._palette is not None:
            indices = self._indices(x, y, w, h, shape)
            valid &= self._palette[indices, 3] > 0
            if self.ds.nodata is not None:
                valid &= indices != self.ds.nodata
        elif self._alpha:
            valid &= self.ds.read(self._alpha, window=window, out_shape=shape) > 0
        elif self._dataset_mask:
            valid &= self.ds.dataset_mask(window=window, out_shape=shape) > 0
        return valid

    def close(self) -> None:
        self.ds.close()


class BandFilesReader(SceneReader):
    """One file per band (Sentinel-2, Landsat): every band is read onto the finest band's grid.

    A band off that grid (coarser, or shifted) is warped onto the window's exact geographic footprint (GDAL's
    warp with the manifest's resampling and the band's fill as source nodata), so bands at 10/20/60 m land on
    one pixel grid, fill never blends into valid pixels, and ground a band does not cover is not stretched
    over: a pixel that some band file does not cover (or covers only with fill) is invalid, set to `nodata`.
    """

    def __init__(self, ref: SceneRef, bands: list[Band], nodata: float | None, resampling: str):
        super().__init__(ref, bands, nodata)
        self.dss = [_open_gdal(p) for p in ref.paths]
        self.bands = bands
        ref_ds = min(self.dss, key=lambda d: abs(d.transform.a))
        self._ref = ref_ds
        self.width, self.height = ref_ds.width, ref_ds.height
        self.dtype = self._data_dtype([d.dtypes[0] for d in self.dss])
        self.cheap_overview = all(d.overviews(1) for d in self.dss)
        self.nodata = checked_nodata(nodata if nodata is not None else ref_ds.nodata, self.dtype, ref_ds.name)
        self.crs, self.transform = _georeference(ref_ds, ref.paths[self.dss.index(ref_ds)])
        self._resampling = Resampling[resampling]
        self._set_scales([_gdal_scale(d, 1) for d in self.dss])

    def _read(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None = None) -> list[np.ndarray]:
        shape = out_shape or (h, w)
        # Pixels of the last read that a band file does not cover: _valid, called next by read(), drops them.
        self._uncovered = np.zeros(shape, bool)
        out = []
        for band, ds in zip(self.bands, self.dss, strict=True):
            method = Resampling.nearest if band.qa else Resampling.average if out_shape else self._resampling
            if ds is self._ref or (ds.transform == self._ref.transform and ds.shape == self._ref.shape):
                out.append(ds.read(1, window=Window(x, y, w, h), out_shape=shape, resampling=method))
            else:
                dst_transform = self._ref.window_transform(Window(x, y, w, h)) @ Affine.scale(w / shape[1],
                                                                                               h / shape[0])
                arr, missing = self._warp(ds, dst_transform, shape, method)
                self._uncovered |= missing
                out.append(arr)
        return out

    def _warp(self, ds: rasterio.DatasetReader, dst_transform: Affine, shape: tuple[int, int],
              method: Resampling) -> tuple[np.ndarray, np.ndarray]:
        """Band `ds` warped onto `shape` pixels at `dst_transform`, and the mask of pixels it leaves empty.

        Only the band's pixels under the footprint (plus a kernel margin) are read. Its fill (the manifest's
        nodata, else its own) is masked out of the kernels; a pixel whose kernel holds no data is empty."""
        fill = self._nodata_override if self._nodata_override is not None else (
            ds.nodata if ds.nodata is not None else self.nodata)
        left, top = dst_transform @ (0, 0)
        right, bottom = dst_transform @ (shape[1], shape[0])
        win = from_bounds(min(left, right), min(top, bottom), max(left, right), max(top, bottom), ds.transform)
        margin = 3  # source pixels: the widest kernel (cubic) reaches 2 pixels past the footprint
        col0, row0 = max(0, int(np.floor(win.col_off)) - margin), max(0, int(np.floor(win.row_off)) - margin)
        col1 = min(ds.width, int(np.ceil(win.col_off + win.width)) + margin)
        row1 = min(ds.height, int(np.ceil(win.row_off + win.height)) + margin)
        dst = np.full(shape, np.nan)
        if col1 > col0 and row1 > row0:
            src_win = Window(col0, row0, col1 - col0, row1 - row0)
            # Pixel grids without a CRS warp by their transforms alone: any one CRS on both sides does.
            crs = self._ref.crs or rasterio.crs.CRS.from_epsg(3857)
            reproject(ds.read(1, window=src_win), dst, src_transform=ds.window_transform(src_win),
                      src_crs=ds.crs or crs, src_nodata=fill, dst_transform=dst_transform, dst_crs=crs,
                      dst_nodata=np.nan, resampling=method)
        missing = np.isnan(dst)
        dtype = np.dtype(ds.dtypes[0])
        if dtype.kind in "ui":  # as GDAL writes integers: rounded, clamped to the type (cubic overshoots)
            info = np.iinfo(dtype)
            dst = np.clip(np.rint(dst), info.min, info.max)
        dst[missing] = fill if fill is not None else 0
        return dst.astype(dtype), missing

    def _valid(self, data: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
        return super()._valid(data, x, y, w, h) & ~self._uncovered

    def close(self) -> None:
        for d in self.dss:
            d.close()


class NpyReader(SceneReader):
    """Arrays saved with numpy: (H,W,C), (C,H,W) or time stacks (T,H,W,C) / (T,C,H,W), memory-mapped."""

    def __init__(self, ref: SceneRef, bands: list[Band], nodata: float | None, layout: str | None):
        super().__init__(ref, bands, nodata)
        with local_copy(ref.paths[0]) as local:  # the memory map outlives the copy's name
            arr = np.load(local, mmap_mode="r", allow_pickle=False)
        layout = layout or {2: "HW", 3: "HWC", 4: "THWC"}.get(arr.ndim)
        if layout is None or len(layout) != arr.ndim:
            raise ValueError(f"npy array of shape {arr.shape} does not fit layout {layout}; set npy_layout")
        if layout.startswith("T"):
            arr = arr[ref.frame or 0]
            layout = layout[1:]
        self._hwc = layout in ("HWC", "HW")
        self.cheap_overview = True
        self._arr = arr if arr.ndim == 3 else arr[..., None]
        h, w, c = self._arr.shape if self._hwc else (arr.shape[1], arr.shape[2], arr.shape[0])
        self.width, self.height = w, h
        self.bands = self._name_bands(c)
        self.dtype = self._data_dtype([self._arr.dtype.name] * c)
        self.nodata = checked_nodata(nodata, self.dtype, ref.paths[0])
        self._set_scales([(1.0, 0.0)] * c)

    def _read(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        sy, sx = _steps(h, w, out_shape)
        if self._hwc:
            return np.ascontiguousarray(np.moveaxis(self._arr[y : y + h : sy, x : x + w : sx, :], -1, 0))
        return np.ascontiguousarray(self._arr[:, y : y + h : sy, x : x + w : sx])


_MODIS_SINUSOIDAL = "+proj=sinu +lon_0=0 +x_0=0 +y_0=0 +R=6371007.181 +units=m +no_defs"
_CORNER = re.compile(r"(UpperLeftPointMtrs|LowerRightMtrs)=\(([-\d.eE+]+),([-\d.eE+]+)\)")


class ModisHdf4Reader(SceneReader):
    """MODIS HDF4-EOS granules through pyhdf (no pip-installable GDAL has the HDF4 driver).

    Bands are scientific datasets named by `sds` in the manifest; they must share one grid.
    The sinusoidal grid is read from StructMetadata.0 so tiles get bounds like GDAL would give.
    """

    def __init__(self, ref: SceneRef, bands: list[Band], nodata: float | None):
        super().__init__(ref, bands, nodata)
        from pyhdf.SD import SD, SDC

        with local_copy(ref.paths[0]) as local, native_path(local) as native:  # HDF4 holds the file open
            self.sd = SD(native, SDC.READ)
        if not bands:
            raise ValueError("modis_hdf4 needs a bands list naming each band's sds")
        self.bands = bands
        self.sds = [self.sd.select(b.sds or b.name) for b in bands]
        shapes = {tuple(s.info()[2]) if s.info()[1] == 2 else None for s in self.sds}
        if len(shapes) != 1 or None in shapes:
            raise ValueError(f"modis_hdf4 bands must be 2-D datasets on one grid, got shapes {shapes}")
        self.height, self.width = shapes.pop()
        self.dtype = self._data_dtype([s.get(start=(0, 0), count=(1, 1)).dtype.name for s in self.sds])
        fill = self.sds[0].attributes().get("_FillValue")
        self.nodata = checked_nodata(nodata if nodata is not None else (float(fill) if fill is not None else None),
                                     self.dtype, ref.paths[0])
        self._set_scales([_hdf_scale(s.attributes()) for s in self.sds])
        self._georeference()

    def _georeference(self) -> None:
        meta = self.sd.attributes().get("StructMetadata.0", "")
        corners = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in _CORNER.finditer(meta)}
        if len(corners) == 2:
            (ulx, uly), (lrx, lry) = corners["UpperLeftPointMtrs"], corners["LowerRightMtrs"]
            self.transform = Affine((lrx - ulx) / self.width, 0, ulx, 0, (lry - uly) / self.height, uly)
            self.crs = rasterio.crs.CRS.from_proj4(_MODIS_SINUSOIDAL).to_wkt()

    def _read(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None = None) -> list[np.ndarray]:
        sy, sx = _steps(h, w, out_shape)
        count = (-(-h // sy), -(-w // sx))
        return [s.get(start=(y, x), count=count, stride=(sy, sx)) for s in self.sds]

    def close(self) -> None:
        """Datasets first: ending the file while SDS handles are open can crash the HDF4 library on collection."""
        for sds in self.sds:
            sds.endaccess()
        self.sds = []
        self.sd.end()


def _steps(h: int, w: int, out_shape: tuple[int, int] | None) -> tuple[int, int]:
    """Whole-pixel strides that shrink (h, w) to about `out_shape` (formats read by slicing, not GDAL)."""
    if out_shape is None:
        return 1, 1
    return max(1, -(-h // out_shape[0])), max(1, -(-w // out_shape[1]))


L1B_NAME = re.compile(r"^M[OY]D021KM\.", re.IGNORECASE)  # Terra/Aqua 1 km L1B granules, as NASA names them


def detect_format(path: str) -> str:
    suffix = Path(path).suffix.lower()
    if suffix == ".hdf" and L1B_NAME.match(Path(path).name):
        return "modis_l1b"
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix == ".npy":
        return "npy"
    if suffix in (".hdf", ".h4", ".hdf4"):
        return "modis_hdf4"
    return "geotiff"


def open_scene(
    ref: SceneRef,
    bands: list[Band],
    nodata: float | None,
    resampling: str = "bilinear",
    npy_layout: str | None = None,
    day_only: bool = True,
) -> SceneReader:
    """Open a scene with the reader its format needs; errors propagate for the caller to record. `day_only`:
    a MODIS L1B night granule raises SceneLeftOut."""
    if len(ref.paths) > 1:
        return BandFilesReader(ref, bands, nodata, resampling)
    if ref.format == "npy":
        return NpyReader(ref, bands, nodata, npy_layout)
    if ref.format == "modis_hdf4":
        return ModisHdf4Reader(ref, bands, nodata)
    if ref.format == "modis_l1b":
        from rscurate.modis_l1b import ModisL1BReader  # imports this module

        return ModisL1BReader(ref, bands, nodata, day_only)
    return RasterioReader(ref, bands, nodata)


def npy_frames(path: str, layout: str | None) -> int | None:
    """Number of frames in a time-stacked npy file, or None for a single image (of an object: from its header
    alone, not a download)."""
    shape = _npy_header_shape(path) if is_remote(path) else np.load(path, mmap_mode="r", allow_pickle=False).shape
    layout = layout or {2: "HW", 3: "HWC", 4: "THWC"}.get(len(shape), "")
    return int(shape[0]) if layout.startswith("T") else None


def _npy_header_shape(path: str) -> tuple[int, ...]:
    """The array shape an npy file's header declares; ValueError for a file that is not npy or holds objects."""
    fmt = np.lib.format
    with open_input(path) as f:
        version = fmt.read_magic(f)
        header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, _, dtype = header(f)
    if dtype.hasobject:
        raise ValueError(f"{path}: the array holds Python objects, which are not read (allow_pickle=False)")
    return tuple(shape)
