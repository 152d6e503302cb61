"""Strict JSON for the corpus's JSON files: a statistic with no value (NaN, infinity) is written as null.

Python's json writes bare `NaN`/`Infinity`, which most JSON readers (JavaScript, jq, Go, DuckDB) refuse."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np


def _plain(obj: Any) -> Any:
    """`obj` with numpy scalars as Python numbers and non-finite floats as None, recursively."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """json.dumps that never writes NaN or Infinity (they become null) and fails on any other non-JSON value."""
    return json.dumps(_plain(obj), allow_nan=False, **kwargs)
