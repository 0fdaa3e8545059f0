"""Encode stage: a canonical case frame → kernel arrays (`Batch`).

The kernel reads the frame's text where Polars keeps it (Arrow string_view buffers, no copy):
codes become integer ids in one walk over the items (a hash table over the plan's codes, built
once per plan), and plain integer fields are parsed straight into the int32 field matrix; only
the values that are not plain integers ("12.0", 男, blanks around a number, garbage) go through
the full reading rules here. Unreadable values are marked (`field_state`, `skip`, `skip_reason`)
for validation to report; no row is dropped.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from . import ir
from .kernel import KERNEL

# Input spellings of sex besides the digits (OpenDRG accepts 男/女 as well).
SEX_WORDS = {**ir.SEX_VALUES, "男": 1, "女": 2, "M": 1, "F": 2, "m": 1, "f": 2}


class _ArrowArray:
    """A pyarrow array seen only through the Arrow C data interface, so that Polars takes it over
    without `pl.from_arrow`, which imports pyarrow.compute (~0.1 s of start-up for every command)."""

    __slots__ = ("array",)

    def __init__(self, array: pa.Array):
        self.array = array

    def __arrow_c_array__(self, requested_schema=None):
        return self.array.__arrow_c_array__(requested_schema)


# NumPy ↔ Arrow by buffers: `pa.array(ndarray)` and `np.asarray(arrow_array)` go through pyarrow's
# pandas shim, which imports pandas and pyarrow.compute when pandas is installed (~0.2 s of start-up).
def list_offsets(array: pa.Array) -> np.ndarray:
    """The offsets of a (large) list array, as int64."""
    offsets = array.offsets
    dtype = np.int64 if offsets.type == pa.int64() else np.int32
    return np.frombuffer(offsets.buffers()[1], dtype=dtype)[offsets.offset:offsets.offset + len(offsets)].astype(np.int64)


def int64_array(values: np.ndarray) -> pa.Array:
    """An Arrow int64 array (no nulls) over `values`."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def series_from_arrow(array: pa.Array, name: str = "") -> pl.Series:
    """A Polars series of a pyarrow array (zero copy where Polars can)."""
    return pl.Series(_ArrowArray(array)).alias(name)


class Text:
    """A string column as the kernel reads it: an Arrow string_view array (Polars' own buffers)."""

    __slots__ = ("array", "_series")

    def __init__(self, array: pa.Array, series: pl.Series | None = None):
        self.array = array         # string_view
        self._series = series      # the same strings as a Polars String series, made when first needed

    @classmethod
    def of(cls, column: pl.Series) -> "Text":
        column = column.cast(pl.String).rechunk()
        array = column.to_arrow(compat_level=pl.CompatLevel.newest())
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if array.type != pa.string_view():
            array = array.cast(pa.string_view())
        return cls(array, column)

    @classmethod
    def chunks(cls, column: pl.Series) -> list[tuple[int, "Text"]]:
        """(first row, Text) of each chunk of `column`, without joining them: a column of a CSV
        Polars parsed in parallel comes in chunks of ~16,000 rows, and joining one (rechunk) copies
        it (0.008 CPU-s per column and million rows)."""
        column = column.cast(pl.String)
        if column.n_chunks() == 1:
            return [(0, cls.of(column))]
        parts, start = [], 0
        for chunk in column.get_chunks():
            parts.append((start, cls.of(chunk)))
            start += len(chunk)
        return parts

    @property
    def series(self) -> pl.Series:
        if self._series is None:
            self._series = series_from_arrow(self.array)
        return self._series

    def kernel_args(self) -> tuple:
        """(views, buffers, validity, bit_offset) as every kernel's text functions take them."""
        array = self.array
        validity, views, *data = array.buffers()
        views = np.frombuffer(views, np.uint8)[16 * array.offset:16 * (array.offset + len(array))] \
            if views is not None else np.zeros(0, np.uint8)
        data = tuple(np.frombuffer(b, np.uint8) if b is not None else np.zeros(0, np.uint8) for b in data)
        bits = np.frombuffer(validity, np.uint8) if validity is not None and array.null_count else None
        return views, data, bits, array.offset

    def take(self, index: np.ndarray) -> pl.Series:
        """The strings at `index` (a null string reads as "")."""
        return self.series.gather(pl.Series(index, dtype=pl.Int64)).fill_null("")


def code_table(plan: ir.Plan, kernel=None):
    """The plan's codes as (table, bytes, offsets) for the kernel's `intern_codes` (built once per
    plan and kernel; code id i + 1 is bytes[offsets[i]:offsets[i + 1]])."""
    return _string_table(plan, "codes", plan.codes, kernel)


_TABLES_BUILT = threading.Lock()


def _string_table(plan: ir.Plan, name: str, strings, kernel=None):
    """`strings` as the kernel's lookup table (string i gets id i + 1), kept on the plan by name."""
    kernel = kernel or KERNEL
    key = (getattr(kernel, "__name__", ""), name)
    with _TABLES_BUILT:   # once, also when two threads ask at once (the reader and grouper.pipeline._prepare)
        tables = plan.__dict__.setdefault("_code_tables", {})
        if key in tables:
            return tables[key]
        strings = list(strings)
        joined = "".join(strings)
        offsets = np.zeros(len(strings) + 1, np.int64)
        if joined.isascii():   # (a national plan's ~47,000 codes: one encode, not one per code; 20 ms of start-up)
            np.cumsum(np.fromiter(map(len, strings), np.int64, len(strings)), out=offsets[1:])
            raw = joined.encode()
        else:
            encoded = [text.encode() for text in strings]
            np.cumsum(np.fromiter(map(len, encoded), np.int64, len(encoded)), out=offsets[1:])
            raw = b"".join(encoded)
        data = np.frombuffer(raw, np.uint8) if raw else np.zeros(0, np.uint8)
        tables[key] = (kernel.code_table(data, offsets), data, offsets)
        return tables[key]


def _prefix_ids(texts: pl.Series, n_codes: int, prefixes: list[str]) -> np.ndarray:
    """Ids of unknown codes by the plan's `prefix` sets: the longest matching prefix k gives
    n_codes + 1 + k; no match gives 0."""
    return texts.to_frame("code").select(_prefix_expr(pl.col("code"), n_codes, prefixes).fill_null(0))\
        .to_series().to_numpy().astype(np.uint32)


def _prefix_expr(code: pl.Expr, n_codes: int, prefixes) -> pl.Expr:
    unknown = pl.lit(None, pl.UInt32)
    for k, prefix in sorted(enumerate(prefixes), key=lambda kp: len(kp[1])):  # the longest prefix wins
        unknown = pl.when(code.str.starts_with(prefix)).then(pl.lit(n_codes + 1 + k, pl.UInt32)).otherwise(unknown)
    return unknown


def intern_lists(plan: ir.Plan, column: pl.Series, kernel=None) -> tuple[np.ndarray, np.ndarray, Text]:
    """List(String) → (int64 offsets from 0, uint32 code ids, the items' Text): ids as in
    `_code_lists`, looked up by the kernel in one walk over the items."""
    kernel = kernel or KERNEL
    column = column.cast(pl.List(pl.String))
    if column.null_count():
        column = column.to_frame("c").select(pl.col("c").fill_null(pl.lit([], pl.List(pl.String)))).to_series()
    array = column.rechunk().to_arrow(compat_level=pl.CompatLevel.newest())
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    offsets = list_offsets(array)
    items = array.values.slice(offsets[0], offsets[-1] - offsets[0])
    items = Text(items if items.type == pa.string_view() else items.cast(pa.string_view()))
    offsets = np.ascontiguousarray(offsets - offsets[0])
    ids = np.empty(len(items.array), np.uint32)
    table, data, code_offsets = code_table(plan, kernel)
    kernel.intern_codes(table, data, code_offsets, *items.kernel_args(), ids)
    return offsets, _with_prefixes(plan, ids, items), items


def _interned(plan: ir.Plan, cases: pl.DataFrame, kind: str, lists: dict, kernel) -> tuple[np.ndarray, np.ndarray, Text]:
    """The code list column `kind` as intern_lists gives it: interned by the reader already when in
    `lists` (grouper.io.ReadAhead), else here."""
    if kind not in lists:
        return intern_lists(plan, cases[kind], kernel)
    offsets, ids, items = lists[kind]
    return offsets, _with_prefixes(plan, ids, items), items


def _with_prefixes(plan: ir.Plan, ids: np.ndarray, items: Text) -> np.ndarray:
    """`ids` (code ids of `items`, 0: unknown) with the unknown codes given their `prefix` set's id
    (see _prefix_ids); changed in place."""
    prefixes = getattr(plan, "prefixes", [])
    if prefixes:
        unknown = np.flatnonzero(ids == 0)
        if len(unknown):
            ids[unknown] = _prefix_ids(items.take(unknown), len(plan.codes), prefixes)
    return ids


@dataclass
class Batch:
    """One batch of cases as kernel arrays."""

    dx_offsets: np.ndarray
    dx_codes: np.ndarray
    px_offsets: np.ndarray
    px_codes: np.ndarray
    fields: np.ndarray          # int32[7, n]
    skip: np.ndarray            # uint8[n]: rejected while reading
    skip_reason: pl.Series      # String[n]: why (null where not skipped)
    field_state: np.ndarray | None = None  # uint8[7, n]: ir.FIELD_ABSENT / FIELD_OK / FIELD_BAD
    dx_text: Text | None = None            # the items' text, for the validation pass and its details
    px_text: Text | None = None

    def kernel_args(self) -> tuple:
        return (self.dx_offsets, self.dx_codes, self.px_offsets, self.px_codes, self.fields, self.skip)


# Building the cast expression converts the Enum dtype (the plan's ~40,000 codes) into Polars' own
# type, 3–6 ms each time, whatever the batch size: it is built once per (Enum, prefixes) and kept.
_CODE_EXPRS: dict[tuple[int, tuple[str, ...]], tuple[pl.Enum, pl.Expr]] = {}


def _code_id_expr(enum: pl.Enum, prefixes: tuple[str, ...]) -> pl.Expr:
    key = (id(enum), prefixes)
    cached = _CODE_EXPRS.get(key)
    if cached is not None and cached[0] is enum:
        return cached[1]
    known = pl.element().cast(enum, strict=False).to_physical().cast(pl.UInt32).add(1)
    if prefixes:
        known = pl.coalesce(known, _prefix_expr(pl.element(), len(enum.categories), prefixes))
    known = known.fill_null(0)
    if len(_CODE_EXPRS) >= 32:  # a few plans per process; never grows without bound
        _CODE_EXPRS.pop(next(iter(_CODE_EXPRS)))
    _CODE_EXPRS[key] = (enum, known)  # the Enum is kept alive, so its id cannot be reused
    return known


def _code_lists(column: pl.Series, enum: pl.Enum, prefixes: list[str] = ()) -> tuple[np.ndarray, np.ndarray]:
    """List(String) → (int64 offsets from 0, uint32 ids; 0 for codes the plan does not know, except
    that an unknown code starting with one of the plan's `prefixes` gets that prefix's id)."""
    known = _code_id_expr(enum, tuple(prefixes))
    ids = column.list.eval(known).rechunk().to_arrow()
    if hasattr(ids, "combine_chunks"):
        ids = ids.combine_chunks()
    offsets = list_offsets(ids)
    values = ids.flatten().to_numpy(zero_copy_only=False).astype(np.uint32, copy=False)
    return np.ascontiguousarray(offsets - offsets[0]), np.ascontiguousarray(values)


def _parse_ints(column: pl.Expr) -> pl.Expr:
    """Text → Int64; also accepts an integral float written like "12.0" (Excel exports)."""
    text = column.cast(pl.String).str.strip_chars()
    text = pl.when(text == "").then(None).otherwise(text)
    whole = text.str.replace(r"^(-?\d+)\.0*$", "$1")
    return whole.cast(pl.Int64, strict=False)


def _slow_field(name: str, text: pl.Series, sex_spellings: dict[str, int] | None = None,
                sex_digits: bool = False) -> tuple[pl.Series, pl.Series]:
    """The full parsing rules for one field: (value Int64 or null, raw present Boolean).

    raw = the stripped text, empty → missing; ints may be written "12.0"; sex may be a word, or,
    when the scheme says `read sex ...`, only one of its spellings (`read sex digits, ...`: or a
    string of digits 0-9, as its number).
    """
    raw = pl.col(name).str.strip_chars()
    raw = pl.when(raw == "").then(None).otherwise(raw)
    if name == "sex" and sex_spellings is not None:
        value = raw.replace_strict(sex_spellings, default=None, return_dtype=pl.Int64)
        if sex_digits:
            value = pl.coalesce(pl.when(raw.str.contains(r"^[0-9]+$")).then(raw.cast(pl.Int64, strict=False)), value)
    elif name == "sex":
        value = pl.coalesce(_parse_ints(raw), raw.replace_strict(SEX_WORDS, default=None, return_dtype=pl.Int64))
    else:
        value = _parse_ints(raw)
    out = text.to_frame(name).select(value.alias("value"), raw.is_not_null().alias("present"))
    return out["value"], out["present"]


def _encode_dept(text: pl.Series, dept_ids: dict[str, int]) -> np.ndarray:
    """Department text → int32 id among the plan's departments; 0 when missing or unknown."""
    if not dept_ids:                                            # the scheme never tests dept
        return np.zeros(len(text), dtype=np.int32)
    ids = {code: i for code, i in dept_ids.items() if code != ""}   # "" is a missing department
    value = text.str.strip_chars().replace_strict(ids, default=0, return_dtype=pl.Int32)
    return value.fill_null(0).to_numpy().astype(np.int32, copy=False)


def _encode_field(name: str, text: pl.Series, dept_ids: dict[str, int], plan: ir.Plan | None = None,
                  kernel=None, parsed: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """One text field → (int32 values with MISSING, uint8 ir.FIELD_* state per row).

    The kernel parses plain integers straight from the text (`parse_ints`; `parsed`: what it gave
    while the reader looked at the field, grouper.io.ReadAhead). Only the rows it
    leaves to the full rules (blanks around a number, "12.0", sex words, garbage) go through
    `_slow_field`, so the result is the same as applying those rules to every row. The plan's
    `read` statements apply: sex spellings (looked up by the kernel like codes), and the
    value of an empty number field.
    """
    n = len(text)
    if name == "dept":
        return _encode_dept(text, dept_ids), np.where(text.is_not_null().to_numpy(), ir.FIELD_OK,
                                                      ir.FIELD_ABSENT).astype(np.uint8)
    kernel = kernel or KERNEL
    values = np.empty(n, np.int32)
    state = np.empty(n, np.uint8)
    sex_spellings = None
    if plan is not None and name == "sex" and plan.sex_spellings is not None:
        # `read sex ...`: a value written exactly as one of the spellings is looked up like a code;
        # the rest (blanks around it, other text) goes through the full rules
        sex_spellings = plan.sex_spellings
        spellings = [k for k in sex_spellings if k and k == k.strip()]
        table = _string_table(plan, "sex", spellings, kernel)
        ids = np.empty(n, np.uint32)
        for start, part in Text.chunks(text):
            kernel.intern_codes(*table, *part.kernel_args(), ids[start:start + len(part.array)])
        by_id = np.array([ir.MISSING] + [sex_spellings[k] for k in spellings], np.int64)[ids]
        found = (ids > 0) & (by_id > ir.MISSING) & (by_id <= np.iinfo(np.int32).max)
        values[:] = np.where(found, by_id, ir.MISSING)
        state[:] = np.where(found, ir.FIELD_OK, np.where(text.is_not_null().to_numpy(), ir.FIELD_SLOW, ir.FIELD_ABSENT))
    elif parsed is not None:
        values[:], state[:] = parsed
    else:
        values, state = parse_int_field(text, kernel)
    slow = np.flatnonzero(state == ir.FIELD_SLOW)
    if len(slow):
        value, present = _slow_field(name, text.gather(pl.Series(slow, dtype=pl.UInt32)), sex_spellings,
                                     sex_spellings is not None and plan.sex_digits)
        low, high = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max
        ok = value.is_between(low, high).fill_null(False).to_numpy()
        values[slow] = np.where(ok, value.fill_null(0).clip(low, high).to_numpy(), ir.MISSING)
        state[slow] = np.where(ok, ir.FIELD_OK, np.where(present.to_numpy(), ir.FIELD_BAD, ir.FIELD_ABSENT))
    empty = plan.empty_numbers.get(name) if plan is not None else None
    if empty is not None:       # `read empty FIELD as N`: an empty field is N; an unreadable one stays missing
        values[state == ir.FIELD_ABSENT] = empty
    return values, state


def parse_int_field(text: pl.Series, kernel) -> tuple[np.ndarray, np.ndarray]:
    """(int32 values, uint8 ir.FIELD_* states) of a text column as the kernel's parse_ints reads it,
    chunk by chunk."""
    values = np.empty(len(text), np.int32)
    state = np.empty(len(text), np.uint8)
    for start, part in Text.chunks(text):
        stop = start + len(part.array)
        kernel.parse_ints(*part.kernel_args(), values[start:stop], state[start:stop])
    return values, state


def read_lists(plan: ir.Plan, cases: pl.DataFrame) -> pl.DataFrame:
    """Apply the plan's `read empty dx as none` (and proc): a list that is one empty code (an empty
    field, as read by grouper.io) becomes an empty list. Other frames are returned unchanged."""
    changed = {}
    for scope in getattr(plan, "empty_lists", ()):
        if scope in cases.columns:
            column = pl.col(scope).cast(pl.List(pl.String))
            one_empty = (column.list.len() == 1) & (column.list.first() == "")
            changed[scope] = pl.when(one_empty).then(pl.lit([], pl.List(pl.String))).otherwise(column)
    return cases.with_columns(**changed) if changed else cases


def encode_cases(plan: ir.Plan, cases: pl.DataFrame, *, kernel=None, ahead=None) -> Batch:
    """Turn a canonical case frame into kernel arrays. Never drops or reorders rows. `ahead`: the
    part of this very frame's encoding its reader did (grouper.io.ReadAhead.take, made for this
    plan by grouper.pipeline.read_ahead)."""
    kernel = kernel or KERNEL
    lists, parsed = (ahead.lists, ahead.parsed) if ahead is not None else ({}, {})
    dx_offsets, dx_codes, dx_text = _interned(plan, cases, "dx", lists, kernel)
    px_offsets, px_codes, px_text = _interned(plan, cases, "proc", lists, kernel)

    n = cases.height
    dept_ids = {d: i + 1 for i, d in enumerate(plan.depts)}
    fields = np.empty((len(ir.FIELDS), n), dtype=np.int32)
    state = np.empty((len(ir.FIELDS), n), dtype=np.uint8)
    for i, name in enumerate(ir.FIELDS):
        fields[i], state[i] = _encode_field(name, cases[name].cast(pl.String), dept_ids, plan, kernel, parsed.get(name))
    bad = state == ir.FIELD_BAD
    skip = np.ascontiguousarray(bad.any(axis=0).astype(np.uint8))
    if skip.any():
        first_bad = np.where(skip.astype(bool), bad.argmax(axis=0), -1).astype(np.int32)  # the first field in FIELDS order
        index = pl.Series(first_bad)
        index = pl.select(pl.when(index >= 0).then(index)).to_series()     # null where not skipped
        skip_reason = pl.Series([f"malformed_{name}" for name in ir.FIELDS], dtype=pl.String).gather(index)
    else:
        skip_reason = pl.repeat(None, n, dtype=pl.String, eager=True)
    return Batch(dx_offsets, dx_codes, px_offsets, px_codes, fields, skip, skip_reason.alias("skip_reason"),
                 state, dx_text, px_text)
