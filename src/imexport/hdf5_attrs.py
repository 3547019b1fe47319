"""HDF5 attributes that keep numbers and lists usable (not their ``str()``): written by
the HDF5 sink and the processing history, read by the HDF5 source and ``verify``.

Numbers, booleans and uniform numeric lists are stored natively; None values and
anything else (dicts, mixed lists) are listed in bookkeeping attributes and stored as
JSON text, so :func:`read_attrs` gives back what :func:`write_attrs` was given.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

NONE_KEYS = "_none_keys"
JSON_KEYS = "_json_keys"
BOOKKEEPING_KEYS = (NONE_KEYS, JSON_KEYS)
INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)
LEAF_DTYPES = {bool: np.bool_, int: np.int64, float: np.float64}


def leaf_kind(value: Any) -> type | None:
    # bool is tested first because it is a subclass of int
    for kind in LEAF_DTYPES:
        if isinstance(value, kind):
            return kind
    return None


def nested_shape(value: Any, kinds: set[type]) -> tuple[int, ...] | None:
    """Shape of a rectangular nest of lists of numbers (collecting leaf kinds), else None."""
    if isinstance(value, (list, tuple)):
        shapes = {nested_shape(item, kinds) for item in value}
        if None in shapes or len(shapes) > 1:
            return None
        return (len(value), *(shapes.pop() if shapes else ()))
    kind = leaf_kind(value)
    if kind is None:
        return None
    kinds.add(kind)
    return ()


def numeric_array(values: Sequence[Any]) -> np.ndarray | None:
    """An array for a rectangular list of one kind of number, else None.

    Mixing kinds (e.g. ints with floats) is refused so read-back gives the same types.
    """
    kinds: set[type] = set()
    if nested_shape(values, kinds) is None or len(kinds) > 1:
        return None
    dtype = LEAF_DTYPES[kinds.pop()] if kinds else np.float64
    try:
        return np.array(values, dtype=dtype)
    except OverflowError:  # ints beyond int64
        return None


def native_attr_value(value: Any) -> Any | None:
    """The value as HDF5 stores it natively, or None when it needs JSON."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int) and not isinstance(value, bool):
        return value if INT64_MIN <= value <= INT64_MAX else None
    if isinstance(value, (bool, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return numeric_array(value)
    return None


def string_list_attr(h5obj: h5py.HLObject, name: str) -> list[str]:
    return [str(item) for item in h5obj.attrs.get(name, [])]


def store_string_list_attr(h5obj: h5py.HLObject, name: str, items: list[str]) -> None:
    if items:
        h5obj.attrs[name] = np.array(items, dtype=h5py.string_dtype())
    elif name in h5obj.attrs:
        del h5obj.attrs[name]


def write_attrs(h5obj: h5py.HLObject, mapping: Mapping[str, Any]) -> None:
    """Store ``mapping`` as attributes of ``h5obj`` so :func:`read_attrs` restores it.

    * bool, int, float, str: native scalars.
    * rectangular lists/tuples of one kind of number (any depth): numeric arrays.
    * None: no attribute; the key is listed in the ``_none_keys`` string array.
    * anything else (dicts, ragged, mixed or string lists): JSON text, the key listed
      in ``_json_keys``.
    """
    none_keys = string_list_attr(h5obj, NONE_KEYS)
    json_keys = string_list_attr(h5obj, JSON_KEYS)
    for key, value in mapping.items():
        if key in BOOKKEEPING_KEYS:
            raise ValueError(f"attribute name {key!r} is reserved for the encoding")
        none_keys = [k for k in none_keys if k != key]
        json_keys = [k for k in json_keys if k != key]
        if key in h5obj.attrs:
            del h5obj.attrs[key]
        if value is None:
            none_keys.append(key)
            continue
        native = native_attr_value(value)
        if native is None:
            json_keys.append(key)
            native = json.dumps(value)
        h5obj.attrs[key] = native
    store_string_list_attr(h5obj, NONE_KEYS, none_keys)
    store_string_list_attr(h5obj, JSON_KEYS, json_keys)


def python_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


def read_attrs(h5obj: h5py.HLObject) -> dict[str, Any]:
    """Invert :func:`write_attrs`: arrays become lists, JSON text objects, None comes back."""
    json_keys = set(string_list_attr(h5obj, JSON_KEYS))
    decoded: dict[str, Any] = {}
    for key, value in h5obj.attrs.items():
        if key in BOOKKEEPING_KEYS:
            continue
        decoded[key] = json.loads(value) if key in json_keys else python_value(value)
    decoded.update(dict.fromkeys(string_list_attr(h5obj, NONE_KEYS)))
    return decoded
