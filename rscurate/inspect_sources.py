"""`rscurate inspect`: a dry run without Dask. What each manifest matches and what the build would cut from it,
so a wrong glob, band list or tile size shows up before hours of work (file headers only, no pixels)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from rscurate.discover import discover
from rscurate.manifest import Manifest
from rscurate.readers import SceneLeftOut, SceneRef
from rscurate.tiling import min_tile_size, plan_windows
from rscurate.units import _open

CRS_WIDTH = 24  # a CRS without an EPSG code is WKT: shortened in the table


@dataclass(frozen=True)
class SceneRow:
    """One scene as the build would see it; `note` says in a word why it yields no tile, `detail` says more."""

    scene: str
    bands: str = ""
    dtype: str = ""
    size: str = ""
    crs: str = ""
    nodata: str = ""
    tiles: int = 0
    note: str = ""  # eval split | unreadable | too small
    detail: str = ""


@dataclass
class SourceReport:
    manifest: Manifest
    absent: str | None = None
    files: int = 0
    rows: list[SceneRow] = field(default_factory=list)
    not_opened: int = 0  # scenes past --max-scenes

    @property
    def tiles(self) -> int:
        return sum(r.tiles for r in self.rows)


def scene_row(manifest: Manifest, ref: SceneRef) -> SceneRow:
    """Open a scene's header and plan its windows; an unreadable file becomes a row with the error."""
    try:
        reader = _open(manifest, ref)
    except SceneLeftOut as err:
        return SceneRow(ref.scene, note=err.reason, detail=err.detail)
    except Exception as err:  # reported, never raised: inspect exists to find such files
        return SceneRow(ref.scene, note="unreadable", detail=f"{type(err).__name__}: {err}")
    try:
        windows = plan_windows(reader.width, reader.height, manifest.tile, ref.scene, reader.grid_origin())
        crs = reader.crs if len(reader.crs) <= CRS_WIDTH else reader.crs[: CRS_WIDTH - 3] + "..."
        small = "" if windows else f"a tile needs {min_tile_size(manifest.tile)} px on each side"
        return SceneRow(ref.scene, " ".join(b.name for b in reader.data_bands), reader.dtype,
                        f"{reader.width}x{reader.height}", crs or "-",
                        "-" if reader.nodata is None else f"{reader.nodata:g}", len(windows),
                        "too small" if small else "", small)
    finally:
        reader.close()


def inspect_source(manifest: Manifest, max_scenes: int | None = None) -> SourceReport:
    """A manifest's matched files, each scene's header facts and planned tile count, eval-split files marked."""
    found = discover(manifest)
    report = SourceReport(manifest, absent=found.absent)
    report.files = len({p for ref in found.scenes + [r for r, _, _ in found.left_out] for p in ref.paths})
    shown = found.scenes if max_scenes is None else found.scenes[:max_scenes]
    report.not_opened = len(found.scenes) - len(shown)
    report.rows = [scene_row(manifest, ref) for ref in shown]
    report.rows += [SceneRow(ref.scene, note=reason.replace("_", " "), detail=detail)
                    for ref, reason, detail in found.left_out]
    return report


def render(reports: list[SourceReport], console: Console) -> None:
    """One table per source with the reasons for scenes without tiles below it, then a line of totals."""
    for r in reports:
        m = r.manifest
        role = "eval: hashed for leakage, never written" if m.role == "eval" else "train"
        console.print(f"[bold]{escape(m.name)}[/bold] ({role}) {escape(str(m.path))}")
        if r.absent:
            console.print(f"  absent: {r.absent}\n", markup=False)
            continue
        table = Table(box=box.SIMPLE_HEAD, show_edge=False)
        for name in ("scene", "bands", "dtype", "size", "crs", "nodata", "tiles", "note"):  # long names fold
            table.add_column(name, overflow="fold", no_wrap=name not in ("scene", "bands"))
        for row in r.rows:
            cells = (row.scene, row.bands, row.dtype, row.size, row.crs, row.nodata, str(row.tiles), row.note)
            table.add_row(*(Text(c) for c in cells), style="yellow" if row.note else None)
        console.print(table)
        for row in r.rows:
            if row.detail:
                console.print(f"  {row.scene}: {row.note}: {row.detail}", markup=False, highlight=False)
        more = f"; {r.not_opened} more scenes not opened (raise --max-scenes)" if r.not_opened else ""
        root = m.root_url() or m.root_dir()
        console.print(f"  {r.files} files matched under {root}, {r.tiles} tiles planned{more}\n", markup=False)
    present = [r for r in reports if not r.absent]
    console.print(f"{len(present)} of {len(reports)} sources on disk, "
                  f"{sum(r.tiles for r in present if r.manifest.role == 'train')} training tiles planned "
                  "(before quality rules and deduplication)")
