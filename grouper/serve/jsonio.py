"""Request and answer bodies as JSON: orjson (a C parser and writer) where it answers exactly as the
standard library would, the standard library otherwise.

`loads`: orjson first; whatever it refuses — malformed JSON, NaN / Infinity, lone surrogates, UTF-16,
nesting deeper than 1,024 — goes to `json.loads`, so the server reads (and refuses, with the same line
and column) what the standard library reads. One difference: orjson reads an integer beyond 64 bits
as a float (the standard library as an integer); the case reader (grouper.serve.cases) refuses both,
a number beyond 64 bits however it is written, so the answer is the same. `dumps`: orjson
(compact, UTF-8, the same shortest round-trip floats); an object it cannot write (a Decimal, an
integer beyond 64 bits) goes to `json.dumps` as Starlette's JSONResponse writes it.

`frame_json`: a result frame as the JSON array of its rows, byte for byte as Polars' write_json writes
it, by a compiled pass over the columns (ext/_cases.pyx json_rows) where it takes every column.
"""
from __future__ import annotations

import io
import json
import re

import numpy as np
import polars as pl
import pyarrow as pa

from ..engine.encode import Text, list_offsets
from ..engine.kernel import companion

try:
    import orjson
except ImportError:   # the `serve` extra installs it; without it the standard library does everything
    orjson = None


def loads(body: bytes):
    """The JSON value of a request body (raises what `json.loads` raises when the body is not JSON)."""
    if orjson is not None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return json.loads(body)


def dumps(value) -> bytes:
    """`value` as compact UTF-8 JSON bytes."""
    if orjson is not None:
        try:
            return orjson.dumps(value)
        except TypeError:
            pass
    return json.dumps(value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def frame_json(frame: pl.DataFrame) -> bytes:
    """`frame.write_json()` as bytes: the rows as JSON objects, in one compiled pass over the columns'
    buffers (text, numbers rendered once per distinct value by Polars itself, lists of text, nulls);
    by Polars when a column is of another kind (or the compiled module is not built)."""
    columns = _row_columns(frame) if _compiled is not None else None
    if columns is None:
        out = io.BytesIO()
        frame.write_json(out)
        return out.getvalue()
    return _compiled.json_rows(columns, frame.height)


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NO_FRAGMENTS = (b"", np.zeros(1, np.int64))


def _row_columns(frame: pl.DataFrame) -> list | None:
    columns = []
    for k, (name, dtype) in enumerate(frame.schema.items()):
        if not _PLAIN_NAME.fullmatch(name):
            return None
        key = b'%s"%s":' % (b"," if k else b"", name.encode())
        series = frame[name]
        if dtype == pl.String:
            columns.append((key, 0, Text.of(series).kernel_args(), None))
        elif dtype == pl.Null:
            columns.append((key, 1, np.full(frame.height, -1, np.int32), _NO_FRAGMENTS))
        elif dtype.is_float():
            rendered = _rendered(series)
            if rendered is None:
                return None
            columns.append((key, 1, *rendered))
        elif dtype == pl.List(pl.String) and not series.null_count():
            array = series.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
            if isinstance(array, pa.ChunkedArray):
                array = array.combine_chunks()
            offsets = list_offsets(array)
            items = array.values.slice(offsets[0], offsets[-1] - offsets[0])
            items = items if items.type == pa.string_view() else items.cast(pa.string_view())
            columns.append((key, 2, Text(items).kernel_args(), np.ascontiguousarray(offsets - offsets[0])))
        else:
            return None
    return columns


def _rendered(series: pl.Series) -> tuple[np.ndarray, tuple[bytes, np.ndarray]] | None:
    """(fragment of each row, -1 for null; (fragments joined, offsets)) of a float column: each
    distinct number written once by Polars' write_json, so that it reads exactly as Polars writes it.
    None for other numbers, and for a column holding zero (-0.0 and 0.0 are equal, written apart) or NaN."""
    values = series.cast(pl.Float64).to_numpy()   # null → NaN
    null = series.is_null().to_numpy()
    given = values[~null]
    if np.isnan(given).any() or (given == 0).any():
        return None
    distinct = np.unique(given)   # sorted
    written = pl.DataFrame({"v": pl.Series(distinct).cast(series.dtype)}).write_json().encode()   # [{"v":1.5},...]
    texts = written[len(b'[{"v":'):-len(b"}]")].split(b'},{"v":') if len(distinct) else []
    if len(texts) != len(distinct):
        return None
    index = np.searchsorted(distinct, values).astype(np.int32)
    index[null] = -1
    offsets = np.zeros(len(texts) + 1, np.int64)
    np.cumsum([len(t) for t in texts], out=offsets[1:])
    return np.ascontiguousarray(index), (b"".join(texts), offsets)


_compiled = companion("_cases", None)   # ext/_cases.pyx (None: not built, or the Python kernels chosen)


__all__ = ["dumps", "frame_json", "loads"]
