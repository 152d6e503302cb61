"""Command-line conventions shared by `rscurate` and `rspretrain`: `--version`, and list options that take
several values after one flag, so a shell glob works (`--sources manifests/*.yaml`)."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import version

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
