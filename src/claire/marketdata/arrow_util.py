"""Arrow constants made without ``pa.scalar``/``pa.array``: converting a Python value makes
pyarrow import pandas (a third of a second), which the loaders never need otherwise."""

from __future__ import annotations

import struct

import pyarrow as pa
import pyarrow.compute as pc

_FORMATS = {pa.int64(): "<q", pa.int32(): "<i", pa.float64(): "<d"}


def const(value: int | float | bool, type_: pa.DataType = pa.int64()) -> pa.Scalar:
    """An Arrow scalar of ``type_`` (int64, int32, float64 or bool)."""
    if pa.types.is_boolean(type_):
        return pa.Array.from_buffers(type_, 1, [None, pa.py_buffer(b"\x01" if value else b"\x00")])[0]
    return pa.Array.from_buffers(type_, 1, [None, pa.py_buffer(struct.pack(_FORMATS[type_], value))])[0]


def filled(value: int | float | bool, n: int, type_: pa.DataType = pa.int64()) -> pa.Array:
    """An array of ``n`` times ``value``."""
    return pc.fill_null(pa.nulls(n, type_), const(value, type_))
