"""MODIS L1B counts (scaled integers) to top-of-atmosphere reflectance (%) and brightness temperature (K).

The formulas are those of the MODIS L1B user's guide (MCST) as satpy's `modis_l1b` reader applies them, which
SatVision-TOA's corpus was calibrated with; the thermal constants below are satpy's (docs/modis.md cites both).
Reflectance is stored as the file's scales give it, ρ·cos(θ₀) (reflectance times the cosine of the solar
zenith angle, not divided by it, as satpy and SatVision-TOA keep it): users who want ρ divide by cos θ₀.
Values above 32767 are flags (65535 fill, 65533 saturated, 65528 aggregation failure, ...) and become NaN.
"""

from __future__ import annotations

import numpy as np

MAX_VALID_DN = 32767  # the L1B valid_range upper end: larger values are flags

# CODATA 1986 values, as the MODIS L1B algorithm and satpy use them.
PLANCK_H = 6.6260755e-34  # J s
LIGHT_C = 2.9979246e8  # m / s
BOLTZMANN_K = 1.380658e-23  # J / K
C1 = 2 * PLANCK_H * LIGHT_C**2  # W m^2 sr^-1
C2 = PLANCK_H * LIGHT_C / BOLTZMANN_K  # m K

# Per thermal band: effective central wavenumber (cm^-1), temperature correction slope and intercept (K).
THERMAL = {
    "20": (2.641775e3, 9.993411e-1, 4.770532e-1), "21": (2.505277e3, 9.998646e-1, 9.262664e-2),
    "22": (2.518028e3, 9.998584e-1, 9.757996e-2), "23": (2.465428e3, 9.998682e-1, 8.929242e-2),
    "24": (2.235815e3, 9.998819e-1, 7.310901e-2), "25": (2.200346e3, 9.998845e-1, 7.060415e-2),
    "27": (1.477967e3, 9.994877e-1, 2.204921e-1), "28": (1.362737e3, 9.994918e-1, 2.046087e-1),
    "29": (1.173190e3, 9.995495e-1, 1.599191e-1), "30": (1.027715e3, 9.997398e-1, 8.253401e-2),
    "31": (9.080884e2, 9.995608e-1, 1.302699e-1), "32": (8.315399e2, 9.997256e-1, 7.181833e-2),
    "33": (7.483394e2, 9.999160e-1, 1.972608e-2), "34": (7.308963e2, 9.999167e-1, 1.913568e-2),
    "35": (7.188681e2, 9.999191e-1, 1.817817e-2), "36": (7.045367e2, 9.999281e-1, 1.583042e-2),
}


def flagged(dn: np.ndarray) -> np.ndarray:
    """Mask of counts that are flags (fill, saturated, dead detector, ...), not measurements."""
    return dn > MAX_VALID_DN


def reflectance_percent(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """TOA reflectance x cos(solar zenith) in percent: 100 * reflectance_scale * (DN - reflectance_offset)."""
    out = (dn.astype(np.float32) - np.float32(offset)) * np.float32(100.0 * scale)
    out[flagged(dn)] = np.nan
    return out


def radiance(dn: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """Spectral radiance (W m^-2 µm^-1 sr^-1): radiance_scale * (DN - radiance_offset); flags are NaN."""
    out = (dn.astype(np.float32) - np.float32(offset)) * np.float32(scale)
    out[flagged(dn)] = np.nan
    return out


def _planck_terms(number: str) -> tuple[float, float, float, float]:
    """(K1, K2, tcs, tci) of a thermal band: Tb = K2 / ln(K1 / L + 1), T = (Tb - tci) / tcs."""
    if number not in THERMAL:
        raise ValueError(f"band {number} is not a MODIS thermal band (20-25, 27-36)")
    wavenumber, tcs, tci = THERMAL[number]
    wavelength_m = 1.0 / (100.0 * wavenumber)
    return C1 / (1e6 * wavelength_m**5), C2 / wavelength_m, tcs, tci  # 1e6: L is per µm, Planck's C1 per m


def brightness_temperature(rad: np.ndarray, number: str) -> np.ndarray:
    """Brightness temperature (K) of thermal band `number` by inverse Planck at its effective central wavenumber,
    with MCST's tcs/tci correction. Non-positive radiance (counts below the offset) has no temperature: NaN."""
    k1, k2, tcs, tci = _planck_terms(number)
    with np.errstate(divide="ignore", invalid="ignore"):
        tb = np.float32(k2) / np.log(np.float32(k1) / rad + np.float32(1.0))
    out = (tb - np.float32(tci)) / np.float32(tcs)
    out[~(rad > 0)] = np.nan
    return out.astype(np.float32, copy=False)


def radiance_of_temperature(kelvin: np.ndarray, number: str) -> np.ndarray:
    """Inverse of brightness_temperature (float64): the radiance a band sees from a black body at `kelvin`;
    what the granule generator writes as counts."""
    k1, k2, tcs, tci = _planck_terms(number)
    return k1 / np.expm1(k2 / (np.asarray(kelvin, np.float64) * tcs + tci))
