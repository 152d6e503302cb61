"""What a shard stores is what was read: validity masks, encodings from the bytes, portable whole chips."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import torch
from conftest import run_build, textured, write_manifest, write_tif
from PIL import Image
from rasterio.io import MemoryFile

from rscurate import codec, open_corpus
from rscurate.units import content_sha256
from rscurate.verify import VerifyError, verify
from rspretrain.config import DataConfig
from rspretrain.corpus import Corpus
from rspretrain.data import CorpusDataset


def _shard_rows(out: Path) -> dict[str, dict]:
    """Every stored row by scene, read straight from the shards (no rscurate decoding)."""
    rows = [r for p in sorted((out / "shards").glob("*.parquet")) for r in pq.read_table(p).to_pylist()]
    return {r["scene"]: r for r in rows}


def _chips_manifest(tmp_path: Path, bands: str = "rgb") -> Path:
    return write_manifest(tmp_path / "m.yaml", f"""\
        name: chips
        license: CC-BY-4.0
        root: d
        include: ["*.png", "*.jpg"]
        bands: {bands}
        tile: {{mode: whole, min_size: 64}}
        quality: {{max_nodata_fraction: 0.9}}
        """)


def test_internal_mask_is_stored_and_used_in_statistics_and_training(tmp_path: Path, rng: np.random.Generator) -> None:
    """A JPEG-compressed GeoTIFF with an internal mask and no nodata: masked pixels hold JPEG noise and valid
    pixels include genuine zeros, so only a stored mask tells them apart."""
    data = textured(rng, 3, 256, 256, "uint8")
    data[:, 100:120, 100:120] = 0  # genuine zeros: valid data
    mask = np.full((256, 256), 255, np.uint8)
    mask[:, :64] = 0  # the left quarter is masked
    path = tmp_path / "d" / "masked.tif"
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        write_tif(path, data, tiled=True, blockxsize=128, blockysize=128, compress="jpeg")
        with rasterio.open(path, "r+") as ds:
            ds.write_mask(mask)
    with rasterio.open(path) as ds:
        read_valid = ds.dataset_mask() > 0
    m = write_manifest(tmp_path / "m.yaml", """\
        name: masked
        license: CC0-1.0
        root: d
        include: ["*.tif"]
        tile: {size: 256}
        """)
    run_build([m], tmp_path / "c")
    row = _shard_rows(tmp_path / "c")["masked.tif"]
    assert row["nodata"] is None
    stored = codec.decode_mask(row["valid_mask"])
    np.testing.assert_array_equal(stored, read_valid)
    assert row["valid_pixels"] == int(read_valid.sum())
    tile = codec.decode(row["image"], row["encoding"])
    np.testing.assert_allclose(row["band_mean"], tile[:, read_valid].mean(axis=1))
    assert row["band_min"] == [0.0, 0.0, 0.0]  # the genuine zeros count as data
    np.testing.assert_array_equal(open_corpus(tmp_path / "c").validity(0), read_valid)

    corpus = Corpus(tmp_path / "c")
    cfg = DataConfig(bands=["b1", "b2", "b3"], shuffle_buffer=1)
    samples = list(CorpusDataset(corpus, 256, cfg, num_workers=0, augment=False, epochs=1))
    image = samples[0]["image"]
    assert torch.equal(image[:, :, :64], torch.zeros(3, 256, 64))  # masked pixels take the band mean: 0
    assert (image[:, 100:120, 100:120] != 0).all()  # genuine zeros are not filled
    verify(tmp_path / "c")
    shard = next((tmp_path / "c" / "shards").glob("*.parquet"))
    table = pq.read_table(shard)
    flipped = read_valid.copy()
    flipped[0, 0] = ~flipped[0, 0]  # one pixel of the stored mask changed: the index's valid count no longer fits
    masks = table["valid_mask"].to_pylist()
    masks[0] = codec.encode_mask(flipped)
    pq.write_table(table.set_column(table.schema.get_field_index("valid_mask"), "valid_mask",
                                    pa.array(masks, pa.binary())), shard)
    with pytest.raises(VerifyError, match="valid_mask marks"):
        verify(tmp_path / "c")


def test_alpha_chip_keeps_its_mask(tmp_path: Path, rng: np.random.Generator) -> None:
    rgb = np.moveaxis(textured(rng, 3, 96, 96, "uint8"), 0, -1)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    rgba[:20, :, 3] = 0
    (tmp_path / "d").mkdir()
    Image.fromarray(rgba).save(tmp_path / "d" / "alpha.png")
    run_build([_chips_manifest(tmp_path)], tmp_path / "c")
    row = _shard_rows(tmp_path / "c")["alpha.png"]
    assert row["encoding"] == "npy.zst" and row["valid_pixels"] == 76 * 96
    np.testing.assert_array_equal(codec.decode_mask(row["valid_mask"]), rgba[:, :, 3] > 0)


def test_encoding_comes_from_the_bytes_and_palettes_are_expanded(tmp_path: Path, rng: np.random.Generator) -> None:
    """A TIFF named .png is not stored as png; a palette PNG declared rgb stores the colours, not the indices."""
    rgb = textured(rng, 3, 96, 96, "uint8")
    write_tif(tmp_path / "d" / "tiff_named.png", rgb)
    indices = (textured(rng, 1, 96, 96, "uint8")[0] // 16).astype(np.uint8)  # 16 palette entries
    palette = rng.integers(0, 256, size=(256, 3), dtype=np.uint8)
    img = Image.fromarray(indices, mode="P")
    img.putpalette(palette.ravel().tolist())
    img.save(tmp_path / "d" / "palette.png")
    run_build([_chips_manifest(tmp_path)], tmp_path / "c")
    rows = _shard_rows(tmp_path / "c")
    tiff = rows["tiff_named.png"]
    assert tiff["encoding"] == "npy.zst"
    np.testing.assert_array_equal(codec.decode(tiff["image"], tiff["encoding"]), rgb)
    pal = rows["palette.png"]
    assert pal["bands"] == ["red", "green", "blue"] and pal["channels"] == 3
    np.testing.assert_array_equal(codec.decode(pal["image"], pal["encoding"]), np.moveaxis(palette[indices], -1, 0))


def test_a_palette_class_map_declared_as_one_band_keeps_its_indices(tmp_path: Path, rng: np.random.Generator) -> None:
    indices = (textured(rng, 1, 96, 96, "uint8")[0] // 16).astype(np.uint8)
    img = Image.fromarray(indices, mode="P")
    img.putpalette(rng.integers(0, 256, size=768, dtype=np.uint8).tolist())
    (tmp_path / "d").mkdir()
    img.save(tmp_path / "d" / "classes.png")
    run_build([_chips_manifest(tmp_path, bands="[{name: class}]")], tmp_path / "c")
    row = _shard_rows(tmp_path / "c")["classes.png"]
    assert row["bands"] == ["class"] and row["encoding"] == "png"
    np.testing.assert_array_equal(codec.decode(row["image"], row["encoding"])[0], indices)


def test_stored_chip_bytes_decode_to_the_index_in_pillow_and_rasterio(tmp_path: Path, rng: np.random.Generator) -> None:
    """The documented contract for whole chips: Pillow and rasterio decode the stored bytes to exactly the array
    whose sha256 the index holds. Subsampled-chroma JPEGs decode differently, so they are stored as npy.zst."""
    rgb = np.moveaxis(textured(rng, 3, 128, 128, "uint8"), 0, -1)
    (tmp_path / "d").mkdir()
    Image.fromarray(rgb).save(tmp_path / "d" / "s420.jpg", quality=90, subsampling=2)
    Image.fromarray(rgb[::-1, :, 0]).save(tmp_path / "d" / "gray.jpg", quality=90)
    Image.fromarray(rgb[:, ::-1]).save(tmp_path / "d" / "lossless.png")
    run_build([_chips_manifest(tmp_path)], tmp_path / "c")
    rows = _shard_rows(tmp_path / "c")
    assert {s: r["encoding"] for s, r in rows.items()} == {"s420.jpg": "npy.zst", "gray.jpg": "jpeg",
                                                          "lossless.png": "png"}
    for scene, row in rows.items():
        if row["encoding"] == "npy.zst":
            decoded = [codec.decode(row["image"], "npy.zst")]
            with rasterio.open(tmp_path / "d" / scene) as ds:  # what was stored is GDAL's decode, recorded exactly
                np.testing.assert_array_equal(decoded[0], ds.read())
        else:
            with Image.open(io.BytesIO(row["image"])) as img:
                by_pillow = np.asarray(img)
            by_pillow = by_pillow[None] if by_pillow.ndim == 2 else np.moveaxis(by_pillow, -1, 0)
            with MemoryFile(row["image"]) as mem, mem.open() as ds:
                decoded = [by_pillow, ds.read()]
        for array in decoded:
            assert content_sha256(array) == row["sha256"], scene
