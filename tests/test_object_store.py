"""Sources on object storage: a real S3-compatible server (moto) on 127.0.0.1, listed by s3fs, read by GDAL's /vsis3/.

The environment is what a user sets on every worker (docs/scaling.md): credentials, GDAL's AWS_S3_ENDPOINT,
AWS_HTTPS and AWS_VIRTUAL_HOSTING. A build from the bucket must give the corpus a build from a local copy gives.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rscurate import pipeline
from rscurate.discover import discover
from rscurate.manifest import Manifest, ManifestError, load_manifest
from rscurate.object_store import gdal_path, root_url
from rscurate.readers import SceneRef
from rscurate.units import ScenePlan
from rscurate.verify import verify
from tests.conftest import external_cluster, run_build, textured, write_manifest, write_tif

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto.server")
pytest.importorskip("s3fs")

BUCKET = "rs-corpus"
SECRET = "rscurate-test-secret-7f3a"  # must appear in no corpus file


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3() -> Iterator[object]:
    """A moto S3 server process on a free port (its own process: rasterio holds the GIL while GDAL opens a file,
    so a server thread in this process would deadlock the read), the environment pointing GDAL and s3fs at it,
    and a boto3 client."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("the moto server did not start") from None
                time.sleep(0.2)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET,
                               "AWS_REGION": "us-east-1", "AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO",
                               "AWS_VIRTUAL_HOSTING": "FALSE"}.items():
                mp.setenv(key, value)
            for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
                mp.delenv(key, raising=False)
            client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            yield client
    finally:
        server.terminate()
        server.wait(timeout=30)


def upload(client: object, folder: Path, prefix: str, **extra: str) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes(),
                          **extra)


def manifests(folder: Path, roots: dict[str, str]) -> Path:
    """Three sources (a real Landsat 7 band with its .aux.xml sidecar, real 4-band crops plus an exact copy, and
    whole PNG chips that keep their original bytes) over the given roots."""
    write_manifest(folder / "l7.yaml", f"""\
        name: l7
        license: public domain
        root: {roots['l7']}
        include: ["*.tif"]
        tile: {{size: 64}}
        """)
    write_manifest(folder / "rgbn.yaml", f"""\
        name: rgbn
        license: MIT
        root: {roots['rgbn']}
        include: ["**/*.tif"]
        tile: {{size: 128}}
        """)
    write_manifest(folder / "chips.yaml", f"""\
        name: chips
        license: CC0-1.0
        root: {roots['chips']}
        include: ["*.png"]
        bands: rgb
        tile: {{mode: whole}}
        """)
    return folder


@pytest.fixture(scope="module")
def mirrored(s3: object, sample_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Local files under DATA/, the same objects under s3://BUCKET/data/."""
    data = tmp_path_factory.mktemp("mirror") / "data"
    (data / "l7").mkdir(parents=True)
    for name in ("LE07_L2SP_225078_20110306_02_T1_B1.tif", "LE07_L2SP_225078_20110306_02_T1_B1.tif.aux.xml"):
        shutil.copy(sample_dir / name, data / "l7" / name)
    (data / "rgbn" / "b").mkdir(parents=True)
    shutil.copy(sample_dir / "rgbn_suba.tif", data / "rgbn" / "rgbn_suba.tif")
    shutil.copy(sample_dir / "rgbn_subb.tif", data / "rgbn" / "b" / "rgbn_subb.tif")
    shutil.copy(sample_dir / "rgbn_suba.tif", data / "rgbn" / "b" / "copy_of_a.tif")
    rng = np.random.default_rng(7)
    (data / "chips").mkdir()
    for k in range(3):
        Image.fromarray(np.moveaxis(textured(rng, 3, 96, 96, "uint8"), 0, -1)).save(data / "chips" / f"c{k}.png")
    upload(s3, data, "data")
    return data


def local_roots(data: Path) -> dict[str, str]:
    return {k: str(data / k) for k in ("l7", "rgbn", "chips")}


def s3_roots(prefix: str = "data") -> dict[str, str]:
    return {k: f"s3://{BUCKET}/{prefix}/{k}/" for k in ("l7", "rgbn", "chips")}


def corpus_tables(out: Path) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(out / f"{name}.parquet") for name in ("index", "excluded", "duplicates")}


def assert_same_corpus(a: Path, b: Path) -> None:
    """Index, ledgers and shard bytes equal; inputs.parquet differs only in the recorded file paths."""
    for name, table in corpus_tables(a).items():
        pd.testing.assert_frame_equal(table, corpus_tables(b)[name], obj=name)
    shards = sorted(p.name for p in (a / "shards").glob("*.parquet"))
    assert shards and shards == sorted(p.name for p in (b / "shards").glob("*.parquet"))
    for name in shards:
        assert (a / "shards" / name).read_bytes() == (b / "shards" / name).read_bytes(), name
    inputs_a, inputs_b = pd.read_parquet(a / "inputs.parquet"), pd.read_parquet(b / "inputs.parquet")
    pd.testing.assert_frame_equal(inputs_a.drop(columns="files"), inputs_b.drop(columns="files"))


def test_a_bucket_builds_the_corpus_of_its_local_copy(mirrored: Path, tmp_path: Path) -> None:
    """Fails on the old code, where an s3:// root was a local folder that does not exist (no source on disk)."""
    local = run_build([manifests(tmp_path / "local", local_roots(mirrored))], tmp_path / "from-disk")
    remote = run_build([manifests(tmp_path / "remote", s3_roots())], tmp_path / "from-s3")
    assert remote.kept == local.kept > 0 and remote.duplicates == local.duplicates > 0 and not remote.absent
    assert_same_corpus(tmp_path / "from-disk", tmp_path / "from-s3")
    files = pd.read_parquet(tmp_path / "from-s3" / "inputs.parquet")["files"].explode()
    assert files.str.startswith(f"s3://{BUCKET}/data/").all()
    chips = pd.read_parquet(tmp_path / "from-s3" / "index.parquet").query("source == 'chips'")
    assert (chips["encoding"] == "png").all()  # the object's own bytes, fetched whole
    for path in (tmp_path / "from-s3").rglob("*"):  # credentials live in the environment only
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    verify(tmp_path / "from-s3")


def test_objects_changed_after_discovery_or_corrupt_are_recorded(s3: object, rng: np.random.Generator,
                                                                 tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An object rewritten (same size, new ETag) or deleted after planning is `changed`; a corrupt one is
    `unreadable`; the build goes on. Fails on the old code (no remote root)."""
    data = tmp_path / "data"
    for name in ("stays.tif", "rewritten.tif", "gone.tif"):
        write_tif(data / name, textured(rng, 3, 128, 128))
    (data / "corrupt.tif").write_bytes((data / "stays.tif").read_bytes()[:3000])
    upload(s3, data, "changing")
    real_plan, endpoint = pipeline.plan_scenes, s3.meta.endpoint_url
    again = write_tif(tmp_path / "again.tif", textured(rng, 3, 128, 128))
    assert again.stat().st_size == (data / "rewritten.tif").stat().st_size

    def plan_then_touch(manifest: Manifest, scenes: list[SceneRef], work_dir: str) -> list[ScenePlan]:
        plans = real_plan(manifest, scenes, work_dir)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")  # (a task: no client captured)
        if any(s.scene == "gone.tif" for s in scenes):
            client.delete_object(Bucket=BUCKET, Key="changing/gone.tif")
        if any(s.scene == "rewritten.tif" for s in scenes):
            client.put_object(Bucket=BUCKET, Key="changing/rewritten.tif", Body=again.read_bytes())
        return plans

    monkeypatch.setattr(pipeline, "plan_scenes", plan_then_touch)
    manifest = write_manifest(tmp_path / "m.yaml", f"""\
        name: changing
        license: CC0-1.0
        root: /vsis3/{BUCKET}/changing
        include: ["*.tif"]
        tile: {{size: 64}}
        """)
    run_build([manifest], tmp_path / "corpus")
    excluded = pd.read_parquet(tmp_path / "corpus" / "excluded.parquet")
    reasons = excluded.groupby("scene")["reason"].agg(set).to_dict()
    assert reasons == {"gone.tif": {"changed"}, "rewritten.tif": {"changed"}, "corrupt.tif": {"unreadable"}}
    assert excluded.loc[excluded["scene"] == "gone.tif", "detail"].str.contains("vanished").all()
    assert excluded.loc[excluded["scene"] == "rewritten.tif", "detail"].str.contains("change token").all()
    assert set(pd.read_parquet(tmp_path / "corpus" / "index.parquet")["scene"]) == {"stays.tif"}
    verify(tmp_path / "corpus")


def test_missing_bucket_or_prefix_is_absent_with_its_url(s3: object, tmp_path: Path) -> None:
    for root in ("s3://no-such-bucket-here/x/", f"s3://{BUCKET}/no/such/prefix/"):
        m = load_manifest(write_manifest(tmp_path / "m.yaml", f"name: m\nlicense: x\nroot: {root}\n"
                                         "include: ['*.tif']\n"))
        assert discover(m).absent == f"m: {root} does not exist (bucket or prefix; get it from: see the manifest)"


@pytest.mark.parametrize(("root", "says"), [
    ("gs://bucket/scenes/", "needs the fsspec backend 'gcsfs', which is not installed"),
    ("s3://key:secret@bucket/scenes/", "credentials (user@, account@ or a ?token) do not belong in the manifest"),
    ("https://host/scenes/?sig=abc", "credentials (user@, account@ or a ?token) do not belong in the manifest"),
    ("ftp://host/scenes/", "scheme 'ftp' is not supported"),
    ("/vsizip/a.zip/", "only /vsis3/, /vsigs/, /vsiaz/ and /vsicurl/ are supported"),
])
def test_unusable_root_urls_fail_before_any_work(tmp_path: Path, root: str, says: str) -> None:
    """Fails on the old code, which took each of these as a local folder (and skipped it as absent)."""
    if root.startswith("gs://"):
        try:
            import gcsfs  # noqa: F401
            pytest.skip("gcsfs is installed here")
        except ImportError:
            pass
    path = write_manifest(tmp_path / "m.yaml", f"name: m\nlicense: x\nroot: '{root}'\ninclude: ['*.tif']\n")
    with pytest.raises(ManifestError, match="field 'root'") as err:
        load_manifest(path)
    assert says in str(err.value) and str(path) in str(err.value)


def test_side_files_must_be_local(tmp_path: Path) -> None:
    path = write_manifest(tmp_path / "m.yaml", "name: m\nlicense: x\nroot: data\ninclude: ['*.tif']\n"
                          "labels: {file: 's3://b/labels.gpkg', column: cls}\n")
    with pytest.raises(ManifestError, match=r"labels.file.*is a URL; side files are read from the local disk"):
        load_manifest(path)


def test_gdal_paths_and_root_forms() -> None:
    assert root_url("/vsis3/bucket/landsat") == "s3://bucket/landsat/"
    assert root_url("/vsicurl/https://host/a/") == "https://host/a/"
    assert root_url("relative/folder") is None and root_url("/abs/folder") is None
    assert gdal_path("s3://bucket/a/b.tif") == "/vsis3/bucket/a/b.tif"
    assert gdal_path("gs://bucket/b.tif") == "/vsigs/bucket/b.tif"
    assert gdal_path("az://container/b.tif") == "/vsiaz/container/b.tif"
    assert gdal_path("https://host/a/b.tif") == "/vsicurl/https://host/a/b.tif"
    assert gdal_path("/data/b.tif") == "/data/b.tif"


def test_npy_objects_are_read_through_a_local_copy_that_is_removed(s3: object, rng: np.random.Generator,
                                                                    tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """npy (a single image and a time stack, whose frames discovery counts from the header alone) gives the tiles
    of its local copy, and no temporary copy is left. Fails on the old code (no remote root)."""
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "one.npy", np.moveaxis(textured(rng, 4, 128, 128), 0, -1))
    np.save(data / "stack.npy", np.stack([np.moveaxis(textured(rng, 4, 128, 128), 0, -1) for _ in range(3)]))
    upload(s3, data, "arrays")
    body = "name: arrays\nlicense: CC0-1.0\nroot: {root}\ninclude: ['*.npy']\ntile: {{size: 64}}\n"
    local = write_manifest(tmp_path / "local" / "a.yaml", body.format(root=data))
    remote = write_manifest(tmp_path / "remote" / "a.yaml", body.format(root=f"s3://{BUCKET}/arrays"))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    run_build([local], tmp_path / "from-disk")
    run_build([remote], tmp_path / "from-s3")
    assert_same_corpus(tmp_path / "from-disk", tmp_path / "from-s3")
    assert len(pd.read_parquet(tmp_path / "from-s3" / "index.parquet")) == 4 * 4
    assert not list(temp.glob("rscurate-*"))


def test_a_worker_process_reads_the_bucket(mirrored: Path, tmp_path: Path) -> None:
    """A real worker process (LocalCluster, --workers 1) lists nothing but reads every object: the environment
    reaches it. Same corpus as the in-process build from disk."""
    run_build([manifests(tmp_path / "local", local_roots(mirrored))], tmp_path / "from-disk")
    run_build([manifests(tmp_path / "remote", s3_roots())], tmp_path / "from-s3", workers=1, processes=True)
    assert_same_corpus(tmp_path / "from-disk", tmp_path / "from-s3")


@pytest.mark.slow
def test_an_external_cluster_reads_the_bucket(mirrored: Path, tmp_path: Path) -> None:
    """`dask scheduler` and two `dask worker` processes started with the same environment (credentials, endpoint)
    build the bucket's corpus: the same corpus as the in-process build from disk."""
    run_build([manifests(tmp_path / "local", local_roots(mirrored))], tmp_path / "from-disk")
    with external_cluster(tmp_path, 2) as (address, _):
        run_build([manifests(tmp_path / "remote", s3_roots())], tmp_path / "from-s3", scheduler=address)
    assert_same_corpus(tmp_path / "from-disk", tmp_path / "from-s3")


def test_a_public_bucket_is_read_without_credentials(s3: object, mirrored: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects anyone may read, AWS_NO_SIGN_REQUEST=YES and no credentials anywhere (an open-data bucket): GDAL
    sends unsigned requests by itself, and the listing and stamps must too (s3fs `anon`); before, s3fs looked for
    credentials and the build failed."""
    upload(s3, mirrored, "public", ACL="public-read")
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_NO_SIGN_REQUEST", "YES")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    run_build([manifests(tmp_path / "local", local_roots(mirrored))], tmp_path / "from-disk")
    run_build([manifests(tmp_path / "remote", s3_roots("public"))], tmp_path / "from-s3")
    assert_same_corpus(tmp_path / "from-disk", tmp_path / "from-s3")
