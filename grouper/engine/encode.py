"""Encode stage: a canonical case frame → kernel arrays (`Batch`).

Codes become integer ids once per batch (a Polars Enum cast over the plan's code list), the
lists travel as Arrow offsets + values, and the case fields become an int32 matrix. Unreadable
field values are marked (`skip`, `skip_reason`) for validation to report; no row is dropped.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from . import ir

# Input spellings of sex besides the digits (OpenDRG accepts 男/女 as well).
SEX_WORDS = {**ir.SEX_VALUES, "男": 1, "女": 2, "M": 1, "F": 2, "m": 1, "f": 2}
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
        n_codes = len(enum.categories)
        unknown = pl.lit(None, pl.UInt32)
        for k, prefix in sorted(enumerate(prefixes), key=lambda kp: len(kp[1])):  # the longest prefix wins
            unknown = pl.when(pl.element().str.starts_with(prefix)).then(pl.lit(n_codes + 1 + k, pl.UInt32)).otherwise(unknown)
        known = pl.coalesce(known, unknown)
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
    offsets = np.asarray(ids.offsets, dtype=np.int64)
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
                  ) -> tuple[np.ndarray, np.ndarray | None]:
    """One text field → (int32 values with MISSING, bool[n] malformed or None when none is).

    Fast path: a plain integer converts with one cast over the whole column. Only the rows it
    leaves unresolved while holding text (blanks around a number, "12.0", sex words, garbage) go
    through the full rules of `_slow_field`, so the result is the same as applying those rules to
    every row. The plan's `read` statements apply: sex spellings (then every sex value takes the
    slow path), and the value of an empty number field.
    """
    if name == "dept":
        return _encode_dept(text, dept_ids), None
    sex_spellings = plan.sex_spellings if plan is not None and name == "sex" else None
    fast = text.cast(pl.Int64, strict=False) if sex_spellings is None else pl.Series(name, [None] * len(text), pl.Int64)
    unresolved = fast.is_null() & text.is_not_null()
    present = text.is_not_null()
    if unresolved.any():
        value, slow_present = _slow_field(name, text.filter(unresolved), sex_spellings,
                                          plan is not None and plan.sex_digits)
        fast = fast.scatter(unresolved.arg_true(), value)
        present = present.scatter(unresolved.arg_true(), slow_present)
    low, high = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max
    ok = fast.is_between(low, high)                             # null where the value is null
    bad = present & ~ok.fill_null(False)                        # text present but no usable number
    empty = plan.empty_numbers.get(name) if plan is not None else None
    values = fast.fill_null(ir.MISSING).to_numpy()
    if empty is not None:       # `read empty FIELD as N`: an empty field is N; an unreadable one stays missing
        values = np.where(present.not_().to_numpy(), empty, values)
    malformed = bad.to_numpy() if bad.any() else None
    if malformed is not None:
        values = np.where(malformed, ir.MISSING, values)
    return values.astype(np.int32, copy=False), malformed


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


def encode_cases(plan: ir.Plan, cases: pl.DataFrame) -> Batch:
    """Turn a canonical case frame into kernel arrays. Never drops or reorders rows."""
    enum = plan.code_enum()
    prefixes = getattr(plan, "prefixes", [])
    dx_offsets, dx_codes = _code_lists(cases["dx"].cast(pl.List(pl.String)), enum, prefixes)
    px_offsets, px_codes = _code_lists(cases["proc"].cast(pl.List(pl.String)), enum, prefixes)

    n = cases.height
    dept_ids = {d: i + 1 for i, d in enumerate(plan.depts)}
    fields = np.empty((len(ir.FIELDS), n), dtype=np.int32)
    first_bad = np.full(n, -1, dtype=np.int8)                  # index into ir.FIELDS of the first malformed field
    for i, name in reversed(list(enumerate(ir.FIELDS))):       # reversed: the first field in FIELDS order wins
        values, malformed = _encode_field(name, cases[name].cast(pl.String), dept_ids, plan)
        fields[i] = values
        if malformed is not None:
            first_bad[malformed] = i
    skip = np.ascontiguousarray((first_bad >= 0).astype(np.uint8))
    if skip.any():
        index = pl.Series(first_bad.astype(np.int32))
        index = pl.select(pl.when(index >= 0).then(index)).to_series()     # null where not skipped
        skip_reason = pl.Series([f"malformed_{name}" for name in ir.FIELDS], dtype=pl.String).gather(index)
    else:
        skip_reason = pl.repeat(None, n, dtype=pl.String, eager=True)
    return Batch(dx_offsets, dx_codes, px_offsets, px_codes, fields, skip, skip_reason.alias("skip_reason"))
