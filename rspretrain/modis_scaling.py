"""SatVision-TOA's fixed MODIS input scaling, the alternative to stats.json normalisation (`data.normalise: satvision`).

Reflective bands (TOA reflectance in %) are multiplied by 0.01; emissive bands (brightness temperature in K) are
min-max scaled per band to SatVision-TOA's bounds (NASA pytorch-caney, `MinMaxEmissiveScaleReflectance`, the
transform its SimMIM pretraining used). Both are written as (x - mean) / std, so the scaling travels the same path
as stats.json's statistics: the tile reader, checkpoints, and exports, where timm's data config applies it.
"""

from __future__ import annotations

import re

import numpy as np

REFLECTIVE_BANDS = frozenset([*range(1, 20), 26])  # MODIS reflective solar bands, stored as reflectance %
# SatVision-TOA's brightness temperature bounds (K) for its eight emissive bands
EMISSIVE_BOUNDS: dict[int, tuple[float, float]] = {
    21: (223.1222, 352.7182),
    27: (178.9174, 261.2920),
    28: (204.3739, 282.5529),
    29: (204.7677, 319.0373),
    30: (194.8686, 295.0209),
    31: (202.1759, 324.0677),
    32: (201.3823, 321.5254),
    33: (203.3537, 285.9848),
}
_BAND_NAME = re.compile(r"^(?:b|band_?)?0*(\d+)$", re.IGNORECASE)


def modis_band(name: str) -> int | None:
    """MODIS band number of a band name such as B01, B31, band_31 or 31 (None for other names)."""
    match = _BAND_NAME.match(name.strip())
    return int(match.group(1)) if match else None


def satvision_mean_std(names: list[str] | tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per band such that (x - mean) / std is SatVision-TOA's scaling of that band."""
    mean, std, unknown = [], [], []
    for name in names:
        band = modis_band(name)
        if band in REFLECTIVE_BANDS:
            mean.append(0.0)
            std.append(100.0)
        elif band in EMISSIVE_BOUNDS:
            low, high = EMISSIVE_BOUNDS[band]
            mean.append(low)
            std.append(high - low)
        else:
            unknown.append(name)
    if unknown:
        raise ValueError(
            f"data.normalise: satvision scales MODIS reflective bands (B01-B19, B26: reflectance %) and emissive "
            f"bands {', '.join(f'B{b}' for b in EMISSIVE_BOUNDS)} (brightness temperature K); {unknown} are none of "
            "these. Use data.normalise: source or global (stats.json) for other bands"
        )
    return np.array(mean, dtype=np.float32), np.array(std, dtype=np.float32)
