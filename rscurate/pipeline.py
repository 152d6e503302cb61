"""The build: the one place where stages meet Dask.

discover (client) -> plan scenes (workers) -> run units (workers; staged, resumable)
-> leakage + dedup (client, slim rows) -> write shards (workers) -> tables, stats, card (client).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import dask
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from dask.distributed import Client, KilledWorker, LocalCluster, as_completed
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rscurate import fork_server, out_dir, schema, strict_json
from rscurate.band_stats import BandAccumulator, BandParts, band_groups, mixed_sources, summarise
from rscurate.components import bounded_batches, grouped_order
from rscurate.dedup import DedupSettings, ProbeSets, decide, keep_all
from rscurate.discover import Discovery, discover
from rscurate.file_names import as_text
from rscurate.footprints import canonical_crs
from rscurate.hamming_search import DEFAULT_RADIUS, Pairs, find_pairs_dask
from rscurate.kill_points import kill_point
from rscurate.manifest import Manifest, ManifestError, load_manifests
from rscurate.out_dir import WORK
from rscurate.parquet_io import read_file, write_atomic
from rscurate.pixel_check import Similarity, check_placements, check_tiles
from rscurate.probe_leaks import Probes
from rscurate.probes import probe_sides
from rscurate.readers import SceneRef
from rscurate.scene_hash import SceneSignature, signature_columns
from rscurate.scene_view import plan_views
from rscurate.shards import link_shard, read_index_part, write_shard
from rscurate.units import (
    SLIM,
    WORKER_DIED,
    ScenePlan,
    StagedUnit,
    Unit,
    UnitResult,
    ViewMerger,
    check_scenes,
    lost_unit,
    plan_scenes,
    run_unit,
    unit_key,
)

log = logging.getLogger("rscurate")

PLAN_BATCH = 64  # at most this many scenes per planning task (headers, and overviews where a file has them)
CHECK_BATCH = 128  # candidate pairs one pixel-check task decodes and compares (its tiles: at most --unit-mb)
# decoded pixels per work unit at most (MiB): a worker's peak grows by ~4x this over its ~300 MB base (a unit's
# tiles, their encoded bytes and the tables and Parquet buffers built from them), so 96 keeps it under 1 GiB
# whatever the tile size, band count or dtype (docs/benchmarks.md), while 256 px 3-band uint16 units keep 256
# tiles
UNIT_MB = 96


@dataclass
class BuildOptions:
    sources: list[Path]
    out: Path
    scheduler: str | None = None
    workers: int | None = None
    strict: bool = False
    quiet: bool = False
    unit_tiles: int = 256  # tiles per work unit (and at most per shard): coarse tasks, bounded memory
    unit_mb: int = UNIT_MB  # decoded MiB of tiles per work unit at most: a worker's memory whatever the tile size
    keep_work: bool = False
    overwrite: bool = False  # empty a non-empty --out that holds another build (or anything else)
    radius: int = DEFAULT_RADIUS  # pHash Hamming radius of near/scene duplicates and leakage; 0: exact only
    curate: bool = True  # False: every tile with a valid pixel is kept (no quality rules, no dedup, no leak search)
    processes: bool = True  # False runs the LocalCluster's workers as threads (tests, notebooks; `--workers 0`)
    command: str = field(default_factory=lambda: " ".join(sys.argv))


@dataclass
class BuildReport:
    kept: int
    excluded: int
    duplicates: int
    absent: list[str]
    shards: int
    seconds: float


# Dask's statistical profiler samples a worker's task thread every 10 ms in Python, taking the GIL from it: 3-4 %
# of a local build's tile stage (docs/scaling.md). Local workers run without it unless this variable is set; a
# --scheduler cluster keeps its own settings.
PROFILE_VARIABLE = "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED"


@contextmanager
def dask_client(scheduler: str | None, workers: int | None, quiet: bool, processes: bool = True) -> Iterator[Client]:
    """An existing cluster when given an address, else a LocalCluster of single-threaded processes."""
    if scheduler:
        client = Client(scheduler)
        if not quiet and "dashboard" in client.scheduler_info().get("services", {}):  # none: --no-dashboard
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or os.cpu_count() or 1  # 0 (in-process threads) too
    # variables a worker's interpreter needs before it starts (fork_server.WORKER_ENV); `rscurate` forks its
    # workers from a server that imported everything with them (rscurate/launch.py), else they are spawned
    settings: dict[str, object] = {f"distributed.nanny.pre-spawn-environ.{k}": v
                                   for k, v in fork_server.WORKER_ENV.items()}
    if fork_server.started():
        settings["distributed.worker.multiprocessing-method"] = "forkserver"
    if PROFILE_VARIABLE not in os.environ:  # the user's explicit choice wins
        settings["distributed.worker.profile.enabled"] = False
    with dask.config.set(settings), LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                                              dashboard_address=":0",
                                              # --quiet: a task's error reaches the client (and the console) anyway
                                              silence_logs=logging.CRITICAL if quiet else logging.ERROR) as cluster, \
            Client(cluster) as client:
        if not quiet:
            print(f"Dask dashboard: {client.dashboard_link}", file=sys.stderr)
        started = dask.config.get("distributed.worker.multiprocessing-method") if processes else "in this process"
        log.info("LocalCluster: %d worker %s (%s)", n, "processes" if processes else "threads", started)
        yield client


def _progress(quiet: bool) -> Progress:
    return Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=quiet, transient=False)


def _gather(client: Client, futures: list, label: str, quiet: bool, killed: list[int] | None = None,
            on_result: Callable[[int, Any], None] | None = None) -> list[Any]:
    """Results in submission order, with a console progress bar as they complete. With `killed`, a task whose
    workers kept dying (Dask's KilledWorker) leaves None and its position is appended there, else it raises.
    `on_result(position, result)` is called as each result arrives."""
    t0 = time.perf_counter()
    position = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    with _progress(quiet) as bar:
        task = bar.add_task(label, total=len(futures))
        for done, fut in enumerate(as_completed(futures), 1):
            try:
                results[position[fut.key]] = result = fut.result()
                if on_result is not None:
                    on_result(position[fut.key], result)
            except KilledWorker:
                if killed is None:
                    raise
                killed.append(position[fut.key])
            fut.release()
            bar.advance(task)
            kill_point(label, done)
    log.info("%s: %d tasks in %.1f s", label, len(futures), time.perf_counter() - t0)
    return results


def _retry_one_by_one(client: Client, func: Callable[..., Any], singles: dict[int, list[tuple]],
                      lost: Callable[..., Any]) -> dict[int, list[Any]]:
    """Tasks whose workers kept dying (a scene that crashes a decoder or exhausts a worker's memory; Dask gave up
    after distributed.scheduler.allowed-failures), rerun one scene at a time: every task queued on a dying worker
    is blamed, so only a scene that kills its worker while alone on the cluster is lost. `singles[k]`: task k's
    arguments split per scene; `lost(*args)` stands for a lost scene's result. Returns task -> results per scene."""
    if singles:
        log.warning("%d tasks killed their workers repeatedly; rerunning their scenes one at a time", len(singles))
    out: dict[int, list[Any]] = defaultdict(list)
    for k, group in singles.items():
        for args in group:
            killed: list[int] = []
            result = _gather(client, [client.submit(func, *args, pure=False)], "retry", True, killed)[0]
            out[k].append(lost(*args) if killed else result)
    return out


def _unplanned(manifest: Manifest, scenes: list[SceneRef], work_dir: str) -> list[ScenePlan]:
    """The plan of a scene that killed every worker planning it."""
    return [ScenePlan(scenes[0], reason="unreadable", detail=WORKER_DIED)]


def _retry_units(client: Client, units: list[Unit], results: list[UnitResult | None], killed: list[int],
                 work: str, views: ViewMerger) -> tuple[list[Unit], list[UnitResult]]:
    """Units whose workers kept dying, replaced by one unit per scene; a scene no worker survives has its
    windows recorded as unreadable (and is retried by a rerun of the build, since nothing of it is staged)."""
    singles = {k: [(Unit(unit_key(units[k].manifest, (item,), units[k].probe_sides), units[k].manifest, (item,),
                         units[k].probe_sides), work) for item in units[k].items] for k in killed}
    retried = _retry_one_by_one(client, run_unit, singles, lambda unit, _: lost_unit(unit))
    for k, parts in retried.items():
        for j, ((unit, _), result) in enumerate(zip(singles[k], parts, strict=True)):
            if result.view_parts:
                views.add((k, j), unit.key)
    pairs: list[tuple[Unit, Any]] = []
    for k, (unit, result) in enumerate(zip(units, results, strict=True)):
        pairs += [(args[0], r) for args, r in zip(singles[k], retried[k], strict=True)] if k in retried else [
            (unit, result)]
    return [u for u, _ in pairs], [r for _, r in pairs]


def make_units(manifest: Manifest, plans: list[ScenePlan], unit_tiles: int, probe_sides: tuple[int, ...] = (),
               unit_mb: int = UNIT_MB) -> list[Unit]:
    """Pack scenes' windows into units of at most `unit_tiles` tiles and `unit_mb` MiB of decoded pixels (at least
    one tile); big scenes span several units. In a build with an eval source every unit computes probes (eval
    units at `probe_sides`, from the training tile sizes)."""
    sides, budget = probe_sides, unit_mb * 2**20
    units: list[Unit] = []
    batch: list[tuple[SceneRef, tuple]] = []
    size = used = 0

    def flush() -> None:
        nonlocal batch, size, used
        if batch:
            items = tuple(batch)
            units.append(Unit(unit_key(manifest, items, sides), manifest, items, sides))
        batch, size, used = [], 0, 0

    for plan in plans:
        for chunk, nbytes in _chunks(plan, unit_tiles, budget):
            if size + len(chunk) > unit_tiles or used + nbytes > budget:
                flush()
            batch.append((plan.scene, chunk))
            size, used = size + len(chunk), used + nbytes
    flush()
    return units


def _chunks(plan: ScenePlan, unit_tiles: int, budget: int) -> Iterator[tuple[tuple, int]]:
    """A scene's windows in runs of at most `unit_tiles` tiles and `budget` decoded bytes (at least one tile), with
    each run's bytes."""
    start = used = 0
    for k, window in enumerate(plan.windows):
        nbytes = plan.window_bytes(window)
        if k > start and (k - start == unit_tiles or used + nbytes > budget):
            yield plan.windows[start:k], used
            start, used = k, 0
        used += nbytes
    if start < len(plan.windows):
        yield plan.windows[start:], used


def _scene_rows(ref: SceneRef, width: int, height: int, reason: str, detail: str) -> dict[str, Any]:
    return {"source": ref.source, "scene": ref.scene, "x": 0, "y": 0, "width": width, "height": height,
            "reason": reason, "detail": detail}


INPUTS = pa.schema([("source", pa.string()), ("scene", pa.string()), ("role", pa.string()),
                    ("files", pa.list_(pa.string())), ("tiles_planned", pa.int64()), ("width", pa.int64()),
                    ("height", pa.int64()), ("pixels", pa.int64()), ("pixels_tiled", pa.int64())])


def _inputs_table(discoveries: list[Discovery], plans: dict[str, list[ScenePlan]]) -> pa.Table:
    """Every discovered scene with the tiles planned for it (what `verify` accounts against) and its pixels
    read and covered by tiles (the rest are margins; zeros for a scene never planned or unreadable)."""
    rows: dict[str, list] = defaultdict(list)
    for d in discoveries:
        planned = {p.scene.scene: p for p in plans.get(d.manifest.name, [])}
        for ref in d.scenes + [r for r, _, _ in d.left_out]:
            plan = planned.get(ref.scene, ScenePlan(ref))
            rows["source"].append(ref.source)
            rows["scene"].append(ref.scene)
            rows["role"].append(d.manifest.role)
            rows["files"].append([as_text(p) for p in ref.paths])  # names that are not UTF-8: escaped
            rows["tiles_planned"].append(len(plan.windows))
            rows["width"].append(plan.width)
            rows["height"].append(plan.height)
            rows["pixels"].append(plan.width * plan.height)
            rows["pixels_tiled"].append(plan.pixels_tiled)
    return pa.table(rows, schema=INPUTS)


def _staged(unit: str) -> str:
    """A unit's staged candidates (shard schema, with bytes), relative to the corpus folder."""
    return f"{WORK}/units/{unit}.parquet"


@dataclass
class DaskPixels:
    """dedup.PixelOracle over the build's cluster: tasks decode the staged tiles (or re-read decimated scenes) of
    candidate pairs and compare them (pixel_check)."""

    client: Client
    out: Path
    cands: pd.DataFrame
    scene_refs: dict[tuple[str, str], tuple[Manifest, SceneRef]]  # (source, scene) -> how to open it
    budget: int = UNIT_MB * 2**20  # decoded bytes of the tiles of one task at most (as a work unit's)
    checked: int = 0  # candidate pairs compared on their pixels, and the wall time that took
    seconds: float = 0.0

    def _where(self, k: int) -> tuple[str, int]:
        return _staged(self.cands["unit"].iat[k]), int(self.cands["unit_row"].iat[k])

    @cached_property
    def decoded_bytes(self) -> np.ndarray:
        """Each candidate's decoded size in bytes."""
        dtypes = self.cands["dtype"]
        itemsize = dtypes.map({name: np.dtype(name).itemsize for name in dtypes.unique()}).to_numpy(np.int64)
        return self.cands[["width", "height", "channels"]].to_numpy(np.int64).prod(axis=1) * itemsize

    def _per_task(self, n: int) -> int:
        """Items per task for n items: at most CHECK_BATCH, in as few tasks as that allows, rounded up to a
        multiple of the cluster's task threads (10 checks on 2 workers: 2 tasks of 5, not one worker doing all 10)."""
        threads = max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info()["workers"].values()))
        tasks = -(-max(n, 1) // CHECK_BATCH)
        return -(-max(n, 1) // (-(-tasks // threads) * threads))

    def _run(self, func: Any, items: list, *args: Any, candidates: tuple[np.ndarray, np.ndarray] | None = None) -> list:
        """func's results for items, in order, from tasks of at most _per_task items. `candidates`: the two
        candidate rows of each item; items sharing a candidate then go to one task, which decodes and grids each tile
        once for all its pairs (a tile of a stack of dates has a pair with each other date of its place), and a
        task's distinct tiles decode to at most `budget` bytes (a worker's memory, whatever the tile size)."""
        t0 = time.perf_counter()
        per_task = self._per_task(len(items))
        if candidates is not None:
            runs = bounded_batches(*candidates, grouped_order(*candidates), self.decoded_bytes, per_task, self.budget)
        else:
            runs = [np.arange(k, min(k + per_task, len(items))) for k in range(0, len(items), per_task)]
        futures = [self.client.submit(func, *args, [items[k] for k in run.tolist()], pure=False) for run in runs]
        found: list = [None] * len(items)
        order = np.concatenate(runs).tolist() if runs else []
        for k, result in zip(order, (r for part in self.client.gather(futures) for r in part), strict=True):
            found[k] = result
        self.checked += len(items)
        self.seconds += time.perf_counter() - t0
        return found

    def tiles(self, i: np.ndarray, j: np.ndarray) -> list[Similarity]:
        pairs = [(self._where(a), self._where(b)) for a, b in zip(i.tolist(), j.tolist(), strict=True)]
        return self._run(check_tiles, pairs, str(self.out), candidates=(i, j))

    def placed(self, chip: np.ndarray, tile: np.ndarray, x: np.ndarray, y: np.ndarray,
               scale: np.ndarray) -> list[Similarity]:
        items = [(self._where(c), self._where(t), float(a), float(b), float(f))
                 for c, t, a, b, f in zip(chip.tolist(), tile.tolist(), x, y, scale, strict=True)]
        return self._run(check_placements, items, str(self.out), candidates=(chip, tile))

    def scenes(self, a: list[tuple[str, str]], b: list[tuple[str, str]]) -> list[Similarity]:
        pairs = [(self.scene_refs[x], self.scene_refs[y]) for x, y in zip(a, b, strict=True)]
        return self._run(check_scenes, pairs, str(self.out / WORK))


@dataclass
class TimedSearch:
    """The near-pair search on the cluster, timed: the build reports it beside the pixel checks' time."""

    client: Client
    seconds: float = 0.0

    def __call__(self, hashes: np.ndarray, radius: int) -> Pairs:
        t0 = time.perf_counter()
        pairs = find_pairs_dask(hashes, radius, self.client)
        self.seconds += time.perf_counter() - t0
        kill_point("dedup")
        return pairs


def _probe_sets(work: Path, cands: pd.DataFrame, is_eval: np.ndarray) -> ProbeSets:
    """The staged probes of every candidate, keyed by candidate row position (read on the client: only builds
    with an eval source need them)."""
    position = pd.Series(np.arange(len(cands)), index=pd.MultiIndex.from_arrays([cands["unit"], cands["unit_row"]]))
    parts = []
    for key in pd.unique(cands["unit"]):
        table = read_file(StagedUnit.of(work, key).probes).to_pandas()
        table["cand"] = position.loc[key].reindex(table["row"]).to_numpy()
        parts.append(table)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["cand", *"xywh", "phash"])
    evals = is_eval[frame["cand"].to_numpy(np.int64)]
    return ProbeSets(train=Probes.of(frame[~evals]), evals=Probes.of(frame[evals]))


def scene_windows(plans: dict[str, list[ScenePlan]]) -> dict[tuple[str, str], int]:
    """(source, scene) -> how many windows the scene is cut into."""
    return {(p.scene.source, p.scene.scene): len(p.windows) for ps in plans.values() for p in ps}


def whole_scene_signatures(plans: dict[str, list[ScenePlan]], results: list[UnitResult],
                           merged: dict[tuple[str, str], SceneSignature | None]) -> dict[
        tuple[str, str], SceneSignature | None]:
    """(source, scene) -> whole-scene signature: from overviews while planning, else from the tile pass (signed in
    the unit that read every window of the scene, or `merged` from the parts of the units that did: ViewMerger)."""
    found = {(p.scene.source, p.scene.scene): p.signature for ps in plans.values() for p in ps if p.signature}
    for result in results:
        found.update(result.signatures)
    found.update(merged)
    return found


def _scene_signatures(plans: dict[str, list[ScenePlan]],
                      signatures: dict[tuple[str, str], SceneSignature | None]) -> pd.DataFrame:
    """One row per planned scene that has a whole-scene signature (scene_hash), for scene-level matching."""
    signed = [p for ps in plans.values() for p in ps if signatures.get((p.scene.source, p.scene.scene))]
    nan = (float("nan"),) * 4
    footprints = np.array([p.bounds or nan for p in signed], np.float64).reshape(-1, 4)
    return pd.DataFrame({
        "source": pd.Series([p.scene.source for p in signed], dtype=object),
        "scene": pd.Series([p.scene.scene for p in signed], dtype=object),
        "width": [p.width for p in signed], "height": [p.height for p in signed],
        "crs": pd.Series([p.crs for p in signed], dtype=object),
        **{c: footprints[:, k] for k, c in enumerate(("minx", "miny", "maxx", "maxy"))},
        **signature_columns([sig for p in signed if (sig := signatures[(p.scene.source, p.scene.scene)])]),
    })


def _build_meta(opts: BuildOptions, started: datetime, seconds: float, workers: int) -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "command": opts.command,
        "settings": {"sources": [str(s) for s in opts.sources], "unit_tiles": opts.unit_tiles, "unit_mb": opts.unit_mb,
                     "strict": opts.strict, "radius": opts.radius, "curate": opts.curate, "keep_work": opts.keep_work,
                     "scheduler": opts.scheduler or "LocalCluster"},
        "rscurate_version": version("rsfm-toolkit"),
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 2),
        "workers": workers,
    }


def build(opts: BuildOptions) -> BuildReport:
    """Run a whole build; manifests are validated (and may raise ManifestError) before any work."""
    t0 = time.perf_counter()
    started = datetime.now(UTC)
    manifests = load_manifests(opts.sources)
    if not opts.curate:
        manifests = [m.uncurated() for m in manifests]
    inputs_fp = out_dir.fingerprint(manifests, opts.radius if opts.curate else -1, opts.unit_tiles, opts.unit_mb)
    out_dir.check(opts.out, inputs_fp, opts.overwrite)
    discoveries = [discover(m) for m in manifests]
    absent = [d.absent for d in discoveries if d.absent]
    for line in absent:
        log.warning("skipped (not on disk): %s", line)
    if absent and opts.strict:
        raise ManifestError("--strict: sources without data:\n  " + "\n  ".join(absent))
    present = [d for d in discoveries if not d.absent]
    if not present:
        raise ManifestError("no source has data on disk; see the messages above for where to get each")

    out, work = opts.out, out_dir.start(opts.out, inputs_fp, opts.overwrite)
    # --workers 0: threads in this process, no worker process to start (~2 s on 2 cores, more than a small scene's
    # whole build) but no isolation either: a file that crashes its decoder crashes the build
    processes = opts.processes and opts.workers != 0
    with dask_client(opts.scheduler, opts.workers, opts.quiet, processes) as client:
        n_workers = len(client.scheduler_info()["workers"])
        plan_args: list[tuple[Manifest, list[SceneRef], str]] = []
        for d in present:
            batch = max(1, min(PLAN_BATCH, -(-len(d.scenes) // (2 * n_workers))))  # every worker gets some
            plan_args += [(d.manifest, d.scenes[i : i + batch], str(work)) for i in range(0, len(d.scenes), batch)]
        plan_futs = [client.submit(plan_scenes, *args, pure=False) for args in plan_args]
        killed: list[int] = []
        planned = _gather(client, plan_futs, "planning", opts.quiet, killed)
        singles = {k: [(plan_args[k][0], [scene], str(work)) for scene in plan_args[k][1]] for k in killed}
        for k, parts in _retry_one_by_one(client, plan_scenes, singles, _unplanned).items():
            planned[k] = [plan for part in parts for plan in part]
        plans: dict[str, list[ScenePlan]] = defaultdict(list)
        for (manifest, *_), result in zip(plan_args, planned, strict=True):
            plans[manifest.name] += result

        with_eval = any(d.manifest.role == "eval" for d in present)
        sides = probe_sides(w[2] for d in present if d.manifest.role == "train" and with_eval
                            for p in plans[d.manifest.name] for w in p.windows)
        units = [u for d in present
                 for u in make_units(d.manifest, plans[d.manifest.name], opts.unit_tiles, sides, opts.unit_mb)]
        if done := sum(StagedUnit.of(work, u.key).kept.exists() for u in units):
            log.info("resuming: %d of %d units done", done, len(units))
        if binning := sum(p.view_numpy_s for ps in plans.values() for p in ps):
            # each worker's share: compiled or numpy throughout; a hint, so a worker that cannot take it (gone since)
            # bins as without a plan
            client.run(plan_views, binning / max(1, n_workers), on_error="ignore")
        unit_futs = [client.submit(run_unit, u, str(work), key=f"unit-{u.key}") for u in units]
        killed = []
        views = ViewMerger(work, scene_windows(plans))
        unit_results = _gather(client, unit_futs, "tiles", opts.quiet, killed,
                               lambda k, result: views.add((k, 0), units[k].key) if result.view_parts else None)
        units, unit_results = _retry_units(client, units, unit_results, killed, str(work), views)

        scene_excl = [_scene_rows(r, 0, 0, reason, detail) for d in present for r, reason, detail in d.left_out]
        scene_excl += [_scene_rows(p.scene, p.width, p.height, p.reason or "", p.detail)
                       for ps in plans.values() for p in ps if p.reason]
        cands = pa.concat_tables([r.slim for r in unit_results]).to_pandas() if unit_results else pd.DataFrame(
            columns=[*SLIM, "unit", "unit_row"])
        priority = {m.name: m.priority for m in manifests}
        eval_sources = {m.name for m in manifests if m.role == "eval"}
        scene_size = {(p.scene.source, p.scene.scene): p.width * p.height for ps in plans.values() for p in ps}
        cands["scene_pixels"] = [scene_size.get(k, 0) for k in zip(cands["source"], cands["scene"], strict=True)]
        cands["crs"] = canonical_crs(cands)  # one name per frame: footprints compare across CRS spellings
        signed = _scene_signatures(plans, whole_scene_signatures(plans, unit_results, views.signed))
        signed["crs"] = canonical_crs(signed)
        by_name = {m.name: m for m in manifests}
        refs = {(p.scene.source, p.scene.scene): (by_name[p.scene.source], p.scene)
                for ps in plans.values() for p in ps}
        t_dedup = time.perf_counter()
        is_eval = cands["source"].isin(eval_sources).to_numpy()
        probes = _probe_sets(work, cands, is_eval) if is_eval.any() else None
        search, pixels = TimedSearch(client), DaskPixels(client, out, cands, refs, opts.unit_mb * 2**20)
        decisions = decide(cands, signed, priority, eval_sources, DedupSettings(opts.radius), search=search,
                           pixels=pixels, probes=probes) if opts.curate else keep_all(cands, eval_sources)
        dedup_time = {"seconds": round(time.perf_counter() - t_dedup, 2),
                      "pair_search_seconds": round(search.seconds, 2), "pixel_checks": pixels.checked,
                      "pixel_check_seconds": round(pixels.seconds, 2)}
        log.info("dedup: %d candidates in %.1f s (pair search %.2f s; %d pixel checks in %.2f s)", len(cands),
                 dedup_time["seconds"], search.seconds, pixels.checked, pixels.seconds)

        kept = cands[decisions.keep]
        per_unit = kept.groupby("unit", sort=False)["unit_row"].apply(list)  # unit order is kept
        by_key = {u.key: r for u, r in zip(units, unit_results, strict=True)}
        whole = [len(rows) == len(by_key[key].slim) for key, rows in per_unit.items()]
        shard_futs = [client.submit(write_shard, k, key, rows, str(work), str(out), pure=False)
                      for k, ((key, rows), w) in enumerate(zip(per_unit.items(), whole, strict=True)) if not w]
        linked = {k: link_shard(k, key, work, out)
                  for k, (key, w) in enumerate(zip(per_unit.index, whole, strict=True)) if w}
        band_parts = [by_key[key].bands for key, w in zip(per_unit.index, whole, strict=True) if w]
        band_parts += _gather(client, shard_futs, "shards", opts.quiet)

    n_shards = len(per_unit)
    _remove_stale_shards(out, n_shards)
    index = (pa.concat_tables([linked[k] if k in linked else read_index_part(work, k) for k in range(n_shards)])
             if n_shards else schema.INDEX.empty_table())
    train_excl = [r.excluded for r, u in zip(unit_results, units, strict=True) if u.manifest.role == "train"]
    excluded = pa.concat_tables([
        *train_excl,
        pa.Table.from_pylist(scene_excl, schema=schema.EXCLUDED),
        pa.Table.from_pandas(decisions.leaks, schema=schema.EXCLUDED, preserve_index=False),
    ])
    excluded = excluded.filter(pc.is_in(excluded["source"], pa.array(
        [m.name for m in manifests if m.role == "train"], pa.string())))
    duplicates = pa.Table.from_pandas(decisions.duplicates, schema=schema.DUPLICATES, preserve_index=False)
    inputs = _inputs_table(present, plans)

    write_atomic(index, out / "index.parquet")
    write_atomic(excluded, out / "excluded.parquet")
    write_atomic(duplicates, out / "duplicates.parquet")
    write_atomic(inputs, out / "inputs.parquet")
    stats = corpus_stats(manifests, inputs, index, excluded, duplicates, band_parts, cands, eval_sources)
    seconds = time.perf_counter() - t0
    stats["build"] = {**_build_meta(opts, started, seconds, n_workers), "dedup": dedup_time}
    stats["absent_sources"] = absent
    (out / "stats.json").write_text(strict_json.dumps(stats, indent=2))

    from rscurate.card import write_card

    dropped = cands[cands["id"].isin(decisions.duplicates["id"])]
    dropped_at = pd.DataFrame({"file": [_staged(u) for u in dropped["unit"]],
                               "row": dropped["unit_row"].to_numpy()}, index=dropped["id"].to_numpy())
    write_card(out, stats, index, excluded, duplicates, dropped_at)
    kill_point("card")
    # build.json first: a kill while _work/ is removed leaves a build that a rerun recognises (and redoes)
    out_dir.finish(out, _build_meta(opts, started, time.perf_counter() - t0, n_workers), inputs_fp)
    if not opts.keep_work:
        out_dir.remove_work(out)
    return BuildReport(len(index), len(excluded), len(duplicates), absent, n_shards, seconds)


def _remove_stale_shards(out: Path, n_shards: int) -> None:
    """Shards numbered past this build's count come from an earlier, larger build: remove them."""
    for path in (out / "shards").glob("part-*.parquet"):
        if int(path.stem.split("-")[1]) >= n_shards:
            path.unlink()


def corpus_stats(
    manifests: list[Manifest],
    inputs: pa.Table,
    index: pa.Table,
    excluded: pa.Table,
    duplicates: pa.Table,
    band_parts: list[BandParts],
    cands: pd.DataFrame,
    eval_sources: set[str],
) -> dict[str, Any]:
    """Counts per source and reason, and per-band statistics of kept tiles."""
    merged: BandParts = {}
    for part in band_parts:
        for key, acc in part.items():
            merged.setdefault(key, BandAccumulator()).merge(acc)
    per_source, overall = summarise(merged)
    mixed = _mixed_band_groups(index, mixed_sources(merged))
    kept_by = Counter(index["source"].to_pylist())
    dup_by = Counter(duplicates["source"].to_pylist())
    files_by = Counter(inputs["source"].to_pylist())
    pixels_by = inputs.group_by("source").aggregate([("pixels", "sum"), ("pixels_tiled", "sum")]).to_pandas()
    pixels_by = pixels_by.set_index("source").rename(columns=lambda c: c.removesuffix("_sum"))
    excl_by: dict[str, Counter] = defaultdict(Counter)
    for src, reason in zip(excluded["source"].to_pylist(), excluded["reason"].to_pylist(), strict=True):
        excl_by[src][reason] += 1
    eval_hashed = Counter(cands.loc[cands["source"].isin(eval_sources), "source"])
    sources = {
        m.name: {
            "role": m.role, "files": files_by[m.name], "kept": kept_by[m.name],
            "excluded": dict(excl_by[m.name]), "duplicates": dup_by[m.name],
            "pixels": int(pixels_by.at[m.name, "pixels"]), "pixels_tiled": int(pixels_by.at[m.name, "pixels_tiled"]),
            **({"eval_tiles_hashed": eval_hashed[m.name]} if m.role == "eval" else {}),
            "license": m.license, "citation": m.citation, "homepage": m.homepage, "priority": m.priority,
            "bands": per_source.get(m.name, {}),
            **({"band_groups": mixed[m.name]} if m.name in mixed else {}),
        }
        for m in manifests if files_by[m.name]
    }
    return {
        "counts": {
            "files": len(inputs), "kept": len(index),
            "excluded": dict(Counter(excluded["reason"].to_pylist())),
            "duplicates": dict(Counter(duplicates["kind"].to_pylist())),
        },
        "sources": sources,
        "bands": overall,
    }


def _mixed_band_groups(index: pa.Table, mixed: set[str]) -> dict[str, dict[str, dict]]:
    """The band groups of each source that mixes them, logged with example scenes: their statistics are split."""
    if not mixed:
        return {}
    cols = index.filter(pc.is_in(index["source"], pa.array(sorted(mixed), pa.string())))
    groups = band_groups(*(cols[c].to_pylist() for c in ("source", "scene", "dtype", "bands")))
    for source, found in groups.items():
        log.warning("source %s mixes band sets (dtype x band count), so its band statistics are split per group "
                    "under name@group keys: %s", source,
                    "; ".join(f"{g} {v['bands']} e.g. {', '.join(v['examples'])}" for g, v in found.items()))
    return groups
