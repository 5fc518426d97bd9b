"""Turning the Python values callers hand the store into portable JSON.

Metrics and configs come from numpy, pydantic and pathlib as often as from plain Python.
They are converted here, once, for both backends: numpy scalars and arrays become numbers and
lists, paths become strings, datetimes ISO 8601, enums their value, sets sorted lists.
Non-finite floats (NaN, inf) become ``null``: JSON has no NaN, PostgreSQL's JSONB rejects
it, and a metric that is not a number is better read as "undefined" than as an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from datetime import date, datetime
from enum import Enum
from pathlib import PurePath
from typing import Any


def to_json_value(value: Any) -> Any:
    """``value`` as plain JSON types (dict, list, str, int, float, bool, None)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, Enum):
        return to_json_value(value.value)
    if isinstance(value, Mapping):
        return {str(key): to_json_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_value(item) for item in value]
    if isinstance(value, (set, frozenset)):
        return sorted((to_json_value(item) for item in value), key=repr)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_value(dataclasses.asdict(value))
    if hasattr(value, "model_dump"):  # pydantic
        return to_json_value(value.model_dump(mode="json"))
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy
        return to_json_value(value.tolist())
    raise TypeError(f"cannot store a {type(value).__name__} as JSON: {value!r:.80}")


def dumps_json(value: Any) -> str:
    """The JSON text the store writes (the engines' ``json_serializer``)."""
    return json.dumps(to_json_value(value), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """One JSON text per value: sorted keys, no spaces. What hashes are taken over."""
    return json.dumps(to_json_value(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
