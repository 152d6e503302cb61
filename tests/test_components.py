"""Connected components of candidate pairs, and pixel-check tasks that keep a tile's pairs together (issue 12)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rscurate import pipeline
from rscurate.components import components, grouped_order


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
        oracle = pipeline.DaskPixels(client, tmp_path, pd.DataFrame(), {})
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
