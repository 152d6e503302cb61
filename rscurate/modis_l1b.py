"""MODIS L1B swath granules (MOD021KM/MYD021KM) read through pyhdf and calibrated per window.

A granule is a swath: no CRS and no affine transform (pixels are scan samples, not map cells), so tiles are
cut on the granule's own pixel grid and each tile carries the latitude/longitude bounds of the 5 km
geolocation points over it instead. Bands are read from the four Earth-view datasets by their `band_names`
attribute and stored as float32: reflective bands as TOA reflectance x cos(SZA) in percent, thermal bands as
brightness temperature in kelvin, flagged counts as NaN (docs/modis.md).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from rscurate import modis_calibration as cal
from rscurate.manifest import Band
from rscurate.modis_bands import DEFAULT_BANDS, ModisBand, band
from rscurate.object_store import local_copy
from rscurate.readers import SceneLeftOut, SceneReader, SceneRef, _steps

GSD_M = 1000.0  # at nadir; a scan-edge pixel is about 2 km along track by 4.8 km across
GEO_STEP, GEO_FIRST = 5, 2  # geolocation cell (i, j) sits at 1 km pixel (5i + 2, 5j + 2)
GEO_FILL = -999.0
NIGHT_ZENITH_DEG = 85.0  # without DAYNIGHTFLAG: a granule is day where the sun is higher than this
_DAYNIGHT = re.compile(r"OBJECT\s*=\s*DAYNIGHTFLAG\b.*?VALUE\s*=\s*\"?(\w+)\"?.*?END_OBJECT\s*=\s*DAYNIGHTFLAG",
                       re.DOTALL)
_UINT16 = 23  # pyhdf's SDC.UINT16: every Earth-view dataset is uint16


def day_night(sd: Any) -> str | None:
    """`Day`, `Night` or `Both` from CoreMetadata.0's DAYNIGHTFLAG, else from the SolarZenith dataset; None when
    the granule holds neither."""
    found = _DAYNIGHT.search(sd.attributes().get("CoreMetadata.0", ""))
    if found:
        return found.group(1).capitalize()
    if "SolarZenith" not in sd.datasets():
        return None
    sds = sd.select("SolarZenith")
    attrs, raw = sds.attributes(), sds.get()
    sds.endaccess()
    zenith = raw[raw != attrs.get("_FillValue", -32767)] * float(attrs.get("scale_factor", 0.01))
    day = zenith < NIGHT_ZENITH_DEG
    return "Day" if day.all() else "Night" if not day.any() else "Both"


class ModisL1BReader(SceneReader):
    """MOD021KM/MYD021KM: the manifest's bands (default SatVision-TOA's 14) calibrated to float32.

    `day_only` leaves a Night granule out whole (SceneLeftOut, reason `night`) and, in a Day/Both granule,
    counts a pixel as valid only where some reflective band has data: reflective bands are fill at night, so
    the night side of a terminator granule is nodata for the quality rules."""

    def __init__(self, ref: SceneRef, bands: list[Band], nodata: float | None, day_only: bool = True):
        super().__init__(ref, bands, nodata)
        from pyhdf.SD import SD, SDC

        with local_copy(ref.paths[0]) as local:  # HDF4 holds the file open
            self.sd = SD(local, SDC.READ)
        self._sds: dict[str, Any] = {}  # pyhdf SDS of each Earth-view dataset in use
        self._strip: tuple[tuple[int, int], np.ndarray] | None = None  # (y, h) and its rows, calibrated
        try:
            self._open(bands, day_only)
        except BaseException:
            self.close()
            raise

    def _open(self, declared: list[Band], day_only: bool) -> None:
        path = self.ref.paths[0]
        flag = day_night(self.sd)
        if day_only and flag is None:
            raise ValueError(f"{path}: no DAYNIGHTFLAG in CoreMetadata.0 and no SolarZenith dataset, so day and "
                             "night cannot be told apart; set `daynight: any` in the manifest to keep it")
        if day_only and flag == "Night":
            raise SceneLeftOut("night", f"DAYNIGHTFLAG is {flag}; the source keeps day granules "
                               "(`daynight: any` keeps all)")
        self._day_only = day_only
        names = [b.name for b in declared] or list(DEFAULT_BANDS)
        self._modis = [band(n) for n in names]
        given = {b.name: b for b in declared}  # a declared band may set its own wavelength or gsd
        self.bands = [Band(name=m.name, wavelength_um=getattr(given.get(m.name), "wavelength_um", None)
                           or m.wavelength_um, gsd_m=getattr(given.get(m.name), "gsd_m", None) or GSD_M)
                      for m in self._modis]
        datasets = self.sd.datasets()
        self._index: list[int] = []
        self._coeffs: list[tuple[float, float]] = []
        shapes = set()
        for m in self._modis:
            if m.sds not in self._sds:
                if m.sds not in datasets:
                    raise ValueError(f"{path}: missing dataset {m.sds} (band {m.number}); not a MOD021KM/MYD021KM "
                                     "granule, or a damaged one")
                self._sds[m.sds] = self._checked_dataset(m.sds)
                shapes.add(tuple(datasets[m.sds][1][1:]))
            index = self._band_index(m)
            self._index.append(index)
            self._coeffs.append(self._calibration(m, index))
        if len(shapes) != 1:
            raise ValueError(f"{path}: Earth-view datasets differ in size {sorted(shapes)}")
        self.height, self.width = shapes.pop()
        self.dtype = "float32"
        self.nodata = float("nan")
        self._reflective = [i for i, m in enumerate(self._modis) if not m.emissive]
        self._set_scales([(1.0, 0.0)] * len(self.bands))  # stored values are physical already
        self._lat, self._lon = self._geolocation(datasets)

    def _checked_dataset(self, name: str) -> Any:
        sds = self.sd.select(name)
        _, rank, _, dtype, _ = sds.info()
        if rank != 3 or dtype != _UINT16:
            sds.endaccess()
            raise ValueError(f"{self.ref.paths[0]}: {name} should be uint16 (band, rows, frames), got rank {rank} "
                             f"type code {dtype}")
        return sds

    def _attrs(self, m: ModisBand) -> dict:
        return self._sds[m.sds].attributes()

    def _band_index(self, m: ModisBand) -> int:
        """Where band `m` is along its dataset's band axis, by the dataset's own band_names."""
        listed = str(self._attrs(m).get("band_names", "")).split(",")
        count = self._sds[m.sds].info()[2][0]
        if len(listed) != count:
            raise ValueError(f"{self.ref.paths[0]}: {m.sds} band_names {','.join(listed)!r} name {len(listed)} "
                             f"bands but the dataset holds {count}")
        if m.number not in listed:
            raise ValueError(f"{self.ref.paths[0]}: band {m.number} ({m.name}) is not in {m.sds} band_names "
                             f"{','.join(listed)!r}; the granule lacks a band the source asks for")
        return listed.index(m.number)

    def _calibration(self, m: ModisBand, k: int) -> tuple[float, float]:
        """(scale, offset) of band `m`, at `k` in its dataset: reflectance_* for reflective bands, radiance_* for
        thermal ones."""
        kind = "radiance" if m.emissive else "reflectance"
        attrs = self._attrs(m)
        pair = []
        for key in (f"{kind}_scales", f"{kind}_offsets"):
            values = np.atleast_1d(attrs.get(key, []))
            if len(values) <= k:
                raise ValueError(f"{self.ref.paths[0]}: {m.sds} has no {key} for band {m.number}")
            pair.append(float(values[k]))
        return pair[0], pair[1]

    def _geolocation(self, datasets: dict) -> tuple[np.ndarray, np.ndarray]:
        """The 5 km Latitude/Longitude grids, checked against the 1 km grid they sample."""
        want = ((self.height - GEO_FIRST - 1) // GEO_STEP + 1, (self.width - GEO_FIRST - 1) // GEO_STEP + 1)
        grids = []
        for name in ("Latitude", "Longitude"):
            if name not in datasets:
                raise ValueError(f"{self.ref.paths[0]}: missing dataset {name}; chips need its 5 km geolocation")
            sds = self.sd.select(name)
            grid = sds.get().astype(np.float64)
            sds.endaccess()
            if grid.shape != want:
                raise ValueError(f"{self.ref.paths[0]}: {name} is {grid.shape}, expected {want} (every 5th pixel "
                                 f"of {self.height}x{self.width})")
            grids.append(np.where(grid == GEO_FILL, np.nan, grid))
        return grids[0], grids[1]

    def gsd_m(self) -> float | None:
        return min(b.gsd_m for b in self.bands if b.gsd_m)

    def _read(self, x: int, y: int, w: int, h: int, out_shape: tuple[int, int] | None = None) -> np.ndarray:
        """Full-resolution windows come from a cached strip of whole rows: a build reads a scene's grid windows row
        by row, and one read of 128 whole rows per band costs about what one 128 px window does (HDF4 stores the
        bands row-major, unchunked). Decimated views (scene hashing) are read directly."""
        if out_shape is not None:
            return self._calibrated(x, y, w, h, _steps(h, w, out_shape))
        if self._strip is None or self._strip[0] != (y, h):
            self._strip = ((y, h), self._calibrated(0, y, self.width, h, (1, 1)))
        return np.ascontiguousarray(self._strip[1][:, :, x : x + w])

    def _calibrated(self, x: int, y: int, w: int, h: int, steps: tuple[int, int]) -> np.ndarray:
        """(C, h, w) float32 physical values of a window read at whole-pixel `steps` (rows, columns)."""
        sy, sx = steps
        count = (1, -(-h // sy), -(-w // sx))
        out = np.empty((len(self._modis), *count[1:]), np.float32)
        for k, (m, index, (scale, offset)) in enumerate(zip(self._modis, self._index, self._coeffs, strict=True)):
            dn = self._sds[m.sds].get(start=(index, y, x), count=count, stride=(1, sy, sx))[0]
            if m.emissive:
                out[k] = cal.brightness_temperature(cal.radiance(dn, scale, offset), m.number)
            else:
                out[k] = cal.reflectance_percent(dn, scale, offset)
        return out

    def _valid(self, data: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
        if self._day_only and self._reflective:
            return np.isfinite(data[self._reflective]).any(axis=0)
        return super()._valid(data, x, y, w, h)

    def lonlat_bounds(self, x: int, y: int, w: int, h: int) -> tuple[float, float, float, float] | None:
        """(lon_min, lat_min, lon_max, lat_max) of the geolocation points whose 5x5 pixel block meets the window;
        lon_min > lon_max where the window crosses the antimeridian (as GeoJSON/STAC bounding boxes say it)."""
        rows = slice(y // GEO_STEP, (y + h - 1) // GEO_STEP + 1)
        cols = slice(x // GEO_STEP, (x + w - 1) // GEO_STEP + 1)
        lat, lon = self._lat[rows, cols], self._lon[rows, cols]
        ok = np.isfinite(lat) & np.isfinite(lon)
        if not ok.any():
            return None
        lat, lon = lat[ok], lon[ok]
        west, east = float(lon.min()), float(lon.max())
        if east - west > 180:  # the points straddle ±180°: the short way round is across it
            east = float(lon[lon < 0].max())
            west = float(lon[lon >= 0].min())
        return west, float(lat.min()), east, float(lat.max())

    def close(self) -> None:
        """End access to each dataset before the file: pyhdf ends a dataset left open when it is garbage collected,
        and doing that after the file is closed crashes the interpreter."""
        for sds in self._sds.values():
            sds.endaccess()
        self._sds.clear()
        self.sd.end()
