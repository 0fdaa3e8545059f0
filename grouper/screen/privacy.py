"""Keyed hashing of personal fields (patient id, phone, address): no output holds them in clear.

A value becomes 16 hex digits: keyed BLAKE2b with an 8-byte digest (RFC 7693's keyed mode, a MAC
like HMAC, and several times faster to compute per value in Python; 64 bits: collisions are negligible
for any region's patients; a key longer than 64 bytes is first hashed to 64). The same key gives the
same hash, so findings of two runs can be linked; without the key a hash cannot be turned back into a
phone number by trying all numbers. The key comes from a file the user supplies (`--key FILE`: its bytes as they are), or is
generated (32 random bytes) and written beside the outputs as `screen.key` (readable by its owner
only): keep it to link later runs, delete it to make the hashes unlinkable.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

import polars as pl

from ..errors import InputError

KEY_FILE = "screen.key"
KEY_BYTES = 32
HEX_DIGITS = 16


def read_key(path: str | Path) -> bytes:
    try:
        key = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read the hashing key {path}: {exc.strerror or exc}") from None
    if len(key) < 16:
        raise InputError(f"the hashing key {path} is too short ({len(key)} bytes; at least 16, e.g. 32 random bytes)")
    return key


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def write_key(key: bytes, folder: Path) -> Path:
    path = folder / KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key)
    return path


def keyed_hash(values: pl.Series, key: bytes) -> pl.Series:
    """The keyed hash (16 hex digits) of each value's text; null stays null. Each distinct value is hashed once."""
    if len(key) > 64:  # BLAKE2b takes a key of at most 64 bytes
        key = hashlib.blake2b(key).digest()
    distinct = values.drop_nulls().unique()
    blake2b = hashlib.blake2b
    hashed = [blake2b(v.encode("utf-8"), key=key, digest_size=HEX_DIGITS // 2).hexdigest()
              for v in distinct.cast(pl.String).to_list()]
    return values.replace_strict(distinct, pl.Series(hashed, dtype=pl.String), default=None, return_dtype=pl.String)
