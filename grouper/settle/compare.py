"""Impact of a change (测算): the same cases settled under two policies (or weight tables), side by side."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .engine import Settlement

# (output name, column of the hospital table, column of the group table)
_MEASURES = (("points", "points", "points"), ("payment", "final_payment", "payment"),
             ("surplus", "surplus_after_sharing", "surplus"))


@dataclass(frozen=True)
class Comparison:
    base: Settlement
    change: Settlement
    hospitals: pl.DataFrame  # hospital, cases, then per measure: _base, _change, _delta (payment, surplus: fen)
    groups: pl.DataFrame


def _side_by_side(a: pl.DataFrame, b: pl.DataFrame, key: str, which: int) -> pl.DataFrame:
    columns = [(name, pair[which - 1]) for name, *pair in _MEASURES]
    left = a.select(key, "cases", *[pl.col(c).alias(f"{n}_base") for n, c in columns])
    right = b.select(key, *[pl.col(c).alias(f"{n}_change") for n, c in columns])
    joined = left.join(right, on=key, how="full", coalesce=True, nulls_equal=True)
    deltas = [(pl.col(f"{n}_change").fill_null(0) - pl.col(f"{n}_base").fill_null(0)).alias(f"{n}_delta") for n, _ in columns]
    ordered = [key, "cases", *[f"{n}_{s}" for n, _ in columns for s in ("base", "change", "delta")]]
    return joined.with_columns(deltas).select(ordered).sort("payment_delta", key, nulls_last=True)


def compare(base: Settlement, change: Settlement, *, column: str = "drg") -> Comparison:
    """Per hospital and per group: points, payment (after sharing) and surplus under both, and the change.

    Sorted by payment change, biggest losers first. A group present under one side only (e.g. a
    new weights table) has nulls on the other side; its delta counts the missing side as 0.
    """
    if base.cases.height != change.cases.height:
        raise ValueError("compare needs both settlements of the same cases")
    return Comparison(base, change, _side_by_side(base.hospitals, change.hospitals, "hospital", 1),
                      _side_by_side(base.groups, change.groups, column, 2))
