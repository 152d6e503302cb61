"""File names that are not UTF-8: how the corpus stores them and how C libraries still open them.

On Linux a file name is bytes. Python hands a name that is not UTF-8 (b"caf\\xe9.tif", Latin-1) over as a str with
lone surrogates ('caf\\udce9.tif'), which os functions accept but Arrow, Parquet, JSON and GDAL's UTF-8 paths refuse.
The corpus stores such a name as text: the name's bytes decoded as UTF-8 with every byte that is not UTF-8 written
as a `\\xNN` escape (`caf\\xe9.tif`). A UTF-8 name is stored as it is.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def as_text(name: str) -> str:
    """`name` as the corpus stores it: unchanged when it is UTF-8, else with `\\xNN` for each byte that is not."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


@contextmanager
def native_path(path: str) -> Iterator[str]:
    """A path GDAL and HDF4 can open for `path`, valid inside the block: `path` itself when it is UTF-8, else
    /proc/self/fd/N of a descriptor opened here by the name's bytes (Linux). The library's open makes its own
    descriptor, so this one is closed on leaving; sidecar files (.aux.xml, .ovr) are not found beside such a name."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        fd = os.open(os.fsencode(path), os.O_RDONLY)
        try:
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    yield path
