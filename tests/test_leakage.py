"""Eval leakage at any alignment and modest rescaling, on real Landsat imagery (the sample's row 224/078).

Eval chips are cut from a training scene where real benchmark chips come from: at grid-aligned offsets (the
case that used to be caught 0 of 4 times with 128 px multiples), at arbitrary offsets, at other sizes, resized
0.7x-1.5x and saved as 8-bit JPEG renders. Ground truth is the geometry of the cut, never a hash.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from PIL import Image

from rscurate.probe_leaks import LEAK_SHARE
from tests.conftest import run_build, write_manifest

L8_078 = "LC08_L1TP_224078_20200518_20200518_01_RT.TIF"
SIDE, TILE = 768, 256
# (x, y, side in scene pixels, chip pixels per scene pixel)
CHIPS = {
    "aligned.jpg": (256, 128, 256, 1.0),  # on 128 px multiples, straddling two tiles
    "offset.jpg": (301, 77, 240, 1.0),
    "small_shrunk.jpg": (420, 395, 200, 0.74),
    "big_enlarged.jpg": (60, 430, 300, 1.42),
    "corner.jpg": (505, 500, 260, 0.9),
}


def _render(stack: np.ndarray) -> np.ndarray:
    """(3, H, W) blue/green/red uint16 -> (H, W, 3) RGB uint8 with its own 2-98 % stretch, as a benchmark ships."""
    rgb = stack[::-1].astype(np.float64)
    lo, hi = np.percentile(rgb, (2, 98), axis=(1, 2), keepdims=True)
    return np.clip((rgb - lo) / (hi - lo) * 255, 0, 255).astype(np.uint8).transpose(1, 2, 0)


def _expected_tiles(x: int, y: int, side: int) -> set[tuple[int, int]]:
    """Grid tiles holding at least LEAK_SHARE of the chip, or lying at least LEAK_SHARE inside it, or holding most."""
    overlap = {}
    for ty in range(0, SIDE - TILE + 1, TILE):
        for tx in range(0, SIDE - TILE + 1, TILE):
            ix = max(0, min(tx + TILE, x + side) - max(tx, x))
            iy = max(0, min(ty + TILE, y + side) - max(ty, y))
            overlap[(tx, ty)] = ix * iy
    most = max(overlap.values())
    return {k for k, v in overlap.items()
            if v >= LEAK_SHARE * side * side or v >= LEAK_SHARE * TILE * TILE or v == most}


@pytest.fixture(scope="module")
def leak_build(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("leak")
    (root / "train").mkdir()
    (root / "eval").mkdir()
    with rasterio.open(sample_dir / L8_078) as ds:
        window = ((500, 500 + SIDE), (300, 300 + SIDE))
        scene = ds.read(window=window)
        profile = dict(driver="GTiff", width=SIDE, height=SIDE, count=3, dtype="uint16", crs=ds.crs,
                       transform=ds.window_transform(window))
        elsewhere = ds.read(window=((1300, 1556), (1500, 1756)))
    with rasterio.open(root / "train" / "l8.tif", "w", **profile) as out:
        out.write(scene)
    for name, (x, y, side, scale) in CHIPS.items():
        chip = Image.fromarray(_render(scene[:, y : y + side, x : x + side]))
        chip.resize((round(side * scale),) * 2, Image.Resampling.LANCZOS).save(root / "eval" / name, quality=90)
    Image.fromarray(_render(elsewhere)).save(root / "eval" / "elsewhere.jpg", quality=90)
    write_manifest(root / "m" / "train.yaml", textwrap.dedent(f"""\
        name: l8
        license: public domain (USGS)
        root: ../train
        include: ["*.tif"]
        nodata: 0
        bands: [{{name: blue}}, {{name: green}}, {{name: red}}]
        tile: {{size: {TILE}}}
        """))
    write_manifest(root / "m" / "eval.yaml", textwrap.dedent("""\
        name: bench
        license: test
        role: eval
        root: ../eval
        include: ["*.jpg"]
        bands: rgb
        tile: {mode: whole}
        """))
    run_build([root / "m"], root / "corpus")
    return root / "corpus"


def test_chips_at_any_offset_and_scale_leak_the_tiles_that_hold_them(leak_build: Path) -> None:
    excluded = pd.read_parquet(leak_build / "excluded.parquet")
    leaks = excluded[excluded["reason"] == "eval_leak"]
    leaked = set(zip(leaks["x"], leaks["y"], strict=True))
    expected = set().union(*(_expected_tiles(x, y, side) for x, y, side, _ in CHIPS.values()))
    assert expected <= leaked, f"missed {sorted(expected - leaked)}"
    assert leaked <= expected, f"leaked tiles that hold no chip: {sorted(leaked - expected)}"
    index = pd.read_parquet(leak_build / "index.parquet")
    assert len(index) == (SIDE // TILE) ** 2 - len(expected)


def test_leak_detail_names_the_item_and_where_it_lies(leak_build: Path) -> None:
    leaks = pd.read_parquet(leak_build / "excluded.parquet").query("reason == 'eval_leak'")
    named = {m.group(1): m for d in leaks["detail"] if (m := re.search(
        r"eval item bench:(\S+) lies at x=(-?\d+), y=(-?\d+) of this scene at scale ([\d.]+)", d))}
    assert set(named) == set(CHIPS)
    for name, m in named.items():
        x, y, _, scale = CHIPS[name]
        assert abs(int(m.group(2)) - x) <= 12 and abs(int(m.group(3)) - y) <= 12, m.group(0)
        assert abs(float(m.group(4)) / scale - 1) < 0.06, m.group(0)
    assert not leaks["detail"].str.contains("elsewhere.jpg").any()
