"""Quality rules on single tiles: each gives its reason, and the first failing rule wins."""

from __future__ import annotations

import numpy as np

from rscurate.manifest import Quality
from rscurate.quality import judge, tile_stats


def _judge(q: dict, data: np.ndarray, valid: np.ndarray | None = None, qa: dict | None = None,  # type: ignore[no-untyped-def]
           nodata: float | None = None):
    valid = np.ones(data.shape[1:], bool) if valid is None else valid
    names = [f"B{i + 1:02d}" for i in range(data.shape[0])]
    return judge(Quality.model_validate(q), data, valid, qa or {}, tile_stats(data, valid, nodata), names)


def test_brightness_rule_tests_only_the_named_bands() -> None:
    rng = np.random.default_rng(0)
    tile = rng.uniform(0.0, 0.1, (4, 32, 32)).astype(np.float32)
    tile[1:3, :, :20] = 0.5  # bright in B02 and B03 over 62 % of the tile; B01/B04 stay dark
    assert _judge({"cloud": {"brightness": 0.3, "max_fraction": 0.5}}, tile) is None
    verdict = _judge({"cloud": {"brightness": 0.3, "bands": ["B02", "B03"], "max_fraction": 0.5}}, tile)
    assert verdict is not None and verdict[0] == "cloud" and "0.625" in verdict[1]


def test_qa_bits_and_classes() -> None:
    tile = np.random.default_rng(1).integers(0, 1000, (2, 16, 16)).astype(np.uint16)
    qa = np.zeros((16, 16), np.uint16)
    qa[:10] = 1 << 3  # Landsat QA_PIXEL bit 3: cloud
    rule = {"cloud": {"band": "B01", "bits": [3], "max_fraction": 0.5}}
    assert _judge(rule, tile, qa={"B01": qa})[0] == "cloud"
    rule = {"cloud": {"band": "B01", "classes": [9], "max_fraction": 0.5}}
    assert _judge(rule, tile, qa={"B01": qa}) is None


def test_rules_in_order_nodata_then_low_information() -> None:
    flat = np.full((3, 16, 16), 7, np.uint8)
    valid = np.zeros((16, 16), bool)
    valid[:4] = True
    assert _judge({}, flat, valid)[0] == "nodata"
    assert _judge({}, flat)[0] == "low_information"
    assert _judge({"min_std": 0}, flat) is None
    floats = np.random.default_rng(2).normal(0.2, 1e-5, (2, 16, 16)).astype(np.float32)
    assert _judge({}, floats)[0] == "low_information", "floats use the 1e-4 default"


def test_flat_tile_with_one_nan_pixel_is_low_information() -> None:
    """Issue 9.1: max([nan, 0]) is NaN, and NaN < min_std is False, so the flat tile used to be kept."""
    flat = np.full((2, 16, 16), 0.25, np.float32)
    flat[0, 3, 4] = np.nan
    verdict = _judge({}, flat)
    assert verdict is not None and verdict[0] == "low_information" and "nan" not in verdict[1]


def test_low_information_rule_ignores_fill_in_one_band() -> None:
    """Issue 9.2: a flat band with a strip of declared fill (0) is flat, not varied."""
    tile = np.full((2, 16, 16), 500, np.uint16)
    tile[0, :, :3] = 0  # fill in band 1 only: band 2 has data there
    assert _judge({}, tile, nodata=0)[0] == "low_information"
