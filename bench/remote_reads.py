"""Bytes a build fetches from object storage to plan a COG and read one tile, against the object's size.

A moto S3 server process on 127.0.0.1 holds one generated COG (SIDE x SIDE, 3 bands uint16, deflate, with
overviews). A child process discovers it through s3fs, plans it as a build does (header, overview-based scene
signature) and reads one 256 px window through /vsis3/; GDAL's network statistics (CPL_VSIL_SHOW_NETWORK_STATS)
say what travelled. Needs the dev extra (moto[server], s3fs).

    .venv/bin/python bench/remote_reads.py --side 4096
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _child() -> None:
    import rasterio

    from rscurate.discover import discover
    from rscurate.manifest import Manifest
    from rscurate.readers import open_scene
    from rscurate.units import GDAL_ENV, plan_scenes

    manifest = Manifest.model_validate({"name": "cog", "license": "x", "root": "s3://bench/", "include": ["*.tif"]})
    ref = discover(manifest).scenes[0]
    t0 = time.perf_counter()
    with rasterio.Env(**GDAL_ENV, CPL_VSIL_SHOW_NETWORK_STATS="YES"):
        plan = plan_scenes(manifest, [ref])[0]
        reader = open_scene(ref, [], None)
        reader.read(1024, 1024, 256, 256)
        reader.close()
    print(json.dumps({"windows": len(plan.windows), "signed_from_overviews": plan.signature is not None,
                      "seconds": round(time.perf_counter() - t0, 2)}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=4096)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return _child()
    import boto3
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from tests.conftest import textured

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
               "AWS_S3_ENDPOINT": f"127.0.0.1:{port}", "AWS_HTTPS": "NO", "AWS_VIRTUAL_HOSTING": "FALSE"}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "cog.tif"
            with rasterio.open(path, "w", driver="COG", width=args.side, height=args.side, count=3, dtype="uint16",
                               crs="EPSG:32633", transform=from_origin(491520, 4014080, 10, 10),
                               compress="deflate") as ds:
                ds.write(textured(np.random.default_rng(0), 3, args.side, args.side))
            client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                                  aws_access_key_id="bench", aws_secret_access_key="bench")
            client.create_bucket(Bucket="bench")
            client.put_object(Bucket="bench", Key="cog.tif", Body=path.read_bytes())
            size = path.stat().st_size
        out = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                             check=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = out.stdout + out.stderr  # GDAL prints its statistics at exit, after the child's result line
    result = json.loads(next(line for line in text.splitlines() if line.startswith('{"windows"')))
    report = text[text.index("Network statistics:"):]
    stats = json.loads(report[report.index("{"):])
    got = stats["methods"]["GET"]
    print(f"COG {args.side}x{args.side}x3 uint16: object {size / 2**20:.1f} MiB; planned {result['windows']} windows "
          f"(scene signed from overviews: {result['signed_from_overviews']}) and read one 256 px window in "
          f"{result['seconds']} s: {got['downloaded_bytes'] / 2**20:.1f} MiB in {got['count']} GETs "
          f"({got['downloaded_bytes'] / size:.1%} of the object)")


if __name__ == "__main__":
    main()
