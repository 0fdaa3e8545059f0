"""Impact of a change (测算): the same cases settled under two policies (or weight tables), side by side."""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .settle import Settlement

# (output name, column of the hospital table, column of the group table)
_MEASURES = (("points", "points", "points"), ("payment", "final_payment", "payment"),
             ("surplus", "surplus_after_sharing", "surplus"))


@dataclass(frozen=True)
class Comparison:
    base: Settlement
    change: Settlement
    hospitals: pl.DataFrame  # hospital, cases, then per measure: _before, _after, _change (payment, surplus: fen)
    groups: pl.DataFrame


SIDES = ("before", "after", "change")  # the base policy, the changed one, and after − before


def _side_by_side(a: pl.DataFrame, b: pl.DataFrame, key: str, which: int, measures) -> pl.DataFrame:
    columns = [(name, pair[which - 1]) for name, *pair in measures]
    left = a.select(key, "cases", *[pl.col(c).alias(f"{n}_before") for n, c in columns])
    right = b.select(key, *[pl.col(c).alias(f"{n}_after") for n, c in columns])
    joined = left.join(right, on=key, how="full", coalesce=True, nulls_equal=True)
    deltas = [(pl.col(f"{n}_after").fill_null(0) - pl.col(f"{n}_before").fill_null(0)).alias(f"{n}_change")
              for n, _ in columns]
    ordered = [key, "cases", *[f"{n}_{s}" for n, _ in columns for s in SIDES]]
    return joined.with_columns(deltas).select(ordered).sort("payment_change", key, nulls_last=True)


def points_comparable(base, change) -> bool:
    """Points mean the same under both policies only when both share a budget by points at the same scale."""
    a, b = base.policy, change.policy
    return a.method == b.method == "points" and a["points"]["scale"] == b["points"]["scale"]


def compare(base: Settlement, change: Settlement, *, column: str = "drg") -> Comparison:
    """Per hospital and per group: payment (after sharing), surplus — and points when they are
    comparable (`points_comparable`: not between a points and a rate policy) — under both
    policies (`_before`, `_after`) and the change (`_change` = after − before).

    Sorted by payment change, biggest losers first. A group present under one side only (e.g. a
    new weights table) has nulls on the other side; its change counts the missing side as 0.
    """
    if base.cases.height != change.cases.height:
        raise ValueError("compare needs both settlements of the same cases")
    measures = _MEASURES if points_comparable(base, change) else _MEASURES[1:]
    return Comparison(base, change, _side_by_side(base.hospitals, change.hospitals, "hospital", 1, measures),
                      _side_by_side(base.groups, change.groups, column, 2, measures))
