"""`rspretrain` command line: run (pretrain), export (timm weights), probe and retrieve (what was learned)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from rscurate.cli_options import version_callback
from rspretrain.config import load_config

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Pretrain remote-sensing foundation models."
)

_METHODS = {"mae": "mae", "selectivemae": "selective_mae", "selective_mae": "selective_mae"}


def model_overrides(name: str) -> list[str]:
    """`--model selectivemae_vit_large` (the config naming) -> method and size overrides."""
    method, sep, size = name.rpartition("_vit_")
    if not sep or method not in _METHODS:
        raise typer.BadParameter(
            f"expected METHOD_vit_SIZE like mae_vit_base or selectivemae_vit_tiny, got {name!r}"
        )
    return [f"model.method={_METHODS[method]}", f"model.size={size}"]


@app.callback()
def main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=version_callback("rspretrain"), is_eager=True, help="print the version and exit"
        ),
    ] = None,
) -> None:
    """Pretrain remote-sensing foundation models."""


def _setup_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="YAML preset, e.g. configs/selectivemae_vit_base.yaml")],
    data: Annotated[Path, typer.Option(help="corpus folder written by `rscurate build`")],
    out: Annotated[Path, typer.Option(help="run folder: checkpoints/, log.jsonl, tb/, config.yaml")],
    max_steps: Annotated[int | None, typer.Option(help="optimizer steps (overrides epochs)")] = None,
    epochs: Annotated[float | None, typer.Option(help="passes over the corpus")] = None,
    batch_size: Annotated[int | None, typer.Option(help="per rank and micro-batch")] = None,
    model: Annotated[str | None, typer.Option(help="METHOD_vit_SIZE, e.g. mae_vit_tiny")] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="steps between checkpoints")] = None,
    stop_at: Annotated[int | None, typer.Option(help="stop after this step (schedule unchanged)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="section.key=value, repeatable")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="continue exactly from OUT's newest checkpoint")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="empty OUT first when it holds an earlier run")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet")] = False,
) -> None:
    """Pretrain from a corpus; under torchrun each process trains one rank."""
    from rspretrain.engine import NonFiniteLoss, train
    from rspretrain.run_folder import RunFolderInUse, claim_run_folder

    _setup_logging(quiet)
    overrides = list(set_ or [])
    if model:
        overrides += model_overrides(model)
    for key, value in (
        ("train.max_steps", max_steps),
        ("train.epochs", epochs),
        ("train.batch_size", batch_size),
        ("train.seed", seed),
        ("train.checkpoint_every", checkpoint_every),
    ):
        if value is not None:
            overrides.append(f"{key}={value}")
    try:
        cfg = load_config(config, overrides)
        claim_run_folder(out, resume, overwrite)
        result = train(cfg, data, out, resume=resume, stop_at=stop_at)
    except (NonFiniteLoss, RunFolderInUse) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from err
    except (ValueError, FileNotFoundError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    if not quiet:
        typer.echo(f"done: step {result.steps}, checkpoint {result.last_checkpoint}")


@app.command("export")
def export_cmd(
    source: Annotated[Path, typer.Argument(help="run folder (newest checkpoint) or checkpoint file")],
    out: Annotated[Path, typer.Option(help="folder for model.safetensors + config.json")],
) -> None:
    """Write the encoder as timm-loadable safetensors with bands, wavelengths, mean and std."""
    from rspretrain.export import export

    try:
        folder = export(source, out)
    except (FileNotFoundError, ValueError) as err:  # ValueError: an unsafe or damaged checkpoint
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo(f"exported {folder}")


@app.command()
def probe(
    export_dir: Annotated[Path, typer.Argument(help="folder written by `rspretrain export`")],
    data: Annotated[Path, typer.Option(help="corpus with labelled tiles (label column)")],
    out: Annotated[
        Path | None, typer.Option(help="report folder (report.json, report.md, features/); default EXPORT/probe/NAME")
    ] = None,
    k: Annotated[list[int] | None, typer.Option("--k", help="k-NN neighbours, repeatable; default 5 10 20")] = None,
    test_fraction: Annotated[float, typer.Option(help="share of each class held out")] = 0.3,
    seeds: Annotated[int, typer.Option(help="stratified splits (and random inits) 0..N-1")] = 3,
    max_tiles: Annotated[int | None, typer.Option(help="a stratified sample of this many labelled tiles")] = None,
    pretrain_data: Annotated[
        Path | None, typer.Option(help="pretraining corpus to check for overlap; default: the checkpoint's record")
    ] = None,
    on_overlap: Annotated[
        str, typer.Option(help="probe tiles that were pretraining tiles: refuse, drop or warn")
    ] = "refuse",
    linear_epochs: Annotated[int, typer.Option(help="epochs of the linear probe")] = 100,
    ep_epochs: Annotated[
        int, typer.Option(help="epochs of the efficient attentive probe on patch tokens; 0 leaves it out")
    ] = 50,
    ep_queries: Annotated[int, typer.Option(help="learned queries of the attentive probe (divide the width)")] = 8,
) -> None:
    """k-NN, linear and attentive-probe accuracy of the exported encoder vs the same architecture at our random init."""
    from rspretrain.probe import KS, run_probe

    _setup_logging(quiet=True)
    out = out or export_dir / "probe" / data.resolve().name
    _print_report(out, lambda: run_probe(
        export_dir, data, out=out, ks=tuple(k or KS), test_fraction=test_fraction, seeds=seeds,
        max_tiles=max_tiles, pretrain_data=pretrain_data, on_overlap=on_overlap, linear_epochs=linear_epochs,
        ep_epochs=ep_epochs, ep_queries=ep_queries,
    ))


def _print_report(out: Path, run: Callable[[], dict]) -> None:
    """Run an evaluation that writes OUT/report.md and report.json; print both, or exit 1 with the error."""
    import json

    try:
        report = run()
    except (ValueError, FileNotFoundError, KeyError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from err
    typer.echo((out / "report.md").read_text())
    typer.echo(json.dumps(report))


@app.command()
def retrieve(
    export_dir: Annotated[Path, typer.Argument(help="folder written by `rspretrain export`")],
    data: Annotated[Path, typer.Option(help="corpus holding two acquisitions of the same place")],
    query: Annotated[str, typer.Option(help="source or scene name of the query acquisition")],
    gallery: Annotated[str, typer.Option(help="source or scene name of the acquisition searched")],
    out: Annotated[
        Path | None, typer.Option(help="report folder (report.json, report.md, features/); default "
                                       "EXPORT/retrieval/QUERY--GALLERY")
    ] = None,
    seeds: Annotated[int, typer.Option(help="random-init baselines 0..N-1")] = 3,
) -> None:
    """Cross-date retrieval recall@1/@5 of the exported encoder vs the same architecture at our random init."""
    from rspretrain.retrieval import run_retrieval

    _setup_logging(quiet=True)
    out = out or export_dir / "retrieval" / f"{Path(query).name}--{Path(gallery).name}"
    _print_report(out, lambda: run_retrieval(export_dir, data, query, gallery, out=out, seeds=seeds))


@app.command()
def synthetic(
    out: Annotated[Path, typer.Option(help="corpus folder to write (shards/ + stats.json)")],
    tiles: Annotated[
        int, typer.Option(help="4-band uint16 tiles, half of them labelled built, half natural")
    ] = 256,
    size: Annotated[int, typer.Option(help="tile size in pixels")] = 64,
    seed: Annotated[int, typer.Option()] = 0,
    band_names: Annotated[str, typer.Option(
        help="the four bands' names, comma-separated (blue,green,red,nir suits the RGB presets)")] = "B02,B03,B04,B08",
    contrast: Annotated[float, typer.Option(help="strength of the built class's edges and stripes (1: obvious)")] = 1.0,
    noise: Annotated[float, typer.Option(help="std of pixel noise on every tile, in [0, 1] units")] = 0.0,
) -> None:
    """Write a small synthetic corpus in the rscurate format, for demos and benchmarks without downloads."""
    from rspretrain.synthetic import make_corpus

    names = [n.strip() for n in band_names.split(",")]
    if len(names) != 4 or len(set(names)) != 4:
        raise typer.BadParameter(f"four distinct names, got {band_names!r}", param_hint="--band-names")
    make_corpus(out, n_s2=tiles, n_rgb=0, n_corrupt=0, size=size, rows_per_group=16, rows_per_shard=128, seed=seed,
                s2_names=names, contrast=contrast, noise=noise)
    typer.echo(f"wrote {tiles} tiles to {out}")


if __name__ == "__main__":
    app()
