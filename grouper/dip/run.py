"""Case frame → DIP kernel arrays → result frame. All per-case work is Polars expressions or the
kernel: the principal diagnosis's categories come from one slice + Enum cast per length, the
procedures from the same Arrow offsets + ids encoding the DRG engine uses."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import polars as pl

from ..engine import kernel as drg_kernel
from ..engine.encode import _code_lists
from ..engine.run import MIN_ROWS_PER_THREAD
from . import _kernel_py
from ..fields import money_fen
from ..io import READ_PROBLEM
from .plan import EXCLUDED_DX, LEVELS, MALFORMED_LINE, MISSING_DX, REASON_NAMES, STATUS_NAMES, DipPlan


KERNEL = drg_kernel.companion("_dip_kernel", _kernel_py)  # the same rules as the DRG kernel


@dataclass
class DipBatch:
    case_cat: np.ndarray      # int32[n]: core/primary category id, 0 none
    case_comp: np.ndarray     # int32[n_keys, n]: comprehensive key id per key to try (prefix lengths longest
                              # first, then the chapter ranges holding pdx in file order), 0 none
    case_cost: np.ndarray     # int64[n]: the case's total cost in fen, -1 missing
    px_offsets: np.ndarray
    px_codes: np.ndarray
    skip: np.ndarray          # uint8[n]: reason code of an invalid case, 0 otherwise

    def kernel_args(self) -> tuple:
        return (self.case_cat, self.case_comp, self.case_cost, self.px_offsets, self.px_codes, self.skip)


def _category_ids(pdx: pl.Series, categories: list[str], lengths: list[int]) -> np.ndarray:
    """int32[len(lengths), n]: id (index + 1) in `categories` of pdx's prefix of each length; 0 when
    that prefix is not listed (or pdx is shorter than the length)."""
    if not categories:
        return np.zeros((len(lengths), len(pdx)), np.int32)
    enum = pl.Enum(categories)
    ids = pdx.to_frame("pdx").select(
        pl.when(pl.col("pdx").str.len_chars() >= n)
        .then(pl.col("pdx").str.slice(0, n).cast(enum, strict=False).to_physical().cast(pl.Int32) + 1)
        .fill_null(0).alias(str(n))
        for n in lengths)
    return np.ascontiguousarray(ids.to_numpy().T.astype(np.int32, copy=False))


def encode_dip(plan: DipPlan, cases: pl.DataFrame) -> DipBatch:
    """A canonical case frame (io.read_cases) → kernel arrays. Never drops or reorders rows."""
    pdx = cases["dx"].cast(pl.List(pl.String)).list.first()
    missing = (pdx.is_null() | (pdx == "")).fill_null(True)
    skip = missing.cast(pl.UInt8) * MISSING_DX
    if plan.excluded_dx:
        excluded = pdx.is_in(plan.excluded_dx).fill_null(False) & ~missing
        skip = pl.select(pl.when(excluded).then(EXCLUDED_DX).otherwise(skip)).to_series()
    if READ_PROBLEM in cases.columns:  # a CSV line read against the wrong columns (grouper.io)
        skip = pl.select(pl.when(cases[READ_PROBLEM].is_not_null()).then(MALFORMED_LINE).otherwise(skip)).to_series()
    case_cat, case_comp = _diagnosis_keys(pdx, plan)
    px_offsets, px_codes = _code_lists(cases["proc"].cast(pl.List(pl.String)), plan.proc_enum())
    return DipBatch(case_cat, case_comp, case_cost(cases), px_offsets, px_codes,
                    np.ascontiguousarray(skip.to_numpy().astype(np.uint8, copy=False)))


def _diagnosis_keys(pdx: pl.Series, plan: DipPlan) -> tuple[np.ndarray, np.ndarray]:
    """(case_cat, case_comp) of the batch. A batch repeats its principal diagnoses, so the keys are
    computed once per distinct diagnosis, found by one Categorical cast, and spread to the cases."""
    codes = pdx.cast(pl.Categorical)
    distinct = codes.drop_nulls().unique()
    strings = distinct.cast(pl.String)
    cat = _category_ids(strings, plan.categories, [plan.dx_length])
    prefixes = [c for c in plan.comp_categories if "-" not in c]
    comp = _category_ids(strings, prefixes, sorted({len(c) for c in prefixes}, reverse=True))
    if prefixes and len(prefixes) != len(plan.comp_categories):   # prefix ids → ids in comp_categories
        ids = {c: i + 1 for i, c in enumerate(plan.comp_categories)}
        comp = np.array([0] + [ids[c] for c in prefixes], np.int32)[comp]
    if plan.range_table.shape[1]:
        comp = np.vstack([comp, _range_ids(strings, plan)])
    # the Categorical's physical ids → positions in `distinct`; a null diagnosis → the last column (no key)
    physical = distinct.to_physical().to_numpy().astype(np.int64)
    size = int(physical.max()) + 2 if len(physical) else 1
    position = np.full(size, len(physical), np.int64)
    position[physical] = np.arange(len(physical))
    index = position[codes.to_physical().fill_null(size - 1).to_numpy()]
    spread = lambda table: np.ascontiguousarray(  # noqa: E731
        np.hstack([table, np.zeros((table.shape[0], 1), np.int32)])[:, index])
    return spread(cat)[0], spread(comp)


def _range_ids(pdx: pl.Series, plan: DipPlan) -> np.ndarray:
    """int32[depth, n]: the key ids of the chapter ranges holding pdx (file order), 0 after them:
    one Enum cast of the first 3 characters against the categories the ranges hold."""
    n_cat = len(plan.range_categories)
    head = pl.select(pl.when(pdx.str.len_chars() >= 3).then(pdx.str.slice(0, 3))).to_series()
    index = head.cast(pl.Enum(plan.range_categories), strict=False).to_physical().fill_null(n_cat)
    return np.ascontiguousarray(plan.range_table[index.to_numpy()].T)


def case_cost(cases: pl.DataFrame) -> np.ndarray:
    """int64[n]: each case's total cost (the `cost` column, read as money: grouper.fields) in fen;
    -1 where it is missing, unreadable or negative, and for every case when there is no column."""
    if "cost" not in cases.columns:
        return np.full(cases.height, -1, np.int64)
    fen = cases.select(money_fen(pl.col("cost"), cases.schema["cost"]).alias("fen"))["fen"]
    fen = pl.select(pl.when(fen >= 0).then(fen).otherwise(-1).fill_null(-1)).to_series()
    return np.ascontiguousarray(fen.to_numpy().astype(np.int64, copy=False))


def run_dip_kernel(plan: DipPlan, batch: DipBatch, *, threads: int | None = None, kernel=None) -> tuple[np.ndarray, ...]:
    """(status uint8, row int32, treatment int8, reason uint8) per case; rows split over threads."""
    kernel = kernel or KERNEL
    n = len(batch.skip)
    out = (np.empty(n, np.uint8), np.empty(n, np.int32), np.empty(n, np.int8), np.empty(n, np.uint8))
    args = (*plan.kernel_args(), *batch.kernel_args(), *out)
    threads = max(1, min(threads or os.cpu_count() or 1, n // MIN_ROWS_PER_THREAD))
    if threads == 1 or kernel is _kernel_py:
        kernel.group_dip(*args, 0, n)
        return out
    bounds = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:      # the compiled kernel releases the GIL
        list(pool.map(lambda t: kernel.group_dip(*args, int(bounds[t]), int(bounds[t + 1])), range(threads)))
    return out


def _gather(names, index: np.ndarray, dtype=pl.String) -> pl.Series:
    """names[index], null where index < 0."""
    lookup = pl.Series(list(names) or [None], dtype=dtype)
    idx = pl.Series(index)
    return lookup.gather(pl.select(pl.when(idx >= 0).then(idx)).to_series())


RESULT_COLUMNS = ("id", "status", "dip", "dip_level", "treatment", "score", "aux", "aux_factor", "reason")


def dip_results_frame(plan: DipPlan, cases: pl.DataFrame, out: tuple[np.ndarray, ...]) -> pl.DataFrame:
    """id, status (grouped / ungrouped / invalid), dip (病种编码), dip_level (core / primary /
    comprehensive), treatment (the case's treatment type), score (病种分值), aux (the auxiliary
    subtype, null when none holds), aux_factor (its factor; 1 for a grouped case with none), reason."""
    status, row, treatment, reason = out
    n = len(status)
    level = _gather(LEVELS, np.where(row >= 0, plan.row_level[np.maximum(row, 0)].astype(np.int32), -1))
    dip = _gather(plan.row_code, row)
    if plan.auxiliary is not None:
        from .auxiliary import apply_auxiliary

        aux, aux_factor = apply_auxiliary(plan.auxiliary, cases, dip)
    else:
        aux = pl.Series([None] * n, dtype=pl.String)
        aux_factor = pl.select(pl.when(dip.is_not_null()).then(1.0)).to_series() if n else pl.Series([], dtype=pl.Float64)
    return pl.DataFrame({
        "id": cases["id"].cast(pl.String) if "id" in cases.columns else pl.Series(np.arange(1, n + 1)).cast(pl.String),
        "status": pl.Series(STATUS_NAMES, dtype=pl.String).gather(pl.Series(status)),
        "dip": dip,
        "dip_level": level,
        "treatment": _gather(plan.treatments, treatment.astype(np.int32)),
        "score": _gather(plan.row_score, row, pl.Float64),
        "aux": aux.alias("aux"),
        "aux_factor": aux_factor.cast(pl.Float64).alias("aux_factor"),
        "reason": pl.Series(REASON_NAMES, dtype=pl.String).gather(pl.Series(reason)).replace("", None),
    })


def group_dip_frame(plan: DipPlan, cases: pl.DataFrame, *, threads: int | None = None, kernel=None) -> pl.DataFrame:
    """Group a canonical case frame: one result row per input row, same order."""
    out = run_dip_kernel(plan, encode_dip(plan, cases), threads=threads, kernel=kernel)
    return dip_results_frame(plan, cases, out)
