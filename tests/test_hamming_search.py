"""Exact near-duplicate search: equality with brute force, identical groups, keep rule without chaining."""

from __future__ import annotations

import itertools
import tracemalloc

import numpy as np
import pytest

from rscurate.hamming_search import (
    Pairs,
    covering_masks,
    explicit_pairs,
    find_pairs,
    find_pairs_dask,
    group_identical,
    query_pairs,
    search_plan,
    search_tables,
    select_kept,
)


def random_hashes(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)


def flips(rng: np.random.Generator, distances: np.ndarray) -> np.ndarray:
    """One uint64 per entry with exactly distances[k] random bits set."""
    order = rng.random((len(distances), 64)).argsort(axis=1)
    bits = (order < distances[:, None]).astype(np.uint64)
    return (bits << np.arange(64, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)


def planted(n: int, k: int, radius: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """n random hashes where k of them are copies of k others at distances 0..radius+2."""
    rng = np.random.default_rng(seed)
    h = random_hashes(rng, n)
    picks = rng.choice(n, 2 * k, replace=False)
    src, dst = picks[:k], picks[k:]
    h[dst] = h[src] ^ flips(rng, np.arange(k) % (radius + 3))
    return h, src, dst


def brute_within(h: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, d) for every i < j with d <= radius, by checking all pairs in blocks."""
    out_i, out_j, out_d = [], [], []
    for r0 in range(0, len(h), 1024):
        d = np.bitwise_count(h[r0:r0 + 1024, None] ^ h[None, :])
        ii, jj = np.nonzero(d <= radius)
        keep = jj > ii + r0
        out_i.append(ii[keep] + r0)
        out_j.append(jj[keep])
        out_d.append(d[ii[keep], jj[keep]])
    return np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_d)


def brute_pairs(h: np.ndarray, radius: int) -> set[tuple[int, int]]:
    i, j, _ = brute_within(h, radius)
    return set(zip(i.tolist(), j.tolist(), strict=True))


def as_set(p: Pairs) -> set[tuple[int, int]]:
    return set(zip(p.i.tolist(), p.j.tolist(), strict=True))


def neighbours_from(rep: np.ndarray, pairs: Pairs, item: int) -> set[int]:
    """Items within the radius of ``item`` according to find_pairs' documented (compressed) output.

    ``rep`` maps every index to the first index holding the same hash.
    """
    r = rep[item]
    linked = np.concatenate((pairs.j[pairs.i == r], pairs.i[pairs.j == r], [r]))
    return set(np.flatnonzero(np.isin(rep, rep[linked])).tolist()) - {item}


def first_index(h: np.ndarray) -> np.ndarray:
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    return first[inverse]


@pytest.fixture(scope="module")
def data_20k() -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """20k hashes with planted near copies (distances 0..10) and an identical group, and brute force at 8."""
    h, _, _ = planted(20_000, 2_000, 8, seed=1)
    h[100:160] = h[7]
    return h, brute_within(h, 8)


@pytest.mark.parametrize("radius", [2, 5, 8])
def test_covering_search_equals_brute_force_on_20k(radius: int, data_20k) -> None:
    h, (bi, bj, bd) = data_20k
    keep = bd <= radius
    expected = set(zip(bi[keep].tolist(), bj[keep].tolist(), strict=True))
    got = find_pairs(h, radius, method="covering")
    assert (got.i < got.j).all() and (got.dist <= radius).all()
    assert as_set(explicit_pairs(h, got)) == expected
    assert as_set(explicit_pairs(h, find_pairs(h, radius, method="brute"))) == expected
    assert as_set(explicit_pairs(h, find_pairs(h, radius))) == expected


@pytest.mark.parametrize(("radius", "blocks"), [(8, 1), (8, 3), (6, 7), (4, 2)])
def test_every_block_plan_equals_brute_force(radius: int, blocks: int, data_20k) -> None:
    h, (bi, bj, bd) = data_20k
    values, first, _ = group_identical(h)
    keep = (bd <= radius) & (h[bi] != h[bj])
    expected = {(min(a, b), max(a, b)) for a, b in zip(
        np.searchsorted(values, h[bi[keep]]).tolist(), np.searchsorted(values, h[bj[keep]]).tolist(),
        strict=True)}
    codes = search_tables(values, search_plan(radius, len(values), blocks=blocks), radius)
    n = len(values)
    assert set(zip((codes // n).tolist(), (codes % n).tolist(), strict=True)) == expected


def test_planted_recall_on_100k_against_per_item_brute_force() -> None:
    radius = 8
    h, src, dst = planted(100_000, 3_000, radius, seed=11)
    pairs = find_pairs(h, radius, workers=2)
    # Each listed pair once; the compressed output has one row per distinct pair or repeated index.
    codes = pairs.i * len(h) + pairs.j
    assert len(np.unique(codes)) == len(codes)
    rep = first_index(h)
    rng = np.random.default_rng(0)
    probe = np.concatenate([src[:150], dst[:150], rng.choice(len(h), 50, replace=False)])
    for item in probe.tolist():
        d = np.bitwise_count(h ^ h[item])
        truth = set(np.flatnonzero(d <= radius).tolist()) - {item}
        assert neighbours_from(rep, pairs, item) == truth
    d_planted = np.bitwise_count(h[src] ^ h[dst])
    found = [int(dst[k]) in neighbours_from(rep, pairs, int(src[k])) for k in range(300)]
    assert found == (d_planted[:300] <= radius).tolist()
    assert sum(found) == int((d_planted[:300] <= radius).sum()) > 200


def test_uneven_buckets_take_the_block_path() -> None:
    # 4096 distinct hashes that differ only in 12 bit positions that table 0 ignores: they all share that
    # table's key, a bucket longer than the block threshold, next to random background hashes.
    rng = np.random.default_rng(2)
    ignored = np.flatnonzero([(int(covering_masks(3)[0]) >> b) & 1 == 0 for b in range(64)])
    positions = rng.choice(ignored, 12, replace=False).astype(np.uint64)
    base = random_hashes(rng, 1)[0]
    sub = np.arange(4096, dtype=np.uint64)
    spread = np.zeros(4096, np.uint64)
    for k, pos in enumerate(positions):
        spread |= ((sub >> np.uint64(k)) & np.uint64(1)) << pos
    h = np.concatenate([base ^ spread, random_hashes(rng, 6000)])
    plan = search_plan(3, len(h), blocks=1)
    assert plan[0] == covering_masks(3)[0]
    assert len(np.unique(h[:4096])) == 4096 and len(np.unique(h[:4096] & plan[0])) == 1
    values = np.unique(h)
    codes = search_tables(values, plan, 3)
    n = len(values)
    found = {(int(values[a]), int(values[b])) for a, b in zip(codes // n, codes % n, strict=True)}
    expected = {(int(min(h[a], h[b])), int(max(h[a], h[b]))) for a, b in brute_pairs(h, 3)}
    assert found == expected
    assert as_set(find_pairs(h, 3, method="covering")) == brute_pairs(h, 3)


def test_identical_groups_are_stars_not_cliques() -> None:
    rng = np.random.default_rng(3)
    h = random_hashes(rng, 10_000)
    flat = np.uint64(0x8000000000000000)
    group = rng.choice(np.arange(10, len(h)), 5_000, replace=False)
    h[group] = flat
    near = h[0] ^ np.uint64(0b111)
    h[1] = near
    tracemalloc.start()
    pairs = find_pairs(h, 4, method="covering")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    first = int(group.min())
    stars = pairs.dist == 0
    assert stars.sum() == 4_999
    assert (pairs.i[stars] == first).all() and set(pairs.j[stars].tolist()) == set(group.tolist()) - {first}
    assert peak < 64 * 2**20  # a 5000-clique alone would be 12.5 M pairs (> 200 MB as index arrays)
    # Much bigger groups stay linear: one distinct value.
    big = np.concatenate([np.full(300_000, flat), random_hashes(rng, 1000)])
    p = find_pairs(big, 8)
    assert (p.dist == 0).sum() == 299_999


def test_query_pairs_equals_brute_force() -> None:
    rng = np.random.default_rng(4)
    radius = 6
    index = random_hashes(rng, 30_000)
    query = random_hashes(rng, 1_200)
    near = flips(rng, np.arange(300) % (radius + 3))
    query[:300] = index[rng.choice(len(index), 300, replace=False)] ^ near
    index[50:55] = index[49]  # identical index items must each be listed
    query[400] = query[401] = index[49]
    d = np.bitwise_count(index[:, None] ^ query[None, :])
    ii, qq = np.nonzero(d <= radius)
    for method in ("covering", "brute", "auto"):
        got = query_pairs(index, query, radius, method=method)
        assert set(zip(got.index.tolist(), got.query.tolist(), strict=True)) == set(
            zip(ii.tolist(), qq.tolist(), strict=True))
        assert len(got.index) == len(ii) and (got.dist <= radius).all()
    # Either side may be the smaller one.
    swapped = query_pairs(query, index, radius)
    assert set(zip(swapped.query.tolist(), swapped.index.tolist(), strict=True)) == set(
        zip(ii.tolist(), qq.tolist(), strict=True))


def test_covering_masks_cover_every_small_difference() -> None:
    # Exhaustive for radius 3: every set of <= 3 differing bits is ignored by at least one table's key.
    masks = covering_masks(3)
    assert len(masks) == 15
    diffs = [sum(1 << b for b in c) for k in range(4) for c in itertools.combinations(range(64), k)]
    diffs_arr = np.array(diffs, dtype=np.uint64)
    covered = ((diffs_arr[:, None] & masks[None, :]) == 0).any(axis=1)
    assert covered.all()
    # Radius 8: sampled difference sets of exactly 8 bits, all covered; keys keep >= 26 of 64 bits.
    masks8 = covering_masks(8)
    assert len(masks8) == 511 and np.bitwise_count(masks8).min() >= 26
    d8 = flips(np.random.default_rng(5), np.full(20_000, 8))
    assert ((d8[:, None] & masks8[None, :]) == 0).any(axis=1).all()
    assert np.array_equal(covering_masks(8), masks8)  # deterministic


def test_search_tables_partitions_union_to_the_whole() -> None:
    h, _, _ = planted(8_000, 800, 6, seed=9)
    u = np.unique(h)
    masks = covering_masks(6)
    whole = search_tables(u, masks, 6)
    parts = np.unique(np.concatenate([search_tables(u, m, 6) for m in np.array_split(masks, 5)]))
    assert np.array_equal(whole, parts)


def test_find_pairs_dask_equals_local() -> None:
    distributed = pytest.importorskip("distributed")
    h, _, _ = planted(20_000, 1_000, 5, seed=12)
    h[10:20] = h[0]
    local = find_pairs(h, 5, method="covering")
    with distributed.Client(processes=False, n_workers=2, threads_per_worker=1,
                            dashboard_address=None) as client:
        remote = find_pairs_dask(h, 5, client, partitions=7)
    for a, b in zip(local, remote, strict=True):
        assert np.array_equal(a, b)


def naive_keep(h: np.ndarray, rank: np.ndarray, radius: int) -> dict[int, tuple[int, int]]:
    """Reference keep rule by the definition: visit by rank, drop if within radius of an already kept tile."""
    kept: list[int] = []
    for t in np.argsort(rank, kind="stable").tolist():
        if not any(int(np.bitwise_count(h[t] ^ h[k])) <= radius for k in kept):
            kept.append(t)
    out = {}
    kept_arr = np.array(kept)
    for t in sorted(set(range(len(h))) - set(kept)):
        d = np.bitwise_count(h[kept_arr] ^ h[t]).astype(np.int64)
        best = min(zip(d.tolist(), rank[kept_arr].tolist(), kept, strict=True))
        out[t] = (best[2], best[0])
    return out


def test_select_kept_has_no_chaining() -> None:
    a = np.uint64(0)
    b = a ^ np.uint64(0b1111)  # A~B at 4
    c = b ^ np.uint64(0b1111 << 4)  # B~C at 4, A-C at 8
    h = np.array([a, b, c], dtype=np.uint64)
    pairs = find_pairs(h, 5)
    drops = select_kept(np.array([0, 1, 2]), pairs)
    assert drops.dropped.tolist() == [1] and drops.kept.tolist() == [0] and drops.dist.tolist() == [4]
    # With C ranked before B, B sits between two kept tiles and points at the nearer (tie: better rank).
    drops = select_kept(np.array([0, 2, 1]), pairs)
    assert drops.dropped.tolist() == [1] and drops.kept.tolist() == [0]


def test_select_kept_identical_groups_and_nearest_kept() -> None:
    base = np.uint64(0xABCDEF)
    h = np.array([base ^ np.uint64(1), base, base, base ^ np.uint64(0b11), base], dtype=np.uint64)
    # Group {1, 2, 4} is identical; tile 3 is 2 bits from 0 and 2 bits from the group.
    pairs = find_pairs(h, 1)
    drops = select_kept(np.array([5.0, 1.0, 0.5, 2.0, 0.1]), pairs)  # rank: 4, 2, 1, 3, 0
    got = dict(zip(drops.dropped.tolist(), zip(drops.kept.tolist(), drops.dist.tolist(), strict=True),
                   strict=True))
    assert got == {0: (4, 1), 1: (4, 0), 2: (4, 0)}  # 3 is 2 bits from all: kept at radius 1


def test_select_kept_without_identical_groups_reads_every_edge_alone() -> None:
    """A filtered pair list: A and C both equal B but are not paired (e.g. one scene). Grouping would drop
    C with A; edge by edge, B is dropped for A and C is kept, as the no-chaining rule says."""
    pairs = Pairs(np.array([0, 1]), np.array([1, 2]), np.array([0, 0], np.uint8))  # A-B, B-C at distance 0
    grouped = select_kept(np.array([0, 1, 2]), pairs)
    assert grouped.dropped.tolist() == [1, 2]
    alone = select_kept(np.array([0, 1, 2]), pairs, identical_groups=False)
    assert alone.dropped.tolist() == [1] and alone.kept.tolist() == [0] and alone.dist.tolist() == [0]


def test_select_kept_equals_definition_on_random_instances() -> None:
    rng = np.random.default_rng(7)
    for trial in range(5):
        centres = random_hashes(rng, 40)
        h = centres[rng.integers(0, 40, 400)] ^ flips(rng, rng.integers(0, 7, 400))
        rank_key = rng.permutation(400) if trial % 2 else rng.integers(0, 5, 400)  # ties by index
        rank = np.empty(400, np.int64)
        rank[np.argsort(rank_key, kind="stable")] = np.arange(400)
        drops = select_kept(rank_key, find_pairs(h, 5))
        got = dict(zip(drops.dropped.tolist(), zip(drops.kept.tolist(), drops.dist.tolist(), strict=True),
                       strict=True))
        assert got == naive_keep(h, rank, 5)


def test_input_validation() -> None:
    with pytest.raises(TypeError):
        find_pairs(np.array([-1, 2], dtype=np.int64), 3)
    with pytest.raises(ValueError):
        find_pairs(np.zeros(3, np.uint64), 65)
    with pytest.raises(ValueError):
        search_plan(13, 100, blocks=1)  # one block would need 2**14 - 1 tables
    assert len(find_pairs(np.zeros(0, np.uint64), 4).i) == 0
    # Radii beyond one block's tables use several blocks (or brute force); all exact.
    h = random_hashes(np.random.default_rng(8), 300)
    assert as_set(explicit_pairs(h, find_pairs(h, 20, method="covering"))) == brute_pairs(h, 20)
    assert as_set(explicit_pairs(h, find_pairs(h, 20))) == brute_pairs(h, 20)
    # Python ints above 2**63 are accepted.
    assert find_pairs([2**64 - 1, 2**64 - 2], 1).i.tolist() == [0]


def test_select_kept_rounds_and_sequential_fallback_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    import rscurate.hamming_search as hs

    rng = np.random.default_rng(9)
    centres = random_hashes(rng, 300)
    h = centres[rng.integers(0, 300, 5000)] ^ flips(rng, rng.integers(0, 9, 5000))
    pairs = find_pairs(h, 6)
    key = rng.permutation(5000)
    full = select_kept(key, pairs)
    original = hs._greedy_keep
    for rounds in (0, 1, 3):
        monkeypatch.setattr(hs, "_greedy_keep", lambda *a, r=rounds: original(*a, max_rounds=r))
        partial = select_kept(key, pairs)
        for a, b in zip(full, partial, strict=True):
            assert np.array_equal(a, b)
    assert len(full.dropped) > 1000


@pytest.mark.parametrize("part_bits", [0, 1, 4, 9, 12])
def test_kernel_partitioning_does_not_change_the_pairs(part_bits: int) -> None:
    # One table run with every fan-out of the first pass, from one partition (only the second split) to
    # partitions of a few items (compared all-pairs): the same pairs as checking every pair on the table's
    # mask, and an output buffer that starts too small is grown, not overrun.
    from rscurate.covering_kernel import table_codes

    h, _, _ = planted(6_000, 1_500, 8, seed=13)
    u = np.unique(h)
    n = len(u)
    mask = search_plan(8, n, blocks=2)[0]  # ~16-bit key: many collisions, long runs
    a, b = np.triu_indices(n, 1)
    d = u[a] ^ u[b]
    ok = ((d & mask) == 0) & (np.bitwise_count(d) <= 8)
    expected = np.sort(a[ok].astype(np.int64) * n + b[ok])
    assert len(expected) > 200
    out, count = table_codes(u, mask, 8, part_bits, np.empty(n, np.uint64), np.empty(n, np.uint32),
                             np.empty(4, np.int64))
    assert np.array_equal(np.sort(out[:count]), expected)


def test_kernel_output_buffer_grows_with_the_output_not_the_candidates() -> None:
    # 4096 hashes equal on the table's mask (one bucket, 8.4 M candidate pairs) but mostly beyond the radius:
    # the buffer must grow with the pairs found (a clustered 10 M search once asked for tens of GB here).
    from rscurate.covering_kernel import table_codes

    rng = np.random.default_rng(3)
    mask = covering_masks(3)[0]
    h = np.unique((random_hashes(rng, 4096) & ~mask) | (random_hashes(rng, 1)[0] & mask))
    n = len(h)
    out, count = table_codes(h, mask, 3, 0, np.empty(n, np.uint64), np.empty(n, np.uint32), np.empty(4, np.int64))
    a, b = np.triu_indices(n, 1)
    assert count == int((np.bitwise_count(h[a] ^ h[b]) <= 3).sum())
    assert len(out) <= max(8, 2 * (count + n))


def test_a_few_hashes_are_searched_without_building_a_design(monkeypatch: pytest.MonkeyPatch) -> None:
    """Choosing brute force for a small build's few tiles needs only the plans' estimated costs: building the
    cheapest design (a seeded hill climb) cost ~50 ms of every small build's start."""
    import rscurate.hamming_search as hs

    def no_design(radius: int, blocks: int) -> np.ndarray:
        raise AssertionError("a covering design was built for a brute-force search")

    monkeypatch.setattr(hs, "_plan_for_blocks", no_design)
    h = np.array([0, 0b111, 1 << 40, 0b1], dtype=np.uint64)
    assert as_set(find_pairs(h, 8)) == brute_pairs(h, 8)
