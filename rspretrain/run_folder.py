"""A run folder belongs to one run: a new run into a used folder would truncate its log and mix its checkpoints
with the old ones (so `export` could ship older weights). It continues with --resume or is emptied with
--overwrite; anything else is refused before training starts."""

from __future__ import annotations

import os
from pathlib import Path

from rscurate.out_dir import empty_folder
from rspretrain import checkpoint as ckpt


class RunFolderInUse(ValueError):
    """--out already holds something; the message names it and the two ways on."""


def claim_run_folder(out: Path, resume: bool, overwrite: bool) -> None:
    """Check (and with --overwrite empty) the run folder. Under torchrun every rank checks, before the process
    group starts (so before any rank writes), and rank 0 alone empties."""
    if resume and overwrite:
        raise RunFolderInUse("--resume continues the run in --out and --overwrite deletes it; pass one of them")
    if out.exists() and not out.is_dir():
        raise RunFolderInUse(f"--out {out} is a file, not a folder; pass a folder path for the run")
    if resume or not out.is_dir() or not any(out.iterdir()):
        return
    if overwrite:
        if int(os.environ.get("RANK", "0")) == 0:
            empty_folder(out)
        return
    newest = ckpt.latest_checkpoint(out)
    what = f"a run (newest checkpoint {newest.name})" if newest else "files"
    raise RunFolderInUse(f"--out {out} already holds {what}; pass --resume to continue it, --overwrite to delete "
                         "it and start again, or choose another --out")
