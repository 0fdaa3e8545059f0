"""The compiled-plan cache: entries that reading can never turn into running code.

An entry is a NumPy `.npz` file (a zip of `.npy` arrays) read with `allow_pickle=False`: the plan's
arrays as they are, and one `meta` array holding UTF-8 JSON for everything else (names, code lists,
the AST, diagnostics). The JSON names the classes to rebuild, and only dataclasses the caller
allows (e.g. those of `grouper.lang.ast`, `grouper.engine.ir`) are built, from their fields, by
their own constructors; anything else in an entry (a pickle, an object array, an unknown class or
a malformed value) makes it damaged, and a damaged entry is rebuilt. Unlike a pickle, an entry
written by someone else can therefore not run code as the user.

Two forms keep reading an entry cheap where a command only groups (issue 20: the plan is loaded
before any case is): a list of many strings is stored as one array of their UTF-8 text, joined by
NUL bytes (one decode and one split instead of a JSON string each), and a value wrapped in `Later`
(a scheme's AST, which grouping never reads) is stored as a JSON member of its own, decoded, with
its own allowed classes, only when first asked for (`Later.get()`).

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
FORMAT = 2   # 2: packed string lists, Later members
PACKED_STRINGS = 16   # a list of at least this many strings (none holding NUL) is stored packed
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

    def __or__(self, other: "Classes") -> "Classes":
        both = Classes()
        both.by_name = {**self.by_name, **other.by_name}
        both.names = {**self.names, **other.names}
        return both


def cache_enabled(cache: bool | None) -> bool:
    """A loader's `cache` argument: None means on unless GROUPER_NO_CACHE is set."""
    return not os.environ.get("GROUPER_NO_CACHE") if cache is None else cache


def cached(key: str, classes: Classes, kind: type[T], build: Callable[[], T], *,
           later: Callable[[], Classes] | None = None) -> T:
    """The `kind` value cached under `key` when a usable entry holds one; else `build()`, cached
    (`classes` must then name the Later parts' classes too; `later()` gives them when reading)."""
    entry = cache_dir() / f"{key}{ENTRY_SUFFIX}"
    value = read_entry(entry, key, classes, later)
    if isinstance(value, kind):
        return value
    value = build()
    write_entry(entry, key, value, classes if later is None else classes | later())
    return value


class Damaged(Exception):
    """The entry is not one this code wrote (or not for this key): rebuild it."""


class Later:
    """A part of a cached value written as a member of its own and decoded when first asked for:
    `Later(value)` when writing; read back, `get()` decodes it (with the classes the reader's
    `later` gives; `Damaged` if the member is not one this code wrote). It may hold no arrays."""

    def __init__(self, value=None, *, decode: Callable[[], object] | None = None):
        self._value, self._decode = value, decode

    def get(self):
        if self._decode is not None:
            self._value, self._decode = self._decode(), None
        return self._value


def _packable(value: list) -> bool:
    return (len(value) >= PACKED_STRINGS and all(type(v) is str for v in value)
            and not any("\0" in v for v in value))


def _encode(value, classes: Classes, arrays: list[np.ndarray] | None, later: list[str] | None = None):
    """JSON-ready form: every JSON object is one tagged value, so decoding never guesses. `arrays`:
    where arrays (and packed string lists) go, None in a Later part (which holds none); `later`:
    the JSON texts of the Later parts met."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        if arrays is not None and _packable(value):
            arrays.append(np.frombuffer("\0".join(value).encode("utf-8"), np.uint8))
            return {"s": [len(arrays) - 1, len(value)]}
        return [_encode(v, classes, arrays, later) for v in value]
    if isinstance(value, Later):
        if later is None:
            raise TypeError("cannot cache a Later value inside another")
        later.append(json.dumps(_encode(value.get(), classes, None), ensure_ascii=False, separators=(",", ":")))
        return {"l": len(later) - 1}
    if isinstance(value, tuple):
        return {"t": [_encode(v, classes, arrays, later) for v in value]}
    if isinstance(value, frozenset):
        return {"fs": [_encode(v, classes, arrays, later) for v in value]}
    if isinstance(value, dict):   # keys, then values: two flat lists read faster than one pair per item
        return {"m": [_encode(list(value), classes, arrays, later), _encode(list(value.values()), classes, arrays, later)]}
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in _NUMBER_KINDS or arrays is None:
            raise TypeError(f"cannot cache an array of {value.dtype}" if arrays is not None else
                            "cannot cache an array in a Later part")
        arrays.append(value)
        return {"a": len(arrays) - 1}
    if isinstance(value, np.generic) and value.dtype.kind in _NUMBER_KINDS:
        return {"n": [value.dtype.str, value.item()]}
    if isinstance(value, Path):
        return {"p": str(value)}
    name = classes.names.get(type(value))
    if name is None:
        raise TypeError(f"cannot cache a {type(value).__qualname__}")
    return {"c": name, "f": [_encode(getattr(value, f.name), classes, arrays, later) for f in dataclasses.fields(value)]}


def _decoder(classes: Classes, arrays, later_texts=(), later_classes: Callable[[], Classes] | None = None):
    """The object hook that rebuilds what _encode wrote. `arrays`: the entry's arrays (None in a Later
    part); `later_texts`: the Later members' JSON, decoded by `later_classes()` when asked for."""
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
            if tag == "s" and type(value) is list and len(value) == 2 and arrays is not None:
                index, count = value
                array = arrays[f"a{index}"]
                if array.dtype != np.uint8 or array.ndim != 1 or type(count) is not int:
                    raise Damaged("packed strings")
                items = array.tobytes().decode("utf-8").split("\0")
                if len(items) != count:
                    raise Damaged("packed strings")
                return items
            if tag == "l" and type(value) is int and 0 <= value < len(later_texts) and later_classes is not None:
                text = later_texts[value]
                return Later(decode=lambda: _decode_later(text, later_classes()))
            if tag == "a" and type(value) is int and arrays is not None:
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


def _decode_later(text: bytes, classes: Classes):
    try:
        return json.loads(text, object_hook=_decoder(classes, None))
    except Damaged:
        raise
    except Exception as exc:  # noqa: BLE001 - any damage to the member (JSON, constructors)
        raise Damaged(f"a Later part: {exc}") from None


def _trusted(st: os.stat_result) -> bool:
    """A regular file of the current user that nobody else may write."""
    if not stat.S_ISREG(st.st_mode):
        return False
    if hasattr(os, "getuid") and (st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)):
        return False
    return True


def read_entry(path: Path, key: str, classes: Classes, later: Callable[[], Classes] | None = None):
    """The value cached at `path` for `key`, or None when there is none or it may not be used
    (damaged, foreign, writable by others, or recorded for another key). `later()`: the classes its
    Later parts may hold (asked for when one is decoded; without it, an entry with one is not used)."""
    try:
        # Opened without following a link and without blocking (a FIFO or a device planted in the
        # cache folder would otherwise hang here), then checked on the open file itself (no race).
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as fh:
            if not _trusted(os.fstat(fh.fileno())):
                return None
            with np.load(fh, allow_pickle=False) as arrays:
                later_texts = [bytes(arrays[name]) for name in sorted(   # (JSON's UTF-8: decoded with it, when asked for)
                    (n for n in arrays.files if n.startswith("later")), key=lambda n: int(n[5:]))]
                meta = json.loads(bytes(arrays["meta"]).decode("utf-8"),
                                  object_hook=_decoder(classes, arrays, later_texts, later))
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
    later: list[str] = []
    try:
        meta = json.dumps([FORMAT, key, _encode(value, classes, arrays, later)], ensure_ascii=False, separators=(",", ":"))
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, partial = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial", dir=path.parent)  # mode 0600
    except (OSError, TypeError, ValueError):
        return False
    try:
        with os.fdopen(fd, "wb") as fh, zipfile.ZipFile(fh, "w") as archive:
            _member(archive, "meta", np.frombuffer(meta.encode("utf-8"), np.uint8))
            for i, array in enumerate(arrays):
                _member(archive, f"a{i}", array)
            for i, text in enumerate(later):
                _member(archive, f"later{i}", np.frombuffer(text.encode("utf-8"), np.uint8))
        os.replace(partial, path)  # atomic: concurrent runs never read half an entry
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        if isinstance(exc, OSError):
            return False
        raise
    return True
