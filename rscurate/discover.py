"""Discovery: manifests -> scenes, with eval-split files set aside before anything is read."""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rscurate.file_names import as_text
from rscurate.manifest import Manifest, ManifestError
from rscurate.object_store import Stamp, list_files
from rscurate.readers import SceneRef, detect_format, npy_frames


@dataclass
class Discovery:
    """What one manifest found: scenes to read, and scenes left out before reading (with reasons)."""

    manifest: Manifest
    scenes: list[SceneRef] = field(default_factory=list)
    left_out: list[tuple[SceneRef, str, str]] = field(default_factory=list)  # (scene, reason, detail)
    absent: str | None = None  # why the source is not on disk, with where to get it


def _matching_files(root: Path, include: list[str]) -> tuple[dict[Path, Stamp], dict[Path, str]]:
    """Regular files matching `include` with their stamps, and matches that cannot be read as files, with why
    (a FIFO would block the reader forever; a dangling or looping symlink has no file). Folders are skipped, and
    symlinked folders are not descended by `**` (pathlib), so a link loop cannot trap discovery."""
    files: dict[Path, Stamp] = {}
    odd: dict[Path, str] = {}
    for pattern in include:
        for path in root.glob(pattern):
            try:
                st = path.stat()
            except OSError as err:  # ENOENT: dangling symlink; ELOOP: symlink loop
                odd[path] = f"{err.strerror}: symlink to {as_text(os.readlink(path))!r}" if path.is_symlink() \
                    else f"{type(err).__name__}: {err.strerror}"
                continue
            if stat.S_ISREG(st.st_mode):
                files[path] = (st.st_size, st.st_mtime_ns)
            elif not stat.S_ISDIR(st.st_mode):
                kind = "FIFO" if stat.S_ISFIFO(st.st_mode) else "socket" if stat.S_ISSOCK(st.st_mode) else "device"
                odd[path] = f"not a regular file (a {kind}); only regular files are read"
    return dict(sorted(files.items())), dict(sorted(odd.items()))


def _eval_names(manifest: Manifest) -> set[str]:
    names: set[str] = set()
    for listing in manifest.exclude.file_lists:
        path = (manifest.path.parent / listing).resolve()
        if not path.is_file():
            raise ManifestError(f"{manifest.path}: field 'exclude.file_lists': {path} does not exist; fix the path")
        names.update(line.strip() for line in path.read_text().splitlines() if line.strip())
    return names


def _is_eval_split(rel: str, manifest: Manifest, listed: set[str]) -> str | None:
    for pattern in manifest.exclude.files:
        if fnmatch.fnmatch(rel, pattern):
            return f"matches exclude.files {pattern!r}"
    if rel in listed or Path(rel).name in listed or Path(rel).stem in listed:
        return "listed in exclude.file_lists"
    return None


def _label(rel: str, manifest: Manifest) -> str | None:
    if manifest.labels is None:
        return None
    parent = Path(rel).parent.name
    return as_text(parent) or None


def _group_band_files(manifest: Manifest, files: dict[str, str]) -> list[tuple[str, tuple[str, ...], str]]:
    """Band-per-file layouts (`files`: path -> path relative to the root) -> (scene key, paths in band order,
    missing-bands detail)."""
    assert manifest.band_files is not None
    rx = re.compile(manifest.band_files.pattern)
    tokens = [b.file or b.name for b in manifest.band_list()]
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    keys: dict[str, str] = {}
    for f, rel in files.items():
        m = rx.search(rel)
        if m is None or m.group("band") not in tokens:
            continue
        groups[m.group("scene")][m.group("band")] = f
        keys.setdefault(m.group("scene"), as_text(rel[: m.start("band")] + "{band}" + rel[m.end("band") :]))
    out = []
    for scene_id in sorted(groups):
        found = groups[scene_id]
        missing = [t for t in tokens if t not in found]
        paths = tuple(found[t] for t in tokens if t in found)
        out.append((keys[scene_id], paths, f"missing band files: {missing}" if missing else ""))
    return out


def _remote_files(manifest: Manifest, url: str) -> dict[str, Stamp] | None:
    """The objects under a root URL that match `include`; None when the bucket or prefix does not exist. Any other
    failure to list (credentials, network) stops the build before any work, naming the URL."""
    try:
        return list_files(url, manifest.include)
    except FileNotFoundError:
        return None
    except Exception as err:
        raise ManifestError(f"{manifest.path}: field 'root': cannot list {url} ({type(err).__name__}: {err}); check "
                            "the credentials and endpoint in the environment (docs/scaling.md)") from err


def discover(manifest: Manifest) -> Discovery:
    """Find a manifest's scenes; a missing root or no matching file marks the source absent."""
    found = Discovery(manifest)
    url = manifest.root_url()
    root = manifest.root_dir() if url is None else None
    where = manifest.download or manifest.homepage or "see the manifest"
    odd: dict[Path, str] = {}
    if root is not None:
        if not root.is_dir():
            found.absent = f"{manifest.name}: data folder {root} does not exist (get it from: {where})"
            return found
        local, odd = _matching_files(root, manifest.include)
        files = {str(p): s for p, s in local.items()}
        rels = {str(p): p.relative_to(root).as_posix() for p in local}
    else:
        remote = _remote_files(manifest, url)
        if remote is None:
            found.absent = f"{manifest.name}: {url} does not exist (bucket or prefix; get it from: {where})"
            return found
        files, rels = remote, {p: p[len(url):] for p in remote}
    if not files and not odd:
        found.absent = f"{manifest.name}: no file under {url or root} matches {manifest.include} (get it from: {where})"
        return found
    listed = _eval_names(manifest)

    for path, why in odd.items():
        rel = path.relative_to(root).as_posix()
        found.left_out.append((SceneRef(manifest.name, as_text(rel), (str(path),), detect_format(rel)), "unreadable",
                               why))
    if manifest.band_files is not None:
        entries = _group_band_files(manifest, rels)
    else:
        entries = [(as_text(rels[f]), (f,), "") for f in files]

    for key, paths, missing in entries:
        fmt = manifest.format if manifest.format != "auto" else detect_format(paths[0])
        rel_paths = [rels[p] for p in paths]
        ref = SceneRef(manifest.name, key, paths, fmt, label=_label(rel_paths[0], manifest),
                       stamps=tuple(files[p] for p in paths))
        split = next((r for r in (_is_eval_split(p, manifest, listed) for p in rel_paths) if r), None)
        if split:
            found.left_out.append((ref, "eval_split", split))
        elif missing:
            found.left_out.append((ref, "unreadable", missing))
        elif fmt == "npy":
            found.scenes += _npy_scenes(ref, manifest, found)
        else:
            found.scenes.append(ref)
    return found


def _npy_scenes(ref: SceneRef, manifest: Manifest, found: Discovery) -> list[SceneRef]:
    """A (T, ...) stack is T scenes, one per frame; an unreadable file is recorded, not raised."""
    try:
        frames = npy_frames(ref.paths[0], manifest.npy_layout)
    except (OSError, ValueError) as err:
        found.left_out.append((ref, "unreadable", f"{type(err).__name__}: {err}"))
        return []
    if frames is None:
        return [ref]
    return [SceneRef(ref.source, f"{ref.scene}#{t}", ref.paths, ref.format, t, ref.label, ref.stamps)
            for t in range(frames)]
