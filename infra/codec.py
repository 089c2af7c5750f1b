"""Stored intermediate values as bytes that cannot run code when read back (no pickle).

A value is an ``.npz`` archive, read with ``allow_pickle=False``: each numpy array (any dtype
but ``object``) and numpy scalar is one entry, saved with its exact dtype, shape and bytes;
the structure around them is a JSON document in the entry ``__structure__``. Supported: None,
bool, int, float (NaN, infinities and -0.0 included), str, list, tuple, dict with str keys,
numpy arrays and scalars, and dataclasses registered with ``@stored_value``. A dataclass is
rebuilt only from that registry (never imported by a name found in the file), by calling its
constructor with the stored fields. Round trips are exact: same types, same bits.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any, TypeVar

import numpy as np

FORMAT, VERSION = "sharpmaml-stored-value", 1
STRUCTURE = "__structure__"
STORED_TYPES: dict[str, type] = {}

T = TypeVar("T", bound=type)


class UnreadableValue(ValueError):
    """Stored bytes that are not a value this module wrote (corrupt, truncated or foreign)."""


def stored_value(cls: T) -> T:
    """Class decorator: allow instances of this dataclass in stored values."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__qualname__}: only dataclasses can be stored values")
    STORED_TYPES[_type_name(cls)] = cls
    return cls


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def encode(value: Any) -> bytes:
    """The bytes of ``value``; TypeError naming the first part of it that cannot be stored."""
    arrays: dict[str, np.ndarray] = {}

    def add_array(array: np.ndarray) -> str:
        if array.dtype.hasobject:
            raise TypeError("numpy arrays of dtype object cannot be stored (they need pickle)")
        name = f"a{len(arrays)}"
        arrays[name] = array
        return name

    def walk(v: Any) -> Any:
        if v is None or type(v) in (bool, int, float, str):
            return v
        if isinstance(v, np.ndarray):
            return {"array": add_array(v)}
        if isinstance(v, np.generic):
            return {"scalar": add_array(np.asarray(v))}
        if type(v) in (list, tuple):
            return {type(v).__name__: [walk(x) for x in v]}
        if type(v) is dict:
            if not all(type(k) is str for k in v):
                raise TypeError(f"dict keys must be str to be stored; got {sorted(map(repr, v))[:3]}")
            return {"dict": {k: walk(x) for k, x in v.items()}}
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            name = _type_name(type(v))
            if STORED_TYPES.get(name) is not type(v):
                raise TypeError(f"{name}: register the dataclass with @infra.codec.stored_value to store it")
            fields = {f.name: walk(getattr(v, f.name)) for f in dataclasses.fields(v)}
            return {"dataclass": name, "fields": fields}
        raise TypeError(f"a value of type {type(v).__qualname__} cannot be stored")

    document = {"format": FORMAT, "version": VERSION, "value": walk(value)}
    text = json.dumps(document, allow_nan=True).encode("utf-8")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{STRUCTURE: np.frombuffer(text, dtype=np.uint8)})
    return buffer.getvalue()


def decode(data: bytes) -> Any:
    """The value ``encode`` stored in ``data``; UnreadableValue if ``data`` is anything else."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
        document = json.loads(arrays.pop(STRUCTURE).tobytes())
    except Exception as exc:  # zipfile, numpy and json raise many types for foreign bytes
        raise UnreadableValue(f"not a stored value ({type(exc).__name__}: {exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise UnreadableValue("not a stored value (no format marker)")
    if document.get("version") != VERSION:
        raise UnreadableValue(f"stored value format version {document.get('version')!r}; expected {VERSION}")

    def walk(v: Any) -> Any:
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is not dict or len(v) not in (1, 2):
            raise UnreadableValue(f"unexpected node {str(v)[:60]}")
        if "array" in v:
            return arrays[v["array"]]
        if "scalar" in v:
            return arrays[v["scalar"]][()]
        if "list" in v:
            return [walk(x) for x in v["list"]]
        if "tuple" in v:
            return tuple(walk(x) for x in v["tuple"])
        if "dict" in v:
            return {k: walk(x) for k, x in v["dict"].items()}
        if "dataclass" in v:
            cls = STORED_TYPES.get(v["dataclass"])
            if cls is None:
                raise UnreadableValue(f"{v['dataclass']} is not a registered stored type")
            return cls(**{k: walk(x) for k, x in v["fields"].items()})
        raise UnreadableValue(f"unexpected node {str(v)[:60]}")

    try:
        return walk(document["value"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise UnreadableValue(f"malformed stored value ({type(exc).__name__}: {exc})") from None
