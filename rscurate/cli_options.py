"""Command-line conventions shared by `rscurate` and `rspretrain`: `--version`, list options that take
several values after one flag, so a shell glob works (`--sources manifests/*.yaml`), and a quick exit."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from importlib.metadata import version
from typing import Any, NoReturn

import typer
from typer.core import TyperCommand

DISTRIBUTION = "rsfm-toolkit"


def version_callback(program: str) -> Callable[[bool], None]:
    """An eager `--version` option's callback: print `PROGRAM VERSION` and exit."""

    def show(value: bool) -> None:
        if value:
            typer.echo(f"{program} {version(DISTRIBUTION)}")
            raise typer.Exit()

    return show


def spread_values(args: list[str], flags: frozenset[str]) -> list[str]:
    """`--sources a b --out c` -> `--sources a --sources b --out c`: Click options take a fixed number of
    values, so the values after a list flag are each given their own copy of the flag."""
    spread: list[str] = []
    flag, first = None, False  # the list flag being read, and whether its first value is still to come
    for k, arg in enumerate(args):
        if arg == "--":
            return spread + args[k:]
        if arg.startswith("-") and len(arg) > 1:
            name = arg.split("=", 1)[0]
            flag = name if name in flags else None
            first = flag is not None and "=" not in arg
        elif flag is not None and not first:
            spread.append(flag)
        else:
            first = False
        spread.append(arg)
    return spread


class SpreadListOptions(TyperCommand):
    """A command whose `--sources` takes every value up to the next option, as well as a repeated flag."""

    list_flags = frozenset({"--sources"})

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, spread_values(args, self.list_flags))


class QuickExitTyper(typer.Typer):
    """A Typer app whose process ends without the interpreter's teardown once its command is done: freeing the
    modules of numpy, pandas, pyarrow, rasterio and distributed object by object took ~0.25 s at every exit,
    more than a small build's work. Only the console script (and `python -m`) calls the app itself; Click's
    test runner invokes the command and never gets here."""

    def __call__(self, *args: Any, **kwargs: Any) -> NoReturn:
        try:
            super().__call__(*args, **kwargs)
            code: object = 0
        except SystemExit as stop:
            code = stop.code
        exit_now(code)


def exit_now(code: object) -> NoReturn:
    """End the process as the interpreter would (wait for non-daemon threads, run exit handlers, flush the
    streams, exit with SystemExit's code) but skip freeing every module's objects, which a process about to
    end does not need."""
    if code is not None and not isinstance(code, int):  # sys.exit("message"): printed, status 1
        print(code, file=sys.stderr)
        code = 1
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # logging.shutdown, distributed's and tempfile's clean-up, ...
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing more can be written anyway
            pass
    os._exit(code or 0)
