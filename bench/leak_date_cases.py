"""Quality cases for eval leakage at any alignment and for multi-date imagery (docs/dedup.md, sections 9-11).

f: misaligned eval chips. Training: the sample's Landsat 8 row 224/078 (2041 x 1860, uint16, tiled at 256 px on
   the scene's grid). Eval: chips cut from its valid interior at random offsets, sides of 160-400 scene pixels,
   rescaled 0.7-1.5x and saved as 8-bit JPEG renders, plus decoys that are not in the training data (the part of
   row 224/077 north of row 078, and rgbn.tif on another continent). Truth is the geometry of each cut: the tiles
   holding >= half of a chip, lying >= half inside it, or holding most of it must leak. Scored: chips whose tiles all
   leaked (recall), leaked tiles that hold no chip (precision), decoys that leaked anything, and the cost: build
   seconds with the eval source against the same build without it.
g: multi-date pairs. Real: five Sentinel-2 dates of one area (eo-learn's REFERENCE_SCENES in ../shared when present;
   dates 2 and 3 near-identical, 0 cloudy, 1 hazy, 4 later): exactly one of 2 and 3 may be dropped, nothing else.
   Generated from real pixels: a Landsat crop, a repeat with 1 % noise, and a greener later date (red -15 %,
   green +10 %): the repeat is dropped, the later date kept.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from dedup_cases import L8_077, L8_078_STACK, run_build
from PIL import Image

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
SERIES = REAL / "eo-learn" / "REFERENCE_SCENES.npy"
S2_BANDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
S2_BOX = (465181.05, 5079244.89, 466180.53, 5080254.63)
LEAK_SHARE = 0.5
L8_BANDS = "bands: [{name: blue}, {name: green}, {name: red}]\n"


def _render(stack: np.ndarray) -> np.ndarray:
    rgb = stack[::-1].astype(np.float64)
    lo, hi = np.percentile(rgb, (2, 98), axis=(1, 2), keepdims=True)
    return np.clip((rgb - lo) / np.maximum(hi - lo, 1) * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _manifest(path: Path, body: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


class _Run:
    """A build over a folder of manifests through the real CLI (dedup_cases.run_build), timed."""

    def __init__(self, work: Path, name: str) -> None:
        self.name, self.work, self.seconds = name, work, 0.0
        self.manifest_dir, self.out = work / "manifests", work / "corpus"
        self.manifests: dict[str, str] = {}

    def write(self) -> None:
        for name, body in self.manifests.items():
            _manifest(self.manifest_dir / f"{name}.yaml", body)


def _chips(scene: np.ndarray, tile: int, n: int, rng: np.random.Generator) -> list[tuple[int, int, int, float]]:
    """Random (x, y, side, scale) cuts whose region is fully valid and lies in the tiled part of the scene."""
    valid = scene.any(axis=0)
    h, w = valid.shape
    th, tw = h // tile * tile, w // tile * tile
    cuts: list[tuple[int, int, int, float]] = []
    while len(cuts) < n:
        side = int(rng.integers(160, 401))
        x, y = int(rng.integers(0, tw - side)), int(rng.integers(0, th - side))
        if valid[y : y + side, x : x + side].all():
            cuts.append((x, y, side, float(np.exp(rng.uniform(np.log(0.7), np.log(1.5))))))
    return cuts


def _expected(x: int, y: int, side: int, tile: int, tiles: set[tuple[int, int]]) -> set[tuple[int, int]]:
    overlap = {}
    for tx, ty in tiles:
        ix = max(0, min(tx + tile, x + side) - max(tx, x))
        iy = max(0, min(ty + tile, y + side) - max(ty, y))
        overlap[(tx, ty)] = ix * iy
    most = max(overlap.values())
    return {k for k, v in overlap.items() if v > 0 and (v >= LEAK_SHARE * side * side
                                                       or v >= LEAK_SHARE * tile * tile or v == most)}


def misaligned_eval_case(work: Path, sample: Path, n_chips: int = 40, tile: int = 256, seed: int = 0,
                         radius: int | None = None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    with rasterio.open(sample / L8_078_STACK) as ds:
        scene = ds.read()
    cuts = _chips(scene, tile, n_chips, rng)
    evals = work / "eval"
    evals.mkdir(parents=True, exist_ok=True)
    truth = {}
    for k, (x, y, side, scale) in enumerate(cuts):
        img = Image.fromarray(_render(scene[:, y : y + side, x : x + side]))
        name = f"chip{k:03d}.jpg"
        img.resize((round(side * scale),) * 2, Image.Resampling.LANCZOS).save(evals / name, quality=90)
        truth[name] = (x, y, side, scale)
    decoys = []
    layers = []
    for band in (2, 3, 4):  # row 077 north of row 078's footprint (its first ~340 rows)
        with rasterio.open(sample / f"{L8_077}_B{band}.TIF") as ds:
            layers.append(ds.read(1, window=((20, 320), (0, ds.width))))
    north = np.stack(layers)
    for k in range(6):
        x = 300 + 250 * k
        if north[:, :, x : x + 280].all(axis=0).all():
            Image.fromarray(_render(north[:, :, x : x + 280])).save(evals / f"decoy_077_{k}.jpg", quality=90)
            decoys.append(f"decoy_077_{k}.jpg")
    with rasterio.open(sample / "rgbn.tif") as ds:
        rgbn = ds.read()[2::-1]
    for k, (r, c) in enumerate(((0, 0), (100, 200), (150, 0))):
        Image.fromarray(_render(rgbn[:, r : r + 250, c : c + 250])).save(evals / f"decoy_rgbn_{k}.jpg", quality=90)
        decoys.append(f"decoy_rgbn_{k}.jpg")

    def run(with_eval: bool) -> _Run:
        b = _Run(work / ("with_eval" if with_eval else "train_only"), "leak")
        b.manifests["l8_078"] = (f"name: l8_078\nlicense: public domain\nroot: {sample}\ninclude: [{L8_078_STACK}]\n"
                                 f"nodata: 0\n{L8_BANDS}tile: {{size: {tile}}}\n")
        if with_eval:
            b.manifests["bench"] = (f"name: bench\nlicense: test\nrole: eval\nroot: {evals}\ninclude: ['*.jpg']\n"
                                    "bands: rgb\ntile: {mode: whole}\n")
        t0 = time.perf_counter()
        run_build(b, radius)  # type: ignore[arg-type]
        b.seconds = time.perf_counter() - t0
        return b

    base, full = run(False), run(True)
    index = pd.read_parquet(base.out / "index.parquet")
    tiles = set(zip(index["x"], index["y"], strict=True))
    excl = pd.read_parquet(base.out / "excluded.parquet")
    tiles |= set(zip(excl["x"], excl["y"], strict=True))  # tiles excluded for nodata also exist on the grid
    leaks = pd.read_parquet(full.out / "excluded.parquet").query("reason == 'eval_leak'")
    leaked = set(zip(leaks["x"], leaks["y"], strict=True))
    named = {m.group(1) for d in leaks["detail"] if (m := re.search(r"eval (?:item|tile|scene) bench:(\S+)", d))}
    expected_all: set[tuple[int, int]] = set()
    found = 0
    misses = []
    for name, (x, y, side, scale) in truth.items():
        exp = _expected(x, y, side, tile, tiles)
        expected_all |= exp
        if exp <= leaked:
            found += 1
        else:
            misses.append({"chip": name, "cut": [x, y, side, round(scale, 3)], "missing": sorted(exp - leaked)})
    extra = sorted(leaked - expected_all)
    return {
        "case": "f_misaligned_eval_chips", "tile_size": tile, "chips": len(truth), "chips_found": found,
        "recall": round(found / len(truth), 4), "leaked_tiles": len(leaked), "expected_tiles": len(expected_all),
        "leaked_tiles_holding_no_chip": len(extra), "tile_precision": round(1 - len(extra) / max(len(leaked), 1), 4),
        "decoys": len(decoys), "decoys_leaking": len([d for d in decoys if d in named]),
        "build_seconds_train_only": round(base.seconds, 1), "build_seconds_with_eval": round(full.seconds, 1),
        "eval_cost_seconds_per_chip": round((full.seconds - base.seconds) / (len(truth) + len(decoys)), 3),
        "misses": misses, "extra": [list(map(int, t)) for t in extra],
    }


def _dates_build(work: Path, name: str, frames: dict[str, np.ndarray], profile: dict, bands: str, tile: str,
                 radius: int | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = work / name / "data"
    data.mkdir(parents=True, exist_ok=True)
    for scene, arr in frames.items():
        with rasterio.open(data / f"{scene}.tif", "w", **profile) as out:
            out.write(arr)
    b = _Run(work / name, name)
    b.manifests[name] = (f"name: {name}\nlicense: see docs\nroot: {data}\ninclude: ['*.tif']\n{bands}{tile}"
                         "quality: {max_nodata_fraction: 1.0}\n")
    run_build(b, radius)  # type: ignore[arg-type]
    return pd.read_parquet(b.out / "index.parquet"), pd.read_parquet(b.out / "duplicates.parquet")


def multidate_cases(work: Path, sample: Path, radius: int | None = None) -> list[dict[str, Any]]:
    out = []
    if SERIES.is_file():
        stack = np.load(SERIES)
        from rasterio.transform import from_bounds

        profile = dict(driver="GTiff", width=100, height=101, count=13, dtype="float32", crs="EPSG:32633",
                       transform=from_bounds(*S2_BOX, 100, 101))
        frames = {f"date{t}": np.moveaxis(f, -1, 0) for t, f in enumerate(stack)}
        bands = "bands: [" + ", ".join(f"{{name: {b}}}" for b in S2_BANDS) + "]\n"
        index, dups = _dates_build(work, "s2_dates", frames, profile, bands, "tile: {mode: whole}\n", radius)
        dropped = sorted(dups["scene"])
        ok = dropped in (["date2.tif"], ["date3.tif"])
        out.append({"case": "g_real_sentinel2_dates", "scenes": 5, "expected_drops": 1, "dropped": dropped,
                    "kept": sorted(index["scene"]), "recall": 1.0 if ok else 0.0,
                    "wrong_merges": len([d for d in dropped if d not in ("date2.tif", "date3.tif")])})
    with rasterio.open(sample / L8_078_STACK) as ds:
        window = ((600, 1112), (600, 1112))
        data = ds.read(window=window)
        profile = dict(driver="GTiff", width=512, height=512, count=3, dtype="uint16", crs=ds.crs,
                       transform=ds.window_transform(window))
    rng = np.random.default_rng(0)
    frames = {"a_original": data,
              "b_repeat": np.clip(data * (1 + rng.normal(0, 0.01, data.shape)), 1, 65535).astype(np.uint16),
              "c_later": (data * np.array([1.0, 1.10, 0.85])[:, None, None]).astype(np.uint16)}
    index, dups = _dates_build(work, "l8_dates", frames, profile, L8_BANDS, "tile: {size: 256}\n", radius)
    out.append({"case": "g_landsat_repeat_and_later_date", "tiles_per_scene": 4,
                "repeat_tiles_dropped": int((dups["scene"] == "b_repeat.tif").sum()),
                "later_tiles_dropped": int((dups["scene"] == "c_later.tif").sum()),
                "recall": round(int((dups["scene"] == "b_repeat.tif").sum()) / 4, 4),
                "wrong_merges": int((dups["scene"] != "b_repeat.tif").sum())})
    return out
