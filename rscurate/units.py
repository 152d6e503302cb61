"""Work units: the coarse tasks a worker runs (read -> slice -> judge -> hash -> encode -> stage).

A unit's output is staged to `_work/units/<key>.parquet` (kept candidates with bytes) and
`<key>.excluded.parquet`, written atomically, so a killed build resumes by skipping finished units.
The key hashes everything that decides the output, so changed settings or inputs never reuse it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import rasterio

from rscurate import codec, quality, schema
from rscurate.band_stats import BandParts, BandTileStats, accumulate
from rscurate.coverage import covered_pixels, owned_parts, uncovered
from rscurate.file_names import as_text
from rscurate.manifest import Limits, Manifest
from rscurate.object_store import Stamp, is_remote, open_input, remote_stamp
from rscurate.parquet_io import ROW_GROUP_ROWS, atomic_path, read_file, write_atomic
from rscurate.phash import LOW_TEXTURE_STD, canonical_view, signatures_batch
from rscurate.pixel_check import NOT_COMPARABLE, Pixels, Similarity, compare
from rscurate.probes import chip_probes, probe_table, tile_probes
from rscurate.readers import (
    STRICT_DECODE,
    Changed,
    SceneLeftOut,
    SceneReader,
    SceneRef,
    error_text,
    open_scene,
    refusal_reason,
    valid_from_nodata,
)
from rscurate.scene_hash import SceneSignature, assembled_signature, scene_signature
from rscurate.scene_view import SCENE_VIEW_SIDE, ViewSum, load_view, numpy_view_seconds, strips, view_path
from rscurate.tiling import Window, min_tile_size, plan_windows

# 11: area-weighted views, each pixel added once, kept under views/; 10: scene views assembled by the tile pass
# (<key>.views.pkl); 9: lon/lat bounds columns (MODIS L1B swaths);
# 8: per-band validity, 12-bit float bins, band_scale/band_offset, off-grid bands warped, valid_mask column,
# original bytes only where Pillow agrees; 5: probe hashes staged, eval tiles staged with bytes; 4: strict decoding
FORMAT_VERSION = "11"
# GDAL's block cache defaults to 5 % of RAM per process; a worker reads one window at a time and
# needs only the blocks under it, so a small cache keeps worker memory bounded by the tile (an int is
# passed through as bytes). STRICT_DECODE: damaged files fail to read rather than yield made-up pixels.
GDAL_ENV = {"GDAL_CACHEMAX": 128 * 2**20, **STRICT_DECODE}
# the detail of a scene whose task killed every worker that ran it, even alone (pipeline._retry_one_by_one)
WORKER_DIED = ("a worker process died each time it read this scene (Dask's KilledWorker: a crash in a decoder, "
               "or memory beyond the worker's limit); see the worker logs")


@dataclass(frozen=True)
class ScenePlan:
    """A scene's size and windows, or why it yields none."""

    scene: SceneRef
    windows: tuple[Window, ...] = ()
    width: int = 0
    height: int = 0
    reason: str | None = None  # too_small | too_large | unreadable | bad_georeference | changed
    detail: str = ""
    # whole-scene hashes of a scene cut into several tiles, when its overviews give them cheaply; the tile pass
    # assembles the others' (see needs_view)
    signature: SceneSignature | None = None
    crs: str = ""
    bounds: tuple[float, float, float, float] | None = None  # footprint (minx, miny, maxx, maxy) in crs
    pixels_tiled: int = 0  # pixels inside at least one window; the rest of width x height is margin
    pixel_bytes: int = 0  # decoded bytes of one pixel, all bands read: what bounds a unit's memory
    view_numpy_s: float = 0.0  # numpy's estimated binning time of the view the tile pass assembles (0: none)

    def window_bytes(self, window: Window) -> int:
        return window[2] * window[3] * self.pixel_bytes


@dataclass(frozen=True)
class Unit:
    key: str
    manifest: Manifest
    items: tuple[tuple[SceneRef, tuple[Window, ...]], ...]
    # builds with an eval source: probes of every tile (eval units: window sides of their dense probes); else ()
    probe_sides: tuple[int, ...] = ()

    @property
    def tiles(self) -> int:
        return sum(len(w) for _, w in self.items)


def _open(manifest: Manifest, scene: SceneRef) -> SceneReader:
    """The scene's reader; Changed when a file is not the one discovery saw (see check_unchanged)."""
    check_unchanged(scene)
    resampling = manifest.band_files.resampling if manifest.band_files else "bilinear"
    return open_scene(scene, manifest.band_list(), manifest.nodata, resampling, manifest.npy_layout,
                      manifest.daynight == "day")


def file_stamp(path: str) -> Stamp:
    """(size, mtime_ns) of a file, (size, change token) of an object: what says it is still the one discovery saw."""
    if is_remote(path):
        return remote_stamp(path)
    st = os.stat(path)
    return st.st_size, st.st_mtime_ns


def check_unchanged(scene: SceneRef) -> None:
    """Raise Changed when a file of the scene vanished or differs in size or mtime (an object: its ETag or
    modification time) from its discovery stamp."""
    for path, stamp in zip(scene.paths, scene.stamps, strict=False):
        try:
            now = file_stamp(path)
        except FileNotFoundError:
            raise Changed(f"{as_text(path)} vanished after discovery; rerun the build (it resumes) once the "
                          "source is complete") from None
        if now != stamp:
            what = "change token" if is_remote(path) else "mtime_ns"
            raise Changed(f"{as_text(path)} changed after discovery (size, {what} {stamp} -> {now}); rerun the "
                          "build (it resumes) once the source is no longer being written")


def plan_scenes(manifest: Manifest, scenes: list[SceneRef], work_dir: str | None = None) -> list[ScenePlan]:
    """Open each scene's header (cheap) to size it and cut its windows; errors become records. `work_dir`: where
    the views of one-stream files, decoded whole here, are kept for the scene-pair pixel check."""
    work = Path(work_dir) if work_dir else None
    with rasterio.Env(**GDAL_ENV):
        return [_plan_scene(manifest, scene, work) for scene in scenes]


def _plan_scene(manifest: Manifest, scene: SceneRef, work: Path | None) -> ScenePlan:
    try:
        reader = _open(manifest, scene)
    except SceneLeftOut as err:  # readable, but the source's rules leave it out (a night granule)
        return ScenePlan(scene, reason=err.reason, detail=err.detail)
    except Exception as err:  # any unreadable input is recorded, never fatal
        return ScenePlan(scene, reason=refusal_reason(err), detail=error_text(err))
    try:
        if too_large := _over_budget(manifest.limits, reader):
            return ScenePlan(scene, (), reader.width, reader.height, "too_large", too_large)
        try:  # a rule that cannot be applied to this file is its scene's record, as an unreadable file is
            quality.check_units(manifest.quality, [b.name for b in reader.data_bands], reader.dtype, reader.scaled,
                                scene.paths[0] if len(scene.paths) == 1 else scene.scene)
        except ValueError as err:
            return ScenePlan(scene, (), reader.width, reader.height, "unreadable", f"cloud rule refused: {err}")
        windows = _windows(manifest, scene, reader)
        if not windows:
            detail = f"{reader.width}x{reader.height} is smaller than the tile size {min_tile_size(manifest.tile)}"
            return ScenePlan(scene, (), reader.width, reader.height, "too_small", detail)
        if (big := max(w * h for _, _, w, h in windows)) > manifest.limits.max_decode_pixels:
            return ScenePlan(scene, (), reader.width, reader.height, "too_large",
                             f"a {reader.width}x{reader.height} tile of {big} pixels is over limits.max_decode_pixels "
                             f"{manifest.limits.max_decode_pixels}; set tile.max_size to cut such images into a grid")
        signature = _signature(reader, windows)
        if reader.one_stream and needs_view(reader, windows):
            # A window can read cleanly above the damage (or past it, after libjpeg resynchronises), so the
            # file is decoded whole here, where all its windows are known, and its view assembled on the way.
            # A file kept as one whole tile needs no check: reading that tile decodes every pixel under the
            # same strict settings.
            view = ViewSum.empty(scene.source, scene.scene, reader)
            try:
                reader.check_decodes(lambda y, strip: view.add(0, y, strip.data, strip.valid))
            except Exception as err:
                return ScenePlan(scene, (), reader.width, reader.height, "unreadable", error_text(err))
            signature = assembled_signature(view, work)
        return ScenePlan(scene, windows, reader.width, reader.height, signature=signature,
                         crs=reader.crs, bounds=reader.bounds(0, 0, reader.width, reader.height),
                         pixels_tiled=covered_pixels(windows, reader.width, reader.height),
                         pixel_bytes=_pixel_bytes(reader), view_numpy_s=_view_numpy_s(reader, windows))
    finally:
        reader.close()


def _windows(manifest: Manifest, scene: SceneRef, reader: SceneReader) -> tuple[Window, ...]:
    """The scene's tile windows (a pure function of its header and the manifest: planning and units agree)."""
    return tuple(plan_windows(reader.width, reader.height, manifest.tile, scene.scene, reader.grid_origin()))


def _pixel_bytes(reader: SceneReader) -> int:
    """Decoded bytes of one pixel of the scene, all bands read."""
    return len(reader.bands) * np.dtype(reader.dtype).itemsize


def _view_numpy_s(reader: SceneReader, windows: tuple[Window, ...]) -> float:
    """What numpy would spend binning the view the tile pass assembles for this scene (0 when it assembles none)."""
    if signed_in_planning(reader) or not needs_view(reader, windows):
        return 0.0
    return numpy_view_seconds(reader.width, reader.height, len(reader.data_bands), reader.dtype, len(windows))


def needs_view(reader: SceneReader, windows: tuple[Window, ...]) -> bool:
    """Whether a scene has a whole-scene signature: it is cut into tiles (one kept whole is compared by its tile
    hash)."""
    return windows != ((0, 0, reader.width, reader.height),)


def signed_in_planning(reader: SceneReader) -> bool:
    """Whether planning signs the scene without a second decode: from overviews, or from the whole-file decode
    that checks a one-stream file (JPEG, PNG); the tile pass assembles the others' views."""
    return reader.cheap_overview or reader.one_stream


def _over_budget(limits: Limits, reader: SceneReader) -> str:
    """Why a scene's declared size is over the manifest's pixel budgets ("" when within): caught from the header,
    before a decompression bomb is decoded or cut into millions of windows."""
    pixels, size = reader.width * reader.height, f"{reader.width}x{reader.height}"
    fix = "raise it in the manifest's `limits` if the file is real"
    if pixels > limits.max_scene_pixels:
        return f"declares {size} = {pixels} pixels, over limits.max_scene_pixels {limits.max_scene_pixels}; {fix}"
    if reader.one_stream and pixels > limits.max_decode_pixels:
        return (f"a PNG/JPEG (one compressed stream, decoded whole) declaring {size} = {pixels} pixels, over "
                f"limits.max_decode_pixels {limits.max_decode_pixels}; {fix}, or convert it to a tiled GeoTIFF")
    return ""


def _signature(reader: SceneReader, windows: tuple[Window, ...]) -> SceneSignature | None:
    """The whole-scene signature of a scene cut into tiles, when its overviews give it without decoding the scene
    (else the tile pass assembles it). A damaged scene goes unsigned rather than lost: its unreadable windows
    are recorded tile by tile."""
    if not needs_view(reader, windows) or not reader.cheap_overview:
        return None
    try:
        return scene_signature(reader, [b.name for b in reader.data_bands])
    except Exception:  # the tile reads record the error text with each window they cannot read
        return None


def unit_key(manifest: Manifest, items: tuple[tuple[SceneRef, tuple[Window, ...]], ...],
             probe_sides: tuple[int, ...] = ()) -> str:
    h = hashlib.sha256(FORMAT_VERSION.encode())
    h.update(repr(probe_sides).encode())
    h.update(manifest.settings_json().encode())
    labels = manifest.label_source()
    if labels is not None:  # new polygons relabel the tiles
        h.update(labels.stamp().encode())
    for scene, windows in items:  # the files as discovered: a unit is keyed without touching them again
        h.update(repr((scene.paths, scene.stamps, scene.scene, scene.frame, windows)).encode())  # repr: ASCII-safe
    return h.hexdigest()[:32]


def tile_id(source: str, scene: str, window: Window, content_sha: str) -> str:
    """Provenance + content: stable across runs and worker counts, distinct for distinct tiles."""
    x, y, w, h = window
    return hashlib.sha256(f"{source}\0{scene}\0{x},{y},{w},{h}\0{content_sha}".encode()).hexdigest()[:24]


def content_sha256(tile: np.ndarray) -> str:
    h = hashlib.sha256(f"{tile.dtype.str}{tile.shape}".encode())
    h.update(np.ascontiguousarray(tile).data)
    return h.hexdigest()


def _original_bytes(scene: SceneRef, reader: SceneReader, window: Window, data: np.ndarray) -> tuple[bytes, str]:
    """A whole PNG/JPEG chip keeps its original file bytes (exact source fidelity, no re-encode) when they are
    portable: the format is read from the bytes, and Pillow must decode them to exactly `data`, the array that
    sha256 and the statistics describe (JPEGs with subsampled chroma decode differently in Pillow and GDAL)."""
    if window != (0, 0, reader.width, reader.height) or not reader.whole_file_is_tile:
        return b"", ""
    with open_input(scene.paths[0]) as f:
        encoding = codec.sniff_encoding(f.read(codec.MAGIC_BYTES))
        if encoding not in ("png", "jpeg"):
            return b"", ""
        f.seek(0)
        raw = f.read()
    decoded = codec.pillow_decode(raw)
    if decoded is None or decoded.dtype != data.dtype or not np.array_equal(decoded, data):
        return b"", ""
    return raw, encoding


def _stored_mask(data: np.ndarray, valid: np.ndarray, nodata: float | None) -> bytes | None:
    """The tile's validity mask when its nodata value (and NaN) cannot express it (alpha, internal masks)."""
    if np.array_equal(valid, valid_from_nodata(data, nodata)):
        return None
    return codec.encode_mask(valid)


class _Collector:
    """Column buffers for one unit's kept candidates and exclusions, and each kept tile's band statistics."""

    def __init__(self, probe_sides: tuple[int, ...], eval_role: bool, work: Path | None = None) -> None:
        self.work = work  # the build's _work/: assembled scene views are kept there
        self.probe_sides = probe_sides  # (): no probes (no eval source in the build)
        self.eval_role = eval_role  # eval chips get dense probes at these sides, training tiles 74 fixed ones
        self.kept: dict[str, list] = {f.name: [] for f in schema.SHARD}
        self.excluded: dict[str, list] = {f.name: [] for f in schema.EXCLUDED}
        self.band_stats: list[list[BandTileStats]] = []
        self.grays: list[np.ndarray] = []  # canonical views, hashed together per unit (one batched DCT)
        # whole-scene signatures assembled here, and the view parts of scenes whose windows span several units
        self.signatures: dict[tuple[str, str], SceneSignature | None] = {}
        self.view_parts: list[ViewSum] = []

    def exclude(self, scene: SceneRef, window: Window, reason: str, detail: str) -> None:
        x, y, w, h = window
        for k, v in zip(("source", "scene", "x", "y", "width", "height", "reason", "detail"),
                        (scene.source, scene.scene, x, y, w, h, reason, detail), strict=True):
            self.excluded[k].append(v)

    def keep(self, row: dict, band_stats: list[BandTileStats], gray: np.ndarray) -> None:
        for k in self.kept:
            self.kept[k].append(row.get(k))
        self.band_stats.append(band_stats)
        self.grays.append(gray)

    def tables(self) -> tuple[pa.Table, pa.Table]:
        hashes, textures = signatures_batch(self.grays)
        self.kept["phash"], self.kept["texture"] = hashes.tolist(), textures.tolist()
        return (pa.Table.from_pydict(self.kept, schema=schema.SHARD),
                pa.Table.from_pydict(self.excluded, schema=schema.EXCLUDED))

    def probes(self) -> pa.Table:
        """Probe hashes of every kept candidate (textured windows only): what the eval-leak search matches."""
        rows, hashes, windows = [], [], []
        for row, gray in enumerate(self.grays if self.probe_sides else []):
            if not self.eval_role:
                h, tex, win = tile_probes(gray)
                h, win = h[tex >= LOW_TEXTURE_STD], win[tex >= LOW_TEXTURE_STD]
            else:
                h, win = chip_probes(gray, self.probe_sides)
            rows.append(np.full(len(h), row, np.int32))
            hashes.append(h)
            windows.append(win)
        return probe_table(rows, hashes, windows)


def _labeller(manifest: Manifest, scene: SceneRef, reader: SceneReader) -> Callable[[Window, np.ndarray], str | None]:
    """Each tile's label from its window and valid pixels: the scene's folder label, or its polygons' majority."""
    labels = manifest.label_source()
    if labels is None:
        return lambda window, valid: scene.label
    return labels.labeller(reader.crs, reader.transform)


def _process_scene(unit: Unit, scene: SceneRef, windows: tuple[Window, ...], out: _Collector) -> None:
    manifest = unit.manifest
    try:
        reader = _open(manifest, scene)
    except Exception as err:
        for window in windows:
            out.exclude(scene, window, refusal_reason(err), error_text(err))
        return
    try:
        data_bands = reader.data_bands
        names = [b.name for b in data_bands]
        wavelengths = [b.wavelength_um for b in data_bands]
        gsd = reader.gsd_m()
        label = _labeller(manifest, scene, reader)
        every = () if signed_in_planning(reader) else _windows(manifest, scene, reader)
        view = ViewSum.empty(scene.source, scene.scene, reader) if every and needs_view(reader, every) else None
        parts = _view_parts(windows, every, reader) if view is not None else [[] for _ in windows]
        for window, owned in zip(windows, parts, strict=True):
            try:
                res = reader.read(*window)
            except Exception as err:
                out.exclude(scene, window, "unreadable", error_text(err))
                if view is not None:
                    view.failed = True
                continue
            if view is not None:
                view.add_parts(window, owned, res.data, res.valid)
            stats = quality.tile_stats(res.data, res.valid, reader.nodata)
            verdict = quality.judge(manifest.quality, res.data, res.valid, res.qa, stats, names,
                                    reader.scales, reader.offsets)
            if verdict is not None:
                out.exclude(scene, window, *verdict)
                continue
            sha = content_sha256(res.data)
            # eval tiles are staged with their bytes too (never written to shards): leak checks read their pixels
            image, encoding = _original_bytes(scene, reader, window, res.data)
            if not encoding:
                image, encoding = codec.encode_array(res.data), codec.NPY_ZSTD
            bounds = reader.bounds(*window)
            minx, miny, maxx, maxy = bounds if bounds else (None, None, None, None)
            lonlat = reader.lonlat_bounds(*window) or (None, None, None, None)
            x, y, w, h = window
            out.keep({
                "id": tile_id(scene.source, scene.scene, window, sha), "source": scene.source,
                "scene": scene.scene, "x": x, "y": y, "width": w, "height": h, "crs": reader.crs,
                "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy,
                **dict(zip(("lon_min", "lat_min", "lon_max", "lat_max"), lonlat, strict=True)),
                "gsd_m": gsd, "bands": names,
                "wavelengths_um": wavelengths, "dtype": res.data.dtype.name, "channels": res.data.shape[0],
                "encoding": encoding or None, "sha256": sha,
                "nodata": reader.nodata,
                "nodata_fraction": stats.nodata_fraction, "valid_pixels": stats.valid_pixels,
                "band_mean": stats.column("mean"), "band_std": stats.std, "band_min": stats.column("min"),
                "band_max": stats.column("max"), "band_scale": reader.scales, "band_offset": reader.offsets,
                "label": label(window, res.valid), "image": image,
                "valid_mask": _stored_mask(res.data, res.valid, reader.nodata),
            }, stats.bands, canonical_view(res.data, names, res.valid))
        if view is not None:
            _finish_view(view, reader, windows, every, out)
    finally:
        reader.close()


def _view_parts(windows: tuple[Window, ...], every: tuple[Window, ...],
                reader: SceneReader) -> list[list[Window]]:
    """The part of each window that no earlier window of the scene covers: the view adds each pixel once (at
    stride 64, a 256 px window adds a 64 x 64 corner, not 16 times the overlap)."""
    position = {window: k for k, window in enumerate(every)}
    return owned_parts(every, reader.width, reader.height, [position[w] for w in windows])


def _finish_view(view: ViewSum, reader: SceneReader, windows: tuple[Window, ...], every: tuple[Window, ...],
                 out: _Collector) -> None:
    """Add the margins (the unit holding the scene's first window reads them) and sign the scene when this unit
    holds all its windows; else keep the part for ViewMerger."""
    view.windows = len(windows)
    if windows[0] == every[0]:
        _add_margins(view, reader, every)
    if len(windows) == len(every):
        out.signatures[(view.source, view.scene)] = assembled_signature(view, out.work)
    else:
        out.view_parts.append(view)


def _add_margins(view: ViewSum, reader: SceneReader, every: tuple[Window, ...]) -> None:
    """Add the pixels no window covers, read once in strips of bounded size; a failed read leaves the scene
    unsigned (the windows over damage record their own errors)."""
    view.margins = True
    pixel_bytes = _pixel_bytes(reader)
    for margin in uncovered(every, reader.width, reader.height):
        for x, y, w, h in strips(margin, pixel_bytes):
            try:
                res = reader.read(x, y, w, h)
            except Exception:
                view.failed = True
                return
            view.add(x, y, res.data, res.valid)


@dataclass(frozen=True)
class StagedUnit:
    """A finished unit's files. `kept` has the shard schema and row groups, so an unchanged unit
    becomes a shard by a hard link; `meta` is the same rows without bytes (the unit's index part);
    `band_stats` holds each kept row's per-band statistics."""

    kept: Path
    meta: Path
    excluded: Path
    band_stats: Path
    probes: Path  # probe hashes of the kept candidates (probes.tile_probes / chip_probes), for eval-leak search
    views: Path  # (signatures of scenes whose windows were all here, ViewSum parts of the others)

    @classmethod
    def of(cls, work_dir: Path, key: str) -> StagedUnit:
        base = work_dir / "units"
        return cls(base / f"{key}.parquet", base / f"{key}.meta.parquet", base / f"{key}.excluded.parquet",
                   base / f"{key}.stats.pkl", base / f"{key}.probes.parquet", base / f"{key}.views.pkl")


META = [f.name for f in schema.TILE_META]


@dataclass(frozen=True)
class UnitResult:
    """What the client gets back: slim candidate rows, exclusions, and the statistics of all candidates
    (exact for the unit's shard when deduplication drops none of its tiles)."""

    slim: pa.Table
    excluded: pa.Table
    bands: BandParts
    signatures: dict[tuple[str, str], SceneSignature | None] = field(default_factory=dict)  # (source, scene) ->
    view_parts: int = 0  # parts of views of scenes that span several units, staged for ViewMerger


def unit_band_parts(meta: pa.Table, per_row: list[list[BandTileStats]], rows: list[int]) -> BandParts:
    """Band accumulators of the given rows of a unit."""
    taken = meta.take(pa.array(rows, pa.int64())).select(["source", "bands", "dtype", "band_scale", "band_offset"])
    cols = taken.to_pydict()
    return accumulate(cols["source"], cols["bands"], cols["dtype"], [per_row[r] for r in rows],
                      cols["band_scale"], cols["band_offset"])


# What the client needs of each candidate to deduplicate; the rest stays in the staged file.
SLIM = ["id", "source", "scene", "x", "y", "width", "height", "crs", "minx", "miny", "maxx", "maxy", "gsd_m",
        "channels", "dtype", "sha256", "phash", "texture", "nodata_fraction"]


def _slim(kept: pa.Table, key: str) -> pa.Table:
    slim = kept.select(SLIM)
    slim = slim.append_column("unit", pa.array([key] * len(kept), pa.string()))
    return slim.append_column("unit_row", pa.array(np.arange(len(kept), dtype=np.int64)))


def lost_unit(unit: Unit) -> UnitResult:
    """The result of a unit that no worker survived: every window excluded as unreadable, nothing staged."""
    out = _Collector((), False)
    for scene, windows in unit.items:
        for window in windows:
            out.exclude(scene, window, "unreadable", WORKER_DIED)
    return UnitResult(_slim(schema.SHARD.empty_table(), unit.key),
                      pa.Table.from_pydict(out.excluded, schema=schema.EXCLUDED), {})


def run_unit(unit: Unit, work_dir: str) -> UnitResult:
    """Process a unit (or reuse its staged result)."""
    staged = StagedUnit.of(Path(work_dir), unit.key)
    if staged.kept.exists():  # written last: the unit is complete
        meta = read_file(staged.meta)
        per_row = pickle.loads(staged.band_stats.read_bytes())
        signatures, parts = pickle.loads(staged.views.read_bytes())
        return UnitResult(_slim(meta, unit.key), read_file(staged.excluded),
                          unit_band_parts(meta, per_row, list(range(len(meta)))), signatures, len(parts))
    out = _Collector(unit.probe_sides, unit.manifest.role == "eval", Path(work_dir))
    with rasterio.Env(**GDAL_ENV):
        for scene, windows in unit.items:
            _process_scene(unit, scene, windows, out)
    kept, excluded = out.tables()
    meta = kept.select(META)
    write_atomic(excluded, staged.excluded)
    write_atomic(out.probes(), staged.probes)
    write_atomic(meta, staged.meta)
    for path, value in ((staged.band_stats, out.band_stats), (staged.views, (out.signatures, out.view_parts))):
        with atomic_path(path) as tmp:
            tmp.write_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    write_atomic(kept, staged.kept, row_group_size=ROW_GROUP_ROWS)
    return UnitResult(_slim(kept, unit.key), excluded, unit_band_parts(meta, out.band_stats, list(range(len(meta)))),
                      out.signatures, len(out.view_parts))


class ViewMerger:
    """Signs the scenes whose windows span several units from the view parts those units staged, as the units
    finish (the client does it while the tile stage runs, on a core a one-worker build leaves idle). A scene's
    parts are merged in build order whatever order the units finish in (float sums depend on it), once all its
    windows are in; only the scenes then open are in memory. A scene with a part lost (a unit no worker survived)
    stays unsigned."""

    def __init__(self, work_dir: Path, windows: dict[tuple[str, str], int]) -> None:
        self.work_dir, self.windows = work_dir, windows  # windows: each scene's window count
        self.parts: dict[tuple[str, str], dict[tuple[int, int], ViewSum]] = defaultdict(dict)
        self.signed: dict[tuple[str, str], SceneSignature | None] = {}

    def add(self, order: tuple[int, int], key: str) -> None:
        """The parts unit `key` staged; `order`: the unit's place in the build ((position, 0), or (position, k)
        for the k-th unit a retried unit was split into)."""
        for part in pickle.loads(StagedUnit.of(self.work_dir, key).views.read_bytes())[1]:
            scene = (part.source, part.scene)
            parts = self.parts[scene]
            parts[order] = part
            if sum(p.windows for p in parts.values()) == self.windows[scene]:
                first, *rest = (parts[k] for k in sorted(parts))
                for other in rest:
                    first.merge(other)
                del self.parts[scene]
                self.signed[scene] = assembled_signature(first, self.work_dir) if first.margins else None


def scene_pixels(manifest: Manifest, scene: SceneRef, work: Path) -> Pixels:
    """A scene's decimated whole view (what its signature was hashed from), with its footprint: the view the tile
    pass or planning assembled and kept under `work`, else (a scene signed from its overviews) read through the
    overviews. Only the header is opened otherwise: no pixel is decoded a second time."""
    with rasterio.Env(**GDAL_ENV):
        reader = _open(manifest, scene)
        try:
            kept = load_view(view_path(work, scene.source, scene.scene))
            if kept is None:
                read = reader.overview(SCENE_VIEW_SIDE)
                kept = read.data, read.valid
            data, valid = kept
            return Pixels(data, valid, [b.name for b in reader.data_bands], reader.crs,
                          reader.bounds(0, 0, reader.width, reader.height))
        finally:
            reader.close()


def check_scenes(work_dir: str, pairs: list[tuple[tuple[Manifest, SceneRef], tuple[Manifest, SceneRef]]]
                 ) -> list[Similarity]:
    """pixel_check.compare of pairs of scenes on their decimated views (a Dask task; candidates only). A scene that
    no longer reads (changed or deleted since its tiles were read) proves no copy: the pair stays apart."""
    out = []
    for a, b in pairs:
        try:
            out.append(compare(scene_pixels(*a, Path(work_dir)), scene_pixels(*b, Path(work_dir))))
        except Exception:  # any read failure: not comparable, as tiles without shared pixels are
            out.append(NOT_COMPARABLE)
    return out
