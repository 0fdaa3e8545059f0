"""Request and answer bodies as JSON: orjson (a C parser and writer) where it answers exactly as the
standard library would, the standard library otherwise.

`loads`: orjson first; whatever it refuses — malformed JSON, NaN / Infinity, lone surrogates, UTF-16,
nesting deeper than 1,024 — goes to `json.loads`, so the server reads (and refuses, with the same line
and column) what the standard library reads. One difference: orjson reads an integer beyond 64 bits
as a float (the standard library as an integer); the case reader (grouper.serve.cases) refuses both,
a number beyond 64 bits however it is written, so the answer is the same. `dumps`: orjson
(compact, UTF-8, the same shortest round-trip floats); an object it cannot write (a Decimal, an
integer beyond 64 bits) goes to `json.dumps` as Starlette's JSONResponse writes it.
"""
from __future__ import annotations

import json

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


__all__ = ["dumps", "loads"]
