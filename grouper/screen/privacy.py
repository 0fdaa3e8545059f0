"""Keyed hashing of personal fields (patient id, phone, address): no output holds them in clear.

A value becomes the first 16 hex digits of HMAC-SHA256(key, value) (64 bits: collisions are
negligible for any region's patients). The same key gives the same hash, so findings of two runs
can be linked; without the key a hash cannot be turned back into a phone number by trying all
numbers. The key comes from a file the user supplies (`--key FILE`: its bytes as they are), or is
generated (32 random bytes) and written beside the outputs as `screen.key` (readable by its owner
only): keep it to link later runs, delete it to make the hashes unlinkable.
"""
from __future__ import annotations

import hashlib
import hmac
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
    """HMAC-SHA256 (first 16 hex digits) of each value; null stays null. Each distinct value is hashed once."""
    distinct = values.drop_nulls().unique()
    hashed = [hmac.new(key, str(v).encode("utf-8"), hashlib.sha256).hexdigest()[:HEX_DIGITS] for v in distinct.to_list()]
    return values.replace_strict(distinct, pl.Series(hashed, dtype=pl.String), default=None, return_dtype=pl.String)
