"""Crosswalk: the same cases grouped under two schemes, and where each source group's cases land.

One row per (source group, target group) pair that occurs:

    from_group     the source DRG (a qy code for status qy; `(no_adrg)`, `(ungroupable)`,
                   `(invalid)`, `(no_drg)` for cases without a group)
    to_group       the same under the target scheme
    cases          cases with this pair
    share          cases / from_cases, rounded to 4 places (the shares of one source group sum to 1
                   up to that rounding)
    from_cases     cases of the source group
    from_weight, to_weight   relative weights from each scheme's `weights` table (null when the
                   scheme declares none or lists no weight for the group)
    weight_change  to_weight - from_weight (null unless both are known)

Sorted by source group, then by cases (most first).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import polars as pl

from ..pipeline import DEFAULT_BATCH_SIZE, case_batches, group_frame
from ..scheme import LoadedScheme


def _group_label(results: pl.DataFrame) -> pl.Expr:
    return pl.when(pl.col("drg").is_not_null()).then(pl.col("drg")).otherwise(pl.format("({})", pl.col("status")))


def _weights(scheme: LoadedScheme) -> pl.DataFrame:
    plan = scheme.plan
    return pl.DataFrame({"group": plan.drg_codes, "weight": pl.Series(plan.drg_weights, dtype=pl.Float64)})


def crosswalk(source: pl.DataFrame | str | Path, from_scheme: LoadedScheme, to_scheme: LoadedScheme, *,
              batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
              encoding: str | None = None, threads: int | None = None, sheet: str | int | None = None,
              skip_rows: int = 0) -> pl.DataFrame:
    """Group the cases of a file or frame under both schemes; the pair counts described above."""
    counts = []
    for cases in case_batches(source, batch_size=batch_size, columns=columns, encoding=encoding, sheet=sheet,
                              skip_rows=skip_rows):
        before = group_frame(from_scheme.plan, cases, threads=threads)
        after = group_frame(to_scheme.plan, cases, threads=threads)
        pairs = pl.DataFrame({"from_group": before.select(_group_label(before)).to_series(),
                              "to_group": after.select(_group_label(after)).to_series()})
        counts.append(pairs.group_by("from_group", "to_group").len("cases"))
    if not counts:
        counts = [pl.DataFrame(schema={"from_group": pl.String, "to_group": pl.String, "cases": pl.UInt32})]
    table = pl.concat(counts).group_by("from_group", "to_group").agg(pl.col("cases").sum().cast(pl.Int64))
    table = table.with_columns(pl.col("cases").sum().over("from_group").alias("from_cases"))
    table = (table.with_columns((pl.col("cases") / pl.col("from_cases")).round(4).alias("share"))
             .join(_weights(from_scheme).rename({"group": "from_group", "weight": "from_weight"}), on="from_group", how="left")
             .join(_weights(to_scheme).rename({"group": "to_group", "weight": "to_weight"}), on="to_group", how="left")
             .with_columns((pl.col("to_weight") - pl.col("from_weight")).round(4).alias("weight_change")))
    return (table.sort(["from_group", "cases", "to_group"], descending=[False, True, False])
            .select("from_group", "to_group", "cases", "share", "from_cases", "from_weight", "to_weight", "weight_change"))
