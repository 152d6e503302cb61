"""Sources on object storage: a manifest root that is a URL, listed through fsspec and read through GDAL.

Discovery lists the root with fsspec (glob, and each object's size and change token). GDAL-readable files are
opened by rasterio through GDAL's virtual file systems (s3:// -> /vsis3/, gs:// -> /vsigs/, az:// -> /vsiaz/,
http(s):// -> /vsicurl/): ranged reads, so a COG's header, overviews and the blocks under a window are all that
travel. Formats only local libraries read (npy memory maps, HDF4 through pyhdf) are copied to a temporary local
file first, unlinked as soon as the reader holds it open. Credentials and endpoints come from the environment
only (docs/scaling.md): a URL carrying them is refused, so none reaches build.json, the card or the index.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO, Any
from urllib.parse import urlsplit

Stamp = tuple[int, int | str]  # (size, mtime_ns) of a local file; (size, change token) of an object


@dataclass(frozen=True)
class Scheme:
    vsi: str  # GDAL's virtual file system prefix
    package: str  # the pip package fsspec needs for it


SCHEMES = {
    "s3": Scheme("/vsis3/", "s3fs"),
    "gs": Scheme("/vsigs/", "gcsfs"),
    "gcs": Scheme("/vsigs/", "gcsfs"),
    "az": Scheme("/vsiaz/", "adlfs"),
    "abfs": Scheme("/vsiaz/", "adlfs"),
    "http": Scheme("/vsicurl/", "aiohttp"),
    "https": Scheme("/vsicurl/", "aiohttp"),
}
GDAL_PREFIXES = {"/vsis3/": "s3", "/vsigs/": "gs", "/vsiaz/": "az"}  # /vsicurl/ is followed by the full URL
# What an object's listing says changes when it is rewritten, best first (S3 and Azure ETag, GCS md5Hash or
# generation, then a modification time where a backend gives nothing better)
TOKEN_KEYS = ("ETag", "etag", "md5Hash", "generation", "LastModified", "last_modified", "mtime", "updated")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class RemoteRootError(ValueError):
    """A root URL that cannot be used; the message says what to change."""


def is_remote(path: str) -> bool:
    """True for a URL (scheme://...), the form discovery gives every object's path."""
    return bool(_URL.match(path))


def root_url(root: str) -> str | None:
    """A remote root as a URL ending in '/' (GDAL's /vsis3/bucket/prefix written as s3://bucket/prefix/); None
    for a local folder. RemoteRootError for a scheme without support or without its fsspec backend installed, and
    for credentials written into the URL."""
    for prefix, scheme in GDAL_PREFIXES.items():
        if root.startswith(prefix):
            root = f"{scheme}://{root[len(prefix):]}"
    if root.startswith("/vsicurl/"):
        root = root[len("/vsicurl/"):]
    elif root.startswith("/vsi"):
        raise RemoteRootError(f"root {root!r}: of GDAL's virtual file systems only {', '.join(GDAL_PREFIXES)} "
                              "and /vsicurl/ are supported; write the root as a URL (s3://, gs://, az://, https://)")
    if not is_remote(root):
        return None
    parts = urlsplit(root)
    scheme = SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise RemoteRootError(f"root {root!r}: scheme {parts.scheme!r} is not supported; use one of "
                              f"{', '.join(s + '://' for s in SCHEMES)} or a local folder")
    if "@" in parts.netloc or parts.query:
        raise RemoteRootError(f"root {root!r}: credentials (user@, account@ or a ?token) do not belong in the "
                              "manifest, which the corpus records; set them in the environment of every worker "
                              "(docs/scaling.md) and write the root without them")
    if not parts.netloc:
        raise RemoteRootError(f"root {root!r} names no bucket or host; write {parts.scheme}://BUCKET/PREFIX/")
    _backend(parts.scheme.lower(), root)
    return root if root.endswith("/") else root + "/"


def _backend(protocol: str, root: str) -> type:
    """fsspec's filesystem class for `protocol`; RemoteRootError naming the pip package when it is missing."""
    import fsspec

    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        package = SCHEMES[protocol].package
        raise RemoteRootError(f"root {root!r} needs the fsspec backend {package!r}, which is not installed "
                              f"({err}); pip install {package} on the client and on every worker") from err


def _gdal_flag(name: str, default: bool) -> bool:
    """A GDAL YES/NO configuration variable from the environment."""
    value = os.environ.get(name)
    return default if value is None else value.strip().upper() in ("YES", "TRUE", "ON", "1")


def _options(protocol: str) -> dict[str, Any]:
    """fsspec options from GDAL's own settings, so one set of variables serves both: unsigned requests to a public
    bucket (AWS_NO_SIGN_REQUEST), and an S3-compatible endpoint (AWS_S3_ENDPOINT, AWS_HTTPS, AWS_VIRTUAL_HOSTING)
    when botocore's AWS_ENDPOINT_URL(_S3) is not set."""
    if protocol != "s3":
        return {}
    options: dict[str, Any] = {"anon": True} if _gdal_flag("AWS_NO_SIGN_REQUEST", False) else {}
    if "AWS_S3_ENDPOINT" not in os.environ or {"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"} & set(os.environ):
        return options
    endpoint = os.environ["AWS_S3_ENDPOINT"]
    if not is_remote(endpoint):
        endpoint = f"{'https' if _gdal_flag('AWS_HTTPS', True) else 'http'}://{endpoint}"
    options["client_kwargs"] = {"endpoint_url": endpoint}
    if not _gdal_flag("AWS_VIRTUAL_HOSTING", True):
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    return options


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) of a URL; instances are cached per process by fsspec."""
    import fsspec

    return fsspec.core.url_to_fs(url, **_options(urlsplit(url).scheme.lower()))


def stamp_of(info: dict[str, Any]) -> Stamp:
    """(size, change token) from an fsspec info/listing entry ("" when the backend gives no token)."""
    token = next((info[k] for k in TOKEN_KEYS if info.get(k) is not None), "")
    return int(info["size"]), str(token)


def list_files(root: str, include: list[str]) -> dict[str, Stamp]:
    """URL -> stamp of the objects under `root` (a URL ending in '/') matching the `include` globs, in the order a
    local folder's files are discovered (by path parts). FileNotFoundError when the bucket or prefix does not exist."""
    fs, base = filesystem(root)
    base = base.rstrip("/")
    if not fs.isdir(base):
        raise FileNotFoundError(root)
    found: dict[str, Stamp] = {}
    for pattern in include:
        for path, info in fs.glob(f"{base}/{pattern}", detail=True).items():
            if info.get("type", "file") == "file" and not path.endswith("/"):
                found[root + path[len(base) + 1:]] = stamp_of(info)
    return dict(sorted(found.items(), key=lambda kv: PurePosixPath(kv[0][len(root):])))


def remote_stamp(url: str) -> Stamp:
    """The object's stamp now (not a listing cached by discovery in this process); FileNotFoundError if gone."""
    fs, path = filesystem(url)
    fs.invalidate_cache(path)
    return stamp_of(fs.info(path))


def gdal_path(path: str) -> str:
    """The name GDAL opens: a URL as its virtual file system path, a local path as it is."""
    if not is_remote(path):
        return path
    parts = urlsplit(path)
    scheme = SCHEMES[parts.scheme.lower()]
    if scheme.vsi == "/vsicurl/":
        return scheme.vsi + path
    return scheme.vsi + path.split("://", 1)[1]


@contextmanager
def open_input(path: str) -> Iterator[IO[bytes]]:
    """A binary file object of a local path or a URL."""
    if not is_remote(path):
        with open(path, "rb") as f:
            yield f
        return
    fs, inner = filesystem(path)
    with fs.open(inner, "rb") as f:
        yield f


@contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local file name for `path`: the path itself, or a copy of the object in the temporary folder, removed on
    leaving the block (a reader that opened or memory-mapped it inside keeps its data until it closes)."""
    if not is_remote(path):
        yield path
        return
    suffix = PurePosixPath(urlsplit(path).path).suffix
    fd, local = tempfile.mkstemp(prefix="rscurate-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, open_input(path) as src:
            shutil.copyfileobj(src, out, 8 * 2**20)
        yield local
    finally:
        os.unlink(local)
