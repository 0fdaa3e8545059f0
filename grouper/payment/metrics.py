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

`grouper metrics` writes the values rounded (`rounded`, `DECIMALS`): shares and indices (grouping_rate, cmi, cost_index,
time_index, low_risk_mortality, rw2_share) and total_weight to 4 decimals, cost_per_weight to the
fen (yuan, 2 decimals), los_per_weight to 2 decimals.

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

import numpy as np
import polars as pl

from ..errors import InputError
from ._common import group_ids
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
    """drg, weight (+ mean, los_mean, risk when present) from a frame, a {drg: weight} dict or a
    file's frame, checked as settle checks a weights table (grouper.payment.settle.checked_weights:
    a weight that is blank, NaN, infinite or not positive, a DRG listed twice, is refused)."""
    from .settle import checked_weights

    if weights is None:
        raise InputError("hospital metrics need relative weights: give a weights table (--weights) "
                         "or a scheme with `weights = TABLE`")
    if isinstance(weights, dict):
        weights = pl.DataFrame({"drg": list(weights), "weight": list(weights.values())},
                               schema={"drg": pl.String, "weight": pl.Float64})
    if "insurance" in weights.columns:
        raise InputError("hospital metrics need one weight per DRG: give the weights of one insurance type")
    weights = checked_weights(weights)
    keep = [c for c in ("drg", "weight", "mean", "los_mean", "risk") if c in weights.columns]
    return weights.select(keep).with_columns(pl.col("drg").cast(pl.String),
                                             *(pl.col(c).cast(pl.String).str.replace_all(",", "").cast(pl.Float64)
                                               for c in ("weight", "mean", "los_mean") if c in keep))


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
        excluded.alias("excluded"), (pl.col("discharge") == 5).fill_null(False).alias("death"),
    ).with_columns((~pl.col("excluded") & (pl.col("status") == "grouped")).alias("grouped")).collect()
    # Everything below is O(n) NumPy over small integer ids (DRG, hospital, hospital × department):
    # per-DRG values reach the rows by a gather, every indicator is a bincount.
    drg_id = group_ids(frame, ["drg"])
    drgs = _keys_of(frame, ["drg"], drg_id)["drg"]
    per_drg = drgs.to_frame().join(table, on="drg", how="left", maintain_order="left")
    weight = _floats(per_drg["weight"])[drg_id]
    grouped = frame["grouped"].to_numpy()
    weighted = grouped & ~np.isnan(weight)
    cost, los = _floats(frame["cost"]), _floats(frame["los"])
    death = frame["death"].to_numpy()
    n_drgs = len(drgs)

    def by_drg(values) -> np.ndarray:
        return np.bincount(drg_id, weights=values, minlength=n_drgs)

    if options.benchmark == "weights":
        if not {"mean", "los_mean"} <= set(table.columns):
            raise InputError("benchmark=weights needs the weights table's mean and los_mean columns "
                             "(as `grouper calibrate weights` writes them)")
        b_cost, b_los = _floats(per_drg["mean"]) * 100, _floats(per_drg["los_mean"])
    else:  # the data's own per-DRG means over weighted cases
        with np.errstate(invalid="ignore", divide="ignore"):
            b_cost = by_drg(np.where(weighted & ~np.isnan(cost), cost, 0)) / by_drg(weighted & ~np.isnan(cost))
            b_los = by_drg(np.where(weighted & ~np.isnan(los), los, 0)) / by_drg(weighted & ~np.isnan(los))
    if "risk" in table.columns:
        low_by_drg = (per_drg["risk"] == "low").fill_null(False).to_numpy()
    else:  # the calibration's rule on these cases
        n = by_drg(grouped)
        rates = pl.DataFrame({"drg": drgs, "n": n, "mortality": np.divide(by_drg(grouped & death), np.maximum(n, 1))})
        low_by_drg = (_risk(rates, WeightOptions(risk_min_cases=options.risk_min_cases, risk_z=options.risk_z), [])
                      ["risk"] == "low").fill_null(False).to_numpy()
    low = low_by_drg[drg_id] & grouped
    with np.errstate(invalid="ignore", divide="ignore"):
        cost_ratio = np.where(weighted, cost / b_cost[drg_id], np.nan)
        los_ratio = np.where(weighted, los / b_los[drg_id], np.nan)
    cost_ratio[~np.isfinite(cost_ratio)] = np.nan
    los_ratio[~np.isfinite(los_ratio)] = np.nan
    row_values = {
        "cases": np.ones(len(grouped)), "excluded": frame["excluded"].to_numpy(), "grouped": grouped,
        "weighted_cases": weighted, "total_weight": np.where(weighted, weight, 0.0),
        "cost_ratio": np.nan_to_num(cost_ratio), "cost_ratio_n": ~np.isnan(cost_ratio),
        "los_ratio": np.nan_to_num(los_ratio), "los_ratio_n": ~np.isnan(los_ratio),
        "low_risk_cases": low, "low_risk_deaths": low & death, "rw2": weighted & (weight >= 2),
        "cost": np.where(weighted, np.nan_to_num(cost), 0.0), "los": np.where(weighted, np.nan_to_num(los), 0.0),
    }

    def indicators(keys: list[str]) -> pl.DataFrame:
        gid = group_ids(frame, keys)
        size = int(gid.max()) + 1 if len(gid) else 0
        t = {name: np.bincount(gid, weights=values, minlength=size) for name, values in row_values.items()}
        seen = np.bincount(gid[grouped] * n_drgs + drg_id[grouped], minlength=size * n_drgs) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            out = _keys_of(frame, keys, gid).with_columns(
                pl.Series("cases", t["cases"]), pl.Series("excluded", t["excluded"]), pl.Series("grouped", t["grouped"]),
                _ratio("grouping_rate", t["grouped"], t["cases"] - t["excluded"]),
                pl.Series("drg_count", seen.reshape(size, n_drgs).sum(axis=1) if size else np.zeros(0)),
                pl.Series("weighted_cases", t["weighted_cases"]), pl.Series("total_weight", t["total_weight"]),
                _ratio("cmi", t["total_weight"], t["weighted_cases"]),
                _ratio("cost_index", t["cost_ratio"], t["cost_ratio_n"]),
                _ratio("time_index", t["los_ratio"], t["los_ratio_n"]),
                pl.Series("low_risk_cases", t["low_risk_cases"]), pl.Series("low_risk_deaths", t["low_risk_deaths"]),
                _ratio("low_risk_mortality", t["low_risk_deaths"], t["low_risk_cases"]),
                _ratio("rw2_share", t["rw2"], t["weighted_cases"]),
                _ratio("cost_per_weight", t["cost"] / 100, t["total_weight"]),
                _ratio("los_per_weight", t["los"], t["total_weight"]),
            )
        return out

    parts = [indicators(["hospital"]).with_columns(pl.lit(None, pl.String).alias("dept"))]
    if options.by_dept:
        parts.append(indicators(["hospital", "dept"]).filter(pl.col("dept").is_not_null()))
    counts = ("cases", "excluded", "grouped", "drg_count", "weighted_cases", "low_risk_cases", "low_risk_deaths")
    out = pl.concat([f.select("hospital", "dept", *INDICATORS) for f in parts], how="vertical_relaxed")
    return (out.with_columns(pl.col(counts).cast(pl.Int64))
            .sort("hospital", "dept", nulls_last=False))


def rounded(metrics: pl.DataFrame) -> pl.DataFrame:
    """The indicators at their written precision (`DECIMALS`), as `grouper metrics` writes them."""
    return metrics.with_columns(pl.col(c).round(d) for c, d in DECIMALS.items() if c in metrics.columns)


# Written precision (half away from zero, from the float quotient): shares and indices to 4 decimals,
# the total weight to 4 (RWs have 4), money per weight to the fen, days per weight to 2.
DECIMALS = {"grouping_rate": 4, "total_weight": 4, "cmi": 4, "cost_index": 4, "time_index": 4, "low_risk_mortality": 4,
            "rw2_share": 4, "cost_per_weight": 2, "los_per_weight": 2}


def _floats(series: pl.Series) -> np.ndarray:
    """Float64 values with NaN for nulls."""
    return series.cast(pl.Float64).fill_null(np.nan).to_numpy()


def _ratio(name: str, numerator: np.ndarray, denominator: np.ndarray) -> pl.Series:
    """numerator / denominator, null where the denominator is 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan)
    return pl.Series(name, values).fill_nan(None)


def _keys_of(frame: pl.DataFrame, keys: list[str], gid: np.ndarray) -> pl.DataFrame:
    """The key values of each id 0..G-1, in id order."""
    return (frame.select(keys).with_columns(pl.Series("_gid", gid)).group_by("_gid").agg(pl.first(k) for k in keys)
            .sort("_gid").drop("_gid"))
