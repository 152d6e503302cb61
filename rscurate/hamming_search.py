"""Exact near-duplicate search over 64-bit perceptual hashes: all pairs within Hamming radius r.

Why this method: multi-index hashing with r + 1 substrings needs 7-bit substrings at r = 8, whose buckets
hold N / 128 hashes each, so it degenerates to an all-pairs loop at millions of tiles. Instead we use a
covering design (Pagh, "CoveringLSH: locality-sensitive hashing without false negatives", SODA 2016):
give every bit position i a non-zero vector phi(i) in GF(2)^(r+1) and, for each of the 2^(r+1) - 1
non-zero v, a table whose key keeps the bits with <phi(i), v> = 1 (about half of the 64 bits). If two hashes
differ in a set D of at most r positions, the vectors {phi(i) : i in D} span at most r dimensions, so some
non-zero v is orthogonal to all of them: that table's key ignores every differing bit and the two hashes
collide there. Recall is therefore exact by construction (not probabilistic), while unrelated hashes
collide in a table only with probability ~2^-32, so the work is ~tables x N (a compiled counting sort per
table, :mod:`rscurate.covering_kernel`) with no quadratic term.
For smaller sets the 64 bits are split into blocks (pigeonhole: a pair within r is within r_j of each other
in some block j when sum(r_j + 1) = r + 1), each with its own design: far fewer tables with shorter keys.
:func:`search_plan` picks the block count from a cost estimate; every plan is exact.

Identical hashes are grouped first (a flat, low-texture tile can repeat millions of times): the search runs
over distinct values only and identical tiles are reported as a star to the group's first index.
See docs/dedup.md for the returned conventions, the keep rule and measured speed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from rscurate.components import components

BITS = 64
DEFAULT_RADIUS = 8
"""Default radius for 64-bit pHash of 256 px tiles, chosen from real-imagery distances (docs/dedup.md)."""
MAX_COVERING_RADIUS = 12
"""Largest radius of one block's design (2^13 - 1 tables); larger radii are split over several blocks."""

_U64 = np.dtype(np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier: masked key -> well-spread 32-bit bucket key
_SHIFT32 = np.uint64(32)
_FILTER_BITS = 22  # membership pre-filter: a 4 Mi-entry bitmap over the top bits of the 32-bit keys
_PAIR_CHUNK = 1 << 22  # candidate pairs materialised at a time (bounds memory for uneven buckets)
_BRUTE_NS_PER_PAIR = 9.0  # blocked numpy brute force, per pair (2-core development VM)


class _Costs(NamedTuple):
    """Rough costs (ns, measured on the 2-core development VM) of one table search, to choose a plan."""

    start: float  # once per search
    table: float  # fixed cost of one table
    item: float  # per item and table, in cache
    item_per_doubling: float  # added per doubling of the items beyond 64 Ki (memory traffic)
    candidate: float  # per nominal key collision (see _plan_cost)


# find_pairs: the compiled kernel (covering_kernel); its start is numba's import and cached-code load.
_KERNEL_COSTS = _Costs(start=5e8, table=30_000.0, item=12.0, item_per_doubling=1.0, candidate=0.3)
# query_pairs: numpy sort per table, candidates gathered from memory.
_NUMPY_COSTS = _Costs(start=0.0, table=30_000.0, item=10.0, item_per_doubling=1.6, candidate=45.0)


class Pairs(NamedTuple):
    """Pairs within the radius: i < j (int64 indices), dist (uint8 Hamming distance)."""

    i: np.ndarray
    j: np.ndarray
    dist: np.ndarray


class QueryPairs(NamedTuple):
    """Every (index item, query item) pair within the radius, explicitly, sorted by index then query."""

    index: np.ndarray
    query: np.ndarray
    dist: np.ndarray


class Drops(NamedTuple):
    """Tiles dropped by :func:`select_kept`, each with the kept tile it duplicates and their distance."""

    dropped: np.ndarray
    kept: np.ndarray
    dist: np.ndarray


def _as_hashes(hashes: np.ndarray | Sequence[int]) -> np.ndarray:
    arr = np.asarray(hashes)
    if arr.dtype != _U64:
        if arr.dtype.kind not in "iuO" or (arr.size and arr.dtype.kind == "i" and arr.min() < 0):
            raise TypeError(f"hashes must be unsigned 64-bit integers, got {arr.dtype}")
        arr = arr.astype(_U64)
    return np.ascontiguousarray(arr.reshape(-1))


def _check_radius(radius: int) -> int:
    radius = int(radius)
    if not 0 <= radius <= BITS:
        raise ValueError(f"radius must be in 0..{BITS}, got {radius}")
    return radius


@functools.lru_cache(maxsize=64)
def _covering_masks_cached(n_bits: int, radius: int, steps: int) -> tuple[int, ...]:
    """Masks over bits 0..n_bits-1 from a phi chosen by a seeded hill climb maximising the lightest mask."""
    dims = radius + 1
    vs = np.arange(1, 1 << dims, dtype=np.int64)  # one table per non-zero v
    rng = np.random.default_rng(1000 * n_bits + radius)
    distinct = (1 << dims) - 1 >= n_bits
    phi = rng.choice(np.arange(1, 1 << dims), size=n_bits, replace=not distinct)

    def parity(values: np.ndarray) -> np.ndarray:  # (tables, len(values)): <phi, v> over GF(2)
        return (np.bitwise_count(vs[:, None] & values[None, :]) & 1).astype(np.int64)

    weight = parity(phi).sum(axis=1)
    score = (weight.min(), -(weight == weight.min()).sum())
    for _ in range(steps):
        i, new = int(rng.integers(n_bits)), int(rng.integers(1, 1 << dims))
        if distinct and new in phi:
            continue
        trial = weight + parity(np.array([new]))[:, 0] - parity(phi[i:i + 1])[:, 0]
        trial_score = (trial.min(), -(trial == trial.min()).sum())
        if trial_score >= score:
            phi[i], weight, score = new, trial, trial_score
    bits = parity(phi).astype(np.uint64) << np.arange(n_bits, dtype=np.uint64)[None, :]
    return tuple(int(m) for m in bits.sum(axis=1, dtype=np.uint64))


def covering_masks(radius: int, n_bits: int = BITS, offset: int = 0, steps: int = 3000) -> np.ndarray:
    """Table masks (uint64) of a covering design for bits offset..offset+n_bits-1; deterministic.

    2^(radius+1) - 1 masks such that any two hashes differing in at most ``radius`` of those bits agree on
    every bit of at least one mask. Any phi gives that; phi is tuned (seeded hill climb) so that the lightest
    mask keeps as many bits as possible: a short key means big buckets and many useless candidates.
    """
    radius = _check_radius(radius)
    if not 1 <= n_bits <= BITS - offset or offset < 0:
        raise ValueError(f"bits {offset}..{offset + n_bits - 1} are not within 0..{BITS - 1}")
    if radius > MAX_COVERING_RADIUS:
        raise ValueError(f"covering tables are used up to radius {MAX_COVERING_RADIUS}; got {radius}")
    if radius == 0:
        masks: tuple[int, ...] = ((1 << n_bits) - 1,)
    else:
        masks = _covering_masks_cached(n_bits, radius, steps)
    return np.array(masks, dtype=_U64) << np.uint64(offset)


def _block_layout(radius: int, blocks: int) -> list[tuple[int, int, int]]:
    """(offset, n_bits, block radius) of contiguous blocks with sum(r_j + 1) = radius + 1 (pigeonhole)."""
    sizes = [len(c) for c in np.array_split(np.arange(BITS), blocks)]
    base, extra = divmod(radius + 1, blocks)
    offsets = np.concatenate(([0], np.cumsum(sizes)[:-1])).tolist()
    return [(o, size, base - 1 + (1 if j < extra else 0)) for j, (o, size) in enumerate(zip(offsets, sizes,
                                                                                             strict=True))]


def _plan_for_blocks(radius: int, blocks: int) -> np.ndarray:
    """Masks of one covering design per block (see :func:`search_plan`)."""
    return np.concatenate([covering_masks(r, n_bits=size, offset=o) for o, size, r in _block_layout(radius,
                                                                                                    blocks)])


def _plan_cost(radius: int, blocks: int, n_left: int, n_right: int | None = None) -> float:
    """Estimated ns: one partitioning pass per table plus candidate pairs (uniform hashes) to verify.

    Uses nominal key lengths (each bit is in 2^r of the 2^(r+1) - 1 tables of its block; minus 2 bits for
    the spread of the tuned designs) so that choosing a plan needs no design to be built. A self-search
    (``n_right`` None) runs the compiled kernel, a query search numpy: each with its own measured costs.
    """
    costs = _KERNEL_COSTS if n_right is None else _NUMPY_COSTS
    pairs = n_left * (n_left - 1) / 2 if n_right is None else n_left * n_right
    items = n_left + (n_right or 0)
    tables, collide = 0, 0.0
    for _, size, r in _block_layout(radius, blocks):
        t = (1 << (r + 1)) - 1
        weight = size * (1 << r) / t if r > 0 else size
        tables += t
        collide += t * 2.0 ** -max(weight - 2, 1)
    per_item = costs.item + costs.item_per_doubling * max(0.0, float(np.log2(max(items, 1) / 65536)))
    return costs.start + tables * (costs.table + items * per_item) + pairs * collide * costs.candidate


def search_plan(radius: int, n_unique: int, blocks: int | None = None) -> np.ndarray:
    """Table masks to search ``n_unique`` distinct hashes at ``radius``: exact recall for any choice.

    The 64 bits are split into ``blocks`` contiguous blocks (pigeonhole: a pair within r is within r_j in some
    block j when sum(r_j + 1) = r + 1), each covered by its own design. One block (2^(r+1) - 1 tables with
    ~32-bit keys) suits millions of hashes; more blocks mean far fewer tables with shorter keys, cheaper for
    small sets. ``blocks=None`` picks the count with the lowest estimated cost.
    """
    radius = _check_radius(radius)
    if blocks is not None:
        if not _fits(radius, blocks):
            raise ValueError(f"blocks={blocks} does not fit radius {radius} (1..8 blocks of radius <= 12)")
        return _plan_for_blocks(radius, blocks)
    return _best_plan(radius, n_unique)


def _fits(radius: int, blocks: int) -> bool:
    """1..8 blocks, no more than radius + 1, and no block radius above MAX_COVERING_RADIUS."""
    largest_block_radius = -(-(radius + 1) // blocks) - 1
    return 1 <= blocks <= min(radius + 1, 8) and largest_block_radius <= MAX_COVERING_RADIUS


def _best_blocks(radius: int, n_left: int, n_right: int | None = None) -> tuple[int, float]:
    """(block count, estimated ns) of the cheapest plan for this radius and input size; builds no design (a
    seeded hill climb, ~50 ms: a build of a few tiles only asks whether brute force is cheaper)."""
    options = [b for b in range(1, 9) if _fits(radius, b)]
    costs = [_plan_cost(radius, b, n_left, n_right) for b in options]
    best = int(np.argmin(costs))
    return options[best], costs[best]


def _best_plan(radius: int, n_left: int, n_right: int | None = None) -> np.ndarray:
    """Masks of the cheapest plan for this radius and input size."""
    return _plan_for_blocks(radius, _best_blocks(radius, n_left, n_right)[0])


def _ranges(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, e) for each (s, e), vectorised."""
    lens = ends - starts
    total = int(lens.sum())
    offs = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return np.arange(total, dtype=np.int64) + offs


def _bucket_key(values: np.ndarray, mask: np.uint64) -> np.ndarray:
    """32-bit key of the masked bits; equal masked values give equal keys (the converse is verified later)."""
    return (((values & mask) * _MIX) >> _SHIFT32).astype(np.uint32)


def _members_of(keys: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Indices i with keys[i] in the sorted array ``wanted``, through a bitmap pre-filter."""
    shift = np.uint32(32 - _FILTER_BITS)
    bitmap = np.zeros(1 << _FILTER_BITS, dtype=bool)
    bitmap[wanted >> shift] = True
    cand = np.flatnonzero(bitmap[keys >> shift])
    if len(cand) == 0:
        return cand
    pos = np.searchsorted(wanted, keys[cand])
    pos[pos == len(wanted)] = 0
    return cand[wanted[pos] == keys[cand]]


def _codes_to_pairs(codes: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    return codes // n, codes % n


class _CodeSet:
    """Accumulates pair codes found in many tables, deduplicating as it grows so memory stays bounded."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.pending = 0
        self.unique = 0

    def add(self, parts: Iterable[np.ndarray]) -> None:
        for p in parts:
            self.parts.append(p)
            self.pending += len(p)
        if self.pending > max(4 * self.unique, 1 << 25):
            self.compact()

    def compact(self) -> np.ndarray:
        merged = np.sort(np.concatenate(self.parts)) if self.parts else np.zeros(0, np.int64)
        if len(merged):
            keep = np.ones(len(merged), dtype=bool)
            np.not_equal(merged[1:], merged[:-1], out=keep[1:])
            merged = merged[keep]
        self.parts = [merged]
        self.unique = self.pending = len(merged)
        return merged


def search_tables(unique_hashes: np.ndarray, masks: np.ndarray, radius: int) -> np.ndarray:
    """Codes a * n + b (a < b, sorted, unique) of distinct hashes within ``radius`` colliding in a table.

    The unit of work for parallel/distributed search: tables are independent, so a caller may split
    ``search_plan(radius, n)`` into chunks, run this on each (threads, processes, Dask workers) and union the
    results. ``unique_hashes`` must hold distinct values.
    """
    u = _as_hashes(unique_hashes)
    n = len(u)
    if n >= 1 << 32:
        raise ValueError("at most 2**32 - 1 distinct hashes per search")
    from rscurate.covering_kernel import part_bits_for, table_codes  # lazily: numba's import costs ~0.3 s

    codes = _CodeSet()
    part_bits = part_bits_for(n)
    hbuf, ibuf = np.empty(n, _U64), np.empty(n, np.uint32)
    out = np.empty(1 << 16, np.int64)
    for mask in np.asarray(masks, dtype=_U64):
        out, count = table_codes(u, mask, radius, part_bits, hbuf, ibuf, out)
        if count:
            codes.add([out[:count].copy()])
    return codes.compact()


def _hits(near: np.ndarray, trivial: int = 0) -> tuple[np.ndarray, np.ndarray] | None:
    """np.nonzero of a block's within-radius mask, or None when it holds only its `trivial` hits: counting is
    several times cheaper than listing positions, and most blocks of real hashes hold no near pair at all."""
    if np.count_nonzero(near) == trivial:
        return None
    return np.nonzero(near)


def _brute_codes(u: np.ndarray, radius: int) -> np.ndarray:
    """All-pairs check in blocks of rows: for tiny inputs or very large radii, and as a reference."""
    n = len(u)
    out: list[np.ndarray] = []
    rows = max(1, _PAIR_CHUNK // max(n, 1))
    for r0 in range(0, n, rows):
        block = u[r0:r0 + rows]
        # columns from r0 on: pairs below are done; each row meets its own value (distinct values: only that one)
        hits = _hits(np.bitwise_count(block[:, None] ^ u[None, r0:]) <= radius, len(block))
        if hits is None:
            continue
        ii, jj = hits[0] + r0, hits[1] + r0
        keep = jj > ii
        out.append(ii[keep].astype(np.int64) * n + jj[keep].astype(np.int64))
    return np.unique(np.concatenate(out)) if out else np.zeros(0, np.int64)


def _use_brute(n_left: int, radius: int, n_right: int | None = None) -> bool:
    """Whether checking all pairs is cheaper than the best table plan (small inputs, huge radii)."""
    pairs = n_left * (n_left - 1) / 2 if n_right is None else n_left * n_right
    return bool(pairs * _BRUTE_NS_PER_PAIR <= _best_blocks(radius, n_left, n_right)[1])


def group_identical(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(distinct values sorted, first index of each value, value number of each input item)."""
    h = _as_hashes(hashes)
    values, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    return values, first.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def _finish(h: np.ndarray, first: np.ndarray, inverse: np.ndarray, codes: np.ndarray) -> Pairs:
    """Turn distinct-value pair codes into the documented output over input indices."""
    n_u = len(first)
    a, b = _codes_to_pairs(codes, n_u)
    i, j = first[a], first[b]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    # Star edges of identical groups: every non-first member points at its group's first index.
    members = np.flatnonzero(first[inverse] != np.arange(len(h)))
    lo = np.concatenate((lo, first[inverse[members]]))
    hi = np.concatenate((hi, members))
    order = np.lexsort((hi, lo))
    lo, hi = lo[order], hi[order]
    return Pairs(lo, hi, np.bitwise_count(h[lo] ^ h[hi]).astype(np.uint8))


def _run_tables(u: np.ndarray, radius: int, workers: int) -> np.ndarray:
    masks = search_plan(radius, len(u))
    if workers <= 1 or len(masks) < 2:
        return search_tables(u, masks, radius)
    from concurrent.futures import ThreadPoolExecutor

    chunks = np.array_split(masks, workers)
    with ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda m: search_tables(u, m, radius), chunks))
    return np.unique(np.concatenate(parts))


def find_pairs(
    hashes: np.ndarray | Sequence[int], radius: int = DEFAULT_RADIUS, workers: int = 1, method: str = "auto"
) -> Pairs:
    """All near-duplicate pairs within ``radius``, exact recall, without an all-pairs loop.

    Returns ``Pairs(i, j, dist)`` sorted by (i, j), i < j, where with ``first(x)`` = the lowest index holding
    the same hash as x:
      * for every two DISTINCT hash values within the radius, one pair (first(x), first(y)) and distance;
      * for every index k that repeats an earlier hash, one pair (first(k), k) with dist 0.
    So x and y are within the radius iff first(x) == first(y) or (first(x), first(y)) is listed: the output
    grows with N plus the number of distinct near pairs, never with the square of a group of identical tiles.
    Use :func:`explicit_pairs` to expand it (small inputs) or :func:`select_kept` to apply the keep rule.
    ``method``: "auto" (covering tables, or blocked brute force where that is estimated cheaper: tiny
    inputs, very large radii), "covering" or "brute"; all give the same result. ``workers`` threads share
    the covering tables.
    """
    radius = _check_radius(radius)
    if method not in ("auto", "covering", "brute"):
        raise ValueError(f"method must be auto, covering or brute, got {method!r}")
    h = _as_hashes(hashes)
    values, first, inverse = group_identical(h)
    if radius == 0 or len(values) < 2:
        codes = np.zeros(0, np.int64)
    elif method == "brute" or (method == "auto" and _use_brute(len(values), radius)):
        codes = _brute_codes(values, radius)
    else:
        codes = _run_tables(values, radius, workers)
    return _finish(h, first, inverse, codes)


class _Groups(NamedTuple):
    """Members of each distinct hash: order[starts[g] : starts[g] + counts[g]]."""

    order: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, inverse: np.ndarray, n_values: int) -> _Groups:
        counts = np.bincount(inverse, minlength=n_values)
        return cls(np.argsort(inverse, kind="stable"), np.cumsum(counts) - counts, counts)


def _cross(a: _Groups, ga: np.ndarray, b: _Groups, gb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every member of group ga[k] (of a) against every member of group gb[k] (of b), for all k, vectorised."""
    per = a.counts[ga] * b.counts[gb]
    pair_id = np.repeat(np.arange(len(ga)), per)
    local = np.arange(int(per.sum()), dtype=np.int64) - np.repeat(np.cumsum(per) - per, per)
    nb = b.counts[gb][pair_id]
    return a.order[a.starts[ga][pair_id] + local // nb], b.order[b.starts[gb][pair_id] + local % nb]


def explicit_pairs(hashes: np.ndarray | Sequence[int], pairs: Pairs) -> Pairs:
    """Expand :func:`find_pairs` output to every (i < j) pair within the radius; O(output)."""
    h = _as_hashes(hashes)
    values, _, inverse = group_identical(h)
    groups = _Groups.of(inverse, len(values))
    repeated = np.flatnonzero(groups.counts > 1)
    ai, aj = _cross(groups, repeated, groups, repeated)  # within identical groups (both orders)
    distinct = np.asarray(pairs.dist) > 0
    gi, gj = inverse[np.asarray(pairs.i)[distinct]], inverse[np.asarray(pairs.j)[distinct]]
    bi, bj = _cross(groups, gi, groups, gj)
    i, j = np.concatenate((ai, bi)), np.concatenate((aj, bj))
    keep = i != j
    lo, hi = np.minimum(i[keep], j[keep]), np.maximum(i[keep], j[keep])
    codes = np.unique(lo.astype(np.int64) * len(h) + hi)
    lo, hi = codes // max(len(h), 1), codes % max(len(h), 1)
    return Pairs(lo, hi, np.bitwise_count(h[lo] ^ h[hi]).astype(np.uint8))


def query_pairs(
    index_hashes: np.ndarray | Sequence[int], query_hashes: np.ndarray | Sequence[int],
    radius: int = DEFAULT_RADIUS, method: str = "auto",
) -> QueryPairs:
    """Every (index item, query item) within ``radius``, explicitly; e.g. training tiles near eval tiles.

    Same covering tables, but a table only pairs index values with query values: the smaller side's keys
    form the lookup set and the other side is filtered against them. Keep flat (low-texture) tiles out of
    both sides: they would match each other en masse.
    """
    radius = _check_radius(radius)
    hi_, hq = _as_hashes(index_hashes), _as_hashes(query_hashes)
    ui, _, inv_i = group_identical(hi_)
    uq, _, inv_q = group_identical(hq)
    if len(ui) == 0 or len(uq) == 0:
        empty = np.zeros(0, np.int64)
        return QueryPairs(empty, empty, np.zeros(0, np.uint8))
    n_q = np.int64(len(uq))
    if method not in ("auto", "covering", "brute"):
        raise ValueError(f"method must be auto, covering or brute, got {method!r}")
    if method == "brute" or (method == "auto" and _use_brute(len(ui), radius, len(uq))):
        codes_parts = []
        rows = max(1, _PAIR_CHUNK // len(uq))
        for r0 in range(0, len(ui), rows):
            hits = _hits(np.bitwise_count(ui[r0:r0 + rows, None] ^ uq[None, :]) <= radius)
            if hits is not None:
                codes_parts.append((hits[0] + r0).astype(np.int64) * n_q + hits[1])
        codes = np.unique(np.concatenate(codes_parts)) if codes_parts else np.zeros(0, np.int64)
    else:
        small_is_query = len(uq) <= len(ui)
        small, large = (uq, ui) if small_is_query else (ui, uq)
        acc = _CodeSet()
        for mask in _best_plan(radius, len(large), len(small)):
            ks, kl = _bucket_key(small, mask), _bucket_key(large, mask)
            s_order = np.argsort(ks, kind="stable")
            ks_sorted = ks[s_order]
            wanted = np.unique(ks_sorted)
            hits = _members_of(kl, wanted)
            if len(hits) == 0:
                continue
            left = np.searchsorted(ks_sorted, kl[hits], side="left")
            right = np.searchsorted(ks_sorted, kl[hits], side="right")
            csum = np.cumsum(right - left)
            lo = 0
            while lo < len(hits):  # candidate pairs in chunks of about _PAIR_CHUNK
                done = csum[lo - 1] if lo else 0
                hi = max(lo + 1, int(np.searchsorted(csum, done + _PAIR_CHUNK, side="right")))
                big_idx = np.repeat(hits[lo:hi], right[lo:hi] - left[lo:hi])
                small_idx = s_order[_ranges(left[lo:hi], right[lo:hi])]
                keep = np.bitwise_count(large[big_idx] ^ small[small_idx]) <= radius
                big_idx, small_idx = big_idx[keep], small_idx[keep]
                a, b = (big_idx, small_idx) if small_is_query else (small_idx, big_idx)
                acc.add([a.astype(np.int64) * n_q + b.astype(np.int64)])
                lo = hi
        codes = acc.compact()
    a, b = codes // n_q, codes % n_q
    # Expand distinct-value pairs to every index member x every query member.
    idx, qry = _cross(_Groups.of(inv_i, len(ui)), a, _Groups.of(inv_q, len(uq)), b)
    order = np.lexsort((qry, idx))
    idx, qry = idx[order], qry[order]
    return QueryPairs(idx, qry, np.bitwise_count(hi_[idx] ^ hq[qry]).astype(np.uint8))


def find_pairs_dask(
    hashes: np.ndarray | Sequence[int], radius: int, client: Any, partitions: int | None = None
) -> Pairs:
    """:func:`find_pairs` over a Dask cluster: each task runs :func:`search_tables` on a slice of tables.

    The distinct hashes (8 bytes each) are scattered once to every worker; results are unions of pair codes,
    so the output is identical to :func:`find_pairs` whatever the number of workers or partitions.
    """
    radius = _check_radius(radius)
    h = _as_hashes(hashes)
    values, first, inverse = group_identical(h)
    if radius == 0 or len(values) < 2:
        codes = np.zeros(0, np.int64)
    elif _use_brute(len(values), radius):
        codes = _brute_codes(values, radius)
    else:
        masks = search_plan(radius, len(values))
        if partitions is None:
            n_workers = max(1, len(client.scheduler_info().get("workers", {})))
            partitions = 4 * n_workers
        chunks = [c for c in np.array_split(masks, max(1, min(partitions, len(masks)))) if len(c)]
        [u_future] = client.scatter([values], broadcast=True)
        futures = [client.submit(search_tables, u_future, c, radius, pure=False) for c in chunks]
        parts = client.gather(futures)
        codes = np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    return _finish(h, first, inverse, codes)


def _greedy_keep(n_comp: int, ca: np.ndarray, cb: np.ndarray, indptr: np.ndarray,
                 best_rank: np.ndarray, max_rounds: int = 64) -> np.ndarray:
    """Kept flag per component for the sequential rule "kept iff no better-ranked neighbour is kept".

    Decided in vectorised rounds: a component with a kept better neighbour is dropped; one whose better
    neighbours are all dropped is kept. Each round settles at least the best undecided component, and
    chains are short in practice; whatever is left after ``max_rounds`` is settled by the sequential loop.
    """
    undecided, keep_state, drop_state = 0, 1, 2
    state = np.zeros(n_comp, np.int8)
    better = best_rank[cb] < best_rank[ca]  # edge ca <- cb where cb comes first in keep order
    src, dst = cb[better], ca[better]
    for _ in range(max_rounds):
        open_dst = state[dst] == undecided
        if not open_dst.any() and (state != undecided).all():
            break
        s_src = state[src[open_dst]]
        d_open = dst[open_dst]
        has_kept = np.bincount(d_open[s_src == keep_state], minlength=n_comp) > 0
        has_open = np.bincount(d_open[s_src == undecided], minlength=n_comp) > 0
        todo = state == undecided
        state[todo & has_kept] = drop_state
        state[todo & ~has_kept & ~has_open] = keep_state
    kept = state == keep_state
    rest = np.flatnonzero(state == undecided)
    for c in rest[np.argsort(best_rank[rest], kind="stable")]:
        kept[c] = not kept[cb[indptr[c]:indptr[c + 1]]].any()
    return kept


def select_kept(order_key: np.ndarray | Sequence[float], pairs: Pairs, identical_groups: bool = True) -> Drops:
    """Greedy, deterministic keep rule WITHOUT chaining.

    Tiles are visited in keep-priority order (``order_key`` ascending: lower wins; ties by index). A tile
    is dropped only if it is within the radius of a tile already KEPT; otherwise it is kept. A dropped tile
    points at its nearest kept tile (smaller distance, then better priority). So with A~B, B~C and A kept,
    B is dropped for A, and C is kept unless C is itself near A: similarity never propagates through a dropped
    tile. ``pairs`` is :func:`find_pairs` output (or any symmetric pair list): with ``identical_groups``,
    distance-0 edges are read as identical hashes, whose connected groups act as one tile (find_pairs lists a
    group as a star); pass False for a filtered explicit pair list, where two tiles at distance 0 from a third
    need not be paired themselves, so every edge is an ordinary one. Returns ``Drops(dropped, kept, dist)``
    sorted by dropped index; all others are kept.
    """
    key = np.asarray(order_key)
    n = len(key)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(n)
    i, j, d = (np.asarray(pairs.i, np.int64), np.asarray(pairs.j, np.int64),
               np.asarray(pairs.dist, np.int64))
    empty = np.zeros(0, np.int64)
    if len(i) == 0:
        return Drops(empty, empty, empty.astype(np.uint8))
    if i.min() < 0 or max(i.max(), j.max()) >= n:
        raise ValueError("pair indices out of range of order_key")
    nodes = np.unique(np.concatenate((i, j)))
    li, lj = np.searchsorted(nodes, i), np.searchsorted(nodes, j)
    m = len(nodes)
    # Identical-hash groups: components of the distance-0 edges, numbered in the order of their smallest node.
    zero = d == 0 if identical_groups else np.zeros(len(d), bool)
    roots, comp = np.unique(components(li[zero], lj[zero], m), return_inverse=True)
    n_comp = len(roots)
    node_rank = rank[nodes]
    best_rank = np.full(n_comp, np.iinfo(np.int64).max)
    np.minimum.at(best_rank, comp, node_rank)
    best_node = np.full(n_comp, -1, np.int64)
    is_best = node_rank == best_rank[comp]
    best_node[comp[is_best]] = np.flatnonzero(is_best)
    # Component graph of near (d > 0) edges, both directions, min distance per component pair.
    ca, cb, cd = comp[li[~zero]], comp[lj[~zero]], d[~zero]
    ca, cb, cd = np.concatenate((ca, cb)), np.concatenate((cb, ca)), np.concatenate((cd, cd))
    self_edge = ca == cb
    ca, cb, cd = ca[~self_edge], cb[~self_edge], cd[~self_edge]
    order = np.lexsort((cd, cb, ca))
    ca, cb, cd = ca[order], cb[order], cd[order]
    first_of = np.ones(len(ca), bool)
    first_of[1:] = (ca[1:] != ca[:-1]) | (cb[1:] != cb[:-1])
    ca, cb, cd = ca[first_of], cb[first_of], cd[first_of]
    indptr = np.searchsorted(ca, np.arange(n_comp + 1))
    kept = _greedy_keep(n_comp, ca, cb, indptr, best_rank)
    # Nearest kept component of each dropped component: min distance, then best priority.
    cand = ~kept[ca] & kept[cb]
    xa, xb, xd = ca[cand], cb[cand], cd[cand]
    order = np.lexsort((best_rank[xb], xd, xa))
    xa, xb, xd = xa[order], xb[order], xd[order]
    firsts = np.ones(len(xa), bool)
    firsts[1:] = xa[1:] != xa[:-1]
    target = np.full(n_comp, -1, np.int64)
    target_d = np.zeros(n_comp, np.int64)
    target[xa[firsts]] = xb[firsts]
    target_d[xa[firsts]] = xd[firsts]
    # Per tile: members of kept groups (except the kept one) point at it with distance 0.
    node_kept = kept[comp] & is_best
    drop_nodes = np.flatnonzero(~node_kept)
    dc = comp[drop_nodes]
    to_comp = np.where(kept[dc], dc, target[dc])
    dist = np.where(kept[dc], 0, target_d[dc])
    kept_tile = nodes[best_node[to_comp]]
    return Drops(nodes[drop_nodes], kept_tile, dist.astype(np.uint8))
