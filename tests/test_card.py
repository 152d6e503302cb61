"""The dataset card: front matter Hugging Face accepts, tables with the corpus's numbers, real figures."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

from rscurate.card import hf_license, pick_tiles, rgb_channels, size_category, to_rgb, write_card
from rscurate.codec import encode_array
from rscurate.schema import DUPLICATES, EXCLUDED, INDEX, SHARD

S2 = ["B02", "B03", "B04", "B08"]
MODIS = [f"b{i}" for i in (1, 2, 3, 6, 7, 21, 26, 27, 28, 29, 30, 31, 32, 33)]
COMMAND = "rscurate build --sources manifests/samples --out corpus --workers 2"
SETTINGS = {"tile_size": 32, "near_distance": 4, "sources": ["manifests/samples"]}


def _ramp(channels: int, size: int, dtype: str, scale: float, offset: float = 0.0) -> np.ndarray:
    """A tile whose channels are differently oriented gradients, so every rendering shows structure."""
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    planes = [(xx, yy, 1 - xx, (xx + yy) / 2)[c % 4] for c in range(channels)]
    return (np.stack(planes) * scale + offset).astype(dtype)


def _tile(
    source: str,
    n: int,
    array: np.ndarray,
    bands: list[str],
    crs: str,
    origin: tuple[float, float],
    pixel: float,
    label: str | None = None,
) -> dict:
    size = array.shape[-1]
    x0, y0 = origin
    return {
        "id": f"{source}-{n:04d}",
        "source": source,
        "scene": f"{source}/scene{n}.tif",
        "x": 0,
        "y": 0,
        "width": size,
        "height": size,
        "crs": crs,
        "minx": x0,
        "miny": y0,
        "maxx": x0 + size * pixel,
        "maxy": y0 + size * pixel,
        "gsd_m": 10.0,
        "bands": bands,
        "wavelengths_um": None,
        "dtype": str(array.dtype),
        "channels": array.shape[0],
        "encoding": "npy.zst",
        "sha256": f"{n:064x}",
        "phash": n,
        "nodata_fraction": 0.0,
        "std_min": 1.0,
        "label": label,
        "image": encode_array(array),
    }


def _tiles() -> list[dict]:
    utm, deg = (500_000.0, 4_500_000.0), (10.0, 45.0)
    red = np.zeros((3, 32, 32), np.uint8)
    red[0] = 220
    tiles = [
        _tile("alpha", 1, red, ["red", "green", "blue"], "EPSG:32618", utm, 10.0, "forest"),
        _tile(
            "alpha",
            2,
            _ramp(3, 32, "uint8", 255),
            ["Red", "Green", "Blue"],
            "EPSG:32618",
            (utm[0] + 400, utm[1]),
            10.0,
            "water",
        ),
        _tile(
            "alpha",
            3,
            _ramp(3, 32, "uint8", 200, 20),
            ["red", "green", "blue"],
            "EPSG:32618",
            (utm[0], utm[1] + 400),
            10.0,
        ),
        _tile("beta", 1, _ramp(4, 32, "uint16", 3000, 200), S2, "", (0, 0), 10.0),
        _tile("beta", 2, _ramp(4, 48, "uint16", 9000), S2, "", (0, 0), 10.0),
        _tile("gamma", 1, _ramp(14, 32, "float32", 0.4, 0.01), MODIS, "EPSG:4326", deg, 0.01),
        _tile("gamma", 2, _ramp(1, 32, "int16", 2000, -1000), ["elevation"], "", (0, 0), 30.0),
    ]
    tiles[2] |= {"encoding": "png", "image": _png(_ramp(3, 32, "uint8", 200, 20))}  # an 8-bit chip kept whole
    return tiles


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.moveaxis(array, 0, -1)).save(buf, format="PNG")
    return buf.getvalue()


def _stats() -> dict:
    def src(files: int, kept: int, excluded: dict, dups: int, lic: str, role: str = "train") -> dict:
        return {
            "files": files,
            "kept": kept,
            "excluded": excluded,
            "duplicates": dups,
            "license": lic,
            "citation": "",
            "homepage": "",
            "role": role,
        }

    sources = {
        "alpha": src(4, 3, {"nodata": 2, "cloud": 1}, 0, "CC-BY-4.0"),
        "beta": src(3, 2, {"low_information": 1}, 2, "MIT"),
        "gamma": src(2, 2, {}, 1, "public domain"),
        "delta": src(4, 0, {"eval_split": 4}, 0, "CC0-1.0", role="eval"),
    }
    sources["alpha"]["citation"] = "@article{alpha,\n  title = {{Alpha}: a test | dataset},\n  year = {2024}\n}"
    sources["alpha"]["homepage"] = "https://example.org/alpha"
    bands = {
        "red": {
            "count": 3,
            "mean": 91.5,
            "std": 60.25,
            "min": 0,
            "max": 255,
            "p1": 0.0,
            "p99": 250.0,
            "dtype": "uint8",
        },
        "B08": {
            "count": 2,
            "mean": 2712.5,
            "std": 1500.0,
            "min": 0,
            "max": 9000,
            "p1": 10.0,
            "p99": 8900.0,
            "dtype": "uint16",
        },
    }
    return {
        "counts": {
            "files": 13,
            "kept": 7,
            "excluded": {"nodata": 2, "cloud": 1, "low_information": 1, "eval_split": 4},
            "duplicates": {"exact": 2, "near": 1},
        },
        "sources": sources,
        "bands": bands,
        "build": {
            "command": COMMAND,
            "settings": SETTINGS,
            "rscurate_version": "0.1.0",
            "started": "2025-01-02T03:04:05+00:00",
            "seconds": 3725.4,
            "workers": 2,
        },
    }


def _excluded() -> pa.Table:
    rows = [("alpha", "nodata")] * 2 + [("alpha", "cloud"), ("beta", "low_information")] + [("delta", "eval_split")] * 4
    return pa.Table.from_pylist(
        [
            {
                "source": s,
                "scene": f"{s}/x{i}.tif",
                "x": 0,
                "y": 0,
                "width": 32,
                "height": 32,
                "reason": r,
                "detail": "",
            }
            for i, (s, r) in enumerate(rows)
        ],
        schema=EXCLUDED,
    )


def _duplicates() -> pa.Table:
    pairs = [
        ("beta", "alpha-0001", "exact", 0),
        ("beta", "alpha-0002", "exact", 0),
        ("gamma", "alpha-0003", "near", 3),
    ]
    return pa.Table.from_pylist(
        [
            {
                "id": f"dup-{i}",
                "source": s,
                "scene": f"{s}/d{i}.tif",
                "x": 32,
                "y": 64,
                "width": 32,
                "height": 32,
                "kept_id": k,
                "kept_source": "alpha",
                "kept_scene": f"alpha/{k}.tif",
                "kind": kind,
                "distance": d,
            }
            for i, (s, k, kind, d) in enumerate(pairs)
        ],
        schema=DUPLICATES,
    )


def _write_corpus(root: Path, tiles: list[dict]) -> pa.Table:
    """Write the shard (two row groups, so reads must find the right one) and the index; return the index."""
    (root / "shards").mkdir(parents=True)
    shard = pa.Table.from_pylist(tiles, schema=SHARD)
    pq.write_table(shard, root / "shards" / "part-00000.parquet", row_group_size=4)
    index = shard.drop_columns(["image", "valid_mask"])
    index = index.append_column("shard", pa.array(["shards/part-00000.parquet"] * len(tiles), pa.string()))
    index = index.append_column("row", pa.array(range(len(tiles)), pa.int64())).cast(INDEX)
    pq.write_table(index, root / "index.parquet")
    return index


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("built") / "corpus"
    index = _write_corpus(root, _tiles())
    assert write_card(root, _stats(), index, _excluded(), _duplicates()) == root / "README.md"
    return root


def _front_matter(text: str) -> dict:
    match = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "README must start with YAML front matter"
    return yaml.safe_load(match.group(1))


def _section(text: str, heading: str) -> str:
    return text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _table(section: str) -> list[dict[str, str]]:
    """The first Markdown table of a section, as dicts keyed by header."""
    block = section[section.index("\n|") + 1 if not section.startswith("|") else 0 :].split("\n\n", 1)[0]
    cells = [[c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]] for ln in block.splitlines()]
    return [dict(zip(cells[0], row, strict=True)) for row in cells[2:]]


def _rows(section: str, key: str) -> dict[str, dict[str, str]]:
    return {row[key]: row for row in _table(section)}


def test_front_matter_is_hugging_face_yaml(corpus: Path) -> None:
    meta = _front_matter((corpus / "README.md").read_text())
    assert meta["pretty_name"] == "corpus"
    assert meta["license"] == ["cc-by-4.0", "cc0-1.0", "mit", "other"]
    assert meta["size_categories"] == ["n<1K"]
    assert meta["task_categories"] == ["image-feature-extraction", "image-classification"]
    assert {"remote-sensing", "earth-observation", "satellite-imagery", "self-supervised-pretraining"} <= set(
        meta["tags"]
    )
    files = meta["configs"][0]["data_files"]
    assert files == [{"split": "train", "path": "shards/*.parquet"}]
    assert list(corpus.glob(files[0]["path"])), "the data_files glob must match the shards"


def test_overview_counts_tiles_and_names_sources(corpus: Path) -> None:
    text = (corpus / "README.md").read_text()
    assert "**7 tiles** in 1 Parquet shard," in text
    assert "13 input files of 4 sources: alpha, beta, gamma; evaluation (role `eval`): delta." in text
    assert "- `B02, B03, B04, B08` (uint16): 2 tiles" in text
    assert "![36" not in text and "![7 sample tiles, spread across sources](card/mosaic.png)" in text


def test_sources_table_has_one_column_per_reason_present(corpus: Path) -> None:
    section = _section((corpus / "README.md").read_text(), "Sources")
    rows = _rows(section, "source")
    assert list(rows) == ["alpha", "beta", "delta", "gamma"]
    reasons = [h for h in rows["alpha"] if h.startswith("excluded: ")]
    assert reasons == [
        "excluded: nodata",
        "excluded: low_information",
        "excluded: cloud",
        "excluded: eval_split",
    ]
    assert rows["alpha"] | {"citation": ""} == {
        "source": "alpha",
        "role": "train",
        "files": "4",
        "kept tiles": "3",
        "excluded: nodata": "2",
        "excluded: low_information": "0",
        "excluded: cloud": "1",
        "excluded: eval_split": "0",
        "duplicates": "0",
        "licence": "CC-BY-4.0",
        "citation": "",
    }
    assert rows["alpha"]["citation"] == r"Alpha: a test \| dataset"  # the BibTeX title, its pipe escaped
    assert rows["delta"]["role"] == "eval" and rows["delta"]["excluded: eval_split"] == "4"
    assert rows["gamma"]["kept tiles"] == "2" and rows["gamma"]["duplicates"] == "1"
    assert "(card/counts.png)" in section


def test_band_statistics_table(corpus: Path) -> None:
    rows = _rows(_section((corpus / "README.md").read_text(), "Band statistics"), "band")
    assert rows["B08"] == {
        "band": "B08",
        "dtype": "uint16",
        "count": "2",
        "mean": "2,712.5",
        "std": "1,500",
        "min": "0",
        "max": "9,000",
        "p1": "10",
        "p99": "8,900",
    }
    assert rows["red"]["std"] == "60.25"


def test_dedup_section_counts_kinds_and_source_pairs(corpus: Path) -> None:
    section = _section((corpus / "README.md").read_text(), "Deduplication")
    tables = section.split("\n\n")
    kinds = _rows(next(t for t in tables if t.startswith("| kind | dropped tiles")), "kind")
    assert {k: r["dropped tiles"] for k, r in kinds.items()} == {"exact": "2", "near": "1"}
    pairs = _table(next(t for t in tables if t.startswith("| dropped from | kept in")))
    assert pairs == [
        {"dropped from": "beta", "kept in": "alpha", "exact": "2", "near": "0", "total": "2"},
        {"dropped from": "gamma", "kept in": "alpha", "exact": "0", "near": "1", "total": "1"},
    ]
    examples = _table(next(t for t in tables if t.startswith("| kind | distance")))
    assert [e["kept id"] for e in examples] == ["alpha-0001", "alpha-0002", "alpha-0003"]
    assert examples[2]["dropped tile (scene @ x,y w×h)"] == "gamma/d2.tif @ 32,64 32×32"


def test_build_section_quotes_command_and_settings(corpus: Path) -> None:
    section = _section((corpus / "README.md").read_text(), "How it was built")
    assert f"```bash\n{COMMAND}\n```" in section
    settings = re.search(r"```json\n(.*?)\n```", section, re.DOTALL)
    assert settings and json.loads(settings.group(1)) == SETTINGS
    assert "rscurate 0.1.0, started 2025-01-02T03:04:05+00:00, took 1h 02m 05s with 2 workers." in section


def test_citations_section_keeps_full_bibtex(corpus: Path) -> None:
    section = _section((corpus / "README.md").read_text(), "Sources and citations")
    assert "```bibtex\n@article{alpha," in section
    assert "- Homepage: <https://example.org/alpha>" in section
    assert "### delta\n\n- Licence: CC0-1.0" in section


@pytest.mark.parametrize("name", ["pyarrow", "pandas", "DuckDB"])
def test_loading_snippets_run(
    corpus: Path, name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    section = _section((corpus / "README.md").read_text(), "How to load")
    code = re.search(rf"### {name}\n\n```python\n(.*?)\n```", section, re.DOTALL)
    assert code
    monkeypatch.chdir(corpus.parent)
    exec(code.group(1), {})
    out = capsys.readouterr().out
    assert "alpha" in out


def _image(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_figures_are_real_images_linked_from_the_card(corpus: Path) -> None:
    text = (corpus / "README.md").read_text()
    for name in ("mosaic", "counts", "footprints"):
        assert f"(card/{name}.png)" in text
        pixels = _image(corpus / "card" / f"{name}.png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert pixels.std() > 10, f"{name}.png looks blank"
        assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20
    assert "4 of 7 tiles are georeferenced; all of them are drawn" in text


def test_mosaic_shows_the_stored_tiles(corpus: Path) -> None:
    pixels = _image(corpus / "card" / "mosaic.png").astype(int)
    solid_red = (abs(pixels[..., 0] - 220) <= 2) & (pixels[..., 1] <= 2) & (pixels[..., 2] <= 2)
    assert solid_red.sum() > 500, "alpha-0001 is a solid red uint8 tile and must be shown as stored"


def test_footprints_skipped_without_georeferenced_tiles(tmp_path: Path) -> None:
    tiles = [t | {"crs": ""} for t in _tiles()]
    root = tmp_path / "corpus"
    index = _write_corpus(root, tiles)
    (root / "card").mkdir()
    (root / "card" / "footprints.png").write_bytes(b"stale")
    write_card(root, _stats(), index, _excluded(), _duplicates())
    assert not (root / "card" / "footprints.png").exists()
    text = (root / "README.md").read_text()
    assert "card/footprints.png" not in text
    assert "No kept tile is georeferenced" in text


def test_footprints_skip_crs_that_cannot_be_placed_on_earth(tmp_path: Path) -> None:
    odd = ["not a crs", 'LOCAL_CS["pixels"]']
    tiles = [t | {"crs": odd[i % 2] if t["crs"] else ""} for i, t in enumerate(_tiles())]
    root = tmp_path / "corpus"
    write_card(root, _stats(), _write_corpus(root, tiles), _excluded(), _duplicates())
    assert not (root / "card" / "footprints.png").exists()
    assert "4 tiles carry a `crs`, but none could be reprojected" in (root / "README.md").read_text()


def test_empty_corpus(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    stats = {
        "counts": {"files": 2, "kept": 0, "excluded": {"unreadable": 2}, "duplicates": {}},
        "sources": {
            "only": {
                "files": 2,
                "kept": 0,
                "excluded": {"unreadable": 2},
                "duplicates": 0,
                "license": "",
                "citation": "",
                "homepage": "",
                "role": "train",
            }
        },
        "bands": {},
        "build": {
            "command": "rscurate build",
            "settings": {},
            "rscurate_version": "0.1.0",
            "started": "2025-01-01T00:00:00",
            "seconds": 1.2,
            "workers": 1,
        },
    }
    excluded = pa.Table.from_pylist(
        [
            {
                "source": "only",
                "scene": f"s{i}.tif",
                "x": 0,
                "y": 0,
                "width": 0,
                "height": 0,
                "reason": "unreadable",
                "detail": "bad header",
            }
            for i in range(2)
        ],
        schema=EXCLUDED,
    )
    readme = write_card(root, stats, INDEX.empty_table(), excluded, DUPLICATES.empty_table())
    text = readme.read_text()
    meta = _front_matter(text)
    assert meta["size_categories"] == ["n<1K"] and meta["license"] == ["unknown"]
    assert meta["task_categories"] == ["image-feature-extraction"]
    assert "**0 tiles** in 0 Parquet shards" in text
    assert "no sample mosaic" in text and "No duplicate was found." in text
    assert _rows(_section(text, "Sources"), "source")["only"]["excluded: unreadable"] == "2"
    assert sorted(p.name for p in (root / "card").iterdir()) == ["counts.png"]
    assert _image(root / "card" / "counts.png").std() > 10


def test_empty_corpus_without_sources(tmp_path: Path) -> None:
    readme = write_card(tmp_path, {}, INDEX.empty_table(), EXCLUDED.empty_table(), DUPLICATES.empty_table())
    text = readme.read_text()
    assert _front_matter(text)["license"] == ["unknown"]
    assert "No source was recorded." in text and "(command not recorded)" in text
    assert list((tmp_path / "card").iterdir()) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CC-BY-4.0", "cc-by-4.0"),
        ("CC BY 4.0", "cc-by-4.0"),
        ("CC0-1.0", "cc0-1.0"),
        ("CC0", "cc0-1.0"),
        ("MIT", "mit"),
        ("Apache-2.0", "apache-2.0"),
        ("ODbL-1.0", "odbl"),
        ("public domain", "other"),
        ("custom, research only", "other"),
        ("", "unknown"),
    ],
)
def test_hf_license(text: str, expected: str) -> None:
    assert hf_license(text) == expected


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "n<1K"),
        (999, "n<1K"),
        (1000, "1K<n<10K"),
        (99_999, "10K<n<100K"),
        (13_000_000, "10M<n<100M"),
        (100_000_000, "100M<n<1B"),
    ],
)
def test_size_category(n: int, expected: str) -> None:
    assert size_category(n) == expected


def test_to_rgb_uses_named_bands_then_first_three_then_grey() -> None:
    tile = np.zeros((4, 8, 8), np.uint16)
    tile[2] = np.arange(64).reshape(8, 8)  # B04 is red in Sentinel-2 naming
    rgb = to_rgb(tile, S2)
    assert rgb.shape == (8, 8, 3) and rgb[..., 0].max() == 1.0 and rgb[..., 1:].max() == 0.0
    assert to_rgb(tile, ["a", "b", "c", "d"])[..., 2].max() == 1.0  # no names: bands 0, 1, 2
    grey = to_rgb(np.arange(64, dtype=np.float32).reshape(1, 8, 8), ["dem"])
    assert np.array_equal(grey[..., 0], grey[..., 2]) and grey.min() == 0.0 and grey.max() == 1.0
    assert np.array_equal(to_rgb(np.full((3, 4, 4), 51, np.uint8), []), np.full((4, 4, 3), 0.2))
    flat = to_rgb(np.full((2, 4, 4), np.nan, np.float32), [])
    assert flat.shape == (4, 4, 3) and not np.isnan(flat).any()


def test_rgb_channels_prefer_wavelengths_over_sensor_specific_names() -> None:
    modis = ["B01", "B02", "B03", "B04", "B05", "B06", "B07"]  # MODIS: B01 red, B04 green, B03 blue
    modis_um = [0.645, 0.858, 0.469, 0.555, 1.24, 1.64, 2.13]
    assert rgb_channels(7, modis, modis_um) == [0, 3, 2]
    assert rgb_channels(4, S2, [0.49, 0.56, 0.665, 0.842]) == [2, 1, 0]
    assert rgb_channels(4, S2, [None, None, None, None]) == [2, 1, 0]  # no wavelengths: by name
    assert rgb_channels(2, ["vv", "vh"], [0.0, 0.0]) == [0]  # radar: nothing near red, green, blue
    assert rgb_channels(3, ["B1", "B2"], []) == [0, 1, 2]  # names that do not match the band count are ignored


def test_pick_tiles_shares_between_sources_and_spreads_within() -> None:
    index = pa.table({"source": ["big"] * 100 + ["small"] * 2, "id": [f"{i:03d}" for i in range(102)]})
    picks = pick_tiles(index, 10)
    assert picks == pick_tiles(index, 10)
    assert sum(p >= 100 for p in picks) == 2 and len(picks) == 10
    big = [p for p in picks if p < 100]
    assert big == sorted(big) and big[0] == 0 and big[-1] >= 80  # spread over the source, not its first rows
    assert pick_tiles(index, 500) == list(range(102))


def _coloured_fraction(pixels: np.ndarray) -> float:
    """Share of an image's pixels that are clearly coloured (not white, grey or black): the drawn tiles."""
    rgb = pixels.astype(int)
    return float(((rgb.max(axis=-1) - rgb.min(axis=-1)) > 40).mean())


def test_a_figure_or_section_that_raises_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import rscurate.card as card

    def boom(*_: object) -> None:
        raise RuntimeError("Point outside of projection domain")

    monkeypatch.setattr(card, "_footprints_figure", boom)
    monkeypatch.setattr(card, "_counts_figure", boom)
    monkeypatch.setattr(card, "_bands_section", boom)
    root = tmp_path / "corpus"
    index = _write_corpus(root, _tiles())
    (root / "card").mkdir()
    (root / "card" / "footprints.png").write_bytes(b"stale")
    with caplog.at_level("WARNING", logger="rscurate"):
        text = write_card(root, _stats(), index, _excluded(), _duplicates()).read_text()
    warnings = [r.getMessage() for r in caplog.records if r.name == "rscurate" and r.levelname == "WARNING"]
    for what in ("card/footprints.png", "card/counts.png", "band statistics"):
        assert any(what in w and "RuntimeError: Point outside of projection domain" in w for w in warnings), what
    assert sorted(p.name for p in (root / "card").iterdir()) == ["mosaic.png"]
    assert "card/footprints.png" not in text and "card/counts.png" not in text
    assert "The footprint map could not be drawn" in text
    assert "## Band statistics" not in text
    for heading in ("Sources", "Deduplication", "Footprints", "How it was built", "How to load", "Files"):
        assert f"\n## {heading}\n" in text
    assert _front_matter(text)["pretty_name"] == "corpus"


def test_footprints_zoom_to_each_clump_of_tiles(corpus: Path) -> None:
    """alpha (UTM 18N, New York) and gamma (near Venice) are 60 degrees apart: one panel each, zoomed in."""
    text = (corpus / "README.md").read_text()
    assert "in 2 panels, each zoomed" in text
    assert _coloured_fraction(_image(corpus / "card" / "footprints.png")) > 0.15, "tiles must fill their panels"


def test_footprints_keep_a_clump_across_the_antimeridian_in_one_panel(tmp_path: Path) -> None:
    tiles = _antimeridian_tiles()
    root = tmp_path / "corpus"
    text = write_card(root, _stats(), _write_corpus(root, tiles), _excluded(), _duplicates()).read_text()
    assert "all of them are drawn" in text and "in one panel" in text
    assert _coloured_fraction(_image(root / "card" / "footprints.png")) > 0.1


def test_points_outside_the_projection_domain_become_nan() -> None:
    from rasterio.crs import CRS

    from rscurate.card import _to_lonlat

    geos = CRS.from_user_input(GEOS)
    xs, ys = np.array([0.0, 5.5e6, 1e6, -5.5e6, 0.0]), np.array([0.0, 5.5e6, 1e6, 5.5e6, -1e6])
    lon, lat = _to_lonlat(geos, xs, ys)
    assert np.isnan(lon[[1, 3]]).all() and np.isnan(lat[[1, 3]]).all()
    assert np.allclose(lon[[0, 2, 4]], [140.7, 149.88, 140.7], atol=0.01) and np.isfinite(lat[[0, 2, 4]]).all()


GEOS = "+proj=geos +h=35785831 +lon_0=140.7 +sweep=x +ellps=GRS80 +units=m"


def test_full_disk_geostationary_scene_builds_with_a_card(tmp_path: Path) -> None:
    """A full-disk image's corners lie in space, outside the projection's domain: its tiles there are left off
    the footprint map, and the build still ends with a whole card."""
    from tests.conftest import run_build, textured, write_manifest, write_tif

    half = 5_500_000.0
    write_tif(tmp_path / "data" / "disk.tif", textured(np.random.default_rng(3), 1, 256, 256), res=2 * half / 256,
              origin=(-half, half), crs=GEOS)
    manifest = write_manifest(tmp_path / "manifests" / "disk.yaml", """\
        name: himawari_disk
        license: CC0-1.0
        root: ../data
        include: ["*.tif"]
        tile: {size: 64, anchor: scene}
        """)
    run_build([manifest.parent], tmp_path / "corpus")
    text = (tmp_path / "corpus" / "README.md").read_text()
    assert "16 of 16 tiles are georeferenced; 4 of them are drawn" in text  # the inner four: the rest reach space
    assert "12 tiles could not be placed" in text
    assert _image(tmp_path / "corpus" / "card" / "footprints.png").std() > 10
    assert "## How to load" in text


def _antimeridian_tiles() -> list[dict]:
    rgb = ["red", "green", "blue"]
    return [_tile("east", 1, _ramp(3, 32, "uint8", 255), rgb, "EPSG:4326", (179.8, 10.0), 0.005),
            _tile("west", 1, _ramp(3, 32, "uint8", 99), rgb, "EPSG:4326", (-179.99, 10.0), 0.005)]


def test_charts_are_drawn_without_matplotlib(tmp_path: Path) -> None:
    """matplotlib's import alone cost a small build 0.5 s: the card's charts are PIL drawings, and a process
    where matplotlib cannot be imported still writes them, of a readable size and not blank."""
    from tests.conftest import REPO

    code = (
        "import sys; sys.modules['matplotlib'] = None\n"  # any `import matplotlib` now raises ImportError
        "from pathlib import Path\n"
        "from tests.test_card import _antimeridian_tiles, _duplicates, _excluded, _stats, _tiles, _write_corpus\n"
        "from rscurate.card import write_card\n"
        f"out = Path({str(tmp_path)!r})\n"
        "for name, tiles in (('corpus', _tiles()), ('antimeridian', _antimeridian_tiles())):\n"
        "    write_card(out / name, _stats(), _write_corpus(out / name, tiles), _excluded(), _duplicates())\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True, text=True)
    for corpus in ("corpus", "antimeridian"):
        for name in ("counts", "footprints"):
            pixels = _image(tmp_path / corpus / "card" / f"{name}.png")
            assert 300 <= pixels.shape[1] <= 2000 and 150 <= pixels.shape[0] <= 1500, (corpus, name, pixels.shape)
            assert pixels.std() > 10 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20, f"{name}.png is blank"
    assert "in 2 panels" in (tmp_path / "corpus" / "README.md").read_text()
    # across the antimeridian: east (blue, at 179.8) drawn just left of west (orange, at -179.99), one panel
    rgb = _image(tmp_path / "antimeridian" / "card" / "footprints.png").astype(int)
    plot = rgb[40:-40]  # the panel, without the title and the legend's swatches
    east = np.flatnonzero(((plot[..., 2] - plot[..., 0]) > 30).any(axis=0))
    west = np.flatnonzero(((plot[..., 0] - plot[..., 2]) > 50).any(axis=0))
    assert len(east) > 50 and len(west) > 50
    assert east.max() < west.min() < east.max() + 0.5 * len(east), "the two tiles must be neighbours"
