"""Hospital indicators (医院 DRG 评价指标) from grouped cases and a weights table.

One row per hospital (``dept`` null) and, with departments present, one per hospital and department.
Formulas (N = the hospital's cases; "weighted cases" = grouped, not excluded, with a DRG in the
weights table):

| column | formula | source |
|---|---|---|
| `cases` | all rows of the hospital | |
| `excluded` | rows excluded as in calibration (LOS > 60 d, cost < 5 元: `MetricOptions`) | domain.md §2.1 |
| `grouped` | status `grouped`, not excluded | |
| `grouping_rate` (入组率) | grouped ÷ (cases − excluded) | domain.md §2.8 [rehr.cn] |
| `drg_count` (DRG 组数) | distinct DRGs among grouped cases | domain.md §2.8 |
| `total_weight` (总权重) | Σ RW over weighted cases | domain.md §2.8 |
| `cmi` | total_weight ÷ weighted cases = Σ_g RW_g·n_g ÷ Σ_g n_g | domain.md §2.8 |
| `cost_index` (费用消耗指数) | Σ_g n_g·(m_hg ÷ b_g) ÷ Σ_g n_g = mean over cases of cost ÷ b_g | domain.md §2.8 [UNVERIFIED usual form] |
| `time_index` (时间消耗指数) | the same with LOS | domain.md §2.8 |
| `low_risk_cases`, `low_risk_deaths`, `low_risk_mortality` (低风险组死亡率) | deaths (离院方式 5) ÷ cases in low-risk DRGs | domain.md §2.8; low-risk rule: grouper.payment.weights |
| `rw2_share` | weighted cases with RW ≥ 2 ÷ weighted cases | domain.md §2.8 [xiaomilidoc] |
| `cost_per_weight` (每权重费用, yuan) | Σ cost ÷ total_weight over weighted cases | domain.md §2.8 |
| `los_per_weight` (每权重住院日) | Σ LOS ÷ total_weight over weighted cases | domain.md §2.8 |

Benchmarks b_g (the region's per-DRG mean cost and LOS) are, by default, the means over every
weighted case of all the inputs together (`benchmark="data"`): the region is the data given. With
`benchmark="weights"` they come from the weights table's `mean` and `los_mean` columns (the
calibration history). Cases without a cost (LOS) are left out of the cost (time) index only.

Low-risk DRGs are the weights table's `risk = low` rows when the table has a `risk` column (as
`grouper calibrate weights` writes it); otherwise they are classified from the given cases by the
same rule (`grouper.payment.weights`).
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from ..errors import InputError
from .weights import WeightOptions, _risk

NEEDED = ("hospital", "dept", "status", "drg", "cost", "los", "discharge")  # the grouped columns read
INDICATORS = ("cases", "excluded", "grouped", "grouping_rate", "drg_count", "weighted_cases", "total_weight", "cmi",
              "cost_index", "time_index", "low_risk_cases", "low_risk_deaths", "low_risk_mortality", "rw2_share",
              "cost_per_weight", "los_per_weight")


@dataclass(frozen=True)
class MetricOptions:
    min_cost: int = 500          # fen: cases under 5 元 are excluded (as in calibration)
    max_los: int | None = 60
    min_los: int | None = None
    benchmark: str = "data"      # "data" or "weights"
    by_dept: bool = True
    risk_min_cases: int = 30
    risk_z: float = -1.0


def weights_table(weights: pl.DataFrame | dict | None) -> pl.DataFrame:
    """drg, weight (+ mean, los_mean, risk when present) from a frame, a {drg: weight} dict or a CSV's frame."""
    if weights is None:
        raise InputError("hospital metrics need relative weights: give a weights table (--weights) "
                         "or a scheme with `weights = TABLE`")
    if isinstance(weights, dict):
        weights = pl.DataFrame({"drg": list(weights), "weight": list(weights.values())},
                               schema={"drg": pl.String, "weight": pl.Float64})
    missing = {"drg", "weight"} - set(weights.columns)
    if missing:
        raise InputError(f"the weights table lacks {sorted(missing)}; it needs at least drg and weight")
    keep = [c for c in ("drg", "weight", "mean", "los_mean", "risk") if c in weights.columns]
    table = weights.select(keep).with_columns(pl.col("drg").cast(pl.String), pl.col("weight").cast(pl.Float64, strict=False))
    if "insurance" in weights.columns:
        raise InputError("hospital metrics need one weight per DRG: give the weights of one insurance type")
    duplicated = table.filter(pl.col("drg").is_duplicated())["drg"].unique().to_list()
    if duplicated:
        raise InputError(f"the weights table lists DRG(s) twice: {', '.join(map(str, duplicated[:5]))}")
    return table


def hospital_metrics(grouped: pl.DataFrame | pl.LazyFrame, weights: pl.DataFrame | dict,
                     options: MetricOptions | None = None, **overrides) -> pl.DataFrame:
    """The indicators per hospital (and per hospital and department), see the module doc."""
    from dataclasses import replace

    options = replace(options or MetricOptions(), **overrides)
    if options.benchmark not in ("data", "weights"):
        raise InputError(f"unknown benchmark {options.benchmark!r}: use data or weights")
    table = weights_table(weights)
    frame = grouped.lazy()
    schema = frame.collect_schema()
    for name, dtype in (("hospital", pl.String), ("dept", pl.String), ("cost", pl.Int64), ("los", pl.Int32),
                        ("discharge", pl.Int32)):
        if name not in schema:
            frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(name))
    if "status" not in schema or "drg" not in schema:
        raise InputError("hospital metrics need grouped cases (status, drg): group with `--carry` first")
    excluded = pl.lit(False)
    if options.min_cost is not None:
        excluded = excluded | (pl.col("cost") < options.min_cost).fill_null(False)
    if options.max_los is not None:
        excluded = excluded | (pl.col("los") > options.max_los).fill_null(False)
    if options.min_los is not None:
        excluded = excluded | (pl.col("los") < options.min_los).fill_null(False)
    frame = frame.select("hospital", "dept", "status", "drg", "cost", "los", "discharge").with_columns(
        excluded.alias("excluded"))
    frame = frame.with_columns((~pl.col("excluded") & (pl.col("status") == "grouped")).alias("grouped"))
    frame = frame.join(table.lazy().select("drg", "weight"), on="drg", how="left")
    weighted = pl.col("grouped") & pl.col("weight").is_not_null()
    frame = frame.with_columns(weighted.alias("weighted"), (pl.col("discharge") == 5).alias("death"))

    # benchmarks per DRG: the data's own means (default) or the weights table's
    if options.benchmark == "weights":
        if not {"mean", "los_mean"} <= set(table.columns):
            raise InputError("benchmark=weights needs the weights table's mean and los_mean columns "
                             "(as `grouper calibrate weights` writes them)")
        bench = table.lazy().select("drg", (pl.col("mean") * 100).alias("b_cost"), pl.col("los_mean").alias("b_los"))
    else:
        bench = frame.filter(pl.col("weighted")).group_by("drg").agg(
            pl.col("cost").mean().alias("b_cost"), pl.col("los").cast(pl.Float64).mean().alias("b_los"))
    # low-risk DRGs: the table's classification, else the same rule on these cases
    if "risk" in table.columns:
        low = table.lazy().filter(pl.col("risk") == "low").select("drg")
    else:
        rates = frame.filter(pl.col("grouped")).group_by("drg").agg(
            pl.len().alias("n"), (pl.col("death").sum() / pl.len()).alias("mortality"))
        low = _risk(rates, WeightOptions(risk_min_cases=options.risk_min_cases, risk_z=options.risk_z), []) \
            .filter(pl.col("risk") == "low").select("drg")
    frame = (frame.join(bench, on="drg", how="left")
             .join(low.with_columns(pl.lit(True).alias("low_risk")), on="drg", how="left")
             .with_columns(pl.col("low_risk").fill_null(False) & pl.col("grouped")))

    def indicators(keys: list[str]) -> pl.LazyFrame:
        w = pl.col("weighted")
        total_weight = pl.col("weight").filter(w).sum()
        weighted_cases = w.sum()
        cost_ratio = (pl.col("cost") / pl.col("b_cost")).filter(w & pl.col("cost").is_not_null() & (pl.col("b_cost") > 0))
        los_ratio = (pl.col("los") / pl.col("b_los")).filter(w & pl.col("los").is_not_null() & (pl.col("b_los") > 0))
        low_cases = pl.col("low_risk").sum()
        low_deaths = (pl.col("low_risk") & pl.col("death")).sum()
        return frame.group_by(keys).agg(
            pl.len().alias("cases"),
            pl.col("excluded").sum().alias("excluded"),
            pl.col("grouped").sum().alias("grouped"),
            (pl.col("grouped").sum() / (pl.len() - pl.col("excluded").sum())).alias("grouping_rate"),
            pl.col("drg").filter(pl.col("grouped")).n_unique().alias("drg_count"),
            weighted_cases.alias("weighted_cases"),
            total_weight.alias("total_weight"),
            (total_weight / weighted_cases).alias("cmi"),
            cost_ratio.mean().alias("cost_index"),
            los_ratio.mean().alias("time_index"),
            low_cases.alias("low_risk_cases"),
            low_deaths.alias("low_risk_deaths"),
            pl.when(low_cases > 0).then(low_deaths / low_cases).alias("low_risk_mortality"),
            ((pl.col("weight") >= 2) & w).sum().truediv(weighted_cases).alias("rw2_share"),
            (pl.col("cost").filter(w).sum() / 100 / total_weight).alias("cost_per_weight"),
            (pl.col("los").filter(w).sum() / total_weight).alias("los_per_weight"),
        )

    parts = [indicators(["hospital"]).with_columns(pl.lit(None, pl.String).alias("dept"))]
    if options.by_dept:
        parts.append(indicators(["hospital", "dept"]).filter(pl.col("dept").is_not_null()))
    counts = ("cases", "excluded", "grouped", "drg_count", "weighted_cases", "low_risk_cases", "low_risk_deaths")
    frames = pl.collect_all(parts)
    out = pl.concat([f.select("hospital", "dept", *INDICATORS) for f in frames], how="vertical_relaxed")
    return (out.with_columns(pl.col(counts).cast(pl.Int64))
            .sort("hospital", "dept", nulls_last=False))
