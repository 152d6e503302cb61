"""Source manifests: one YAML file per dataset, validated before any work starts.

A bad manifest must fail fast with the file, the field and the fix, so validation errors are
turned into :class:`ManifestError` with that text rather than a pydantic traceback.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rscurate.object_store import RemoteRootError, is_remote, root_url
from rscurate.vector_labels import LabelFileError, LabelSource

FORMATS = ("auto", "geotiff", "image", "npy", "modis_hdf4", "modis_l1b")
DESCRIPTIVE = {"description", "citation", "homepage", "download"}  # card text: changes no tile


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names file, field and fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Band(_Strict):
    """One band: its name (used for selection and statistics), centre wavelength and ground sampling."""

    name: str
    wavelength_um: float | None = None
    gsd_m: float | None = None
    file: str | None = Field(
        default=None, description="for band-per-file scenes: the file-name token of this band (defaults to name)"
    )
    qa: bool = Field(default=False, description="a mask/QA band: read for quality rules, not stored in tiles")
    sds: str | None = Field(default=None, description="HDF4 scientific dataset name for modis_hdf4 sources")
    scale: float | None = Field(
        default=None, description="physical = stored * scale + offset; overrides the file's scale (GeoTIFF tag, HDF "
        "scale_factor) for files that carry none, e.g. Landsat Collection 2 L2 (0.0000275)")
    offset: float | None = Field(default=None, description="see scale (Landsat Collection 2 L2 reflectance: -0.2)")


class BandFiles(_Strict):
    """Groups one-file-per-band layouts (Sentinel-2, Landsat) into one multispectral scene.

    `pattern` is a regular expression matched against each file's path relative to root, with named
    groups `scene` (what the band files of one scene share) and `band` (matched to Band.file or name).
    """

    pattern: str
    resampling: Literal["nearest", "bilinear", "cubic", "average"] = "bilinear"

    @field_validator("pattern")
    @classmethod
    def _has_groups(cls, v: str) -> str:
        rx = re.compile(v)
        missing = {"scene", "band"} - set(rx.groupindex)
        if missing:
            raise ValueError(f"pattern needs named groups (?P<scene>...) and (?P<band>...); missing {sorted(missing)}")
        return v


class Tile(_Strict):
    """How scenes become tiles: a regular grid, OpticalRS-style random multi-scale crops, or whole chips.

    In `whole` mode an image larger than `max_size` (when set) is cut into a grid of `size`, so one
    huge file cannot become one huge tile; `min_size` marks smaller images too_small.
    """

    mode: Literal["grid", "random", "whole"] = "grid"
    size: int = Field(default=256, gt=0)
    stride: int | None = Field(default=None, gt=0, description="grid step; defaults to size (no overlap)")
    min_size: int | None = Field(default=None, gt=0)
    max_size: int | None = Field(default=None, gt=0)
    count: int | None = Field(default=None, gt=0, description="random crops per scene")
    seed: int = 0
    anchor: Literal["crs", "scene"] = Field(
        default="scene",
        description="grid origin: the scene's top-left pixel (as solaris and TorchGeo cut), or the CRS pixel lattice")

    @model_validator(mode="after")
    def _random_needs_sizes(self) -> Tile:
        if self.mode == "random":
            if self.min_size is None or self.max_size is None or self.count is None:
                raise ValueError("mode: random needs min_size, max_size and count")
            if self.min_size > self.max_size:
                raise ValueError("min_size must not exceed max_size")
        return self


class Cloud(_Strict):
    """Cloud rule: QA classes in a named band, or a brightness threshold on reflectance-like bands."""

    band: str | None = Field(default=None, description="QA/SCL band name whose `classes` mark cloud")
    classes: list[int] = Field(default_factory=list)
    bits: list[int] = Field(default_factory=list, description="QA bit positions that mark cloud (any set)")
    brightness: float | None = Field(
        default=None, description="a pixel is cloud when each of `bands` (default: all data bands) is at least this"
    )
    bands: list[str] = Field(default_factory=list, description="bands the brightness rule tests, by name")
    units: Literal["physical", "stored"] = Field(
        default="physical", description="physical: brightness is compared with stored * scale + offset and integer "
        "bands without a scale are refused; stored: with the stored values (DN) as they are")
    max_fraction: float = Field(default=0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _one_rule(self) -> Cloud:
        if self.band is None and self.brightness is None:
            raise ValueError("cloud needs either band (with classes or bits) or brightness")
        if self.band is not None and not (self.classes or self.bits):
            raise ValueError("cloud.band needs classes or bits")
        return self


class Quality(_Strict):
    max_nodata_fraction: float = Field(default=0.5, ge=0, le=1)
    min_std: float | None = Field(
        default=None,
        ge=0,
        description="tiles whose every band has a lower std (data units) are low_information; "
        "default 1 for integer data, 1e-4 for floats",
    )
    cloud: Cloud | None = None


class Exclude(_Strict):
    files: list[str] = Field(default_factory=list, description="globs (relative to root) of downstream eval splits")
    file_lists: list[str] = Field(
        default_factory=list, description="text files (relative to the manifest) listing eval file names, one a line"
    )

    @field_validator("file_lists")
    @classmethod
    def _local(cls, v: list[str]) -> list[str]:
        return [_local_file(f) for f in v]


def _local_file(path: str) -> str:
    """Side files (label polygons, eval lists) are small and read by the client: they must be local."""
    if is_remote(path) or path.startswith("/vsi"):
        raise ValueError(f"{path!r} is a URL; side files are read from the local disk: copy it beside the manifest "
                         "and give its path relative to the manifest")
    return path


class Limits(_Strict):
    """Pixel budgets against decompression bombs: a file can declare 200000 x 200000 pixels in a few kilobytes."""

    max_scene_pixels: int = Field(
        default=2**34, gt=0, description="scenes declaring more pixels (width x height) are excluded too_large; "
        "2**34 (about 131k x 131k) admits any real satellite scene, whose windows are read tile by tile")
    max_decode_pixels: int = Field(
        default=2**28, gt=0, description="the most pixels decoded in one piece: a whole-mode tile, or a PNG/JPEG "
        "file (one compressed stream, decoded whole); above Pillow's own bomb limit of 179 million")


class Labels(_Strict):
    """Probe labels: each file's parent folder (`folder`), or polygons with a class column (`vector`: a tile takes
    the class covering most of its valid pixels when it covers at least `min_fraction` of them)."""

    mode: Literal["folder", "vector"] | None = Field(default=None, description="default: vector when file is set")
    file: str | None = Field(default=None, description="GeoPackage, GeoJSON or Shapefile; relative to the manifest")
    layer: str | None = Field(default=None, description="the layer of a file holding several")
    column: str | None = Field(default=None, description="the attribute holding each polygon's class")
    min_fraction: float = Field(default=0.5, gt=0, le=1)

    @field_validator("file")
    @classmethod
    def _local(cls, v: str | None) -> str | None:
        return v if v is None else _local_file(v)

    @model_validator(mode="after")
    def _mode_fields(self) -> Labels:
        vector_fields = {"file", "layer", "column", "min_fraction"} & self.model_fields_set
        if self.mode is None:
            self.mode = "vector" if vector_fields else "folder"
        if self.mode == "folder" and vector_fields:
            raise ValueError(f"mode: folder takes no {sorted(vector_fields)}; drop them, or drop `mode: folder` "
                             "for polygon labels")
        if self.mode == "vector" and (self.file is None or self.column is None):
            raise ValueError("vector labels need `file` (the polygons) and `column` (their class attribute)")
        return self


class Manifest(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    license: str
    citation: str = ""
    homepage: str = ""
    download: str = ""
    layout: str = Field(default="", description="the folder layout expected under root, for users")
    root: str
    include: list[str] = Field(min_length=1)
    format: Literal["auto", "geotiff", "image", "npy", "modis_hdf4", "modis_l1b"] = "auto"
    bands: list[Band] | Literal["rgb"] | None = None
    band_files: BandFiles | None = None
    nodata: float | None = None
    priority: int = 0
    role: Literal["train", "eval"] = "train"
    tile: Tile = Field(default_factory=Tile)
    quality: Quality = Field(default_factory=Quality)
    exclude: Exclude = Field(default_factory=Exclude)
    labels: Labels | None = None
    limits: Limits = Field(default_factory=Limits)
    npy_layout: Literal["CHW", "HWC", "THWC", "TCHW"] | None = Field(
        default=None, description="axis order of npy stacks; default HWC for 3-d, THWC for 4-d"
    )
    daynight: Literal["day", "any"] = Field(
        default="day", description="modis_l1b: `day` keeps granules whose DAYNIGHTFLAG is Day or Both (and only their "
        "sunlit pixels count as data); `any` keeps night granules too")
    path: Path = Field(default=Path("."), exclude=True, description="the manifest file (set by the loader)")

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.band_files is not None and not isinstance(self.bands, list):
            raise ValueError("band_files needs a bands list naming each band (and its file token)")
        cloud = self.quality.cloud
        if cloud and (cloud.band or cloud.bands):
            names = [b.name for b in self.band_list()]
            for name in ([cloud.band] if cloud.band else []) + cloud.bands:
                if name not in names:
                    raise ValueError(f"quality.cloud names band {name!r}, which is not among bands {names}")
        if self.format == "modis_l1b":
            self._modis_l1b_defaults()
        elif "daynight" in self.model_fields_set and self.format != "auto":
            raise ValueError(f"daynight applies to format modis_l1b only (this source is {self.format}); remove it")
        return self

    def _modis_l1b_defaults(self) -> None:
        """MODIS L1B: SatVision-TOA's 128 px chips unless the tile size is given; bands named by MODIS number."""
        from rscurate.modis_bands import band

        if "size" not in self.tile.model_fields_set:
            self.tile.size = 128
        for b in self.band_list() if isinstance(self.bands, list) else []:
            band(b.name)  # ValueError naming the valid bands
            if b.qa or b.sds or b.file or b.scale is not None or b.offset is not None:
                raise ValueError(f"band {b.name}: modis_l1b bands take only name, wavelength_um and gsd_m (the "
                                 "granule's band_names and calibration attributes say the rest)")
        if self.bands == "rgb":
            raise ValueError("modis_l1b bands are MODIS band names (B01..B36), not rgb; list them or leave bands out")

    def uncurated(self) -> Manifest:
        """This source with its quality rules off (`--no-curate`): only tiles without a single valid pixel go."""
        return self.model_copy(update={"quality": Quality(max_nodata_fraction=1.0, min_std=0.0)})

    def settings_json(self) -> str:
        """The validated content that decides tiles, without the descriptive text only the card shows."""
        return self.model_dump_json(exclude=DESCRIPTIVE)

    def band_list(self) -> list[Band]:
        if self.bands == "rgb":
            return [Band(name="red", wavelength_um=0.65), Band(name="green", wavelength_um=0.56),
                    Band(name="blue", wavelength_um=0.48)]  # order matches readers.RGB_NAMES
        return list(self.bands or [])

    def label_source(self) -> LabelSource | None:
        """Where the polygon labels are, with ${VAR} expanded and relative to the manifest; None without them."""
        labels = self.labels
        if labels is None or labels.mode != "vector":
            return None
        assert labels.file is not None and labels.column is not None  # Labels._mode_fields
        path = Path(expand_vars(labels.file, self.path, "labels.file"))
        path = path if path.is_absolute() else (self.path.parent / path).resolve()
        return LabelSource(str(path), labels.column, labels.layer, labels.min_fraction)

    def root_url(self) -> str | None:
        """A root on object storage (s3://, gs://, az://, http(s)://, or GDAL's /vsis3/ ...) as a URL ending in
        '/', with ${VAR} expanded; None for a local folder (root_dir)."""
        try:
            return root_url(expand_vars(self.root, self.path))
        except RemoteRootError as err:
            raise ManifestError(f"{self.path}: field 'root': {err}") from err

    def root_dir(self) -> Path:
        """A local root with ${VAR} expanded, relative to the manifest's folder unless absolute."""
        root = Path(expand_vars(self.root, self.path))
        return root if root.is_absolute() else (self.path.parent / root).resolve()


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_vars(text: str, where: Path, field: str = "root") -> str:
    """Expand ${VAR} and ${VAR:-default}; an unset variable without default is an error."""

    def sub(m: re.Match[str]) -> str:
        value = os.environ.get(m.group(1))
        if value is None:
            if m.group(2) is None:
                raise ManifestError(
                    f"{where}: field '{field}': environment variable {m.group(1)} is not set; "
                    f"export it or write ${{{m.group(1)}:-default}}"
                )
            return m.group(2)
        return value

    return _VAR.sub(sub, text)


def load_manifest(path: Path) -> Manifest:
    """Parse and validate one manifest file."""
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ManifestError(f"{path}: not valid YAML ({err}); fix the syntax") from err
    except OSError as err:
        raise ManifestError(f"{path}: cannot be read ({err})") from err
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a manifest is a YAML mapping with at least name, license, root, include")
    try:
        manifest = Manifest.model_validate(data)
    except ValidationError as err:
        raise ManifestError(_explain(path, err)) from err
    manifest.path = path.resolve()
    manifest.root_url()  # an unset ${VAR}, a bad URL or a missing fsspec backend fails here, before any work
    labels = manifest.label_source()
    if labels is not None:  # read now: an unusable label file fails the build before any work
        try:
            labels.polygons()
        except LabelFileError as err:
            raise ManifestError(f"{path}: field 'labels': {err}") from err
    return manifest


def _explain(path: Path, err: ValidationError) -> str:
    fixes: dict[str, list[str]] = {}  # field as written -> what to do, in pydantic's order
    located = [(e, *_locate(e["loc"], e["type"] == "extra_forbidden")) for e in err.errors()]
    matched = {union for _, _, union, inside, _ in located if inside}
    for e, field, union, inside, models in located:
        if union is not None and not inside and union in matched:
            continue  # the value has another member's shape (a bands list, not 'rgb'): that member's errors say why
        if e["type"] == "extra_forbidden":
            valid = [name for model in models for name, info in model.model_fields.items() if not info.exclude]
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1)
            fix = (f"unknown field; did you mean {close[0]!r}?" if close
                   else "remove it (unknown field; see docs/manifests.md)")
        elif e["type"] == "missing":
            fix = "add it (required; see docs/manifests.md)"
        else:
            fix = e["msg"]
        fixes.setdefault(field, []).append(fix)
    # several fixes for one field are the members of a union (`bands: 5`): any one of them would do
    lines = [f"  field '{field or '(top level)'}': {' or '.join(fix)}" for field, fix in fixes.items()]
    return "\n".join([f"{path}: invalid manifest", *lines])


def _locate(loc: tuple[int | str, ...], unknown: bool) -> tuple[str, str | None, bool, list[type[BaseModel]]]:
    """(field as the user wrote it: `bands[0].wavelength_um`, the field holding a union when pydantic named one
    of its members (`list[Band]`) in the location, whether the location goes on inside that member, and the
    models whose fields were valid at the last step). An `unknown` key's last part is the user's own."""
    models: list[type[BaseModel]] = [Manifest]
    field, union, inside = "", None, False
    for k, part in enumerate(loc):
        fields = {name: info for model in models for name, info in model.model_fields.items()}
        if isinstance(part, int):
            field += f"[{part}]"
        elif part in fields or (unknown and k == len(loc) - 1):
            field += f".{part}" if field else part
            models = _models_in(fields[part].annotation) if part in fields else models
        else:  # a union member's name, not a key the user wrote
            union = field
            continue
        inside = union is not None
    return field, union, inside, models


def _models_in(annotation: object) -> list[type[BaseModel]]:
    """The manifest sections inside a field's type (Band in `list[Band] | Literal['rgb'] | None`)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in get_args(annotation) for m in _models_in(arg)]


def find_manifest_files(sources: list[Path]) -> list[Path]:
    """Manifest files under the given files/folders, recursively, in a stable order."""
    found: list[Path] = []
    for src in sources:
        if src.is_dir():
            found += sorted(p for p in src.rglob("*") if p.suffix in (".yaml", ".yml"))
        elif src.is_file():
            found.append(src)
        else:
            raise ManifestError(f"{src}: no such manifest file or folder; pass --sources with a path that exists")
    if not found:
        raise ManifestError(f"no manifest (*.yaml) found under {', '.join(map(str, sources))}")
    return found


def load_manifests(sources: list[Path]) -> list[Manifest]:
    """Load every manifest; names must be unique because they key tiles and statistics."""
    manifests = [load_manifest(p) for p in find_manifest_files(sources)]
    seen: dict[str, Path] = {}
    for m in manifests:
        if m.name in seen:
            raise ManifestError(f"{m.path}: field 'name': {m.name!r} is already used by {seen[m.name]}; rename one")
        seen[m.name] = m.path
    return manifests
