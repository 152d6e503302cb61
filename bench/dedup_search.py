"""Benchmark exact near-duplicate search (rscurate.hamming_search.find_pairs) on synthetic pHash sets.

Prints ONE JSON line. Modes:
  random     uniform 64-bit hashes (the easy case: buckets are even)
  clustered  pHash-like: per-bit biased bits, 20 % of hashes are noisy copies of others, 1 % share one
             flat-tile hash, so keys repeat and buckets are uneven
Planted near duplicates at distances 0..radius+2 give the recall check (exact search: recall must be 1.0
and no planted pair beyond the radius may be reported). ``--compare-imagededup`` times imagededup's
PHash().find_duplicates(encoding_map=..., max_distance_threshold=R) on the same hashes and checks both agree.

  .venv/bin/python bench/dedup_search.py --n 1000000 --radius 8
  .venv/bin/python bench/dedup_search.py --n 50000 --radius 10 --compare-imagededup
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rscurate.hamming_search import Pairs, explicit_pairs, find_pairs  # noqa: E402

FLAT_HASH = np.uint64(0x8000000000000000)  # imagehash's pHash of any constant image


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_bits(rng: np.random.Generator, n: int, p_one: np.ndarray | None = None) -> np.ndarray:
    if p_one is None:
        return rng.integers(0, np.iinfo(np.uint64).max, n, dtype=np.uint64, endpoint=True)
    out = np.zeros(n, dtype=np.uint64)
    for bit, p in enumerate(p_one):
        out |= (rng.random(n) < p).astype(np.uint64) << np.uint64(bit)
    return out


def flip_masks(rng: np.random.Generator, distances: np.ndarray) -> np.ndarray:
    """One uint64 per entry with exactly distances[k] random bits set (in chunks: keeps peak RSS low)."""
    out = np.empty(len(distances), dtype=np.uint64)
    weights = np.uint64(1) << np.arange(64, dtype=np.uint64)
    for s in range(0, len(distances), 1 << 16):
        d = distances[s:s + (1 << 16)]
        ranks = rng.random((len(d), 64)).argsort(axis=1)  # a random permutation of bit positions per row
        out[s:s + len(d)] = ((ranks < d[:, None]).astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64)
    return out


def make_hashes(n: int, mode: str, radius: int, planted: int, seed: int) -> tuple[np.ndarray, np.ndarray,
                                                                                  np.ndarray, np.ndarray]:
    """Hashes plus planted (src, dst, distance): dst = src ^ (distance random bits); src/dst sets disjoint."""
    rng = np.random.default_rng(seed)
    if mode == "random":
        h = random_bits(rng, n)
    else:
        p_one = rng.uniform(0.15, 0.85, 64)
        p_one[63] = 0.97  # the DC bit is nearly always set in real pHashes
        h = random_bits(rng, n, p_one)
        copies = rng.choice(n, n // 5, replace=False)
        h[copies] = h[rng.integers(0, n, len(copies))] ^ flip_masks(rng, rng.integers(0, 13, len(copies)))
        h[rng.choice(n, n // 100, replace=False)] = FLAT_HASH
    picks = rng.choice(n, 2 * planted, replace=False)
    src, dst = picks[:planted], picks[planted:]
    dist = np.arange(planted) % (radius + 3)
    h[dst] = h[src] ^ flip_masks(rng, dist)
    return h, src, dst, dist


def pair_found(h: np.ndarray, pairs: Pairs, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether each (a, b) is within the radius according to find_pairs' compressed output."""
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    fa, fb = first[inverse[a]], first[inverse[b]]
    lo, hi = np.minimum(fa, fb), np.maximum(fa, fb)
    n = np.int64(len(h))
    listed = np.isin(lo * n + hi, pairs.i * n + pairs.j)
    return (fa == fb) | listed


def sample_check(h: np.ndarray, pairs: Pairs, radius: int, items: np.ndarray) -> bool:
    """For each sampled item: neighbours implied by find_pairs == neighbours by popcount against all n."""
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    rep = first[inverse]
    for x in items.tolist():
        truth = np.flatnonzero(np.bitwise_count(h ^ h[x]) <= radius)
        r = rep[x]
        linked = np.concatenate((pairs.j[pairs.i == r], pairs.i[pairs.j == r], [r]))
        found = np.flatnonzero(np.isin(rep, rep[linked]))
        if not np.array_equal(truth, found):
            return False
    return True


def run_imagededup(h: np.ndarray, radius: int) -> tuple[float, set[tuple[int, int]], str]:
    """imagededup's search on the same hashes: (seconds, every index pair it reports, version)."""
    from importlib.metadata import version

    from imagededup.methods import PHash

    encoding_map = {f"t{k}": f"{int(v):016x}" for k, v in enumerate(h)}
    t0 = time.perf_counter()
    dups = PHash(verbose=False).find_duplicates(encoding_map=encoding_map, max_distance_threshold=radius)
    seconds = time.perf_counter() - t0
    found = {(min(int(a[1:]), int(b[1:])), max(int(a[1:]), int(b[1:]))) for a, bs in dups.items() for b in bs}
    return seconds, found, version("imagededup")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--planted", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mode", choices=["random", "clustered"], default="random")
    ap.add_argument("--workers", type=int, default=1, help="threads over covering tables")
    ap.add_argument("--verify-sample", type=int, default=100,
                    help="items whose full neighbour lists are checked against popcount over all n")
    ap.add_argument("--compare-imagededup", action="store_true")
    args = ap.parse_args()

    h, src, dst, dist = make_hashes(args.n, args.mode, args.radius, min(args.planted, args.n // 2),
                                    args.seed)
    rss_before = peak_rss_mb()
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    pairs = find_pairs(h, args.radius, workers=args.workers)
    seconds = time.perf_counter() - t0
    found = pair_found(h, pairs, src, dst)
    rng = np.random.default_rng(args.seed + 1)
    sample = np.concatenate([rng.choice(args.n, args.verify_sample // 2, replace=False),
                             src[:args.verify_sample - args.verify_sample // 2]])
    within = dist <= args.radius
    identical = int(np.count_nonzero(pairs.dist == 0))
    result = {
        "bench": "dedup_search", "mode": args.mode, "n": args.n, "radius": args.radius, "seed": args.seed,
        "workers": args.workers, "cpus": os.cpu_count(), "seconds": round(seconds, 3),
        "loadavg_1m_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "peak_rss_mb": round(peak_rss_mb(), 1), "rss_before_search_mb": round(rss_before, 1),
        "pairs": len(pairs.i), "near_pairs": len(pairs.i) - identical, "identical_star_pairs": identical,
        "distinct_hashes": int(len(np.unique(h))), "planted": len(src),
        "planted_recall": float(found[within].mean()) if within.any() else None,
        "planted_beyond_radius_reported": int(found[~within].sum()),
        "max_reported_dist": int(pairs.dist.max()) if len(pairs.dist) else None,
        "sample_items_checked": len(sample),
        "sample_neighbours_exact": sample_check(h, pairs, args.radius, sample),
    }
    if args.compare_imagededup:
        try:
            ref_seconds, ref_pairs, ref_version = run_imagededup(h, args.radius)
        except ImportError as err:
            result["imagededup"] = f"not installed: {err}"
        else:
            # imagededup lists every pair of files explicitly: expand our compressed output to compare.
            ours = explicit_pairs(h, pairs)
            ours_set = set(zip(ours.i.tolist(), ours.j.tolist(), strict=True))
            result.update({
                "imagededup_version": ref_version, "imagededup_seconds": round(ref_seconds, 3),
                "imagededup_pairs": len(ref_pairs), "our_explicit_pairs": len(ours_set),
                "same_pairs": ours_set == ref_pairs, "speedup": round(ref_seconds / seconds, 1),
            })
    print(json.dumps(result))


if __name__ == "__main__":
    main()
