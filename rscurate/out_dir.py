"""The corpus folder's life: never replace another corpus by accident, resume a killed build, mark completion.

A build records the fingerprint of what decides its output in `_work/inputs.json` when it starts, and
writes `build.json` (with `"complete": true`) after the dataset card, then removes `_work/`. A folder without
a complete build.json, or with a `_work/` its build did not keep, is a build that did not finish; either way the
fingerprint is on disk, so a rerun of the same command recognises it (a kill between the two never strands it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from rscurate.kill_points import kill_point
from rscurate.manifest import Manifest
from rscurate.parquet_io import atomic_path

WORK = "_work"  # staged units and shard parts, inside the corpus folder until the build ends
BUILD_FILE = "build.json"
STARTED_FILE = "inputs.json"  # in WORK: the fingerprint of the build that is under way
CARD_FILE = "README.md"
RESUME_FIX = "rerun the same `rscurate build` command to resume it"


class OutDirError(ValueError):
    """--out cannot take this build; the message names the folder and the fix."""


def fingerprint(manifests: list[Manifest], radius: int, unit_tiles: int, unit_mb: int) -> str:
    """What decides the corpus: each manifest's validated settings and data folder, and the output options."""
    h = hashlib.sha256()
    for m in manifests:
        h.update(f"{m.settings_json()}\0{m.root_url() or m.root_dir()}\0".encode())
    h.update(json.dumps({"radius": radius, "unit_tiles": unit_tiles, "unit_mb": unit_mb}).encode())
    return h.hexdigest()[:32]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def check(out: Path, inputs: str, overwrite: bool) -> None:
    """Refuse, before any work, an --out that is a file, or a non-empty folder that holds neither a build of
    the same inputs (finished or not) nor nothing, unless --overwrite."""
    if out.exists() and not out.is_dir():
        raise OutDirError(f"--out {out} is a file, not a folder; pass a folder path (it is created if missing)")
    if overwrite or not out.is_dir() or not any(out.iterdir()):
        return
    done, started = _read_json(out / BUILD_FILE), _read_json(out / WORK / STARTED_FILE)
    if inputs in (done.get("fingerprint"), started.get("fingerprint")):
        return
    if done or started:
        what = (f"a {'corpus' if done else 'killed build'} of other manifests or settings (--radius, --unit-tiles, "
                "--unit-mb)")
    else:
        what = "files that are not an rscurate build"
    raise OutDirError(f"--out {out} holds {what}; pass --overwrite to empty it and build there, "
                      "or choose another --out")


def empty_folder(folder: Path) -> None:
    """Remove everything inside `folder` (links are removed, never followed); never the home folder or one that
    holds the current folder, where a mistyped --out would cost far more than a refusal."""
    resolved = folder.resolve()
    if resolved == Path.home().resolve() or Path.cwd().resolve().is_relative_to(resolved):
        raise OutDirError(f"{folder}: refusing to empty the home folder or a folder above the current one; "
                          "pass a folder of its own as --out")
    for child in folder.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def start(out: Path, inputs: str, overwrite: bool) -> Path:
    """Claim `out` for this build (emptied first with --overwrite); returns the work folder."""
    if overwrite and out.is_dir():
        empty_folder(out)
    work = out / WORK
    work.mkdir(parents=True, exist_ok=True)
    _write_json(work / STARTED_FILE, {"fingerprint": inputs})
    (out / BUILD_FILE).unlink(missing_ok=True)  # from now on the folder is an unfinished build
    return work


def finish(out: Path, meta: dict[str, Any], inputs: str) -> None:
    """Write the completion marker: the build's metadata, its input fingerprint and complete: true."""
    _write_json(out / BUILD_FILE, {**meta, "fingerprint": inputs, "complete": True})


def remove_work(out: Path) -> None:
    """Remove `_work/` (after build.json). It is renamed first: a kill in the middle of the removal must not leave
    a `_work/` whose staged units lack some of their files, since a rerun trusts a unit whose kept file exists.
    A renamed folder left by such a kill is removed by the next build's removal."""
    trash = out / f"{WORK}.removing"
    if (out / WORK).exists():
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(out / WORK, trash)
    kill_point("cleanup")
    shutil.rmtree(trash, ignore_errors=True)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def completion_problem(root: Path) -> str | None:
    """Why `root` is not a finished build (the file and the fix), or None."""
    marker = root / BUILD_FILE
    if not marker.is_file():
        return f"{marker}: missing, so the build did not finish (or this is not a corpus); {RESUME_FIX}"
    meta = _read_json(marker)
    if meta.get("complete") is not True:
        return f"{marker}: does not say complete: true, so the build did not finish; {RESUME_FIX}"
    if (root / WORK).exists() and not meta.get("settings", {}).get("keep_work"):
        return f"{root / WORK}: left over from a build that did not finish; {RESUME_FIX}"
    if not (root / CARD_FILE).is_file():
        return f"{root / CARD_FILE}: the dataset card is missing; {RESUME_FIX}"
    return None
