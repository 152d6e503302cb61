"""Where each MODIS band lives in a MOD021KM/MYD021KM granule, and its centre wavelength.

The layout is NASA's MODIS Level 1B file specification (MCST, Collection 6/6.1): four uint16 Earth-view
datasets of shape (band, 10 x scans, 1354 frames), each naming its bands in a `band_names` string.
Bands are named here by MODIS number (`B01`..`B36`, the two-gain ocean bands `B13lo`, `B13hi`, `B14lo`,
`B14hi`), so a corpus's band names say which detector they came from.
"""

from __future__ import annotations

from dataclasses import dataclass

REFLECTIVE_250 = "EV_250_Aggr1km_RefSB"
REFLECTIVE_500 = "EV_500_Aggr1km_RefSB"
REFLECTIVE_1KM = "EV_1KM_RefSB"
EMISSIVE_1KM = "EV_1KM_Emissive"
# Each Earth-view dataset and its `band_names` attribute as the file spec writes it (no spaces).
EV_BAND_NAMES = {
    REFLECTIVE_250: "1,2",
    REFLECTIVE_500: "3,4,5,6,7",
    REFLECTIVE_1KM: "8,9,10,11,12,13lo,13hi,14lo,14hi,15,16,17,18,19,26",
    EMISSIVE_1KM: "20,21,22,23,24,25,27,28,29,30,31,32,33,34,35,36",
}
EV_DIM_NAMES = {REFLECTIVE_250: "Band_250M", REFLECTIVE_500: "Band_500M", REFLECTIVE_1KM: "Band_1KM_RefSB",
                EMISSIVE_1KM: "Band_1KM_Emissive"}

# Centre wavelengths (µm) from NASA's MODIS specifications table (modis.gsfc.nasa.gov/about/specifications.php).
WAVELENGTH_UM = {
    "1": 0.645, "2": 0.858, "3": 0.469, "4": 0.555, "5": 1.240, "6": 1.640, "7": 2.130, "8": 0.412, "9": 0.443,
    "10": 0.488, "11": 0.531, "12": 0.551, "13lo": 0.667, "13hi": 0.667, "14lo": 0.678, "14hi": 0.678,
    "15": 0.748, "16": 0.869, "17": 0.905, "18": 0.936, "19": 0.940, "20": 3.750, "21": 3.959, "22": 3.959,
    "23": 4.050, "24": 4.465, "25": 4.515, "26": 1.375, "27": 6.715, "28": 7.325, "29": 8.550, "30": 9.730,
    "31": 11.030, "32": 12.020, "33": 13.335, "34": 13.635, "35": 13.935, "36": 14.235,
}

# SatVision-TOA's 14 bands, in the order chips store them (band 1 first, band 31 twelfth).
SATVISION_TOA = ("1", "2", "3", "6", "7", "21", "26", "27", "28", "29", "30", "31", "32", "33")


@dataclass(frozen=True)
class ModisBand:
    number: str  # as in band_names: "1", "13lo", "31"
    sds: str  # the Earth-view dataset holding it
    index: int  # its position along that dataset's band axis
    wavelength_um: float

    @property
    def name(self) -> str:
        """`B01`, `B13lo`, `B31`: the corpus band name."""
        digits = self.number.rstrip("lohi")
        return f"B{int(digits):02d}{self.number[len(digits):]}"

    @property
    def emissive(self) -> bool:
        """Thermal bands carry radiance scales only and calibrate to brightness temperature."""
        return self.sds == EMISSIVE_1KM


BANDS = {b.name: b for b in (ModisBand(n, sds, i, WAVELENGTH_UM[n])
                             for sds, names in EV_BAND_NAMES.items() for i, n in enumerate(names.split(",")))}
DEFAULT_BANDS = tuple(next(b.name for b in BANDS.values() if b.number == n) for n in SATVISION_TOA)


def band(name: str) -> ModisBand:
    """The band called `name` (B01..B36), or a ValueError listing the valid names."""
    if name not in BANDS:
        raise ValueError(f"{name!r} is not a MODIS L1B band; use one of {', '.join(BANDS)}")
    return BANDS[name]
