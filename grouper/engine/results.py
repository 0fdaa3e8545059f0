"""Results stage: kernel output arrays → the result frame (id, status, mdc, adrg, drg, reason, warnings)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from . import ir
from .encode import Batch, int64_array, series_from_arrow


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
    return results.with_columns(_warnings(problems, len(status)))


def _warnings(problems: pl.DataFrame, n: int) -> pl.Series:
    """List(String)[n]: each row's warning reasons, each once, in the order of `problems`."""
    found = problems.filter(pl.col("level") == "warning").select("row", "reason")
    rows = found["row"].to_numpy()
    if len(rows) > 1 and (np.diff(rows.astype(np.int64)) < 0).any():   # not by row: put them in row order
        order = np.argsort(rows, kind="stable")
        rows, found = rows[order], found[order]
    found, rows = _first_of_each(found, rows)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=n)[:n], out=offsets[1:])
    values = found["reason"].cast(pl.String).rechunk().to_arrow()
    lists = pa.LargeListArray.from_arrays(int64_array(offsets), values)
    return series_from_arrow(lists, "warnings").cast(pl.List(pl.String))


def _first_of_each(found: pl.DataFrame, rows: np.ndarray) -> tuple[pl.DataFrame, np.ndarray]:
    """(row, reason) problems in row order, each pair once (its first). A repeat right after its
    first (the validation pass reports a check's problems together) goes by a look at the problem
    before; only rows left with three or more could still repeat one further apart (A, B, A), and
    only those are hashed."""
    if len(rows) < 2:
        return found, rows
    fresh = found.select(pl.col("row").ne_missing(pl.col("row").shift())
                         | pl.col("reason").ne_missing(pl.col("reason").shift())).to_series()
    if not fresh.all():
        found, rows = found.filter(fresh), rows[fresh.to_numpy()]
    crowded = np.flatnonzero(np.bincount(rows)[rows] >= 3)
    if len(crowded):
        first = np.ones(len(rows), bool)
        first[crowded] = found[crowded].select(pl.struct("row", "reason").is_first_distinct()).to_series().to_numpy()
        if not first.all():
            found, rows = found.filter(pl.Series(first)), rows[first]
    return found, rows


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


def with_group_labels(plan: ir.Plan, results: pl.DataFrame, *, names: bool = True,
                      weights: pl.DataFrame | None = None) -> pl.DataFrame:
    """`results` with the group's name (`drg_name`, from the pack's DRG names) and weight (`rw`)
    beside its code: `rw` from `weights` (columns drg, weight) when given, else from the pack's own
    weights table when it has one. A group without a name or weight gets null."""
    added = []
    if names:
        lookup = pl.DataFrame({"drg": plan.drg_codes, "drg_name": plan.drg_names}, schema={
            "drg": pl.String, "drg_name": pl.String}).with_columns(pl.col("drg_name").replace("", None))
        added.append(lookup.unique("drg", keep="first", maintain_order=True))
    if weights is not None:
        table = weights.select(pl.col("drg").cast(pl.String), pl.col("weight").cast(pl.Float64, strict=False).alias("rw"))
        added.append(table.unique("drg", keep="first", maintain_order=True))
    elif names and any(w is not None for w in plan.drg_weights or []):
        added.append(pl.DataFrame({"drg": plan.drg_codes[:len(plan.drg_weights)], "rw": plan.drg_weights},
                                  schema={"drg": pl.String, "rw": pl.Float64}).unique("drg", keep="first",
                                                                                      maintain_order=True))
    labelled = results
    for table in added:
        labelled = labelled.join(table, on="drg", how="left", maintain_order="left")
    new = [c for c in labelled.columns if c not in results.columns]
    at = results.columns.index("drg") + 1
    return labelled.select(*results.columns[:at], *new, *results.columns[at:])
