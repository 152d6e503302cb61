"""pHash: bit-exact agreement with imagehash, canonical view rules, low-texture flag."""

from __future__ import annotations

from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from rscurate.phash import (
    canonical_view,
    hamming,
    is_low_texture,
    phash_batch,
    phash_gray,
    texture_score,
    tile_phash,
    tile_signature,
)

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
needs_real = pytest.mark.skipif(not REAL.is_dir(), reason=f"real imagery folder {REAL} is absent")


def ref_phash(gray: np.ndarray) -> int:
    """The reference definition: imagehash's pHash as an integer in its hex-string bit order."""
    return int(str(imagehash.phash(Image.fromarray(gray))), 16)


def to_u8(x: np.ndarray) -> np.ndarray:
    x = (x - x.min()) / max(float(np.ptp(x)), 1e-12)
    return np.rint(x * 255).astype(np.uint8)


def synthetic_grays(seed: int = 0) -> list[np.ndarray]:
    """Images with structure like tiles: smooth noise at several scales, gradients, shapes, flat fields."""
    rng = np.random.default_rng(seed)
    out = []
    for sigma in (1, 3, 8, 20):
        for _ in range(6):
            out.append(to_u8(gaussian_filter(rng.normal(size=(256, 256)), sigma)))
    yy, xx = np.mgrid[0:256, 0:256]
    for angle in np.linspace(0, np.pi, 7):
        out.append(to_u8(np.cos(angle) * xx + np.sin(angle) * yy))
    for k in range(8):
        img = np.zeros((256, 256), np.uint8)
        cy, cx, r = rng.integers(40, 216, 2).tolist() + [int(rng.integers(10, 60))]
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 200
        img[rng.integers(0, 200): rng.integers(200, 256), k * 20: k * 20 + 30] = 90
        out.append(img)
    out += [np.full((256, 256), v, np.uint8) for v in (0, 1, 128, 255)]
    # Odd shapes: smaller than the 32 px resize, non-square, tall.
    shapes = [(20, 20), (100, 333), (512, 64), (32, 32)]
    out += [to_u8(gaussian_filter(rng.normal(size=s), 2)) for s in shapes]
    return out


def real_tiles() -> list[tuple[np.ndarray, list[str] | None]]:
    """256 x 256 tiles cut from the real imagery, with band names where the source has them."""
    import rasterio

    tiles: list[tuple[np.ndarray, list[str] | None]] = []

    def cut(arr: np.ndarray, names: list[str] | None, step: int) -> None:
        _, h, w = arr.shape
        for y in range(0, h - 255, step):
            for x in range(0, w - 255, step):
                tiles.append((arr[:, y:y + 256, x:x + 256], names))

    for name in ("rasterio/RGB.byte.tif", "rasterio/cogeo.tif", "deepforest/OSBS_029.png"):
        with rasterio.open(REAL / name) as ds:
            cut(ds.read(), None, 96)
    s2 = REAL / "sentinel2-l2a" / "S2A_29RKH_20200219_0_L2A"
    bands = ["B04", "B03", "B02", "B08"]
    stack = []
    for b in bands:
        with rasterio.open(s2 / f"{b}.tif") as ds:
            stack.append(ds.read(1))
    cut(np.stack(stack), bands, 160)
    scenes = np.load(REAL / "eo-learn" / "REFERENCE_SCENES.npy")  # (5, 101, 100, 13) float32
    s2_13 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
    for scene in scenes:
        tiles.append((np.moveaxis(scene, -1, 0), s2_13))
    return tiles


def test_phash_batch_equals_imagehash_on_structured_images() -> None:
    grays = synthetic_grays()
    expected = [ref_phash(g) for g in grays]
    got = phash_batch(grays)
    assert got.dtype == np.uint64
    assert [int(x) for x in got] == expected
    assert [phash_gray(g) for g in grays[:5]] == expected[:5]
    # A (B, H, W) array is a batch too.
    same = np.stack([g for g in grays if g.shape == (256, 256)])
    assert [int(x) for x in phash_batch(same)] == [ref_phash(g) for g in same]


def test_flat_images_hash_like_imagehash() -> None:
    # Flat images hit the tie fallback (AC terms ~0): black hashes to 0, other levels to the DC bit only.
    assert phash_gray(np.zeros((64, 64), np.uint8)) == ref_phash(np.zeros((64, 64), np.uint8)) == 0
    for v in (1, 77, 255):
        g = np.full((256, 256), v, np.uint8)
        assert phash_gray(g) == ref_phash(g) == 0x8000000000000000


@needs_real
def test_phash_equals_imagehash_on_real_tiles() -> None:
    tiles = real_tiles()
    assert len(tiles) > 150
    grays = [canonical_view(t, names) for t, names in tiles]
    got = phash_batch(grays)
    expected = np.array([ref_phash(g) for g in grays], dtype=np.uint64)
    assert (got == expected).mean() == 1.0, f"exact matches {(got == expected).mean():.4f}"


def test_bit_order_matches_imagehash_hex_string() -> None:
    g = synthetic_grays()[3]
    h = phash_gray(g)
    ref = imagehash.phash(Image.fromarray(g))
    assert f"{h:016x}" == str(ref)
    assert imagehash.hex_to_hash(f"{h:016x}") == ref
    # Bit 0 of the 8x8 DCT block (the DC term, row-major first) is the most significant bit.
    assert bool(h >> 63) == bool(ref.hash[0, 0])


def test_canonical_view_uint8_rgb_equals_pil_convert_l() -> None:
    rng = np.random.default_rng(3)
    hwc = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(hwc).convert("L"))
    chw = np.moveaxis(hwc, -1, 0)
    assert np.array_equal(canonical_view(chw), pil)
    assert np.array_equal(canonical_view(chw, ["Red", "GREEN", "blue"]), pil)
    # Band order is taken from the names, not the position.
    assert np.array_equal(canonical_view(chw[::-1], ["blue", "green", "red"]), pil)
    with_nir = np.concatenate([rng.integers(0, 256, (1, 64, 80), dtype=np.uint8), chw])
    assert np.array_equal(canonical_view(with_nir, ["nir", "red", "green", "blue"]), pil)
    assert tile_phash(chw) == ref_phash(pil)


@needs_real
def test_real_rgb_tile_view_equals_pil_and_containers_agree() -> None:
    import rasterio

    with rasterio.open(REAL / "deepforest" / "OSBS_029.tif") as ds:
        tif = ds.read()
    png = np.moveaxis(np.asarray(Image.open(REAL / "deepforest" / "OSBS_029.png").convert("RGB")), -1, 0)
    pil = np.asarray(Image.open(REAL / "deepforest" / "OSBS_029.png").convert("L"))
    assert np.array_equal(canonical_view(png), pil)
    assert tile_phash(tif, ["red", "green", "blue"]) == tile_phash(png) == ref_phash(pil)


def test_band_name_mapping_sentinel2_and_landsat() -> None:
    rng = np.random.default_rng(4)
    stack = rng.integers(0, 10000, (12, 32, 32)).astype(np.uint16)
    s2 = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    rgb_only = stack[[3, 2, 1]]
    assert np.array_equal(canonical_view(stack, s2), canonical_view(rgb_only, ["red", "green", "blue"]))
    landsat = ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"]
    assert np.array_equal(canonical_view(stack[:7], landsat),
                          canonical_view(stack[[3, 2, 1]], ["B4", "B3", "B2"]))
    # Unnamed or non-visible bands: mean of all bands (uint16 -> stretched).
    mean = stack.astype(np.float64).mean(axis=0)
    view = canonical_view(stack, [f"band{k}" for k in range(12)])
    lo, hi = np.percentile(mean, [2, 98])
    assert np.array_equal(view, np.rint(np.clip((mean - lo) * (255 / (hi - lo)), 0, 255)).astype(np.uint8))


def test_uint8_non_rgb_uses_rounded_band_mean() -> None:
    tile = np.array([[[10, 0]], [[11, 255]], [[12, 255]], [[14, 255]]], dtype=np.uint8)  # (4, 1, 2)
    assert canonical_view(tile).tolist() == [[12, 191]]  # (47 + 2) // 4 = 12, (765 + 2) // 4 = 191
    assert canonical_view(tile[0]).tolist() == [[10, 0]]  # a 2-D tile is one band


def smooth_scene(seed: int, shape: tuple[int, int] = (256, 256)) -> np.ndarray:
    """A 3-band uint16 'reflectance' scene with field- and river-like structure."""
    rng = np.random.default_rng(seed)
    base = gaussian_filter(rng.normal(size=shape), 6) + 0.3 * gaussian_filter(rng.normal(size=shape), 1.5)
    bands = [1200 + 900 * base * s + 80 * rng.normal(size=shape) for s in (1.0, 0.8, 0.6)]
    return np.clip(np.stack(bands), 1, 9000).astype(np.uint16)


def test_uint16_scene_and_its_8bit_render_hash_close() -> None:
    names = ["red", "green", "blue"]
    for seed in range(5):
        u16 = smooth_scene(seed)
        # 8-bit render with one global linear scale (what a quick-look PNG export does).
        u8 = np.clip(u16 / 4000.0 * 255, 0, 255).round().astype(np.uint8)
        h16, h8 = tile_phash(u16, names), tile_phash(u8, names)
        assert int(hamming(h16, h8)) <= 4
        # The same numbers as float reflectance hash the same as the uint16 integers.
        assert int(hamming(tile_phash(u16.astype(np.float32) / 10000, names), h16)) <= 2
        # A different place is far away.
        assert int(hamming(tile_phash(smooth_scene(seed + 100), names), h16)) > 12


@needs_real
def test_real_sentinel2_uint16_vs_8bit_render() -> None:
    import rasterio

    s2 = REAL / "sentinel2-l2a" / "S2A_29RKH_20200219_0_L2A"
    bands = []
    for b in ("B04", "B03", "B02"):
        with rasterio.open(s2 / f"{b}.tif") as ds:
            bands.append(ds.read(1, window=((300, 556), (300, 556))))
    u16 = np.stack(bands)
    u8 = np.clip(u16 / np.percentile(u16, 99.5) * 255, 0, 255).round().astype(np.uint8)
    names = ["B04", "B03", "B02"]
    assert int(hamming(tile_phash(u16, names), tile_phash(u8, names))) <= 6


def test_invalid_and_nonfinite_pixels_are_black() -> None:
    rng = np.random.default_rng(5)
    data = rng.normal(size=(2, 40, 40)).astype(np.float32)
    valid = np.ones((40, 40), bool)
    valid[:5] = False
    nan_data = data.copy()
    nan_data[:, :5] = np.nan
    a = canonical_view(data, valid=valid)
    b = canonical_view(nan_data)
    assert np.array_equal(a, b)
    assert (a[:5] == 0).all()
    # uint8: invalid pixels are zeroed too; no valid pixel at all gives a black view.
    u8 = rng.integers(1, 256, (3, 40, 40), dtype=np.uint8)
    assert (canonical_view(u8, valid=valid)[:5] == 0).all()
    assert not canonical_view(data, valid=np.zeros((40, 40), bool)).any()


def test_canonical_view_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        canonical_view(np.zeros((3, 8, 8), np.uint8), ["red", "green"])
    with pytest.raises(ValueError):
        canonical_view(np.zeros((3, 8, 8), np.uint8), valid=np.ones((4, 4), bool))
    with pytest.raises(ValueError):
        canonical_view(np.zeros((1, 2, 3, 4), np.uint8))
    with pytest.raises(TypeError):
        phash_batch([np.zeros((8, 8), np.float32)])


def test_low_texture_flag() -> None:
    rng = np.random.default_rng(6)
    flat = [np.full((256, 256), v, np.uint8) for v in (0, 30, 250)]
    # Sensor-noise ocean / cloud: +-1 grey level of noise, a faint haze gradient.
    ocean = np.clip(40 + rng.integers(-1, 2, (256, 256)), 0, 255).astype(np.uint8)
    haze = np.tile(np.linspace(200, 203, 256), (256, 1)).round().astype(np.uint8)
    for g in flat + [ocean, haze]:
        assert is_low_texture(g), texture_score(g)
    # Flat tiles of different places share one hash: why they must stay out of the near-duplicate search.
    assert len({phash_gray(g) for g in flat[1:]}) == 1
    for g in synthetic_grays()[:24]:
        assert not is_low_texture(g), texture_score(g)
    # A nodata-filled uint16 tile gives a black view and is flagged too.
    blank = canonical_view(np.zeros((4, 64, 64), np.uint16), valid=np.zeros((64, 64), bool))
    assert is_low_texture(blank)
    h, score = tile_signature(np.stack([ocean] * 3))
    assert h == tile_phash(np.stack([ocean] * 3)) and score == pytest.approx(texture_score(ocean))


@needs_real
def test_low_texture_flag_on_real_tiles() -> None:
    import rasterio

    with rasterio.open(REAL / "rasterio" / "all-nodata.tif") as ds:
        blank = ds.read(window=((0, 256), (0, 71)))
        valid = ds.dataset_mask(window=((0, 256), (0, 71))) > 0
    assert is_low_texture(canonical_view(blank, valid=valid))
    with rasterio.open(REAL / "rasterio" / "cogeo.tif") as ds:
        tile = ds.read(window=((256, 512), (256, 512)))
    assert not is_low_texture(canonical_view(tile))


def test_hamming_vectorised() -> None:
    a = np.array([0, 0xFFFFFFFFFFFFFFFF, 0b1011], dtype=np.uint64)
    assert hamming(a, np.uint64(0)).tolist() == [0, 64, 3]
    assert hamming(a[:, None], a[None, :]).shape == (3, 3)
    assert int(hamming(0x8000000000000000, 0)) == 1


def _luma_formula(tile: np.ndarray, rgb: tuple[int, int, int], valid: np.ndarray | None) -> np.ndarray:
    """PIL's fixed-point ITU-R 601-2 luma (libImaging/Convert.c) in numpy: what canonical_view must give."""
    r, g, b = (tile[i].astype(np.uint32) for i in rgb)
    gray = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
    return gray if valid is None else np.where(valid, gray, np.uint8(0))


def test_uint8_rgb_view_equals_the_luma_formula() -> None:
    rng = np.random.default_rng(8)
    tiles = [rng.integers(0, 256, (3, h, w), dtype=np.uint8) for h, w in ((64, 80), (1, 1), (7, 300), (0, 5))]
    tiles.append(rng.integers(0, 256, (3, 90, 90), dtype=np.uint8)[:, ::2, 1::3])  # bands not contiguous
    for tile in tiles:
        valid = rng.random(tile.shape[1:]) > 0.3
        for mask in (None, valid):
            view = canonical_view(tile, valid=mask)
            assert view.dtype == np.uint8 and view.flags.c_contiguous and view.flags.writeable
            assert np.array_equal(view, _luma_formula(tile, (0, 1, 2), mask))
        nir_first = np.concatenate([tile[:1], tile[::-1]])  # (nir, blue, green, red)
        names = ["nir", "blue", "green", "red"]
        assert np.array_equal(canonical_view(nir_first, names, valid), _luma_formula(tile, (0, 1, 2), valid))


@needs_real
def test_real_uint8_rgb_views_equal_the_luma_formula() -> None:
    tiles = [t for t, _ in real_tiles() if t.dtype == np.uint8 and t.shape[0] == 3]
    masks = [t.any(axis=0) for t in tiles]  # black fill as nodata, as a reader with nodata=0 gives
    assert len(tiles) > 50 and not all(m.all() for m in masks)
    for tile, valid in zip(tiles, masks, strict=True):
        assert np.array_equal(canonical_view(tile, valid=valid), _luma_formula(tile, (0, 1, 2), valid))


def test_low_texture_on_the_sample_scenes(sample_dir: Path) -> None:
    """Real tiles of the PyPI sample: nodata-filled windows of the rotated Landsat scene are flat and share
    one hash; every fully valid 64 px window of the sample's scenes is textured (lowest score measured: 7)."""
    import rasterio

    names = {"LC08_L1TP_224078_20200518_20200518_01_RT.TIF": ["blue", "green", "red"],
             "rgbn.tif": ["red", "green", "blue", "nir"]}
    flat_hashes, textured = set(), []
    for name, bands in names.items():
        with rasterio.open(sample_dir / name) as ds:
            scene = ds.read()
        for y in range(0, scene.shape[1] - 63, 64):
            for x in range(0, scene.shape[2] - 63, 64):
                tile = scene[:, y : y + 64, x : x + 64]
                valid = tile.any(axis=0)
                view = canonical_view(tile, bands, valid)
                if not valid.any():
                    assert is_low_texture(view)
                    flat_hashes.add(phash_gray(view))
                elif valid.all():
                    textured.append(texture_score(view))
    assert len(flat_hashes) == 1 and len(textured) > 500
    assert min(textured) > 2 * 2.0


@pytest.mark.parametrize("dtype", ["uint16", "int16", "int8", "uint32", "float32"])
def test_views_of_small_integers_skip_the_float64_copy_with_the_same_pixels(dtype: str) -> None:
    """Integer bands of at most 16 bits are greyed without a float64 copy (band sums are exact either way), and the
    stretch's percentiles come from a partial selection (rscurate.percentiles): the same view as the float64 path,
    which a float64 copy of the tile takes, on colour and band-mean tiles, with and without invalid pixels."""
    rng = np.random.default_rng(len(dtype))
    for _ in range(40):
        bands = int(rng.choice([1, 3, 4, 13]))
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        lo, hi = (-100, 100) if dtype == "int8" else (0, 60000) if dtype.startswith("u") else (-30000, 30000)
        tile = rng.integers(lo, hi, (bands, h, w)).astype(dtype)
        if rng.random() < 0.3:
            tile = (tile // 7).astype(dtype)  # ties
        names = ["red", "green", "blue", *(f"x{k}" for k in range(bands - 3))] if bands >= 3 and rng.random() < 0.5 \
            else [f"x{k}" for k in range(bands)]
        valid = None if rng.random() < 0.3 else rng.random((h, w)) < rng.choice([0.5, 1.0])
        np.testing.assert_array_equal(canonical_view(tile, names, valid),
                                      canonical_view(tile.astype(np.float64), names, valid))


def test_partial_selection_percentiles_equal_numpys(monkeypatch: pytest.MonkeyPatch) -> None:
    """rscurate.percentiles against np.percentile on sizes around the selection threshold and a 256 px tile's,
    continuous values, heavy ties and few distinct values; also when the sample's brackets miss (everything is
    partitioned then) and when the first-use check finds a difference (np.percentile's own result then)."""
    from rscurate import percentiles as pct

    rng = np.random.default_rng(11)
    qs = (2.0, 98.0)

    def cases() -> list[np.ndarray]:
        out = []
        for n in (1, 2, 3, 50, 4095, 4096, 4097, 65536, *rng.integers(1, 70000, 6).tolist()):
            out += [rng.normal(size=n) * 1e3, np.round(rng.normal(size=n) * 3) + 0.0,
                    rng.integers(0, 4, n).astype(np.float64)]
        return out

    for values in cases():
        np.testing.assert_array_equal(pct.percentiles(values, qs), np.percentile(values, qs))
    partitioned: list[int] = []
    real_partition = np.partition
    monkeypatch.setattr(np, "partition", lambda a, kth: partitioned.append(len(a)) or real_partition(a, kth))
    for n in (5000, 65536):  # every sampled value far above the rest: the brackets miss, everything is partitioned
        values = rng.normal(size=n)
        values[:: pct._SAMPLE_EVERY] = 1e9 + np.arange(len(values[:: pct._SAMPLE_EVERY]))
        np.testing.assert_array_equal(pct.percentiles(values, qs), np.percentile(values, qs))
        assert partitioned[-1] == n
    monkeypatch.setattr(pct, "_agrees", False)
    monkeypatch.setattr(pct, "_linear", lambda values, qs: np.zeros(len(qs)))
    assert pct.percentiles(np.arange(10.0), qs).tolist() == np.percentile(np.arange(10.0), qs).tolist()
