"""Dedup quality on real imagery: `rscurate build` must find the copies geometry says exist, and merge no
two different places. Same cases as bench/dedup_quality.py (bench/dedup_cases.py), at the build's default
radius; ground truth from footprints and known transforms only. ~20 s on 2 cores (three CLI builds)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.dedup_cases import buffer_json, run_cases


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> dict[str, dict[str, Any]]:
    """Run the three builds once for all tests of this module."""
    work = tmp_path_factory.mktemp("dedup_quality")
    return {c["case"]: c for c in run_cases(work, sample_dir)}


def _explain(case: dict[str, Any]) -> str:
    """Failure message: the case's numbers with its misses and wrong merges (ids, windows, distances)."""
    return buffer_json([case])[:6000]


def test_identical_copies_keep_each_window_once(cases: dict[str, dict[str, Any]]) -> None:
    a = cases["a_rgbn_identical_copies"]
    assert a["expected"] > 0
    assert a["recall"] == 1.0, _explain(a)
    assert a["positions_kept_once"] == a["positions"], _explain(a)


@pytest.mark.parametrize("case", ["b_rgbn_suba_vs_parent", "b_rgbn_subb_vs_parent"])
def test_crops_dropped_for_parent(cases: dict[str, dict[str, Any]], case: str) -> None:
    c = cases[case]
    assert c["expected"] > 0
    assert c["recall"] == 1.0, _explain(c)


@pytest.mark.parametrize("copy", ["jpeg85", "png", "shift3", "half"])
def test_derived_copies_dropped_for_original(cases: dict[str, dict[str, Any]], copy: str) -> None:
    c = cases[f"d_derived_{copy}"]
    assert c["expected"] == c["subject_tiles"] > 0
    assert c["recall"] == 1.0, _explain(c)


def test_landsat_row_overlap_found(cases: dict[str, dict[str, Any]]) -> None:
    c = cases["c_l8_224077_vs_224078_overlap"]
    assert c["expected"] > 0
    assert c["recall"] == 1.0, _explain(c)
    assert c["outside_overlap_dropped"] == 0, _explain(c)


def test_no_wrong_merges(cases: dict[str, dict[str, Any]]) -> None:
    """Precision: no drop pairs two tiles that do not overlap on the ground, in any build."""
    e = cases["e_different_places_all_drops"]
    assert e["found"] > 0
    assert e["false_positives"] == 0, _explain(e)
    assert e["wrong_merges_between_different_places"] == 0, _explain(e)
    assert cases["e_unreferenced_other_places"]["found"] == 0, _explain(cases["e_unreferenced_other_places"])
    for name, c in cases.items():
        if name[0] in "abcd":
            assert c["false_positives"] == 0, _explain(c)
