"""Dataset card: the README.md and figures that let someone judge a corpus without running code.

Written at the end of a build from stats.json and the index/excluded/duplicates tables, so every number in the
card is the corpus's own. The YAML front matter follows the Hugging Face dataset-card format, so the folder
loads with ``datasets.load_dataset(path)`` and renders on the Hub as it is.
"""

from __future__ import annotations

import json
import logging
import math
import re
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from PIL import Image, ImageDraw
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform

from rscurate import chart
from rscurate.codec import decode
from rscurate.parquet_io import read_rows
from rscurate.schema import EXCLUDE_REASONS

log = logging.getLogger("rscurate")
T = TypeVar("T")

CARD_DIR = "card"
FIGURES = ("mosaic.png", "counts.png", "footprints.png", "duplicates.png")
MOSAIC_TILES = 36
MAX_FOOTPRINTS = 50_000  # drawing millions of polygons takes minutes and shows nothing more
MAX_PANELS = 6  # footprint panels; the smallest groups of sources share the last one
PANEL_SPLIT = 0.25  # a clump of tiles gets its own footprint panel when it lies 4 sizes away from the rest
DUPLICATE_EXAMPLES = 8
PAIR_EXAMPLES = 2  # per kind of duplicate, in the side-by-side figure
TAGS = ["remote-sensing", "earth-observation", "satellite-imagery", "self-supervised-pretraining"]

# The Hugging Face licence ids a manifest's licence may name (after the aliases below); any other is 'other'.
_HF_LICENSES = frozenset(
    (
        "apache-2.0 mit bsd-2-clause bsd-3-clause gpl-3.0 lgpl-3.0 cc0-1.0 cc-by-2.0 cc-by-2.5 cc-by-3.0 "
        "cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nc-sa-3.0 "
        "cc-by-nc-sa-4.0 cc-by-nd-4.0 cc-by-nc-nd-4.0 odbl odc-by pddl cdla-permissive-2.0 cdla-sharing-1.0 "
        "openrail unknown"
    ).split()
)
_LICENSE_ALIASES = {
    "cc0": "cc0-1.0",
    "cc-zero": "cc0-1.0",
    "apache-license-2.0": "apache-2.0",
    "apache-2": "apache-2.0",
    "odbl-1.0": "odbl",
    "odc-by-1.0": "odc-by",
    "pddl-1.0": "pddl",
    "mit-license": "mit",
    "": "unknown",
}
# HF size_categories buckets, by upper bound of the tile count.
_SIZE_BUCKETS = [
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
    (10**8, "10M<n<100M"),
    (10**9, "100M<n<1B"),
    (10**10, "1B<n<10B"),
    (10**11, "10B<n<100B"),
    (10**12, "100B<n<1T"),
]
# True colour: centre wavelengths (um) of red, green, blue and how far a band may be off; names when there are
# no wavelengths (Sentinel-2 numbering for the B0x names).
_RGB_UM = (0.65, 0.56, 0.48)
_RGB_TOLERANCE_UM = 0.05
_RGB_NAMES = ({"red", "b04"}, {"green", "b03"}, {"blue", "b02"})
_DUPLICATE_KINDS = ("exact", "near", "scene")


def write_card(corpus_dir: Path, stats: dict, index: pa.Table, excluded: pa.Table, duplicates: pa.Table,
               dropped_at: pd.DataFrame | None = None) -> Path:
    """Write corpus_dir/README.md and its figures under corpus_dir/card/; returns the README path.

    `dropped_at` (index: dropped tile id; columns file, row) says where a build still holds the bytes of
    dropped tiles (its staged units), for the figure of duplicate pairs; without it the figure is skipped."""
    corpus_dir = Path(corpus_dir)
    card_dir = corpus_dir / CARD_DIR
    card_dir.mkdir(parents=True, exist_ok=True)
    sources = stats.get("sources", {})

    def figure(name: str, draw: Callable[[Path], bool]) -> bool:
        return _attempt(f"figure {CARD_DIR}/{name}", lambda: draw(card_dir / name), False)

    written = {
        "mosaic.png": figure("mosaic.png", lambda p: _mosaic_figure(corpus_dir, index, p)),
        "counts.png": figure("counts.png", lambda p: _counts_figure(sources, p)),
        "duplicates.png": figure("duplicates.png",
                                 lambda p: _pairs_figure(corpus_dir, index, duplicates, dropped_at, p)),
    }
    footprints = _attempt(f"figure {CARD_DIR}/footprints.png",
                          lambda: _footprints_figure(index, card_dir / "footprints.png"), None)
    written["footprints.png"] = footprints is not None and footprints.drawn > 0
    for name in FIGURES:  # a rebuilt card must not show a figure left over from an earlier build (or half drawn)
        if not written[name]:
            (card_dir / name).unlink(missing_ok=True)

    name = corpus_dir.resolve().name
    sections: list[tuple[str, Callable[[], str]]] = [
        ("front matter", lambda: _front_matter(name, stats, index)),
        ("overview", lambda: _overview(name, stats, index, excluded, duplicates, written["mosaic.png"])),
        ("sources", lambda: _sources_section(sources, written["counts.png"])),
        ("pixels", lambda: _pixels_section(sources)),
        ("band statistics", lambda: _bands_section(stats.get("bands", {}), sources)),
        ("deduplication", lambda: _dedup_section(duplicates, written["duplicates.png"])),
        ("footprints", lambda: _footprints_section(index.num_rows, footprints)),
        ("how it was built", lambda: _build_section(stats.get("build", {}))),
        ("how to load", lambda: _loading_section(name)),
        ("files", _files_section),
        ("citations", lambda: _citations_section(sources)),
    ]
    texts = [_attempt(f"section {what}", make, "") for what, make in sections]
    readme = corpus_dir / "README.md"
    readme.write_text("\n\n".join(t.strip() for t in texts if t.strip()) + "\n", encoding="utf-8")
    return readme


def _attempt(what: str, make: Callable[[], T], fallback: T) -> T:
    """One figure or section of the card; one that fails is logged and left out, never the card: it is written
    after all of a build's work, and an odd input (a CRS whose corners leave its projection's domain) must not
    cost the build."""
    try:
        return make()
    except Exception as err:  # anything: the rest of the card is still worth writing
        log.warning("dataset card: skipped the %s: %s: %s", what, type(err).__name__, err)
        return fallback


# --- front matter -------------------------------------------------------------------------------------------


def hf_license(text: str) -> str:
    """The Hugging Face licence id for a manifest's licence string ('other' when there is no obvious one)."""
    key = re.sub(r"[\s_]+", "-", text.strip().lower())
    key = _LICENSE_ALIASES.get(key, key)
    return key if key in _HF_LICENSES else "other"


def size_category(n: int) -> str:
    """The HF size_categories bucket of a tile count."""
    return next((label for bound, label in _SIZE_BUCKETS if n < bound), "n>1T")


def _front_matter(name: str, stats: dict, index: pa.Table) -> str:
    licenses = sorted({hf_license(s.get("license", "")) for s in stats.get("sources", {}).values()})
    labelled = index.num_rows > 0 and bool(pc.any(pc.not_equal(index["label"], "")).as_py())
    meta = {
        "pretty_name": name,
        "license": licenses or ["unknown"],
        "size_categories": [size_category(index.num_rows)],
        "task_categories": ["image-feature-extraction"] + (["image-classification"] if labelled else []),
        "tags": TAGS,
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": "shards/*.parquet"}]}],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---"


# --- prose and tables ---------------------------------------------------------------------------------------


def _overview(
    name: str,
    stats: dict,
    index: pa.Table,
    excluded: pa.Table,
    duplicates: pa.Table,
    mosaic: bool,
) -> str:
    sources = stats.get("sources", {})
    files = stats.get("counts", {}).get("files", sum(s.get("files", 0) for s in sources.values()))
    shards = len(pc.unique(index["shard"])) if index.num_rows else 0
    train = [n for n, s in sorted(sources.items()) if s.get("role", "train") == "train"]
    evals = [n for n, s in sorted(sources.items()) if s.get("role") == "eval"]
    lines = [
        f"# {name}",
        "",
        "A deduplicated corpus of remote-sensing image tiles for self-supervised pretraining, built by "
        "`rscurate`. "
        f"It holds **{_plural(index.num_rows, 'tile')}** in {_plural(shards, 'Parquet shard')}, cut from "
        f"{_plural(files, 'input file')} of {_plural(len(sources), 'source')}"
        + (f": {', '.join(train)}" if train else "")
        + (f"{';' if train else ''} evaluation (role `eval`): {', '.join(evals)}" if evals else "")
        + ".",
        "",
        f"{excluded.num_rows:,} input items or tiles were left out by quality and exclusion rules "
        f"(`excluded.parquet`) and {duplicates.num_rows:,} duplicate tiles were dropped "
        "(`duplicates.parquet`); "
        "every drop is recorded with its reason.",
    ]
    if index.num_rows:
        names = pc.fill_null(pc.binary_join(index["bands"], ", "), "(unnamed)")
        band_sets = pd.DataFrame({"bands": names.to_pandas(), "dtype": index["dtype"].to_pandas()}).value_counts()
        band_sets = band_sets.sort_index().sort_values(ascending=False, kind="stable")  # most common first
        lines += ["", "Band sets:", ""]
        lines += [f"- `{bands}` ({dtype}): {_plural(n, 'tile')}" for (bands, dtype), n in band_sets.items()]
    if mosaic:
        shown = min(MOSAIC_TILES, index.num_rows)
        lines += ["", f"![{shown} sample tiles, spread across sources](card/mosaic.png)"]
    else:
        lines += ["", "The corpus holds no tiles, so there is no sample mosaic."]
    return "\n".join(lines)


def _sources_section(sources: dict[str, dict], counts_figure: bool) -> str:
    if not sources:
        return "## Sources\n\nNo source was recorded."
    reasons = _ordered({r for s in sources.values() for r, n in s.get("excluded", {}).items() if n}, EXCLUDE_REASONS)
    excluded = [f"excluded: {r}" for r in reasons]
    header = ["source", "role", "files", "kept tiles", *excluded, "duplicates", "licence", "citation"]
    rows = [
        [name, s.get("role", "train"), s.get("files", 0), s.get("kept", 0)]
        + [s.get("excluded", {}).get(r, 0) for r in reasons]
        + [s.get("duplicates", 0), s.get("license", ""), _short_citation(s.get("citation", ""))]
        for name, s in sorted(sources.items())
    ]
    text = "## Sources\n\n" + _table(header, rows, "ll" + "r" * (3 + len(reasons)) + "ll")
    return text + ("\n\n![kept, excluded and duplicate counts per source](card/counts.png)" if counts_figure else "")


def _pixels_section(sources: dict[str, dict]) -> str:
    """Pixels read per source against pixels in tiles: what tiling left out is counted, not silently lost."""
    counted = {n: s for n, s in sorted(sources.items()) if "pixels" in s}
    if not counted:  # stats.json of a build before pixels were counted
        return ""
    rows = []
    for name, s in counted.items():
        read, tiled = s["pixels"], s.get("pixels_tiled", 0)
        rows.append([name, read, tiled, read - tiled, f"{100 * (read - tiled) / read:.1f} %" if read else "-"])
    return (
        "## Pixels read and pixels in tiles\n\n"
        "Grid tiling keeps only full tiles, so the strips along a scene's edges that do not fill a whole tile "
        "(and all of a scene smaller than one tile) are in no tile: these margins are counted here, per scene "
        "in `inputs.parquet` (`pixels`, `pixels_tiled`). Random crops cover only part of each scene.\n\n"
        + _table(["source", "pixels read", "pixels in tiles", "in margins", "% in margins"], rows, "lrrrr")
    )


def _bands_section(bands: dict[str, dict], sources: dict[str, dict]) -> str:
    if not bands:
        return "## Band statistics\n\nNo band statistics were recorded."
    keys = ["count", "mean", "std", "min", "max", "p1", "p99"]
    rows = [[name, b.get("dtype", ""), *[b.get(k) for k in keys]] for name, b in bands.items()]
    note = (
        "Per band name over all kept tiles that carry it, in stored units; `rspretrain` normalises with the "
        "mean and std read from `stats.json`."
    )
    text = "## Band statistics\n\n" + note + "\n\n" + _table(["band", "dtype", *keys], rows, "ll" + "r" * len(keys))
    mixed = [[src, group, g["dtype"], g["channels"], g["tiles"], ", ".join(g["examples"])]
             for src, info in sorted(sources.items()) for group, g in info.get("band_groups", {}).items()]
    if mixed:
        text += ("\n\nThese sources mix band sets (dtype x band count), so their statistics are kept apart under "
                 "`name@group` keys; declare `bands` in the manifest, or give each kind of file its own manifest, "
                 "to name them:\n\n" + _table(["source", "group", "dtype", "bands", "tiles", "e.g."], mixed, "lllrrl"))
    return text


def _dedup_section(duplicates: pa.Table, figure: bool) -> str:
    head = "## Deduplication\n\n"
    if duplicates.num_rows == 0:
        return head + "No duplicate was found."
    df = duplicates.to_pandas()
    kinds = _ordered(set(df["kind"]), _DUPLICATE_KINDS)
    by_kind = df["kind"].value_counts()
    kind_table = _table(["kind", "dropped tiles"], [[k, int(by_kind[k])] for k in kinds], "lr")
    pairs = df.groupby(["source", "kept_source"])["kind"].value_counts().unstack(fill_value=0)
    pair_rows = [
        [dropped, kept, *[int(counts.get(k, 0)) for k in kinds], int(counts.sum())]
        for (dropped, kept), counts in pairs.iterrows()
    ]
    pair_rows.sort(key=lambda r: (-r[-1], r[0], r[1]))
    pair_table = _table(["dropped from", "kept in", *kinds, "total"], pair_rows, "ll" + "r" * (len(kinds) + 1))
    examples = df.sort_values(["kind", "id"]).iloc[_spread(len(df), DUPLICATE_EXAMPLES)]
    example_rows = [
        [r.kind, r.distance, r.source, f"{r.scene} @ {r.x},{r.y} {r.width}×{r.height}"]
        + [r.kept_source, r.kept_scene, r.kept_id]
        for r in examples.itertuples()
    ]
    example_header = ["kind", "distance", "dropped from", "dropped tile (scene @ x,y w×h)"]
    example_header += ["kept in", "kept scene", "kept id"]
    example_table = _table(example_header, example_rows, "lrlllll")
    return (
        head + "`kind` says how a duplicate was found: `exact` tiles share a content hash; `near` tiles have "
        "64-bit perceptual hashes (pHash) within a small Hamming `distance`; `scene` tiles come from a scene "
        "that, hashed whole, is a resampled or re-encoded copy of another scene (`distance` is then the "
        "whole-scene one). Which copy is kept follows manifest priority, then the finer GSD, then the larger "
        "tile or scene, then source, scene and id.\n\n"
        + kind_table
        + "\n\nBy pair of sources (a dropped tile and the tile kept in its place):\n\n"
        + pair_table
        + "\n\nExamples (dropped tiles are not stored; look the kept one up by `kept_id` in "
        "`index.parquet`):\n\n" + example_table
        + ("\n\n![Duplicate pairs: each dropped tile beside the tile kept in its place](card/duplicates.png)"
           if figure else "")
    )


def _footprints_section(kept: int, footprints: Footprints | None) -> str:
    head = "## Footprints\n\n"
    if footprints is None:
        return head + "The footprint map could not be drawn; the build's log names the error."
    drawn, georeferenced, panels = footprints.drawn, footprints.georeferenced, footprints.panels
    if drawn == 0 and georeferenced:
        return head + (
            f"{georeferenced:,} tiles carry a `crs`, but none could be reprojected to EPSG:4326, "
            "so there is no footprint map."
        )
    if drawn == 0:
        return head + "No kept tile is georeferenced (empty `crs`), so there is no footprint map."
    shown = f"{drawn:,} of them" if drawn < georeferenced else "all of them"
    unplaced = footprints.considered - drawn
    left_out = (
        f" {_plural(unplaced, 'tile')} could not be placed (a corner outside its CRS's valid domain, such as "
        f"the limb of a full-disk image, or an unreadable CRS) and {'is' if unplaced == 1 else 'are'} left out."
        if unplaced else ""
    )
    where = (
        "in one panel zoomed to their extent" if panels == 1
        else f"in {panels} panels, each zoomed to the extent of the sources it names"
    )
    return (
        head + f"{georeferenced:,} of {kept:,} tiles are georeferenced; {shown} are drawn in longitude/latitude "
        f"(EPSG:4326), coloured by source, {where}.{left_out}\n\n![tile footprints](card/footprints.png)"
    )


def _build_section(build: dict) -> str:
    settings = json.dumps(build.get("settings", {}), indent=2, sort_keys=True)
    seconds = build.get("seconds")
    took = "" if seconds is None else f", took {_duration(seconds)}"
    workers = build.get("workers")
    on = "" if workers is None else f" with {_plural(workers, 'worker')}"
    return (
        "## How it was built\n\n"
        f"```bash\n{build.get('command', '(command not recorded)')}\n```\n\n"
        f"Settings:\n\n```json\n{settings}\n```\n\n"
        f"rscurate {build.get('rscurate_version', '(unknown version)')}, started {build.get('started', '?')}"
        f"{took}{on}."
    )


def _loading_section(name: str) -> str:
    return f'''## How to load

Each shard row is one tile: the metadata columns of `index.parquet` plus `image`, the tile bytes.
`encoding` says how to decode them: `npy.zst` is a Zstandard-compressed `.npy` file of a (C, H, W) array;
`png`, `jpeg` and `tiff` are the original file bytes of a chip kept whole.

### pyarrow

```python
import io

import numpy as np
import pyarrow.dataset as ds
import rasterio
import zstandard


def decode(data: bytes, encoding: str) -> np.ndarray:
    if encoding == "npy.zst":
        return np.load(io.BytesIO(zstandard.decompress(data)))
    with rasterio.MemoryFile(data) as mem, mem.open() as src:  # png / jpeg / tiff: the original file
        return src.read()


CORPUS = "{name}"  # path to this folder
tiles = ds.dataset(f"{{CORPUS}}/shards", format="parquet")
for batch in tiles.to_batches(columns=["source", "bands", "encoding", "image"], batch_size=64):
    for row in batch.to_pylist():
        array = decode(row["image"], row["encoding"])  # (C, H, W)
        print(row["source"], row["bands"], array.dtype, array.shape)
    break
```

### pandas

```python
import pandas as pd

CORPUS = "{name}"
index = pd.read_parquet(f"{{CORPUS}}/index.parquet")  # one row per tile, no bytes
print(index.groupby("source").size())
```

### DuckDB

```python
import duckdb

CORPUS = "{name}"
print(duckdb.sql(f"SELECT source, count(*) AS tiles FROM '{{CORPUS}}/shards/*.parquet' GROUP BY source"))
```

### Hugging Face datasets

```python
from datasets import load_dataset

tiles = load_dataset("{name}", split="train")  # the folder; the front matter points at shards/*.parquet
```

### rscurate

```python
import rscurate

corpus = rscurate.open_corpus("{name}")  # decoded (C, H, W) tiles with their metadata
```'''


def _files_section() -> str:
    return """## Files

- `shards/part-NNNNN.parquet`: the kept tiles, bytes and metadata.
- `index.parquet`: one row per kept tile (no bytes), with its `shard` and `row`.
- `excluded.parquet`: every input item or tile left out, with `reason` and `detail`.
- `duplicates.parquet`: every dropped duplicate, with the tile kept in its place (`kept_id`), `kind` and
  `distance`.
- `inputs.parquet`: every discovered scene with its files, tiles planned, and pixels read and in tiles.
- `stats.json`: the counts, per-source and per-band statistics and build settings this card shows.
- `card/`: the figures of this card."""


def _citations_section(sources: dict[str, dict]) -> str:
    parts = [
        "## Sources and citations",
        "",
        "Use of each source follows its own licence; cite the sources you use.",
    ]
    for name, s in sorted(sources.items()):
        parts += ["", f"### {name}", "", f"- Licence: {s.get('license') or 'not stated'}"]
        if s.get("homepage"):
            parts += [f"- Homepage: <{s['homepage']}>"]
        citation = s.get("citation", "").strip()
        if citation:
            lang = "bibtex" if citation.startswith("@") else "text"
            parts += ["", f"```{lang}\n{citation}\n```"]
    return "\n".join(parts)


# --- figures ------------------------------------------------------------------------------------------------


MOSAIC_CELL = 160  # px per tile in the mosaic
PANEL_PX = (484, 430)  # a footprint panel's width and height


def _mosaic_figure(corpus_dir: Path, index: pa.Table, path: Path) -> bool:
    """Up to MOSAIC_TILES kept tiles, decoded from the shards; False when there is nothing to show.

    The tiles are composed into one image and drawn with a single imshow: one axes instead of one per
    tile keeps the card cheap to render even when a build is small.
    """
    picks = pick_tiles(index, MOSAIC_TILES)
    if not picks:
        return False
    meta = index.take(picks).select(["source", "bands", "wavelengths_um", "encoding", "shard", "row"]).to_pylist()
    images = [r["image"] for r in read_rows(corpus_dir, [(m["shard"], m["row"]) for m in meta], ["image"])]
    cols = math.ceil(math.sqrt(len(meta)))
    rows = math.ceil(len(meta) / cols)
    cell, gap, label = MOSAIC_CELL, 4, 14
    canvas = np.ones((rows * (cell + gap + label), cols * (cell + gap), 3), np.float32)
    for i, (m, data) in enumerate(zip(meta, images, strict=True)):
        rgb = to_rgb(decode(data, m["encoding"]), m["bands"] or [], m["wavelengths_um"] or [])
        r, c = divmod(i, cols)
        y, x = r * (cell + gap + label) + label, c * (cell + gap)
        canvas[y : y + cell, x : x + cell] = _fit(rgb, cell)
    labels = []
    for i, m in enumerate(meta):
        r, c = divmod(i, cols)
        labels.append((c * (cell + gap) + 2, r * (cell + gap + label) + 1, m["source"][:26], 10))
    _save_canvas(canvas, labels, path)
    return True


def _pairs_figure(corpus_dir: Path, index: pa.Table, duplicates: pa.Table, dropped_at: pd.DataFrame | None,
                  path: Path) -> bool:
    """Up to PAIR_EXAMPLES pairs per kind: the dropped tile (from the build's staged units) beside the kept one."""
    if dropped_at is None or duplicates.num_rows == 0:
        return False
    df = duplicates.to_pandas()
    df = df[df["id"].isin(dropped_at.index)]
    picks = [g.sort_values(["distance", "id"]).iloc[_spread(len(g), PAIR_EXAMPLES)]
             for _, g in df.groupby("kind", sort=False)]
    if not picks:
        return False
    pairs = pd.concat(picks)
    pairs = pairs.assign(_k=pairs["kind"].map(_DUPLICATE_KINDS.index)).sort_values(["_k", "distance", "id"])
    position = pd.Series(np.arange(index.num_rows), index=index["id"].to_pandas())
    kept_meta = index.take(position.loc[pairs["kept_id"]].to_numpy()).to_pylist()
    cols = ["image", "encoding", "bands", "wavelengths_um"]
    kept = read_rows(corpus_dir, [(m["shard"], m["row"]) for m in kept_meta], cols)
    where = dropped_at.loc[pairs["id"]]
    dropped = read_rows(corpus_dir, list(zip(where["file"], where["row"].astype(int), strict=True)), cols)
    cell, gap, label = MOSAIC_CELL, 4, 26
    canvas = np.ones((len(pairs) * (cell + gap + label), 2 * cell + 3 * gap, 3), np.float32)
    for k, (d, kp) in enumerate(zip(dropped, kept, strict=True)):
        y = k * (cell + gap + label) + label
        for c, m in enumerate((d, kp)):
            rgb = to_rgb(decode(m["image"], m["encoding"]), m["bands"] or [], m["wavelengths_um"] or [])
            x = gap + c * (cell + gap)
            canvas[y : y + cell, x : x + cell] = _fit(rgb, cell)
    labels = []
    for k, r in enumerate(pairs.itertuples()):
        y = k * (cell + gap + label)
        labels.append((gap, y, f"{r.kind}, distance {r.distance}", 11))
        labels.append((gap, y + 13, f"dropped: {r.source[:22]}", 9))
        labels.append((gap + cell + gap, y + 13, f"kept: {r.kept_source[:22]}", 9))
    _save_canvas(canvas, labels, path)
    return True


def _save_canvas(canvas: np.ndarray, labels: list[tuple[int, int, str, int]], path: Path) -> None:
    """Write an (H, W, 3) image in [0, 1] with (x, y, text, size) labels as a PNG; PIL, not matplotlib:
    an image grid needs no axes, and this keeps the card a small part of a build's time."""
    img = Image.fromarray((canvas * 255 + 0.5).astype(np.uint8))  # to_rgb gives values in [0, 1]
    draw = ImageDraw.Draw(img)
    for x, y, text, size in labels:
        draw.text((x, y), text, fill=(0, 0, 0), font=chart.font(size))
    chart.save(img, path)


def _fit(rgb: np.ndarray, cell: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W, 3) image to (cell, cell)."""
    ys = np.arange(cell) * rgb.shape[0] // cell
    xs = np.arange(cell) * rgb.shape[1] // cell
    return rgb[ys][:, xs]


def pick_tiles(index: pa.Table, n: int) -> list[int]:
    """Index row numbers of up to n tiles, shared fairly between sources and spread evenly within each.

    Tiles are taken in (source, id) order and ids are content-derived, so every run picks the same tiles.
    """
    if index.num_rows == 0 or n <= 0:
        return []
    df = pd.DataFrame({"source": index["source"].to_pandas(), "id": index["id"].to_pandas()})
    df["row"] = np.arange(len(df))
    groups = [g.sort_values("id")["row"].to_numpy() for _, g in df.groupby("source", sort=True)]
    quota = [0] * len(groups)
    left = min(n, len(df))
    while left:  # round robin, so a small source gives its unused share to the others
        for i, g in enumerate(groups):
            if left and quota[i] < len(g):
                quota[i] += 1
                left -= 1
    return [int(g[j]) for g, q in zip(groups, quota, strict=True) for j in _spread(len(g), q)]


def _spread(n: int, k: int) -> np.ndarray:
    """k distinct positions evenly spread over range(n)."""
    k = min(n, k)
    return np.arange(k) * n // k if k else np.zeros(0, dtype=int)


def to_rgb(tile: np.ndarray, bands: Sequence[str], wavelengths_um: Sequence[float | None] = ()) -> np.ndarray:
    """A (H, W, 3) image in [0, 1] for display, in true colour where the bands allow.

    uint8 is shown as stored; other dtypes get a per-channel 2-98 percentile stretch, as their ranges vary.
    """
    step = max(1, max(tile.shape[1:]) // 256)  # the mosaic cell is ~150 px; no need to stretch more pixels
    tile = tile[:, ::step, ::step]
    chosen = tile[rgb_channels(tile.shape[0], bands, wavelengths_um)].astype(np.float64)
    if tile.dtype == np.uint8:
        img = chosen / 255.0
    else:
        img = np.stack([_stretch(c) for c in chosen])
    img = np.moveaxis(img, 0, -1)
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def rgb_channels(channels: int, bands: Sequence[str], wavelengths_um: Sequence[float | None] = ()) -> list[int]:
    """Bands to show as red, green, blue: by wavelength, else by name, else the first three (or one as grey).

    Wavelengths come first because names are sensor-specific: MODIS B04 is green where Sentinel-2 B04 is red.
    """
    if len(wavelengths_um) == channels and None not in wavelengths_um:
        um = np.asarray(wavelengths_um, dtype=float)
        picks = [int(np.argmin(np.abs(um - want))) for want in _RGB_UM]
        if len(set(picks)) == 3 and all(
            abs(um[i] - w) <= _RGB_TOLERANCE_UM for i, w in zip(picks, _RGB_UM, strict=True)
        ):
            return picks
    names = [b.lower() for b in bands] if len(bands) == channels else []
    found = [next((i for i, b in enumerate(names) if b in want), None) for want in _RGB_NAMES]
    if None not in found:
        return found
    return [0, 1, 2] if channels >= 3 else [0]


def _stretch(channel: np.ndarray) -> np.ndarray:
    valid = channel[np.isfinite(channel)]
    if valid.size == 0:
        return np.zeros_like(channel)
    lo, hi = np.percentile(valid, (2, 98))
    scaled = (channel - lo) / (hi - lo if hi > lo else 1.0)
    return np.nan_to_num(np.clip(scaled, 0.0, 1.0), nan=0.0)


def _counts_figure(sources: dict[str, dict], path: Path) -> bool:
    """Stacked horizontal bars per source: kept, excluded by reason, duplicates."""
    if not sources:
        return False
    names = sorted(sources)  # top-down alphabetically
    reasons = _ordered({r for s in sources.values() for r, n in s.get("excluded", {}).items() if n}, EXCLUDE_REASONS)
    series = [("kept", [sources[n].get("kept", 0) for n in names], chart.hex_colour("2a9d4b"))]
    series += [
        (f"excluded: {r}", [sources[n].get("excluded", {}).get(r, 0) for n in names], c)
        for r, c in zip(reasons, chart.reds(len(reasons)), strict=True)
    ]
    series.append(("duplicates", [sources[n].get("duplicates", 0) for n in names], chart.hex_colour("7f8c9a")))
    totals = np.sum([values for _, values, _ in series], axis=0)
    xmax = max(float(totals.max()), 1.0) * 1.12
    size, row = 13, 44
    left = max(chart.text_width(n, size) for n in names) + chart.TICK + 12
    top, plot_h = 34, row * len(names) + 16
    image = Image.new("RGB", (880, top + plot_h + 200), chart.WHITE)
    ax = chart.Axes(image, (left, top, 880 - 24, top + plot_h), (0.0, xmax), (0.0, float(plot_h)))
    for i in range(len(names)):
        y = plot_h - 8 - row * (i + 0.5)  # bar centre, in px from the bottom: the data y unit is a pixel
        start = 0.0
        for _, values, colour in series:
            if values[i]:
                ax.rectangle(start, y - 0.4 * row, start + values[i], y + 0.4 * row, colour)
            start += values[i]
        x_end, y_px = ax.px(np.array([start]), np.array([y]))
        ax.draw.text((round(x_end[0]) + 4, round(y_px[0])), f"{int(start):,}", fill=chart.INK, font=chart.font(11),
                     anchor="lm")
    ax.frame()
    xticks = chart.nice_ticks(0.0, xmax, 8, integer=True)
    ax.xticks(xticks, chart.tick_labels(xticks), size)
    ax.yticks(ax.ylim[1] - 8 - row * (np.arange(len(names)) + 0.5), names, size)
    ax.xlabel("items (tiles kept or dropped; excluded input files or tiles)", size, chart.TICK + size + 10)
    chart.centred_text(image, ["Kept, excluded and duplicate counts per source"], 8, 15)
    below = top + plot_h + chart.TICK + 2 * size + 28
    used = chart.legend(image, [(label, colour) for label, _, colour in series], below, 11, 4)
    chart.save(image.crop((0, 0, image.width, below + used + 8)), path)
    return True


class Footprints(NamedTuple):
    """What the footprint figure drew: tiles drawn, georeferenced tiles, those it tried (at most
    MAX_FOOTPRINTS; the rest could not be placed on Earth) and panels."""

    drawn: int
    georeferenced: int
    considered: int
    panels: int


def _footprints_figure(index: pa.Table, path: Path) -> Footprints:
    """Tile outlines in lon/lat coloured by source, one panel per group of nearby sources zoomed to its tiles
    (a world map would show a corpus of scenes as a few dots); none drawn, no file."""
    if index.num_rows == 0:
        return Footprints(0, 0, 0, 0)
    df = index.select(["source", "crs", "minx", "miny", "maxx", "maxy"]).to_pandas()
    bounds = df[["minx", "miny", "maxx", "maxy"]].to_numpy(dtype=float)
    df = df[df["crs"].fillna("").str.strip().ne("") & np.isfinite(bounds).all(axis=1)]
    georeferenced = len(df)
    if georeferenced > MAX_FOOTPRINTS:  # a seeded sample: a stride could alias with the index's ordering
        df = df.iloc[np.sort(np.random.default_rng(0).choice(georeferenced, MAX_FOOTPRINTS, replace=False))]
    polys, srcs = _lonlat_quads(df)
    if len(polys) == 0:
        return Footprints(0, georeferenced, len(df), 0)
    panel = _panels(polys)
    n_panels = int(panel.max()) + 1

    cols = n_panels if n_panels <= 3 else math.ceil(n_panels / 2)
    rows = math.ceil(n_panels / cols)
    names = sorted(set(srcs))
    colours = dict(zip(names, chart.qualitative(len(names)), strict=True))
    head = 36
    image = Image.new("RGB", (PANEL_PX[0] * cols + 20, head + PANEL_PX[1] * rows + 160), chart.WHITE)
    for k in range(n_panels):
        r, c = divmod(k, cols)
        _footprint_panel(image, (10 + c * PANEL_PX[0], head + r * PANEL_PX[1]), polys[panel == k], srcs[panel == k],
                         colours)
    sampled = f" (a sample of {georeferenced:,})" if len(df) < georeferenced else ""
    chart.centred_text(image, [f"Footprints of {len(polys):,} georeferenced tiles{sampled}, EPSG:4326"], 10, 17)
    below = head + PANEL_PX[1] * rows + 6
    used = chart.legend(image, [(n, colours[n]) for n in names], below, 12, 4)
    chart.save(image.crop((0, 0, image.width, below + used + 8)), path)
    return Footprints(len(polys), georeferenced, len(df), n_panels)


def _lonlat_quads(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4, 2) lon/lat corners of the tiles that can be placed on Earth, and their sources. A tile with an
    unreadable or local CRS, or a corner that does not reproject, is left out. Each tile's longitudes are kept
    within 180 degrees of its first corner, so a tile across the antimeridian stays one small quad."""
    quads, owners = [], []
    for crs, g in df.groupby("crs", sort=True):
        try:
            src = CRS.from_user_input(crs)
        except CRSError:
            continue
        if not (src.is_geographic or src.is_projected):  # a local (engineering) CRS has no place on Earth
            continue
        x0, y0, x1, y1 = (g[c].to_numpy(dtype=float) for c in ("minx", "miny", "maxx", "maxy"))
        points = np.stack([np.stack([x0, x1, x1, x0], axis=1).ravel(), np.stack([y0, y0, y1, y1], axis=1).ravel()])
        unique, where = np.unique(points, axis=1, return_inverse=True)  # neighbouring grid tiles share corners
        lon, lat = _to_lonlat(src, unique[0], unique[1])
        corners = np.stack([lon[where.ravel()], lat[where.ravel()]], axis=1).reshape(-1, 4, 2)
        ok = np.isfinite(corners).all(axis=(1, 2)) & (np.abs(corners[..., 1]) <= 90).all(axis=1)
        quads.append(corners[ok])
        owners.append(g["source"].to_numpy()[ok])
    if not quads:
        return np.zeros((0, 4, 2)), np.zeros(0, dtype=object)
    polys = np.concatenate(quads)
    polys[..., 0] = _wrap(polys[..., 0], polys[:, :1, 0])
    return polys, np.concatenate(owners)


def _to_lonlat(src: CRS, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EPSG:4326 longitudes and latitudes of points, NaN where a point does not transform. rasterio fails a
    whole batch for one point outside the projection's domain (the space around a full-disk image), so a
    failing batch is split in halves until its failing points are found: a few calls per such point."""
    try:
        lon, lat = transform(src, "EPSG:4326", xs, ys)
        return np.asarray(lon, float), np.asarray(lat, float)
    except Exception:  # rasterio raises its private CPLE_* errors here
        if len(xs) <= 1:
            return np.full(len(xs), np.nan), np.full(len(xs), np.nan)
        half = len(xs) // 2
        (lon_a, lat_a), (lon_b, lat_b) = _to_lonlat(src, xs[:half], ys[:half]), _to_lonlat(src, xs[half:], ys[half:])
        return np.concatenate([lon_a, lon_b]), np.concatenate([lat_a, lat_b])


def _wrap(lon: np.ndarray, ref: np.ndarray | float) -> np.ndarray:
    """Longitudes shifted by whole turns to within 180 degrees of ref."""
    return ref + (lon - ref + 180.0) % 360.0 - 180.0


def _circular_mean(lon: np.ndarray) -> float:
    rad = np.radians(lon)
    return float(np.degrees(np.arctan2(np.sin(rad).mean(), np.cos(rad).mean())))


def _panels(polys: np.ndarray) -> np.ndarray:
    """A panel number per tile, largest panel first: clumps of tiles far apart (scenes on different
    continents) get their own panels, at most MAX_PANELS, so each panel zooms to tiles a reader can see.

    Farthest-point clustering of the tile centres (as unit vectors, so the antimeridian is no edge): each
    next centre is the tile farthest from those chosen, and a split counts when it shrinks the panels' reach
    (largest tile-to-centre distance plus a tile's half-diagonal) below PANEL_SPLIT of what it was: a far
    clump does; splitting one contiguous area (about 0.5 or more) or a few neighbouring tiles does not."""
    lon, lat = np.radians(polys[..., 0]), np.radians(polys[..., 1])
    xyz = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)  # (n, 4, 3)
    points = xyz.mean(axis=1)
    half_tile = float(np.median(np.linalg.norm(xyz[:, 0] - xyz[:, 2], axis=1))) / 2
    centres = [0]
    nearest = np.linalg.norm(points - points[0], axis=1)
    reach = [float(nearest.max()) + half_tile]  # reach[k]: with k + 1 centres
    for _ in range(MAX_PANELS - 1):
        far = int(np.argmax(nearest))
        centres.append(far)
        nearest = np.minimum(nearest, np.linalg.norm(points - points[far], axis=1))
        reach.append(float(nearest.max()) + half_tile)
    splits = [k for k in range(1, len(reach)) if reach[k] < PANEL_SPLIT * reach[k - 1]]
    kept = points[centres[: (max(splits) + 1 if splits else 1)]]
    label = np.argmin(np.linalg.norm(points[:, None, :] - kept[None, :, :], axis=2), axis=1)
    order = np.argsort(-np.bincount(label, minlength=len(kept)), kind="stable")  # largest panel first
    return np.argsort(order)[label]


def _footprint_panel(image: Image.Image, origin: tuple[int, int], polys: np.ndarray, srcs: np.ndarray,
                     colours: dict[str, chart.RGB]) -> None:
    """One panel at origin (its top-left px): its tiles, longitudes unwrapped around the panel's centre, zoomed
    to them, with degree ticks and a title naming its sources."""
    quads = polys.copy()
    ref = _circular_mean(quads[:, 0, 0])
    quads[..., 0] += (_wrap(quads[:, 0, 0], ref) - quads[:, 0, 0])[:, None]  # whole tiles move, never split
    lo, hi = quads.reshape(-1, 2).min(axis=0), quads.reshape(-1, 2).max(axis=0)
    tile_size = np.median(quads.max(axis=1) - quads.min(axis=1))
    small = tile_size < 0.01 * max(hi - lo)  # tiles far apart: a dot keeps each one visible
    names, counts = np.unique(srcs, return_counts=True)
    label = ", ".join(f"{n} ({c:,})" for n, c in zip(names, counts, strict=True))
    title = textwrap.fill(textwrap.shorten(label, 110, placeholder=" …"), 55).splitlines()
    x0, y0 = origin
    size = 11
    top, bottom = y0 + len(title) * (size + 4) + 10, y0 + PANEL_PX[1] - 2 * size - 24
    # a degree of longitude is cos(lat) times as long as one of latitude; this keeps shapes true on the ground
    aspect = 1 / max(math.cos(math.radians((lo[1] + hi[1]) / 2)), 0.1)
    left = x0 + 60
    for _ in range(3):  # the left margin fits the latitude labels, which depend on the plot's height and width
        box = (left, top, x0 + PANEL_PX[0] - 14, bottom)
        xlim, ylim = _panel_limits(lo, hi, box, aspect)
        xticks = _fitting_ticks(xlim, box[2] - box[0], size)
        yticks = chart.nice_ticks(*ylim, max(3, (bottom - top) // 40))
        ylabels = chart.tick_labels(yticks)
        wanted = x0 + 8 + size + 8 + max(chart.text_width(t, size) for t in ylabels) + chart.TICK + 4
        if wanted == left:
            break
        left = wanted
    ax = chart.Axes(image, box, xlim, ylim)
    ax.grid(xticks, yticks)
    for name in names:
        mine = srcs == name
        ax.polygons(quads[mine], colours[name], 0.35)
        if small:
            centres = quads[mine].mean(axis=1)
            ax.dots(centres[:, 0], centres[:, 1], colours[name])
    ax.frame()
    ax.xticks(xticks, chart.tick_labels(xticks, wrap_longitude=True), size)
    ax.yticks(yticks, ylabels, size)
    ax.xlabel("longitude (°)", 12, chart.TICK + size + 10)
    ax.ylabel("latitude (°)", 12, x0 + 6)
    chart.centred_text(image, title, y0 + 4, size, centre=(box[0] + box[2]) // 2)


def _panel_limits(lo: np.ndarray, hi: np.ndarray, box: tuple[int, int, int, int],
                  aspect: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Data limits of a panel: its tiles plus 8 % margins, widened in x or y so that a degree of latitude is
    `aspect` times as long as one of longitude on the page."""
    span = np.maximum(hi - lo, 1e-9)
    lo, hi = lo - 0.08 * span, hi + 0.08 * span
    width, height = box[2] - box[0], box[3] - box[1]
    px_per_x = min(width / (hi[0] - lo[0]), height / (aspect * (hi[1] - lo[1])))
    mid = (lo + hi) / 2
    dx, dy = width / px_per_x / 2, height / (aspect * px_per_x) / 2
    return (float(mid[0] - dx), float(mid[0] + dx)), (float(mid[1] - dy), float(mid[1] + dy))


def _fitting_ticks(lim: tuple[float, float], width: int, size: int) -> np.ndarray:
    """At most 6 longitude ticks, fewer when their labels would run together."""
    for bins in range(5, 1, -1):
        ticks = chart.nice_ticks(*lim, bins)
        widest = max(chart.text_width(t, size) for t in chart.tick_labels(ticks, wrap_longitude=True))
        if (widest + 12) * len(ticks) <= width:
            break
    return ticks


# --- helpers ------------------------------------------------------------------------------------------------


def _ordered(values: set[str], known: tuple[str, ...]) -> list[str]:
    """Known names in their canonical order, then any others alphabetically."""
    return [v for v in known if v in values] + sorted(values - set(known))


def _short_citation(text: str, limit: int = 60) -> str:
    """One line for the sources table (a BibTeX entry's title); the full text is in the citations section."""
    title = re.search(r"^\s*title\s*=\s*[{\"](.*?)[}\"]\s*,?\s*$", text, re.IGNORECASE | re.MULTILINE)
    short = " ".join((title.group(1) if title else text).replace("{", "").replace("}", "").split())
    return short if len(short) <= limit else short[: limit - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'s' * (n != 1)}"


def _duration(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 3600}h {s % 3600 // 60:02d}m {s % 60:02d}s" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def _table(header: list[str], rows: list[list[Any]], align: str) -> str:
    """A Markdown table; align has one 'l' or 'r' per column."""
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, int | np.integer):
        return f"{int(value):,}"
    if isinstance(value, float | np.floating):
        return f"{float(value):,.6g}"
    return " ".join(str(value).split()).replace("|", "\\|")
