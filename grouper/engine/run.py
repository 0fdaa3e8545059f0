"""Case frame → kernel arrays → result frame.

Codes become integer ids once per batch (a Polars Enum cast over the plan's code list), the
lists travel as Arrow offsets + values, and the kernel sees only flat arrays.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from . import ir
from .kernel import KERNEL

# Input spellings of sex besides the digits (OpenDRG accepts 男/女 as well).
SEX_WORDS = {**ir.SEX_VALUES, "男": 1, "女": 2, "M": 1, "F": 2, "m": 1, "f": 2}
MIN_ROWS_PER_THREAD = 50_000


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


def _code_lists(column: pl.Series, enum: pl.Enum) -> tuple[np.ndarray, np.ndarray]:
    """List(String) → (int64 offsets from 0, uint32 ids; 0 for codes the plan does not know)."""
    ids = column.list.eval(
        pl.element().cast(enum, strict=False).to_physical().cast(pl.UInt32).add(1).fill_null(0)
    ).rechunk().to_arrow()
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


def _slow_field(name: str, text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """The full parsing rules for one field: (value Int64 or null, raw present Boolean).

    raw = the stripped text, empty → missing; ints may be written "12.0"; sex may be a word.
    """
    raw = pl.col(name).str.strip_chars()
    raw = pl.when(raw == "").then(None).otherwise(raw)
    if name == "sex":
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


def _encode_field(name: str, text: pl.Series, dept_ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray | None]:
    """One text field → (int32 values with MISSING, bool[n] malformed or None when none is).

    Fast path: a plain integer converts with one cast over the whole column. Only the rows it
    leaves unresolved while holding text (blanks around a number, "12.0", sex words, garbage) go
    through the full rules of `_slow_field`, so the result is the same as applying those rules to
    every row.
    """
    if name == "dept":
        return _encode_dept(text, dept_ids), None
    fast = text.cast(pl.Int64, strict=False)
    unresolved = fast.is_null() & text.is_not_null()
    present = text.is_not_null()
    if unresolved.any():
        value, slow_present = _slow_field(name, text.filter(unresolved))
        fast = fast.scatter(unresolved.arg_true(), value)
        present = present.scatter(unresolved.arg_true(), slow_present)
    low, high = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max
    ok = fast.is_between(low, high)                             # null where the value is null
    bad = present & ~ok.fill_null(False)                        # text present but no usable number
    values = fast.fill_null(ir.MISSING).to_numpy()
    malformed = bad.to_numpy() if bad.any() else None
    if malformed is not None:
        values = np.where(malformed, ir.MISSING, values)
    return values.astype(np.int32, copy=False), malformed


def encode_cases(plan: ir.Plan, cases: pl.DataFrame) -> Batch:
    """Turn a canonical case frame into kernel arrays. Never drops or reorders rows."""
    enum = plan.code_enum()
    dx_offsets, dx_codes = _code_lists(cases["dx"].cast(pl.List(pl.String)), enum)
    px_offsets, px_codes = _code_lists(cases["proc"].cast(pl.List(pl.String)), enum)

    n = cases.height
    dept_ids = {d: i + 1 for i, d in enumerate(plan.depts)}
    fields = np.empty((len(ir.FIELDS), n), dtype=np.int32)
    first_bad = np.full(n, -1, dtype=np.int8)                  # index into ir.FIELDS of the first malformed field
    for i, name in reversed(list(enumerate(ir.FIELDS))):       # reversed: the first field in FIELDS order wins
        values, malformed = _encode_field(name, cases[name].cast(pl.String), dept_ids)
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


def run_kernel(plan: ir.Plan, batch: Batch, *, threads: int | None = None, kernel=None) -> tuple[np.ndarray, ...]:
    """Group a batch; returns (status, mdc, adrg, drg, reason) arrays. Splits rows over threads."""
    kernel = kernel or KERNEL
    n = len(batch.skip)
    out = (np.empty(n, np.uint8), *(np.empty(n, np.int32) for _ in range(4)))
    args = (*plan.kernel_args(), *batch.kernel_args(), *out)
    threads = threads or os.cpu_count() or 1
    threads = max(1, min(threads, n // MIN_ROWS_PER_THREAD))
    mask, behaviour = plan.pdx_mdc_mask, plan.behaviour
    if threads == 1 or getattr(kernel, "__name__", "").endswith("_kernel_py"):
        kernel.group_cases(*args, 0, n, mask, behaviour)
        return out
    bounds = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:  # the Cython kernel releases the GIL
        list(pool.map(lambda r: kernel.group_cases(*args, int(bounds[r]), int(bounds[r + 1]), mask, behaviour),
                      range(threads)))
    return out


def eval_conditions(plan: ir.Plan, batch: Batch, conds, *, threads: int | None = None, kernel=None) -> np.ndarray:
    """Truth of each condition in `conds` for every case: bool[len(conds), n].

    Runs the grouping kernel on a one-rule plan per condition (the condition as the entry of a
    single MDC/ADRG): `grouped` means it holds. Rows rejected while reading count as false.
    """
    n = len(batch.skip)
    truth = np.zeros((len(conds), n), dtype=bool)
    one = np.array([0, 1], dtype=np.int32)
    for i, k in enumerate(conds):
        cond = np.array([k], dtype=np.int32)
        sub = dataclasses.replace(plan, pdx_mdc_mask=None, behaviour=0, invalid_cond=np.zeros(0, np.int32), mdc_cond=cond,
                                  mdc_adrg_start=one,
                                  adrg_cond=cond, adrg_drg_start=one,
                                  drg_cond=np.array([ir.NO_CONDITION], dtype=np.int32))
        status = run_kernel(sub, batch, threads=threads, kernel=kernel)[0]
        truth[i] = status == ir.GROUPED
    return truth


def _labels(index: np.ndarray, names: list[str]) -> pl.Series:
    """Names by index; -1 (not applicable) gives null."""
    lookup = pl.Series(names or [""], dtype=pl.String)
    idx = pl.Series(index)
    return lookup.gather(pl.select(pl.when(idx >= 0).then(idx)).to_series())  # a null index gathers null


def results_frame(plan: ir.Plan, cases: pl.DataFrame, batch: Batch, out: tuple[np.ndarray, ...],
                  problems: pl.DataFrame | None = None) -> pl.DataFrame:
    """id, status, mdc, adrg, drg, reason; plus `warnings` (List(String): the row's warning reasons,
    each once, in catalogue order) when the validation problems of the batch are given."""
    status, mdc, adrg, drg, reason = out
    rule_reason = _labels(reason, plan.invalid_names)
    results = pl.DataFrame({
        "id": cases["id"] if "id" in cases.columns else pl.Series(np.arange(1, len(status) + 1)).cast(pl.String),
        "status": pl.Series(ir.STATUS_NAMES, dtype=pl.String).gather(pl.Series(status)),
        "mdc": _labels(mdc, plan.mdc_codes),
        "adrg": _labels(adrg, plan.adrg_codes),
        "drg": _labels(drg, plan.drg_codes),
        "reason": batch.skip_reason.zip_with(batch.skip_reason.is_not_null(), rule_reason),
    })
    if problems is None:
        return results
    per_row = (problems.filter(pl.col("level") == "warning")
               .group_by("row", maintain_order=True).agg(pl.col("reason").unique(maintain_order=True)))
    warnings = (pl.DataFrame({"row": pl.int_range(0, len(status), dtype=pl.UInt32, eager=True)})
                .join(per_row, on="row", how="left", maintain_order="left")["reason"]
                .fill_null(pl.lit([], dtype=pl.List(pl.String))))
    return results.with_columns(warnings.cast(pl.List(pl.String)).alias("warnings"))


def rule_problems(plan: ir.Plan, out: tuple[np.ndarray, ...]) -> pl.DataFrame:
    """The scheme's `invalid` rules that fired (kernel output) as problems at level error."""
    status, reason = out[0], out[4]
    rows = np.flatnonzero((status == ir.INVALID) & (reason >= 0))
    return pl.DataFrame({
        "row": pl.Series(rows, dtype=pl.UInt32),
        "reason": _labels(reason[rows], plan.invalid_names),
        "level": pl.Series(["error"] * len(rows), dtype=pl.String),
        "detail": pl.Series([None] * len(rows), dtype=pl.String),
    })


def group_frame(plan: ir.Plan, cases: pl.DataFrame, *, threads: int | None = None, kernel=None,
                problems: bool = False) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Validate and group a canonical case frame; one result row per input row, same order.

    Returns the results (id, status, mdc, adrg, drg, reason, warnings); with `problems=True`,
    (results, problems): every validation problem (see grouper.validate), the scheme's `invalid`
    rules that fired included, with the case's `id` and `dept`:
    row, id, dept, reason, level, detail.
    """
    from ..validate import validate

    cases, batch, found = validate(plan, cases, threads=threads, kernel=kernel)
    out = run_kernel(plan, batch, threads=threads, kernel=kernel)
    results = results_frame(plan, cases, batch, out, found)
    if not problems:
        return results
    found = pl.concat([found, rule_problems(plan, out)]).sort("row", maintain_order=True)
    ids = results["id"].cast(pl.String)
    dept = cases["dept"].cast(pl.String) if "dept" in cases.columns else pl.Series([None] * cases.height, dtype=pl.String)
    found = found.select("row", ids.gather(found["row"]).alias("id"), dept.gather(found["row"]).alias("dept"),
                         "reason", "level", "detail")
    return results, found
