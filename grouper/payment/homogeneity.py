"""Homogeneity of a grouping on a cost history: what a payer reads before adopting a scheme.

Computed on the cases `grouper.payment.weights` keeps (included, trimmed, year-weighted with w), so
the report describes the same data as the weights:

- **RIV** (reduction in variance, 变异减低系数) = 1 − SSW / SST, with SST = Σ w (c − c̄)² around the mean
  of the scope and SSW = Σ_g Σ w (c − m_g)² around each DRG's mean [domain.md §2.1; 2.0 reports 0.71].
  Scopes: ``overall``, each MDC, each ADRG (the share of the ADRG's variance its DRG split
  explains; 0 for an ADRG with one DRG). ``riv_untrimmed`` is the overall RIV on every included
  case before trimming.
- **CV per DRG** (as in the weights table) and the share of kept cases in DRGs with CV > 1.
- **Merge candidates:** pairs of DRGs of one ADRG, adjacent by mean cost; merging them lowers the
  overall RIV by ΔRIV = W₁W₂/(W₁+W₂)·(m₁ − m₂)² / SST (the between-pair sum of squares). The
  smallest ΔRIV first: splits that buy little.
- **Split candidates:** for each DRG, the best binary split on LOS (≥ t, every t seen), age (≥ t) and
  death (离院方式 5), both sides with at least `min_cases` cases; the split raises the overall RIV by
  ΔRIV = W_l W_r / W · (m_l − m_r)² / SST. The largest ΔRIV first.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import polars as pl


from .weights import Prepared, WeightOptions, _options, group_moments, prepare

SPLIT_VARIABLES = ("los", "age")


@dataclass
class Homogeneity:
    summary: pl.DataFrame   # metric, value
    riv: pl.DataFrame       # scope (overall/mdc/adrg), code, cases, drgs, riv
    drgs: pl.DataFrame      # drg, adrg, mdc, cases, mean, cv
    merges: pl.DataFrame    # adrg, drg_a, drg_b, cases_a, cases_b, mean_a, mean_b, riv_loss
    splits: pl.DataFrame    # drg, variable, threshold, cases_low, cases_high, mean_low, mean_high, riv_gain


def _riv(groups: pl.DataFrame, scope: list[str], *, trimmed: bool = True) -> pl.DataFrame:
    """RIV per scope from the per-DRG sums (an empty scope: one overall row).

    SSW_g = W_g·var_g; SST = Σ_g [SSW_g + W_g·(m_g − M)²] with M the scope's weighted mean."""
    W, S, D, Q = ("W", "S", "D", "Q") if trimmed else ("W_all", "S_all", "D_all", "Q_all")
    per_drg = groups.filter(pl.col(W) > 0).with_columns(
        (pl.col(S) / pl.col(W)).alias("_m"),
        ((pl.col(Q) / pl.col(W) - (pl.col(D) / pl.col(W)) ** 2).clip(lower_bound=0) * pl.col(W)).alias("_ssw"),
        pl.lit("overall").alias("_all"))
    by = scope or ["_all"]
    per_drg = per_drg.with_columns((pl.col(S).sum().over(by) / pl.col(W).sum().over(by)).alias("_M"))
    return per_drg.group_by(by).agg(
        (pl.col("n_kept") if trimmed else pl.col("n")).sum().alias("cases"), pl.len().alias("drgs"),
        (pl.col("_ssw") + pl.col(W) * (pl.col("_m") - pl.col("_M")) ** 2).sum().alias("sst"),
        pl.col("_ssw").sum().alias("ssw"),
    ).with_columns(pl.when(pl.col("sst") > 0).then(1 - pl.col("ssw") / pl.col("sst")).otherwise(0.0).alias("riv"))


def homogeneity(grouped, options: WeightOptions | None = None, *, top: int = 20, **overrides) -> Homogeneity:
    """The homogeneity report of a grouped history (see the module doc); `grouped` may be the result
    of `grouper.payment.weights.prepare` (shared with the calibration)."""
    if isinstance(grouped, Prepared) and options is None and not overrides:
        options = grouped.options
    # the report is about the grouping: one set of groups over all insurance types
    options = replace(_options(options, overrides), by_insurance=False)
    if isinstance(grouped, Prepared) and grouped.options != options:
        raise ValueError("homogeneity needs the history itself, or prepared with the same options and no by_insurance")
    prepared = prepare(grouped, options)
    groups = prepared.groups.filter(pl.col("drg").is_not_null())
    overall, untrimmed = _riv(groups, []), _riv(groups, [], trimmed=False)
    riv = pl.concat([
        overall.select(pl.lit("overall").alias("scope"), pl.lit(None, pl.String).alias("code"), "cases", "drgs", "riv"),
        _riv(groups, ["mdc"]).select(pl.lit("mdc").alias("scope"), pl.col("mdc").alias("code"), "cases", "drgs",
                                     "riv").sort("code"),
        _riv(groups, ["adrg"]).select(pl.lit("adrg").alias("scope"), pl.col("adrg").alias("code"), "cases", "drgs",
                                      "riv").sort("code"),
    ], how="vertical_relaxed").with_columns(pl.col("cases", "drgs").cast(pl.Int64))
    sst = float(overall["sst"].item()) if overall.height else 0.0
    drg_df = (groups.filter(pl.col("W") > 0).with_columns(group_moments(groups))
              .select("drg", "adrg", "mdc", pl.col("n_kept").alias("cases"), "W", pl.col("trimmed_mean").alias("mean"),
                      (pl.col("variance").sqrt() / pl.col("trimmed_mean")).alias("cv"), "S"))
    merges = _merges(drg_df, sst).head(top)
    splits = _splits(prepared.rows.lazy().filter(pl.col("kept")), drg_df, sst, options.min_cases).head(top)
    kept_cases = int(drg_df["cases"].sum()) if drg_df.height else 0
    over_one = int(drg_df.filter(pl.col("cv") > 1)["cases"].sum()) if drg_df.height else 0
    summary = pl.DataFrame({
        "metric": ["cases_kept", "drgs", "riv", "riv_untrimmed", "share_cases_cv_over_1", "drgs_cv_over_1"],
        "value": [float(kept_cases), float(drg_df.height),
                  float(overall["riv"].item()) if overall.height else None,
                  float(untrimmed["riv"].item()) if untrimmed.height else None,
                  over_one / kept_cases if kept_cases else None,
                  float(drg_df.filter(pl.col("cv") > 1).height)],
    })
    drgs_out = drg_df.select("drg", "adrg", "mdc", pl.col("cases").cast(pl.Int64), pl.col("mean").round(2), "cv").sort("drg")
    return Homogeneity(summary, riv, drgs_out, merges, splits)


def _merges(drgs: pl.DataFrame, sst: float) -> pl.DataFrame:
    """Adjacent (by mean) DRG pairs within each ADRG and the RIV their merge would lose."""
    ordered = drgs.sort("adrg", "mean").with_columns(
        pl.col(c).shift(-1).over("adrg").alias(f"{c}_b") for c in ("drg", "cases", "W", "mean"))
    pairs = ordered.filter(pl.col("drg_b").is_not_null())
    loss = (pl.col("W") * pl.col("W_b") / (pl.col("W") + pl.col("W_b")) * (pl.col("mean") - pl.col("mean_b")) ** 2)
    return pairs.select(
        "adrg", pl.col("drg").alias("drg_a"), "drg_b", pl.col("cases").cast(pl.Int64).alias("cases_a"),
        pl.col("cases_b").cast(pl.Int64), pl.col("mean").round(2).alias("mean_a"), pl.col("mean_b").round(2),
        (loss / sst if sst > 0 else pl.lit(0.0)).alias("riv_loss"),
    ).sort("riv_loss", "adrg", "drg_a")


def _splits(kept: pl.LazyFrame, drgs: pl.DataFrame, sst: float, min_cases: int) -> pl.DataFrame:
    """The best binary split of each DRG on each variable, with the RIV it would add."""
    totals = drgs.lazy().select("drg", pl.col("cases").alias("n"), "W", "S")
    candidates = []
    for variable in SPLIT_VARIABLES:
        by_value = (kept.filter(pl.col(variable).is_not_null())
                    .group_by("drg", pl.col(variable).cast(pl.Float64).alias("threshold"))
                    .agg(pl.len().alias("c"), pl.col("w").sum().alias("cw"), (pl.col("w") * pl.col("yuan")).sum().alias("cs"))
                    .sort("drg", "threshold", descending=[False, True])
                    # cases with value >= threshold: cumulative from the top
                    .with_columns(pl.col("c", "cw", "cs").cum_sum().over("drg").name.suffix("_high")))
        candidates.append(by_value.select("drg", pl.lit(variable).alias("variable"), "threshold",
                                          pl.col("c_high"), pl.col("cw_high"), pl.col("cs_high")))
    death = (kept.filter(pl.col("discharge") == 5).group_by("drg")
             .agg(pl.len().alias("c_high"), pl.col("w").sum().alias("cw_high"),
                  (pl.col("w") * pl.col("yuan")).sum().alias("cs_high"))
             .select("drg", pl.lit("death").alias("variable"), pl.lit(5.0).alias("threshold"),
                     "c_high", "cw_high", "cs_high"))
    candidates.append(death)
    split = pl.concat(candidates, how="vertical_relaxed").join(totals, on="drg")
    low_w, low_s = pl.col("W") - pl.col("cw_high"), pl.col("S") - pl.col("cs_high")
    mean_low, mean_high = low_s / low_w, pl.col("cs_high") / pl.col("cw_high")
    gain = low_w * pl.col("cw_high") / pl.col("W") * (mean_low - mean_high) ** 2
    scored = (split.with_columns((pl.col("n") - pl.col("c_high")).alias("c_low"), mean_low.alias("mean_low"),
                                 mean_high.alias("mean_high"), (gain / sst if sst > 0 else pl.lit(0.0)).alias("riv_gain"))
              .filter((pl.col("c_low") >= min_cases) & (pl.col("c_high") >= min_cases)))
    best = scored.sort("riv_gain", descending=True).group_by("drg", "variable", maintain_order=True).first()
    return best.select(
        "drg", "variable", "threshold", pl.col("c_low").cast(pl.Int64).alias("cases_low"),
        pl.col("c_high").cast(pl.Int64).alias("cases_high"), pl.col("mean_low").round(2), pl.col("mean_high").round(2),
        "riv_gain",
    ).sort("riv_gain", "drg", "variable", descending=[True, False, False]).collect()
