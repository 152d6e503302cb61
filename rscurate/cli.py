"""`rscurate` console script."""

from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from rscurate.cli_options import QuickExitTyper, SpreadListOptions, version_callback
from rscurate.hamming_search import DEFAULT_RADIUS
from rscurate.manifest import ManifestError
from rscurate.out_dir import OutDirError
from rscurate.pipeline import UNIT_MB, BuildOptions, build
from rscurate.verify import VerifyError, verify

app = QuickExitTyper(add_completion=False, no_args_is_help=True, help="Curate remote-sensing imagery into a corpus.")

DISK_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}  # a full disk, a file-size limit, a quota
WIDE = 160  # `inspect` output columns when not on a terminal
Sources = Annotated[list[Path], typer.Option(
    "--sources", help="manifest files or folders: several after one flag (a shell glob) or the flag repeated")]


@app.callback()
def main(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=version_callback("rscurate"), is_eager=True, help="print the version and exit")
    ] = None,
) -> None:
    """Curate remote-sensing imagery into a corpus."""


@app.command("build", cls=SpreadListOptions)
def build_cmd(
    sources: Sources,
    out: Annotated[Path, typer.Option("--out", help="corpus folder to write (resumes if it holds a killed build)")],
    scheduler: Annotated[str | None, typer.Option(help="address of an existing Dask scheduler")] = None,
    workers: Annotated[int | None, typer.Option(
        min=0, help="LocalCluster worker processes (default: CPU count); 0: one thread per core in this process, "
        "the fastest start for small inputs, but a file that crashes its decoder then crashes the build")] = None,
    strict: Annotated[bool, typer.Option(help="fail when a manifest's data is not on disk")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress bars; warnings only")] = False,
    unit_tiles: Annotated[int, typer.Option(min=1, help="tiles per Dask task, and at most per shard file")] = 256,
    unit_mb: Annotated[int, typer.Option(
        min=1, help="MiB of decoded pixels per Dask task at most (bounds a worker's memory; fewer tiles per "
        "task and shard when tiles are big)")] = UNIT_MB,
    keep_work: Annotated[bool, typer.Option(help="keep the staged unit files under OUT/_work")] = False,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="empty OUT first when it holds anything but a build of the same inputs")] = False,
    radius: Annotated[int, typer.Option(
        min=0, max=32, help="pHash Hamming radius for near/scene duplicates and eval leakage (0: exact only)")
    ] = DEFAULT_RADIUS,
    curate: Annotated[bool, typer.Option(
        help="--no-curate keeps every tile with a valid pixel: no quality rules, duplicates or leak search "
        "(the uncurated baseline of docs/results.md)")] = True,
) -> None:
    """Build a corpus: discover, tile, judge, deduplicate, shard, and write the dataset card."""
    from rscurate.build_summary import file_fault_summary

    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(message)s")
    opts = BuildOptions(sources=sources, out=out, scheduler=scheduler, workers=workers, strict=strict,
                        quiet=quiet, unit_tiles=unit_tiles, unit_mb=unit_mb, keep_work=keep_work, overwrite=overwrite,
                        radius=radius, curate=curate, command="rscurate build " + " ".join(sys.argv[2:]))
    try:
        report = build(opts)
    except (ManifestError, OutDirError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        typer.echo(f"error: a write failed while building {out}: {os.strerror(err.errno)}; free space under {out} "
                   "(or raise the file-size limit, `ulimit -f`) or choose another --out, then rerun the same command: "
                   "it resumes, and no partial file is left under a final name", err=True)
        raise typer.Exit(2) from err
    typer.echo(f"{out}: {report.kept} tiles kept in {report.shards} shards, {report.excluded} excluded, "
               f"{report.duplicates} duplicates, {len(report.absent)} sources absent ({report.seconds:.1f} s)")
    for line in file_fault_summary(out):
        typer.echo(line, err=True)


@app.command("inspect", cls=SpreadListOptions)
def inspect_cmd(
    sources: Sources,
    max_scenes: Annotated[int | None, typer.Option(
        min=0, help="open and list at most this many scenes per manifest (default: all)")] = None,
) -> None:
    """Dry run without Dask: the files each manifest matches and, per scene, bands, dtype, size, CRS, nodata
    and the tiles the build would cut."""
    from rich.console import Console

    from rscurate.inspect_sources import inspect_source, render
    from rscurate.manifest import load_manifests

    try:
        manifests = load_manifests(sources)
        reports = [inspect_source(m, max_scenes) for m in manifests]
    except ManifestError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    # a pipe or file has no width: wide enough for the table rather than rich's 80 columns
    render(reports, Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else WIDE))


@app.command("verify")
def verify_cmd(
    corpus: Annotated[Path, typer.Argument(help="corpus folder")],
    sample: Annotated[int | None, typer.Option(
        min=0, help="re-hash this many randomly chosen tiles (a new sample each run) instead of every tile")] = None,
) -> None:
    """Check that the build finished, the ledger accounts for every input, shards agree with the index and
    every tile's bytes still match its sha256; exit 1 with the list of problems."""
    try:
        checked = verify(corpus, sample=sample)
    except VerifyError as err:
        typer.echo(f"verify failed: {len(err.problems)} problem(s)", err=True)
        for line in err.problems:
            typer.echo(f"  - {line}", err=True)
        raise typer.Exit(1) from err
    typer.echo("ok: " + ", ".join(f"{v} {k}" for k, v in checked.items()))


if __name__ == "__main__":
    app()
