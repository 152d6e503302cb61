"""The `rscurate` console script (and `python -m rscurate`): starts the worker fork server before the command's
imports when the command will start local worker processes, so both import at once (rscurate/fork_server.py)."""

from __future__ import annotations

import sys


def starts_local_workers(args: list[str]) -> bool:
    """Whether these arguments run a build on a LocalCluster of processes (no `--scheduler`, no `--workers 0`).
    A wrong guess costs time only: the build itself decides how its workers start."""
    if not args or args[0] != "build" or "--help" in args:
        return False
    for k, arg in enumerate(args):
        if arg == "--scheduler" or arg.startswith("--scheduler="):
            return False
        if arg == "--workers" and args[k + 1 : k + 2] == ["0"] or arg == "--workers=0":
            return False
    return True


def main() -> None:
    """Run the `rscurate` command."""
    if starts_local_workers(sys.argv[1:]):
        from rscurate import fork_server

        fork_server.start()
    from rscurate.cli import app

    app()
