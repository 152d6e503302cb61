"""Connected components of candidate pairs, and pixel-check tasks that keep a tile's pairs together (issue 12)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dask.distributed import Client, LocalCluster

from rscurate import pipeline
from rscurate.components import bounded_batches, components, grouped_order


def _brute_force(u: np.ndarray, v: np.ndarray, n: int) -> np.ndarray:
    """Each node's smallest reachable node, by a search from every node."""
    neighbours = defaultdict(set)
    for a, b in zip(u.tolist(), v.tolist(), strict=True):
        neighbours[a].add(b)
        neighbours[b].add(a)
    label = np.full(n, -1)
    for start in range(n):
        if label[start] >= 0:
            continue
        seen, todo = {start}, [start]
        while todo:
            for nxt in neighbours[todo.pop()] - seen:
                seen.add(nxt)
                todo.append(nxt)
        label[list(seen)] = min(seen)
    return label


def test_components_label_each_node_with_the_smallest_node_it_reaches() -> None:
    """Random graphs, long paths in random node order (the most rounds of hooking), self-loops, isolated nodes."""
    rng = np.random.default_rng(0)
    for case in range(120):
        n = int(rng.integers(1, 300))
        if case % 3 == 0:
            path = rng.permutation(n)
            u, v = path[:-1], path[1:]
        else:
            e = int(rng.integers(0, 2 * n))
            u, v = rng.integers(0, n, e), rng.integers(0, n, e)
        np.testing.assert_array_equal(components(u, v, n), _brute_force(u, v, n), err_msg=f"case {case}")


def test_grouped_order_puts_each_components_pairs_side_by_side() -> None:
    rng = np.random.default_rng(1)
    nodes = rng.permutation(10_000)[:500]  # candidate row numbers, not 0..n-1
    i, j = rng.choice(nodes, 400), rng.choice(nodes, 400)
    order = grouped_order(i, j)
    assert sorted(order.tolist()) == list(range(len(i)))
    index = {node: k for k, node in enumerate(np.unique(np.concatenate((i, j))).tolist())}
    label = components([index[a] for a in i.tolist()], [index[b] for b in j.tolist()], len(index))
    runs = label[[index[a] for a in i[order].tolist()]]
    changes = np.count_nonzero(np.diff(runs))
    assert changes == len(np.unique(runs)) - 1  # one run per component
    assert len(grouped_order(np.zeros(0, int), np.zeros(0, int))) == 0


def test_bounded_batches_cut_the_order_where_pairs_or_decoded_bytes_would_overflow() -> None:
    """Runs cover the order in order; each holds at most max_pairs pairs whose distinct tiles weigh at most
    max_bytes, unless one pair alone is heavier; and a run ends only where its next pair would break a bound."""
    rng = np.random.default_rng(3)
    for case in range(200):
        n, pairs = int(rng.integers(2, 60)), int(rng.integers(0, 150))
        i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
        j = np.where(i == j, (j + 1) % n, j)
        nbytes = rng.integers(1, 50, n) * (1 if case % 2 else 100)
        max_pairs, max_bytes = int(rng.integers(1, 20)), int(rng.integers(1, 400))
        order = grouped_order(i, j)
        runs = bounded_batches(i, j, order, nbytes, max_pairs, max_bytes)
        assert np.concatenate(runs).tolist() == order.tolist() if pairs else runs == []

        for k, run in enumerate(runs):
            assert 1 <= len(run) <= max_pairs, f"case {case}"
            assert _weight(run, i, j, nbytes) <= max_bytes or len(run) == 1, f"case {case}"
            if k + 1 < len(runs):
                grown = np.append(run, runs[k + 1][0])
                assert len(grown) > max_pairs or _weight(grown, i, j, nbytes) > max_bytes, f"case {case}: too early"


def _weight(run: np.ndarray, i: np.ndarray, j: np.ndarray, nbytes: np.ndarray) -> int:
    """Decoded bytes of the distinct tiles of a run of pairs."""
    return int(nbytes[np.unique(np.concatenate((i[run], j[run])))].sum())


def _batch(tag: str, items: list) -> list:
    """A stand-in check task: each result names the first item of its task."""
    return [(tag, items[0], item) for item in items]


def test_pixel_check_tasks_keep_a_tiles_pairs_together_and_answer_in_order(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A stack of 4 dates of 30 places: each tile has a footprint pair with the other 3 dates of its place. In
    submission order (date by date, as the candidates come) a tile's pairs fall in several tasks, each of which
    would decode and grid it again; grouped, every tile is in one task, and the results still come back in the
    order of the pairs."""
    monkeypatch.setattr(pipeline, "CHECK_BATCH", 12)
    rng = np.random.default_rng(2)
    dates, places = 4, 30
    tile = np.arange(dates * places).reshape(dates, places)  # candidate rows, date-major as units stage them
    pairs = [(tile[a, p], tile[b, p]) for a in range(dates) for b in range(a + 1, dates) for p in range(places)]
    pairs = [pairs[k] for k in rng.permutation(len(pairs))]
    i, j = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    with pipeline.dask_client(None, 1, True, processes=False) as client:
        oracle = pipeline.DaskPixels(client, tmp_path, _tiles(dates * places, 256, 3, "uint8"), {})
        found = oracle._run(_batch, pairs, "t", candidates=(i, j))
        plain = oracle._run(_batch, pairs, "t")
    assert [item for _, _, item in found] == pairs and oracle.checked == 2 * len(pairs)

    def tasks_per_tile(results: list) -> int:
        tasks = defaultdict(set)
        for _, first, (a, b) in results:
            tasks[a].add(first)
            tasks[b].add(first)
        return max(len(t) for t in tasks.values())

    assert tasks_per_tile(found) == 1 < tasks_per_tile(plain)


def _tiles(n: int, side: int, channels: int, dtype: str) -> pd.DataFrame:
    """Candidate rows as the build has them, as far as a task's decoded size goes."""
    return pd.DataFrame({"width": [side] * n, "height": [side] * n, "channels": [channels] * n, "dtype": [dtype] * n})


def test_pixel_check_tasks_hold_at_most_a_budget_of_decoded_tiles(tmp_path: Path) -> None:
    """Pairs of 1024 px 13-band uint16 tiles (26 MiB decoded each): 128 such pairs in one task held 6.5 GiB of
    pixels at once. With a budget of 96 MiB (the default --unit-mb) a task holds at most 3 of them; the results
    still come back in the order of the pairs, and a budget below one pair still makes one task per pair."""
    rng = np.random.default_rng(4)
    n = 60
    pairs = [(int(a), int(b)) for a, b in (rng.permutation(n)[:2] for _ in range(100))]
    i, j = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    cands = _tiles(n, 1024, 13, "uint16")
    tile_bytes = 1024 * 1024 * 13 * 2
    with pipeline.dask_client(None, 1, True, processes=False) as client:
        for budget, most in ((96 * 2**20, 3), (tile_bytes, 2)):
            oracle = pipeline.DaskPixels(client, tmp_path, cands, {}, budget)
            found = oracle._run(_batch, pairs, "t", candidates=(i, j))
            assert [item for _, _, item in found] == pairs
            tasks = defaultdict(set)
            for _, first, (a, b) in found:
                tasks[first].update((a, b))
            assert max(len(t) for t in tasks.values()) == most


def test_pixel_check_tasks_come_in_multiples_of_the_workers(tmp_path: Path) -> None:
    """10 checks on 2 workers are 2 tasks of 5 (one task left the other worker idle); 294 are 4 tasks of at most
    74 (128, 128 and 38 gave one worker 166 checks and the other 128); on one worker, 3 tasks of 98; on one worker
    with 3 threads, 10 checks are 3 tasks."""
    for workers, n, sizes in ((2, 10, [5, 5]), (2, 294, [74, 74, 74, 72]), (1, 294, [98, 98, 98])):
        pairs = [(2 * k, 2 * k + 1) for k in range(n)]
        i, j = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
        with pipeline.dask_client(None, workers, True, processes=False) as client:
            oracle = pipeline.DaskPixels(client, tmp_path, _tiles(2 * n, 256, 3, "uint8"), {})
            found = oracle._run(_batch, pairs, "t", candidates=(i, j))
        assert [item for _, _, item in found] == pairs
        assert _task_sizes(found) == sizes
    # a cluster of one worker with 3 task threads (--scheduler): 3 tasks
    with LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        oracle = pipeline.DaskPixels(client, tmp_path, _tiles(20, 256, 3, "uint8"), {})
        pairs = [(2 * k, 2 * k + 1) for k in range(10)]
        found = oracle._run(_batch, pairs, "t", candidates=(np.arange(0, 20, 2), np.arange(1, 20, 2)))
    assert _task_sizes(found) == [4, 4, 2]


def _task_sizes(results: list) -> list[int]:
    """Items per task of _batch's results, largest first."""
    per_task: dict = defaultdict(int)
    for _, first, _ in results:
        per_task[first] += 1
    return sorted(per_task.values(), reverse=True)
