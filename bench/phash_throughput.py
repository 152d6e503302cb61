"""pHash benchmarks: throughput against imagehash, and the real-imagery distances behind the default radius.

Default: tiles/s on ONE core (BLAS threads pinned to 1) for 256 x 256 uint8 RGB tiles, (3, H, W) as rasterio
reads them: rscurate (canonical_view + phash_batch) versus the reference, imagehash.phash per tile on a PIL
image (its convert('L') + LANCZOS resize + scipy DCT). Both produce the same hashes; the run checks that.

  --distances   Hamming distances on real imagery (../shared/data/real): true duplicates (same pixels in
                another container or re-encoded, 8-bit renders of uint16, repeat acquisitions, crops, shifts)
                versus tiles of different places, with and without the low-texture guard.

  .venv/bin/python bench/phash_throughput.py --tiles 2000
  .venv/bin/python bench/phash_throughput.py --distances
Prints ONE JSON line.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rscurate.phash import (  # noqa: E402
    LOW_TEXTURE_STD,
    canonical_view,
    hamming,
    phash_batch,
    texture_score,
    tile_phash,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
S2_DIR = REAL / "sentinel2-l2a" / "S2A_29RKH_20200219_0_L2A"
S2_13 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def read(path: Path, window: tuple[tuple[int, int], tuple[int, int]] | None = None) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(window=window)


def s2_rgb() -> np.ndarray:
    return np.concatenate([read(S2_DIR / f"{b}.tif") for b in ("B04", "B03", "B02")])


def rgb_tiles(count: int, size: int = 256) -> tuple[list[np.ndarray], str]:
    """Real 256 px RGB tiles (random windows) when the imagery is present, else structured synthetic ones."""
    rng = np.random.default_rng(0)
    if REAL.is_dir():
        scenes = [read(REAL / "rasterio" / "cogeo.tif"), read(REAL / "rasterio" / "RGB.byte.tif"),
                  read(REAL / "deepforest" / "OSBS_029.tif")]
        out = []
        for k in range(count):
            s = scenes[k % len(scenes)]
            y, x = (int(rng.integers(0, d - size + 1)) for d in s.shape[1:])
            out.append(np.ascontiguousarray(s[:, y:y + size, x:x + size]))
        return out, "real (cogeo.tif, RGB.byte.tif, OSBS_029.tif windows)"
    from scipy.ndimage import gaussian_filter

    base = [gaussian_filter(rng.normal(size=(3, 512, 512)), (0, 4, 4)) for _ in range(4)]
    out = []
    for k in range(count):
        b = base[k % 4]
        y, x = rng.integers(0, 256, 2)
        t = b[:, y:y + size, x:x + size]
        out.append(np.clip((t - t.min()) / np.ptp(t) * 255, 0, 255).astype(np.uint8))
    return out, "synthetic smooth noise"


def throughput(n_tiles: int, batch: int) -> dict:
    import imagehash

    tiles, source = rgb_tiles(n_tiles)
    t0 = time.perf_counter()
    ours = np.concatenate([phash_batch([canonical_view(t) for t in tiles[k:k + batch]])
                           for k in range(0, len(tiles), batch)])
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref = [str(imagehash.phash(Image.fromarray(np.moveaxis(t, 0, -1)))) for t in tiles]
    t_ref = time.perf_counter() - t0
    ref_int = np.array([int(s, 16) for s in ref], dtype=np.uint64)
    return {
        "bench": "phash_throughput", "tiles": n_tiles, "tile": "3x256x256 uint8", "source": source,
        "threads": 1, "batch": batch, "rscurate_tiles_per_s": round(n_tiles / t_ours, 1),
        "imagehash_tiles_per_s": round(n_tiles / t_ref, 1), "speedup": round(t_ref / t_ours, 2),
        "exact_match_fraction": float((ours == ref_int).mean()),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _jpeg(tile_chw: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(np.moveaxis(tile_chw, 0, -1)).save(buf, format="JPEG", quality=quality)
    return np.moveaxis(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")), -1, 0)


def _grid(arr: np.ndarray, size: int) -> list[np.ndarray]:
    _, h, w = arr.shape
    return [arr[:, y:y + size, x:x + size] for y in range(0, h - size + 1, size)
            for x in range(0, w - size + 1, size)]


def _summary(d: list[int] | np.ndarray) -> dict:
    a = np.asarray(d)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "min": int(a.min()), "p1": float(np.percentile(a, 1)),
            "p5": float(np.percentile(a, 5)), "median": float(np.median(a)), "max": int(a.max()),
            **{f"frac_le_{r}": round(float((a <= r).mean()), 5) for r in (4, 6, 8, 10, 12)}}


def distances() -> dict:
    """Distance distributions of true duplicates versus different places on the real imagery."""
    if not REAL.is_dir():
        raise SystemExit(f"{REAL} is absent")
    rgb_parent = read(REAL / "rasterio" / "RGB.byte.tif")
    cogeo = read(REAL / "rasterio" / "cogeo.tif")
    osbs_tif = read(REAL / "deepforest" / "OSBS_029.tif")
    osbs_png = np.moveaxis(np.asarray(Image.open(REAL / "deepforest" / "OSBS_029.png").convert("RGB")), -1, 0)
    s2 = s2_rgb()
    scenes = np.load(REAL / "eo-learn" / "REFERENCE_SCENES.npy")
    out: dict = {"bench": "phash_distances", "tile": 256, "low_texture_std": LOW_TEXTURE_STD}

    # Same pixels through another container: crops rgb1..4 against the same window of the parent.
    crops = []
    for k, (y, x) in enumerate([(0, 0), (0, 399), (399, 0), (399, 399)], start=1):
        crop = read(REAL / "rasterio" / f"rgb{k}.tif")
        h, w = min(256, crop.shape[1]), min(256, crop.shape[2])
        crops.append(int(hamming(tile_phash(crop[:, :h, :w]),
                                 tile_phash(rgb_parent[:, y:y + h, x:x + w]))))
    out["crop_vs_parent_same_window"] = crops
    out["osbs_tif_vs_png"] = int(hamming(tile_phash(osbs_tif), tile_phash(osbs_png)))

    # Lossy re-encoding and 8-bit renders of uint16 data: the same content, different bytes.
    content = [t for t in _grid(cogeo, 256) + _grid(rgb_parent, 256) + [osbs_tif[:, :256, :256]]
               if texture_score(canonical_view(t)) >= LOW_TEXTURE_STD]
    for q in (95, 75, 50):
        out[f"jpeg_q{q}"] = _summary([int(hamming(tile_phash(t), tile_phash(_jpeg(t, q)))) for t in content])
    names = ["B04", "B03", "B02"]
    s2_tiles = _grid(s2, 256)
    render = []
    for t in s2_tiles:
        u8 = np.clip(t / np.percentile(t, 99.5) * 255, 0, 255).round().astype(np.uint8)
        render.append(int(hamming(tile_phash(t, names), tile_phash(u8, names))))
    out["s2_uint16_vs_8bit_render"] = _summary(render)
    gamma = [int(hamming(tile_phash(t), tile_phash(np.rint(255 * (t / 255.0) ** 0.8).astype(np.uint8))))
             for t in content]
    out["gamma_0.8"] = _summary(gamma)

    # Repeat acquisitions of one place (eo-learn: 0 cloudy, 1 hazy, 2 and 3 near-identical clear, 4 clear).
    sh = [tile_phash(np.moveaxis(s, -1, 0), S2_13) for s in scenes]
    out["eo_learn_scene_pairs"] = {f"{a}-{b}": int(hamming(sh[a], sh[b]))
                                   for a, b in itertools.combinations(range(5), 2)}
    # Resolution variant: the whole 10x downsampled file against the whole parent.
    out["tenth_vs_parent_whole"] = int(hamming(tile_phash(read(REAL / "rasterio" / "rgb-byte-tenth.tif")),
                                               tile_phash(rgb_parent)))

    # Shifted windows of the same scene: pHash is not shift invariant.
    shifts = {}
    for s in (1, 2, 3, 5, 8, 16, 32, 64):
        d = []
        for src in (cogeo, s2):
            bands = names if src is s2 else None
            for y in range(0, src.shape[1] - 256 - s, 192):
                for x in range(0, src.shape[2] - 256 - s, 192):
                    a = tile_phash(src[:, y:y + 256, x:x + 256], bands)
                    b = tile_phash(src[:, y + s:y + s + 256, x + s:x + s + 256], bands)
                    d.append(int(hamming(a, b)))
        shifts[str(s)] = _summary(d)
    out["diagonal_shift_px"] = shifts

    # Different places: non-overlapping tiles from every source, all pairs, at 256 and 128 px.
    modis_dir = REAL / "modis" / "MCD43A4.A2017006.h21v11.006.2017018074804"
    modis = np.concatenate([read(p) for p in sorted(modis_dir.glob("*_B0[1-7].TIF"))])
    modis_valid = np.all(modis != 32767, axis=0)
    blank = read(REAL / "rasterio" / "all-nodata.tif")
    for size in (256, 128):
        places = ([(t, None, None) for t in _grid(cogeo, size) + _grid(rgb_parent, size)]
                  + [(t, names, None) for t in _grid(s2, size)]
                  + [(t, None, None) for t in _grid(osbs_tif, size)]
                  + [(t, [f"modis{k}" for k in range(7)], v[0])
                     for t, v in zip(_grid(modis, size), _grid(modis_valid[None], size), strict=True)]
                  + [(t, None, np.zeros(t.shape[1:], bool)) for t in _grid(blank, min(size, 71))[:4]]
                  + [(np.moveaxis(scenes[4][:size, :size], -1, 0), S2_13, None)])  # one date of that place
        views = [canonical_view(t, b, v) for t, b, v in places]
        hashes = phash_batch(views)
        textured = np.array([texture_score(v) >= LOW_TEXTURE_STD for v in views])
        ii, jj = np.triu_indices(len(hashes), 1)
        d = hamming(hashes[ii], hashes[jj])
        both = textured[ii] & textured[jj]
        out[f"places_{size}px"] = {
            "tiles": len(views), "low_texture_tiles": int((~textured).sum()),
            "all_pairs": _summary(d), "textured_pairs": _summary(d[both]),
            "pairs_with_a_low_texture_tile": _summary(d[~both]),
            "texture_score_quantiles": [round(float(q), 2) for q in
                                        np.percentile([texture_score(v) for v in views], [0, 5, 25, 50])],
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiles", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--distances", action="store_true")
    args = ap.parse_args()
    print(json.dumps(distances() if args.distances else throughput(args.tiles, args.batch)))


if __name__ == "__main__":
    main()
