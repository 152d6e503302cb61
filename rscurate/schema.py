"""Arrow schemas of the corpus tables: the output contract other tools read (docs/corpus-format.md)."""

from __future__ import annotations

import pyarrow as pa

# Where a tile or item came from: shared by index, excluded and duplicates.
PROVENANCE = [
    pa.field("source", pa.string()),
    pa.field("scene", pa.string()),  # input path relative to the manifest root ("a|b|c" for band-per-file scenes)
    pa.field("x", pa.int64()),
    pa.field("y", pa.int64()),
    pa.field("width", pa.int64()),
    pa.field("height", pa.int64()),
]

# Everything known about a kept tile except where it is stored and its bytes.
TILE_META = [
    pa.field("id", pa.string()),
    *PROVENANCE,
    pa.field("crs", pa.string()),
    pa.field("minx", pa.float64()),
    pa.field("miny", pa.float64()),
    pa.field("maxx", pa.float64()),
    pa.field("maxy", pa.float64()),
    # swaths without a CRS (MODIS L1B): the window's geolocation bounds in degrees; null elsewhere
    pa.field("lon_min", pa.float64()),
    pa.field("lat_min", pa.float64()),
    pa.field("lon_max", pa.float64()),
    pa.field("lat_max", pa.float64()),
    pa.field("gsd_m", pa.float64()),
    pa.field("bands", pa.list_(pa.string())),
    pa.field("wavelengths_um", pa.list_(pa.float64())),
    pa.field("dtype", pa.string()),
    pa.field("channels", pa.int64()),
    pa.field("encoding", pa.string()),
    pa.field("sha256", pa.string()),  # of the decoded array: dtype, shape and C-order bytes
    pa.field("phash", pa.uint64()),
    pa.field("texture", pa.float64()),  # std of the 32x32 grey view pHash sees; flat tiles skip near-dedup
    pa.field("nodata", pa.float64()),
    pa.field("nodata_fraction", pa.float64()),
    pa.field("valid_pixels", pa.int64()),
    # per-band statistics of the tile's valid pixels, in band order
    pa.field("band_mean", pa.list_(pa.float64())),
    pa.field("band_std", pa.list_(pa.float64())),
    pa.field("band_min", pa.list_(pa.float64())),
    pa.field("band_max", pa.list_(pa.float64())),
    # per band, GDAL's convention: physical = stored * scale + offset; (1, 0) when neither file nor manifest says
    pa.field("band_scale", pa.list_(pa.float64())),
    pa.field("band_offset", pa.list_(pa.float64())),
    pa.field("label", pa.string()),
]

# valid_mask: npy.zst of a (1, H, W) bool array (True = data) where nodata cannot express validity, else null
SHARD = pa.schema([*TILE_META, pa.field("image", pa.binary()), pa.field("valid_mask", pa.binary())])
INDEX = pa.schema([*TILE_META, pa.field("shard", pa.string()), pa.field("row", pa.int64())])
EXCLUDED = pa.schema([*PROVENANCE, pa.field("reason", pa.string()), pa.field("detail", pa.string())])
DUPLICATES = pa.schema(
    [
        pa.field("id", pa.string()),
        *PROVENANCE,
        pa.field("kept_id", pa.string()),
        pa.field("kept_source", pa.string()),
        pa.field("kept_scene", pa.string()),
        pa.field("kind", pa.string()),
        pa.field("distance", pa.int64()),
    ]
)

EXCLUDE_REASONS = ("nodata", "low_information", "cloud", "too_small", "too_large", "eval_split", "eval_leak",
                   "unreadable", "bad_georeference", "changed", "night")
