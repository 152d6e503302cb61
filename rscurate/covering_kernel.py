"""Compiled inner loop of the covering search (:mod:`rscurate.hamming_search`): one table, all colliding pairs.

Why compiled: per table the work is grouping N keys. numpy can only do that with a full sort of N packed keys
(~65 ns an item at 10 M on the 2-core development VM, every pass a random walk over memory), so 100 M hashes x
511 tables would take over an hour. Here each table is two counting-sort passes: a fan-out of ``2^part_bits``
partitions by the top bits of the hashed key (one sequential read, sequential writes per partition), then
each partition (cache-sized) split again by the next bits, and pairs compared only inside those sub-buckets.
Every pass is sequential or in cache. Imported lazily: numba costs ~0.3 s to import and small searches
(blocked brute force) never need it.
"""

from __future__ import annotations

import numba
import numpy as np

_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd multiplier: masked hash -> well-spread top bits
_PARTITION_ITEMS = 1 << 13  # aim for partitions of about this many items (12 bytes each: fits in L2)
_MAX_PART_BITS = 12  # fan-out of the first pass: more write streams than this thrash the TLB
_SMALL = 8  # partitions up to this size are compared all-pairs, without the second split


def part_bits_for(n: int) -> int:
    """Bits of the first partitioning pass for ``n`` items."""
    return int(min(_MAX_PART_BITS, max(0, int(np.ceil(np.log2(max(n, 1) / _PARTITION_ITEMS))))))


@numba.njit(inline="always")
def _popcount(x: np.uint64) -> np.uint64:
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    return (x * np.uint64(0x0101010101010101)) >> np.uint64(56)


@numba.njit(cache=True, nogil=True)
def _reserve(out: np.ndarray, count: int, pairs: int) -> np.ndarray:
    """``out`` with room for ``pairs`` more codes after ``count`` (grown by doubling)."""
    need = count + pairs
    if need <= out.shape[0]:
        return out
    grown = np.empty(max(need, 2 * out.shape[0]), np.int64)
    grown[:count] = out[:count]
    return grown


@numba.njit(inline="always")
def _compare_all(hs: np.ndarray, ids: np.ndarray, s: int, e: int, mask: np.uint64, radius: np.uint64,
                 out: np.ndarray, count: int, n: np.int64) -> tuple[np.ndarray, int]:
    """Stores codes of the pairs of hs[s:e] that agree on ``mask`` (collide in the table) within ``radius``.

    Room is made one row at a time (at most e - x - 1 codes), so a huge bucket of candidates that mostly fail
    the radius never reserves memory for all its pairs.
    """
    for x in range(s, e):
        if count + (e - x) > out.shape[0]:
            out = _reserve(out, count, e - x)
        hx = hs[x]
        for y in range(x + 1, e):
            d = hx ^ hs[y]
            if (d & mask) == 0 and _popcount(d) <= radius:
                a, b = np.int64(ids[x]), np.int64(ids[y])
                out[count] = min(a, b) * n + max(a, b)
                count += 1
    return out, count


@numba.njit(cache=True, nogil=True)
def table_codes(u: np.ndarray, mask: np.uint64, radius: int, part_bits: int, hbuf: np.ndarray,
                ibuf: np.ndarray, out: np.ndarray) -> tuple[np.ndarray, int]:
    """Codes a * n + b (a < b, unsorted, each once) of distinct hashes u[a], u[b] equal on ``mask``, within radius.

    ``hbuf`` (uint64) and ``ibuf`` (uint32) are scratch arrays of len(u), reused across tables; ``out`` is
    an int64 buffer, returned grown if it filled up, with the number of codes written.
    """
    n = u.shape[0]
    drop = np.uint64(64 - part_bits)
    n_parts = 1 << part_bits
    rad = np.uint64(radius)
    nn = np.int64(n)
    starts = np.zeros(n_parts + 1, np.int64)
    if part_bits == 0:
        starts[1] = n
        hbuf[:] = u
        for i in range(n):
            ibuf[i] = i
    else:
        for i in range(n):
            starts[np.int64(((u[i] & mask) * _MIX) >> drop) + 1] += 1
        for b in range(n_parts):
            starts[b + 1] += starts[b]
        fill = starts[:-1].copy()
        for i in range(n):
            b = np.int64(((u[i] & mask) * _MIX) >> drop)
            p = fill[b]
            hbuf[p] = u[i]
            ibuf[p] = i
            fill[b] = p + 1
    largest = 0
    for b in range(n_parts):
        largest = max(largest, starts[b + 1] - starts[b])
    sub_bits = 1
    while (1 << sub_bits) < 2 * largest and sub_bits < 64 - part_bits - 1:
        sub_bits += 1
    sub_starts = np.zeros((1 << sub_bits) + 1, np.int64)
    sub_fill = np.zeros(1 << sub_bits, np.int64)
    sub_h = np.empty(largest, np.uint64)
    sub_i = np.empty(largest, np.uint32)
    count = 0
    for b in range(n_parts):
        s, e = starts[b], starts[b + 1]
        m = e - s
        if m < 2:
            continue
        if m <= _SMALL:
            out, count = _compare_all(hbuf, ibuf, s, e, mask, rad, out, count, nn)
            continue
        # Second split of this partition by the next bits of the hashed key: sub-buckets of ~1 item.
        q = 1
        while (1 << q) < 2 * m and q < sub_bits:
            q += 1
        shift = np.uint64(64 - part_bits - q)
        low = np.uint64((1 << q) - 1)
        sub_starts[:(1 << q) + 1] = 0
        for x in range(s, e):
            sub_starts[np.int64((((hbuf[x] & mask) * _MIX) >> shift) & low) + 1] += 1
        for c in range(1 << q):
            sub_starts[c + 1] += sub_starts[c]
        sub_fill[:1 << q] = sub_starts[:1 << q]
        for x in range(s, e):
            c = np.int64((((hbuf[x] & mask) * _MIX) >> shift) & low)
            p = sub_fill[c]
            sub_h[p] = hbuf[x]
            sub_i[p] = ibuf[x]
            sub_fill[c] = p + 1
        for c in range(1 << q):
            if sub_starts[c + 1] - sub_starts[c] >= 2:
                out, count = _compare_all(sub_h, sub_i, sub_starts[c], sub_starts[c + 1], mask, rad, out, count,
                                          nn)
    return out, count
