"""The compiled-plan cache: entries that reading can never turn into running code.

An entry is a NumPy `.npz` file (a zip of `.npy` arrays) read with `allow_pickle=False`: the plan's
arrays as they are, and one `meta` array holding UTF-8 JSON for everything else (names, code lists,
the AST, diagnostics). The JSON names the classes to rebuild, and only dataclasses the caller
allows (e.g. those of `grouper.lang.ast`, `grouper.engine.ir`) are built, from their fields, by
their own constructors; anything else in an entry (a pickle, an object array, an unknown class or
a malformed value) makes it damaged, and a damaged entry is rebuilt. Unlike a pickle, an entry
written by someone else can therefore not run code as the user.

It could still give other grouping results, so an entry is also used only when it is a regular
file (not a link, a FIFO or a device: such an entry is never even read, so it cannot hang a command)
owned by the current user and not writable by group or others (as ssh treats its files), and
when the key recorded inside it is the key it is looked up under (a renamed or linked entry of
another pack is not used). Entries are written with mode 0600, whole (temporary file, then rename).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import stat
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import TypeVar

import numpy as np

ENTRY_SUFFIX = ".npz"
# Bump when the encoding below changes (the engine fingerprint in each key covers the classes).
FORMAT = 1
_NUMBER_KINDS = "biuf"  # numpy dtypes an entry may hold: bool, integers, floats (never objects)
T = TypeVar("T")


def cache_dir() -> Path:
    """`GROUPER_CACHE_DIR`, else `$XDG_CACHE_HOME/grouper`, else `~/.cache/grouper`."""
    if os.environ.get("GROUPER_CACHE_DIR"):
        return Path(os.environ["GROUPER_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "grouper"


class Classes:
    """The dataclasses an entry may name: every dataclass defined in the given modules, plus extras."""

    def __init__(self, modules: Iterable[ModuleType] = (), extra: Iterable[type] = ()):
        found = [obj for module in modules for obj in vars(module).values()
                 if isinstance(obj, type) and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__]
        self.by_name: dict[str, tuple[type, int]] = {}   # name → (class, number of fields)
        for cls in [*found, *extra]:
            fields = dataclasses.fields(cls)
            if any(not f.init for f in fields):
                raise TypeError(f"{cls.__qualname__} has a field outside __init__; it cannot be cached")
            self.by_name[f"{cls.__module__}.{cls.__qualname__}"] = cls, len(fields)
        self.names = {cls: name for name, (cls, _) in self.by_name.items()}


def cache_enabled(cache: bool | None) -> bool:
    """A loader's `cache` argument: None means on unless GROUPER_NO_CACHE is set."""
    return not os.environ.get("GROUPER_NO_CACHE") if cache is None else cache


def cached(key: str, classes: Classes, kind: type[T], build: Callable[[], T]) -> T:
    """The `kind` value cached under `key` when a usable entry holds one; else `build()`, cached."""
    entry = cache_dir() / f"{key}{ENTRY_SUFFIX}"
    value = read_entry(entry, key, classes)
    if isinstance(value, kind):
        return value
    value = build()
    write_entry(entry, key, value, classes)
    return value


class Damaged(Exception):
    """The entry is not one this code wrote (or not for this key): rebuild it."""


def _encode(value, classes: Classes, arrays: list[np.ndarray]):
    """JSON-ready form: every JSON object is one tagged value, so decoding never guesses."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_encode(v, classes, arrays) for v in value]
    if isinstance(value, tuple):
        return {"t": [_encode(v, classes, arrays) for v in value]}
    if isinstance(value, frozenset):
        return {"fs": [_encode(v, classes, arrays) for v in value]}
    if isinstance(value, dict):   # keys, then values: two flat lists read faster than one pair per item
        return {"m": [_encode(list(value), classes, arrays), _encode(list(value.values()), classes, arrays)]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMBER_KINDS:
            raise TypeError(f"cannot cache an array of {value.dtype}")
        arrays.append(value)
        return {"a": len(arrays) - 1}
    if isinstance(value, np.generic) and value.dtype.kind in _NUMBER_KINDS:
        return {"n": [value.dtype.str, value.item()]}
    if isinstance(value, Path):
        return {"p": str(value)}
    name = classes.names.get(type(value))
    if name is None:
        raise TypeError(f"cannot cache a {type(value).__qualname__}")
    return {"c": name, "f": [_encode(getattr(value, f.name), classes, arrays) for f in dataclasses.fields(value)]}


def _decoder(classes: Classes, arrays):
    by_name = classes.by_name

    def decode(obj: dict):
        name = obj.get("c")
        if name is not None:                          # the most frequent: a dataclass
            cls, n_fields = by_name.get(name, (None, -1))
            values = obj.get("f")
            if cls is None or len(obj) != 2 or type(values) is not list or len(values) != n_fields:
                raise Damaged(f"class {name!r} is not allowed here, or not with these fields")
            return cls(*values)
        if len(obj) == 1:
            value = obj.get("t")                      # the next most frequent: a tuple
            if type(value) is list:
                return tuple(value)
            (tag, value), = obj.items()
            if tag == "fs" and type(value) is list:
                return frozenset(value)
            if tag == "m" and type(value) is list and len(value) == 2 and len(value[0]) == len(value[1]):
                return dict(zip(*value))
            if tag == "a" and type(value) is int:
                array = arrays[f"a{value}"]
                if array.dtype.kind not in _NUMBER_KINDS:
                    raise Damaged(f"array of {array.dtype}")
                return array
            if tag == "n" and type(value) is list and len(value) == 2:
                dtype = np.dtype(value[0])
                if dtype.kind not in _NUMBER_KINDS:
                    raise Damaged(f"number of {dtype}")
                return dtype.type(value[1])
            if tag == "p" and type(value) is str:
                return Path(value)
        raise Damaged("unknown value")
    return decode


def _trusted(st: os.stat_result) -> bool:
    """A regular file of the current user that nobody else may write."""
    if not stat.S_ISREG(st.st_mode):
        return False
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        return False
    return True


def read_entry(path: Path, key: str, classes: Classes):
    """The value cached at `path` for `key`, or None when there is none or it may not be used
    (damaged, foreign, writable by others, or recorded for another key)."""
    try:
        # Opened without following a link and without blocking (a FIFO or a device planted in the
        # cache folder would otherwise hang here), then checked on the open file itself (no race).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            if not _trusted(os.fstat(fh.fileno())):
                return None
            with np.load(fh, allow_pickle=False) as arrays:
                meta = json.loads(bytes(arrays["meta"]).decode("utf-8"), object_hook=_decoder(classes, arrays))
        if not (isinstance(meta, list) and len(meta) == 3 and meta[0] == FORMAT and meta[1] == key):
            raise Damaged("another format or key")
        return meta[2]
    except Exception:  # noqa: BLE001 - no entry, or any damage to it (zip, npy, JSON, constructors): rebuild
        return None


def _member(archive: zipfile.ZipFile, name: str, array: np.ndarray) -> None:
    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))   # same plan, same bytes
    with archive.open(info, "w", force_zip64=True) as fh:
        np.lib.format.write_array(fh, np.ascontiguousarray(array), allow_pickle=False)


def write_entry(path: Path, key: str, value, classes: Classes) -> bool:
    """Cache `value` at `path` for `key`; False when it could not be (a read-only or unusable cache
    location, or a value holding something the cache cannot state): that only costs speed."""
    arrays: list[np.ndarray] = []
    try:
        meta = json.dumps([FORMAT, key, _encode(value, classes, arrays)], ensure_ascii=False, separators=(",", ":"))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, partial = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial", dir=path.parent)  # mode 0600
    except (OSError, TypeError, ValueError):
        return False
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as archive:
            _member(archive, "meta", np.frombuffer(meta.encode("utf-8"), np.uint8))
            for i, array in enumerate(arrays):
                _member(archive, f"a{i}", array)
        os.replace(partial, path)  # atomic: concurrent runs never read half an entry
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        if isinstance(exc, OSError):
            return False
        raise
    return True
