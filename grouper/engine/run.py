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
SEX_WORDS = {"男": 1, "女": 2, "M": 1, "F": 2, "m": 1, "f": 2, "male": 1, "female": 2}
INT_FIELDS = ("age", "age_days", "weight", "los", "discharge")
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


def encode_cases(plan: ir.Plan, cases: pl.DataFrame) -> Batch:
    """Turn a canonical case frame into kernel arrays. Never drops or reorders rows."""
    enum = pl.Enum(plan.codes)
    dx_offsets, dx_codes = _code_lists(cases["dx"].cast(pl.List(pl.String)), enum)
    px_offsets, px_codes = _code_lists(cases["proc"].cast(pl.List(pl.String)), enum)

    # Two passes so no expression subtree is evaluated twice: text → (raw, value), then checks.
    dept_ids = {d: i + 1 for i, d in enumerate(plan.depts)}
    raw_and_values = []
    for name in ir.FIELDS:
        raw = pl.col(name).cast(pl.String).str.strip_chars()
        raw = pl.when(raw == "").then(None).otherwise(raw)
        if name == "dept":
            value = raw.replace_strict(dept_ids, default=0, return_dtype=pl.Int64)
        elif name == "sex":
            value = pl.coalesce(_parse_ints(raw), raw.replace_strict(SEX_WORDS, default=None, return_dtype=pl.Int64))
        else:
            value = _parse_ints(raw)
        raw_and_values += [raw.alias(f"raw_{name}"), value.alias(f"value_{name}")]
    parsed = cases.select(raw_and_values)
    low, high = np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max
    bad = {name: pl.col(f"raw_{name}").is_not_null()
           & (pl.col(f"value_{name}").is_null() | ~pl.col(f"value_{name}").is_between(low, high))
           for name in ir.FIELDS}
    parsed = parsed.select(
        *(pl.when(bad[name]).then(None).otherwise(pl.col(f"value_{name}")).fill_null(ir.MISSING).cast(pl.Int32).alias(name)
          for name in ir.FIELDS),
        pl.coalesce([pl.when(bad[name]).then(pl.lit(f"malformed_{name}")) for name in ir.FIELDS]).alias("skip_reason"),
    )
    fields = np.ascontiguousarray(parsed.select(ir.FIELDS).to_numpy().T.astype(np.int32))
    skip_reason = parsed["skip_reason"]
    skip = np.ascontiguousarray(skip_reason.is_not_null().to_numpy().astype(np.uint8))
    return Batch(dx_offsets, dx_codes, px_offsets, px_codes, fields, skip, skip_reason)


def run_kernel(plan: ir.Plan, batch: Batch, *, threads: int | None = None, kernel=None) -> tuple[np.ndarray, ...]:
    """Group a batch; returns (status, mdc, adrg, drg, reason) arrays. Splits rows over threads."""
    kernel = kernel or KERNEL
    n = len(batch.skip)
    out = (np.empty(n, np.uint8), *(np.empty(n, np.int32) for _ in range(4)))
    args = (*plan.kernel_args(), *batch.kernel_args(), *out)
    threads = threads or os.cpu_count() or 1
    threads = max(1, min(threads, n // MIN_ROWS_PER_THREAD))
    if threads == 1 or getattr(kernel, "__name__", "").endswith("_kernel_py"):
        kernel.group_cases(*args, 0, n)
        return out
    bounds = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:  # the Cython kernel releases the GIL
        list(pool.map(lambda r: kernel.group_cases(*args, int(bounds[r]), int(bounds[r + 1])), range(threads)))
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
        sub = dataclasses.replace(plan, invalid_cond=np.zeros(0, np.int32), mdc_cond=cond, mdc_adrg_start=one,
                                  adrg_cond=cond, adrg_drg_start=one,
                                  drg_cond=np.array([ir.NO_CONDITION], dtype=np.int32))
        status = run_kernel(sub, batch, threads=threads, kernel=kernel)[0]
        truth[i] = status == ir.GROUPED
    return truth


def _labels(index: np.ndarray, names: list[str]) -> pl.Series:
    lookup = pl.Series(names or [""], dtype=pl.String)
    idx = pl.Series(index)
    return lookup.gather(idx.clip(lower_bound=0)).zip_with(idx >= 0, pl.Series([None] * len(idx), dtype=pl.String))


def results_frame(plan: ir.Plan, cases: pl.DataFrame, batch: Batch, out: tuple[np.ndarray, ...]) -> pl.DataFrame:
    status, mdc, adrg, drg, reason = out
    rule_reason = _labels(reason, plan.invalid_names)
    return pl.DataFrame({
        "id": cases["id"] if "id" in cases.columns else pl.Series(np.arange(1, len(status) + 1)).cast(pl.String),
        "status": pl.Series(ir.STATUS_NAMES, dtype=pl.String).gather(pl.Series(status)),
        "mdc": _labels(mdc, plan.mdc_codes),
        "adrg": _labels(adrg, plan.adrg_codes),
        "drg": _labels(drg, plan.drg_codes),
        "reason": batch.skip_reason.zip_with(batch.skip_reason.is_not_null(), rule_reason),
    })


def group_frame(plan: ir.Plan, cases: pl.DataFrame, *, threads: int | None = None, kernel=None) -> pl.DataFrame:
    """Group a canonical case frame; one result row per input row, same order."""
    batch = encode_cases(plan, cases)
    return results_frame(plan, cases, batch, run_kernel(plan, batch, threads=threads, kernel=kernel))
