"""Property-based tests (hypothesis): manifests, tile windows against scene sizes, and the tile codec.

Example counts come from the profile in conftest.py (HYPOTHESIS_PROFILE=thorough for a longer search)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rscurate import codec
from rscurate.coverage import covered_pixels
from rscurate.manifest import FORMATS, Manifest, ManifestError, Tile, load_manifest
from rscurate.tiling import plan_windows

# --- manifests ------------------------------------------------------------------------------------------------

NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
REQUIRED = {"name": "src", "license": "CC0-1.0", "root": "data", "include": ["*.tif"]}
sizes = st.integers(1, 4096)
bands = st.lists(st.fixed_dictionaries({"name": st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True)}, optional={
    "wavelength_um": st.floats(0.3, 15), "gsd_m": st.floats(0.1, 1000), "qa": st.booleans()}),
    min_size=1, max_size=4, unique_by=lambda b: b["name"])


@st.composite
def tiles(draw: st.DrawFn) -> dict:
    mode = draw(st.sampled_from(["grid", "random", "whole"]))
    tile: dict = {"mode": mode, "size": draw(sizes), "anchor": draw(st.sampled_from(["crs", "scene"]))}
    if draw(st.booleans()):
        tile["stride"] = draw(sizes)
    if mode == "random" or draw(st.booleans()):
        lo = draw(sizes)
        tile |= {"min_size": lo, "max_size": draw(st.integers(lo, 8192)), "count": draw(st.integers(1, 50))}
    return tile


VALID = {  # optional fields -> values the manifest must accept
    "description": st.text(max_size=30),
    "priority": st.integers(-100, 100),
    "role": st.sampled_from(["train", "eval"]),
    # modis_l1b accepts MODIS band names only (B01..B36); tests/test_modis_l1b.py covers its manifests
    "format": st.sampled_from([f for f in FORMATS if f != "modis_l1b"]),
    "bands": st.one_of(st.just("rgb"), bands),
    "nodata": st.one_of(st.none(), st.integers(-9999, 65535), st.floats(allow_nan=False, allow_infinity=False)),
    "tile": tiles(),
    "quality": st.fixed_dictionaries({}, optional={"max_nodata_fraction": st.floats(0, 1),
                                                  "min_std": st.floats(0, 1e3)}),
    "limits": st.fixed_dictionaries({}, optional={"max_scene_pixels": st.integers(1, 2**40),
                                                 "max_decode_pixels": st.integers(1, 2**40)}),
    "npy_layout": st.sampled_from(["CHW", "HWC", "THWC", "TCHW"]),
}
INVALID = {  # one field -> values the manifest must refuse, naming that field
    "name": st.text(min_size=1, max_size=12).filter(lambda s: not NAME.match(s)),
    "priority": st.sampled_from(["high", 1.5, [1], {"a": 1}]),
    "role": st.text(max_size=8).filter(lambda s: s not in ("train", "eval")),
    "format": st.text(max_size=8).filter(lambda s: s not in FORMATS),
    "include": st.just([]),
    "tile": st.one_of(st.fixed_dictionaries({"size": st.integers(max_value=0)}),
                      st.fixed_dictionaries({"mode": st.just("random"), "min_size": st.integers(2, 99),
                                             "max_size": st.just(1), "count": st.just(1)})),
    "quality": st.fixed_dictionaries({"max_nodata_fraction": st.one_of(st.floats(max_value=-0.01),
                                                                       st.floats(min_value=1.01))}),
    "limits": st.fixed_dictionaries({"max_scene_pixels": st.integers(max_value=0)}),
    "root": st.just("${RSCURATE_SURELY_UNSET_VARIABLE}"),
    "licence": st.just("MIT"),  # unknown field (a misspelling of license)
}


@pytest.fixture(scope="module")
def manifest_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("manifests") / "m.yaml"


def _load(path: Path, data: object) -> Manifest:
    path.write_text(yaml.safe_dump(data))
    return load_manifest(path)


@given(st.fixed_dictionaries({}, optional=VALID))
def test_valid_manifests_parse(manifest_path: Path, extra: dict) -> None:
    manifest = _load(manifest_path, REQUIRED | extra)
    for field in ("priority", "role", "format", "npy_layout"):
        if field in extra:
            assert getattr(manifest, field) == extra[field]


@given(st.fixed_dictionaries({}, optional=VALID), st.sampled_from(sorted(INVALID)).flatmap(
    lambda f: st.tuples(st.just(f), INVALID[f])))
def test_an_invalid_field_is_named_in_a_manifest_error(manifest_path: Path, extra: dict, bad: tuple) -> None:
    field, value = bad
    with pytest.raises(ManifestError) as err:
        _load(manifest_path, REQUIRED | extra | {field: value})
    assert str(manifest_path) in str(err.value) and field in str(err.value)


json_like = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                                      max_size=3), max_leaves=10)


@given(st.dictionaries(st.sampled_from([*REQUIRED, *VALID, "bands", "band_files", "exclude", "labels", "junk"]),
                       json_like, max_size=8) | json_like)
def test_any_yaml_loads_or_raises_manifest_error(manifest_path: Path, data: object) -> None:
    """Whatever the YAML holds, the answer is a Manifest or a ManifestError, never another exception."""
    try:
        _load(manifest_path, data)
    except ManifestError:
        pass


@given(st.text(max_size=60))
def test_any_text_loads_or_raises_manifest_error(manifest_path: Path, text: str) -> None:
    manifest_path.write_text(text)
    try:
        load_manifest(manifest_path)
    except ManifestError:
        pass


# --- tile windows against scene sizes ----------------------------------------------------------------------------

scene_side = st.integers(1, 1200)
origins = st.one_of(st.none(), st.tuples(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6)))


def _covered_by_painting(windows: list, width: int, height: int) -> int:
    mask = np.zeros((height, width), bool)
    for x, y, w, h in windows:
        mask[y : y + h, x : x + w] = True
    return int(mask.sum())


def _check_inside(windows: list, width: int, height: int) -> None:
    for x, y, w, h in windows:
        assert w > 0 and h > 0 and 0 <= x and 0 <= y and x + w <= width and y + h <= height, (x, y, w, h)


@given(scene_side, scene_side, st.integers(8, 400), st.integers(1, 3), st.integers(1, 4),
       st.sampled_from(["crs", "scene"]), origins)
def test_grid_tiles_stay_inside_and_leave_margins_under_a_stride(width: int, height: int, size: int, num: int,
                                                                 den: int, anchor: str, origin: tuple | None) -> None:
    """Every pixel is in a tile or in a margin; margins (counted as width x height - pixels_tiled) are only the
    scene's edges, each narrower than the stride, whenever the stride does not exceed the tile (no gaps)."""
    stride = max(1, size * num // den)
    tile = Tile(size=size, stride=stride, anchor=anchor)
    windows = plan_windows(width, height, tile, "scene", origin)
    _check_inside(windows, width, height)
    assert len(set(windows)) == len(windows)
    if min(width, height) < size:
        assert windows == []
        return
    assert windows, "a scene at least one tile wide and high gets a tile"
    covered = covered_pixels(windows, width, height)
    assert covered == _covered_by_painting(windows, width, height)
    if stride <= size:
        xs, ys = sorted({w[0] for w in windows}), sorted({w[1] for w in windows})
        assert covered == (xs[-1] + size - xs[0]) * (ys[-1] + size - ys[0]), "no gap between tiles"
        for lead, tail, side in ((xs[0], width - xs[-1] - size, width), (ys[0], height - ys[-1] - size, height)):
            assert 0 <= lead < stride and 0 <= tail < stride, (lead, tail, side)
            if anchor == "scene" or origin is None:
                assert lead == 0


@given(scene_side, scene_side, st.data())
def test_random_and_whole_tiles_stay_inside(width: int, height: int, data: st.DataObject) -> None:
    lo = data.draw(st.integers(1, 300))
    hi = data.draw(st.integers(lo, 600))
    count = data.draw(st.integers(1, 30))
    random = Tile(mode="random", min_size=lo, max_size=hi, count=count, seed=data.draw(st.integers(0, 9)))
    windows = plan_windows(width, height, random, "scene")
    _check_inside(windows, width, height)
    if min(width, height) < lo:
        assert windows == []
    else:
        assert 1 <= len(windows) <= count and all(lo <= w <= min(hi, width, height) and w == h
                                                  for _, _, w, h in windows)
        assert covered_pixels(windows, width, height) == _covered_by_painting(windows, width, height)
    whole = Tile(mode="whole", size=data.draw(st.integers(8, 300)), max_size=data.draw(st.none() | st.integers(1, 900)))
    windows = plan_windows(width, height, whole, "scene")
    _check_inside(windows, width, height)
    if whole.max_size is None or max(width, height) <= whole.max_size:
        assert windows == [(0, 0, width, height)]


# --- codec round trips ------------------------------------------------------------------------------------------

DTYPES = [np.dtype(f"{order}{kind}") for kind in ("u2", "u4", "u8", "i2", "i4", "i8", "f2", "f4", "f8", "c8", "c16")
          for order in "<>"] + [np.dtype(t) for t in ("bool", "u1", "i1")]
tile_arrays = st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
    dt, st.tuples(st.integers(1, 4), st.integers(0, 24), st.integers(0, 24)),
    elements=hnp.from_dtype(dt, allow_nan=True, allow_infinity=True) if dt.kind in "fc" else None))


@given(tile_arrays, st.booleans())
def test_every_dtype_round_trips_bit_for_bit(arr: np.ndarray, transposed: bool) -> None:
    """NaN payloads, infinities, -0.0, byte order and non-contiguous inputs included."""
    if transposed:
        arr = np.ascontiguousarray(arr.transpose(0, 2, 1)).transpose(0, 2, 1)  # same values, Fortran-like strides
    out = codec.decode(codec.encode_array(arr), codec.NPY_ZSTD)
    assert out.dtype == arr.dtype and out.shape == arr.shape
    assert out.tobytes() == np.ascontiguousarray(arr).tobytes()


@given(hnp.arrays(bool, st.tuples(st.integers(1, 40), st.integers(1, 40))))
def test_masks_round_trip(valid: np.ndarray) -> None:
    assert np.array_equal(codec.decode_mask(codec.encode_mask(valid)), valid)
