"""Tile encoding: a zstd frame of exactly the bytes np.save writes (C order), decodable without rscurate."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import zstandard

from rscurate.codec import NPY_ZSTD, decode, encode_array


def _arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = [rng.normal(0, 300, (3, 17, 9)).astype(dt) for dt in ("u1", "i1", "<u2", ">u2", "<i2", ">f4", "f2", "<f8")]
    out.append(rng.integers(0, 2, (2, 5, 5)).astype(bool))
    out.append(np.asfortranarray(rng.integers(0, 9, (2, 8, 8)).astype(np.uint16)))
    out.append(rng.integers(0, 255, (4, 40, 40)).astype(np.uint8)[:, ::2, 1::3])  # not contiguous
    out.append(np.zeros((3, 0, 4), np.uint8))
    return out


@pytest.mark.parametrize("arr", _arrays(), ids=lambda a: f"{a.dtype.str}{a.shape}")
def test_encoding_is_a_zstd_frame_of_np_save_bytes(arr: np.ndarray) -> None:
    data = encode_array(arr)
    raw = zstandard.decompress(data)  # the frame header carries the content size
    expected = io.BytesIO()
    np.save(expected, np.ascontiguousarray(arr), allow_pickle=False)  # C order, whatever the input's layout
    assert raw == expected.getvalue()
    back = np.load(io.BytesIO(raw), allow_pickle=False)
    assert back.dtype == arr.dtype and np.array_equal(back, arr)
    assert np.array_equal(decode(data, NPY_ZSTD), arr)


def test_threads_share_no_compressor() -> None:
    rng = np.random.default_rng(4)
    tiles = [rng.integers(0, 4000, (4, 64, 64)).astype(np.uint16) for _ in range(32)]
    expected = [encode_array(t) for t in tiles]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(4):
            assert list(pool.map(encode_array, tiles)) == expected


def test_rejects_non_tiles() -> None:
    with pytest.raises(ValueError):
        encode_array(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError):
        encode_array(np.empty((1, 1, 1), object))


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
@pytest.mark.parametrize("fortran", [False, True])
def test_decode_gives_what_np_load_gives_for_any_npy_bytes(version, fortran):
    """decode reads headers it has parsed before without np.load; for any .npy bytes (np.save's versions, Fortran
    order, truncated data) it must give np.load's array, writable, or np.load's error."""
    for arr in _arrays():
        arr = np.asfortranarray(arr) if fortran else arr
        out = io.BytesIO()
        np.lib.format.write_array(out, arr, version=version)
        raw = out.getvalue()
        for _ in range(2):  # the second time from the parsed-header cache
            got = decode(zstandard.ZstdCompressor().compress(raw), NPY_ZSTD)
            want = np.load(io.BytesIO(raw))
            assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
            assert got.flags.writeable
        if arr.size:
            with pytest.raises(ValueError) as want_err:
                np.load(io.BytesIO(raw[:-3]))
            with pytest.raises(ValueError, match="EOF") as got_err:
                decode(zstandard.ZstdCompressor().compress(raw[:-3]), NPY_ZSTD)
            assert str(got_err.value) == str(want_err.value)
