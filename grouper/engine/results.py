"""Results stage: kernel output arrays → the result frame (id, status, mdc, adrg, drg, reason, warnings)."""
from __future__ import annotations

import numpy as np
import polars as pl

from . import ir
from .encode import Batch


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
