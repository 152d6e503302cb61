"""MOD021KM-structured HDF4 granules for tests, the demo and the ingest benchmark (no real L1B is shipped).

Each granule is written with pyhdf in the layout of NASA's MODIS L1B file specification: the four uint16
Earth-view datasets (band, 10 x scans, frames) with every band of the real product, `band_names` strings,
float32 scale/offset arrays, uint16 valid_range and _FillValue, dimension names, 5 km float32 Latitude and
Longitude (cell (i, j) at 1 km pixel (5i + 2, 5j + 2)), int16 SolarZenith with its scale_factor, and
CoreMetadata.0 ODL with DAYNIGHTFLAG. The pixels are made up (smooth land/sea and cloud fields with
plausible reflectance and brightness temperature per band), then encoded as counts with the inverse of
rscurate.modis_calibration, so a reader that decodes them gets the physical values back.

    python -m rscurate.modis_synth OUT_DIR [--granules 3] [--night 1] [--scans 203]

writes granules and a manifest (OUT_DIR/modis_l1b.yaml) ready for `rscurate build --sources`.
"""

from __future__ import annotations

import argparse
import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rscurate import modis_calibration as cal
from rscurate.modis_bands import EMISSIVE_1KM, EV_BAND_NAMES, EV_DIM_NAMES, WAVELENGTH_UM

FRAMES = 1354  # 1 km samples across track
SCANS = 203  # a 5-minute granule: 203 scans of 10 detectors (2030 rows)
FILL, SATURATED = 65535, 65533
SWATH = ":MODIS_SWATH_Type_L1B"
RADIANCE_UNITS = "Watts/m^2/micrometer/steradian"
KM_DEG = 1 / 111.2  # degrees of latitude per km


@dataclass(frozen=True)
class Granule:
    """What to write: size, where the swath starts, day or night, and whether to add flagged counts."""

    scans: int = SCANS
    frames: int = FRAMES
    daynight: str = "Day"  # Day | Night | Both (CoreMetadata.0's DAYNIGHTFLAG)
    lat0: float = 40.0  # latitude of the first scan's centre; the swath runs south (Terra's day side)
    lon0: float = 10.0
    seed: int = 0
    flags: bool = True  # saturated band 2 over the brightest cloud, one scan missing (fill) in every band
    start: datetime = datetime(2024, 6, 1, 10, 30)
    omit: tuple[str, ...] = ()  # datasets left out, to make a damaged granule


def granule_name(start: datetime, product: str = "MOD021KM") -> str:
    """NASA's file name: MOD021KM.AYYYYDDD.HHMM.061.<production time>.hdf."""
    return f"{product}.A{start:%Y%j.%H%M}.061.{start + timedelta(days=1):%Y%j%H%M%S}.hdf"


def _smooth(rng: np.random.Generator, shape: tuple[int, int], cell: int) -> np.ndarray:
    """Zero-mean, unit-scale noise with features about `cell` pixels across (bilinear upsampled)."""
    h, w = shape
    coarse = rng.normal(size=(h // cell + 2, w // cell + 2))
    ys, xs = np.arange(h) / cell, np.arange(w) / cell
    y0, x0 = ys.astype(int), xs.astype(int)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = coarse[y0][:, x0] * (1 - fx) + coarse[y0][:, x0 + 1] * fx
    bottom = coarse[y0 + 1][:, x0] * (1 - fx) + coarse[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _surface_reflectance(number: str, land: np.ndarray) -> np.ndarray:
    """Clear-sky reflectance: vegetated land bright in the near infrared, sea dark beyond the visible."""
    wl = WAVELENGTH_UM[number]
    if number in ("26", "18", "19"):  # water-vapour absorption: the surface barely shows
        return np.full(land.shape, 0.01)
    land_r = 0.05 if wl < 0.7 else 0.30 if wl < 1.3 else 0.22 if wl < 1.8 else 0.12
    sea_r = 0.07 if wl < 0.5 else 0.03 if wl < 0.7 else 0.01
    return sea_r + (land_r - sea_r) * land


def _cloud_reflectance(number: str) -> float:
    wl = WAVELENGTH_UM[number]
    return 0.75 if wl < 1.3 else 0.30 if number == "26" else 0.45 if wl < 1.8 else 0.25


def _temperature(number: str, surface: np.ndarray, cloud: np.ndarray, cover: np.ndarray) -> np.ndarray:
    """Brightness temperature: window bands see the surface or the cloud top, absorbing bands see higher, colder
    air (water vapour 27/28, CO2 33-36, ozone 30)."""
    cooling = {"27": 45.0, "28": 30.0, "29": 1.5, "30": 20.0, "32": 1.0, "33": 25.0, "34": 35.0, "35": 40.0,
               "36": 50.0, "21": -3.0}.get(number, 0.0)  # 21: sunlight reflected at 3.9 µm warms it by day
    clear = surface - cooling
    return clear * (1 - cover) + np.minimum(cloud, clear) * cover


def _scales(number: str, emissive: bool) -> tuple[float, float]:
    """Plausible per-band (scale, offset) in the spirit of real granules: offsets near the dark level, scales
    so the band's physical range fills the 15-bit count range."""
    k = int(number.rstrip("lohi"))
    if emissive:
        top = float(cal.radiance_of_temperature(np.array(340.0), number))
        offset = 1500.0 + 37.0 * k
        return top / (32000.0 - offset), offset
    return 1.2 / 30000.0 * (1 + 0.01 * k), 316.9722 - 3.0 * (k % 5)


def _to_counts(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    counts = np.rint(values / scale + offset)
    return np.clip(np.nan_to_num(counts, nan=FILL), 0, cal.MAX_VALID_DN).astype(np.uint16)


def _odl(name: str, daynight: str, start: datetime) -> str:
    """CoreMetadata.0: the ECS inventory metadata in ODL, with the fields readers look at."""
    def obj(key: str, value: str) -> str:
        return (f"    OBJECT                 = {key}\n      NUM_VAL              = 1\n"
                f"      VALUE                = {value}\n    END_OBJECT             = {key}\n\n")

    end = start + timedelta(minutes=5)
    return ("\nGROUP                  = INVENTORYMETADATA\n  GROUPTYPE            = MASTERGROUP\n\n"
            "  GROUP                  = ECSDATAGRANULE\n\n" + obj("LOCALGRANULEID", f'"{name}"')
            + obj("DAYNIGHTFLAG", f'"{daynight}"') + "  END_GROUP              = ECSDATAGRANULE\n\n"
            "  GROUP                  = COLLECTIONDESCRIPTIONCLASS\n\n" + obj("SHORTNAME", f'"{name[:8]}"')
            + obj("VERSIONID", "61") + "  END_GROUP              = COLLECTIONDESCRIPTIONCLASS\n\n"
            "  GROUP                  = RANGEDATETIME\n\n" + obj("RANGEBEGINNINGDATE", f'"{start:%Y-%m-%d}"')
            + obj("RANGEBEGINNINGTIME", f'"{start:%H:%M:%S}.000000"')
            + obj("RANGEENDINGDATE", f'"{end:%Y-%m-%d}"') + obj("RANGEENDINGTIME", f'"{end:%H:%M:%S}.000000"')
            + "  END_GROUP              = RANGEDATETIME\n\nEND_GROUP              = INVENTORYMETADATA\n\nEND\n")


def write_granule(path: Path, g: Granule = Granule()) -> Path:
    """Write one MOD021KM-structured granule to `path` (its name should follow granule_name for auto-detection)."""
    from pyhdf.SD import SD, SDC

    rng = np.random.default_rng(g.seed)
    rows, shape = 10 * g.scans, (10 * g.scans, g.frames)
    lat = g.lat0 - (np.arange(rows) - 5) * KM_DEG  # along track, south
    cross = (np.arange(g.frames) - g.frames / 2) * KM_DEG
    lat2d = np.repeat(lat[:, None], g.frames, axis=1) + 0.1 * cross[None, :]  # a slight tilt, as an orbit has
    lon2d = g.lon0 + cross[None, :] / np.cos(np.radians(lat2d)) + 0.2 * (lat2d - g.lat0)
    lon2d = (lon2d + 180) % 360 - 180
    day = {"Day": np.ones(shape, bool), "Night": np.zeros(shape, bool)}.get(  # Both: the terminator at mid-granule
        g.daynight, np.broadcast_to(np.arange(rows)[:, None] < rows // 2, shape))
    zenith = np.where(day, np.clip(25 + np.abs(lat2d - 15) * 0.7, 0, 80), 110.0)
    cos_sza = np.cos(np.radians(zenith))
    land = np.clip(_smooth(rng, shape, 90) + 0.3, 0, 1)
    cover = np.clip((_smooth(rng, shape, 40) + 0.5 * _smooth(rng, shape, 8)) * 1.5, 0, 1)
    surface_t = 300 - 0.4 * np.abs(lat2d) + 8 * land + 1.5 * _smooth(rng, shape, 20)
    cloud_t = 235 + 12 * _smooth(rng, shape, 30)
    missing = slice(10 * (g.scans // 2), 10 * (g.scans // 2) + 10) if g.flags and g.scans > 4 else slice(0, 0)

    sd = SD(str(path), SDC.WRITE | SDC.CREATE | SDC.TRUNC)
    for sds_name, band_names in EV_BAND_NAMES.items():
        if sds_name in g.omit:
            continue
        numbers = band_names.split(",")
        emissive = sds_name == EMISSIVE_1KM
        coeffs = [_scales(n, emissive) for n in numbers]
        sds = sd.create(sds_name, SDC.UINT16, (len(numbers), *shape))
        for i, dim in enumerate((EV_DIM_NAMES[sds_name], "10*nscans", "Max_EV_frames")):
            sds.dim(i).setname(dim + SWATH)
        sds.setfillvalue(FILL)
        for k, (n, (scale, offset)) in enumerate(zip(numbers, coeffs, strict=True)):
            if emissive:
                physical = cal.radiance_of_temperature(_temperature(n, surface_t, cloud_t, cover), n)
            else:
                physical = (_surface_reflectance(n, land) * (1 - cover) + _cloud_reflectance(n) * cover) * cos_sza
            counts = _to_counts(physical, scale, offset)
            if not emissive:
                counts[~day] = FILL  # reflective bands are not collected at night
                if g.flags and n == "2":
                    counts[(cover > 0.97) & day & (rng.random(shape) < 0.02)] = SATURATED
            counts[missing] = FILL
            sds[k] = counts
        _ev_attributes(sds, sds_name, band_names, coeffs, emissive)
        sds.endaccess()
    _geolocation(sd, lat2d[2::5, 2::5], lon2d[2::5, 2::5], zenith[2::5, 2::5])
    sd.attr("CoreMetadata.0").set(SDC.CHAR8, _odl(path.name, g.daynight, g.start))
    sd.attr("Number of Scans").set(SDC.INT32, g.scans)
    sd.end()
    return path


def _ev_attributes(sds: Any, name: str, band_names: str, coeffs: list[tuple[float, float]],
                   emissive: bool) -> None:
    """The Earth-view dataset's attributes with the file spec's types (pyhdf would write float64/int32)."""
    from pyhdf.SD import SDC

    def put(key: str, kind: int, value: object) -> None:
        sds.attr(key).set(kind, value)

    scales, offsets = [c[0] for c in coeffs], [c[1] for c in coeffs]
    put("long_name", SDC.CHAR8, "Earth View " + name.removeprefix("EV_").replace("_", " ") + " Scaled Integers")
    put("units", SDC.CHAR8, "none")
    put("valid_range", SDC.UINT16, [0, cal.MAX_VALID_DN])
    put("band_names", SDC.CHAR8, band_names)
    put("radiance_scales", SDC.FLOAT32, scales if emissive else [s * 160.0 for s in scales])
    put("radiance_offsets", SDC.FLOAT32, offsets)
    put("radiance_units", SDC.CHAR8, RADIANCE_UNITS)
    if not emissive:
        put("reflectance_scales", SDC.FLOAT32, scales)
        put("reflectance_offsets", SDC.FLOAT32, offsets)
        put("reflectance_units", SDC.CHAR8, "none")
        put("corrected_counts_scales", SDC.FLOAT32, [0.12497] * len(scales))
        put("corrected_counts_offsets", SDC.FLOAT32, offsets)
        put("corrected_counts_units", SDC.CHAR8, "counts")


def _geolocation(sd: Any, lat: np.ndarray, lon: np.ndarray, zenith: np.ndarray) -> None:
    """Latitude, Longitude (float32 degrees) and SolarZenith (int16, 0.01 degrees) on the 5 km grid."""
    from pyhdf.SD import SDC

    dims, shape = ("2*nscans" + SWATH, "1KM_geo_dim" + SWATH), lat.shape
    frames = ",".join(str(5 * j + 3) for j in range(shape[1]))  # 1-based, as the file spec lists them
    for name, values, kind, rng, fill in (("Latitude", lat, SDC.FLOAT32, (-90.0, 90.0), -999.0),
                                          ("Longitude", lon, SDC.FLOAT32, (-180.0, 180.0), -999.0),
                                          ("SolarZenith", np.rint(zenith * 100), SDC.INT16, (0, 18000), -32767)):
        sds = sd.create(name, kind, shape)
        for i, dim in enumerate(dims):
            sds.dim(i).setname(dim)
        sds.setfillvalue(fill)
        sds[:] = values.astype(np.float32 if kind == SDC.FLOAT32 else np.int16)
        sds.attr("units").set(SDC.CHAR8, "degrees")
        sds.attr("valid_range").set(kind, list(rng))
        sds.attr("line_numbers").set(SDC.CHAR8, "3,8")
        sds.attr("frame_numbers").set(SDC.CHAR8, frames)
        if name == "SolarZenith":
            sds.attr("scale_factor").set(SDC.FLOAT64, 0.01)
        sds.endaccess()


MANIFEST = """\
    name: {name}
    description: MOD021KM-structured granules generated by rscurate.modis_synth (made-up pixels)
    license: CC0-1.0 (generated)
    root: .
    include: ["*.hdf"]
    format: modis_l1b
    """


def write_demo(out: Path, granules: int = 3, night: int = 1, scans: int = SCANS, frames: int = FRAMES,
               name: str = "modis_l1b_demo") -> Path:
    """`granules` consecutive 5-minute granules (the last `night` of them Night) and their manifest."""
    out.mkdir(parents=True, exist_ok=True)
    start = Granule().start
    for k in range(granules):
        g = Granule(scans=scans, frames=frames, daynight="Night" if k >= granules - night else "Day",
                    lat0=50.0 - 18.0 * k, seed=k, start=start + timedelta(minutes=5 * k))
        write_granule(out / granule_name(g.start), g)
    manifest = out / "modis_l1b.yaml"
    manifest.write_text(textwrap.dedent(MANIFEST.format(name=name)))
    return manifest


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder for the granules and their manifest")
    p.add_argument("--granules", type=int, default=3)
    p.add_argument("--night", type=int, default=1, help="how many of them are night granules")
    p.add_argument("--scans", type=int, default=SCANS, help="scans of 10 rows (203: a full 5-minute granule)")
    p.add_argument("--frames", type=int, default=FRAMES, help="1 km samples across track (1354 in real granules)")
    a = p.parse_args(argv)
    print(write_demo(a.out, a.granules, a.night, a.scans, a.frames))


if __name__ == "__main__":
    main()
