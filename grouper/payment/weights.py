"""Relative weights (RW, 相对权重) per DRG from a grouped cost history.

The steps, each a parameter of `WeightOptions` with its default and source:

1. **Inclusion.** A case counts when it is `grouped`, has a cost, and passes the exclusions:
   cost ≥ `min_cost` (default 5 元) and LOS ≤ `max_los` (default 60 days) — "LOS > 60 days and
   cost < 5 元" are the common exclusions [domain.md §2.1, rehr.cn]; `min_los` (default none;
   Qingyang excludes LOS ≤ 2 d [REG]). Excluded cases are counted by reason (`Calibration.excluded`).
2. **Year weights** (`year_weights`, default none = every year 1). ``(1, 2, 7)`` weights the three
   most recent discharge years present 1:2:7, oldest first (the DIP 3-year practice, domain.md §6);
   older years get weight 0 and are excluded (`old_year`). A ``{year: weight}`` mapping names years
   explicitly. Cases without a discharge date (admission date as fallback) are excluded (`no_year`)
   when year weights are given.
3. **Trimming** per DRG (per insurance type and DRG with `by_insurance`) on the included costs,
   unweighted, quantiles by linear interpolation (numpy's default):
   - ``iqr`` (default): keep Q1 − `iqr_low`·IQR ≤ cost ≤ Q3 + `iqr_high`·IQR, defaults 0.5 and 1.5 —
     the best method of a published comparison, "upper Q3+1.5·IQR, lower Q1−0.5·IQR" as printed
     [domain.md §2.1, fx361.cc];
   - ``percentile``: keep the `pct_low`-th ≤ cost ≤ the `pct_high`-th percentile (default 2.5, 97.5);
   - ``logsd``: keep |ln cost − mean| ≤ `sd_k`·SD of ln cost (default k = 3; SD with ddof 1);
   - ``none``.
4. **Means** (year-weighted, w = the case's year weight): a DRG's trimmed mean
   m_g = Σ w·c / Σ w over its kept cases; the overall trimmed mean M = Σ w·c / Σ w over all kept
   cases (per insurance type with `by_insurance`). RW_g = m_g / M [domain.md §2.1]; points =
   RW × `scale` (default 100, "基准点数 = 病组次均费用 ÷ 全部病例次均费用 × 100", confirmed in three
   regions, settlement.md §0).
5. **Thin groups.** A DRG with fewer than `min_cases` kept cases (default 5: "病例数过少(原则上少于5例)"
   go to 特病单议 in Zhejiang, settlement.md §1.1) takes its ADRG's pooled trimmed mean (all kept
   cases of the ADRG's DRGs): `basis = adrg`. When the ADRG is thin too, the DRG keeps its own mean,
   `basis = thin`. Otherwise `basis = own`.
6. **Stability.** `stable` = basis own and CV ≤ `max_cv` (default 1: "within-group CV < 1 is the usual
   target", domain.md §2.1). CV = weighted SD (population form, Σw(c−m)²/Σw) ÷ weighted mean, over the
   kept cases.
7. **Low-risk groups** (for 低风险组死亡率, domain.md §2.8 [UNVERIFIED definition]): over DRGs with at
   least `risk_min_cases` included cases, mortality r_g = deaths (离院方式 5) ÷ cases; z = the standard
   score of ln r_g across the DRGs with r_g > 0 (the log because group mortality is strongly
   right-skewed, our choice). `risk` = ``low`` when r_g = 0 or z < −1, ``mid_low`` when z < 0,
   ``mid_high`` when z < 1, else ``high``; null for DRGs with too few cases.

**Invariant kept exactly** (before rounding): Σ_g W_g·rw_own_g / Σ_g W_g = 1, where W_g = Σ w over the
kept cases of DRG g and rw_own = m_g / M, summed over all DRGs (per insurance type). It follows from
M being the W-weighted mean of the m_g. The published `weight` equals rw_own except for thin groups
(basis adrg); with no year weights W_g is the kept case count, so the case-weighted mean RW of the
trimmed history is 1.

Output (`Calibration.weights`), one row per DRG: ``[insurance,] drg, adrg, mdc, weight, points, n,
n_trimmed, n_kept, mean, median, trimmed_mean, cv, los_mean, basis, stable, rw_own, deaths,
mortality, risk``. Money (`mean`, `median`, `trimmed_mean`) is yuan to the fen: `median` (the plain
median of the included cases) exactly, a half fen rounded half up; `mean` (the year-weighted mean
before trimming) and `trimmed_mean` rounded to the fen from their quotient. `weight` and `points`
are rounded to `decimals` (default 4), and then `rw_own` to 6 decimals, `cv` and `mortality` to 4,
`los_mean` to 2 (days); `decimals = None` keeps every digit of these. The IQR and percentile fences are compared exactly in fen. The first two columns are
what a scheme's `weights = TABLE` reads.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

import numpy as np
import polars as pl

from ..errors import InputError
from ._common import group_ids

TRIM_METHODS = ("iqr", "percentile", "logsd", "none")
# the grouped columns calibration and the homogeneity report read
NEEDED = ("status", "mdc", "adrg", "drg", "cost", "los", "discharge", "age", "admission_date", "discharge_date",
          "insurance")


@dataclass(frozen=True)
class WeightOptions:
    trim: str = "iqr"
    iqr_low: float = 0.5
    iqr_high: float = 1.5
    pct_low: float = 2.5
    pct_high: float = 97.5
    sd_k: float = 3.0
    year_weights: Sequence[float] | Mapping[int, float] | None = None
    min_cases: int = 5
    max_cv: float = 1.0
    min_cost: int = 500          # fen (5 元)
    min_los: int | None = None
    max_los: int | None = 60
    by_insurance: bool = False
    scale: float = 100.0
    decimals: int | None = 4
    risk_min_cases: int = 30
    risk_z: float = -1.0

    def __post_init__(self):
        if self.trim not in TRIM_METHODS:
            raise InputError(f"unknown trimming method {self.trim!r}; use one of {', '.join(TRIM_METHODS)}")
        if not 0 <= self.pct_low < self.pct_high <= 100:
            raise InputError(f"percentiles must satisfy 0 <= low < high <= 100, got {self.pct_low}, {self.pct_high}")
        if self.min_cases < 1:
            raise InputError("min_cases must be at least 1")
        # a NaN or an infinity fails every test below (no comparison with NaN holds)
        for name, value, least, exclusive in (("iqr_low", self.iqr_low, 0, False), ("iqr_high", self.iqr_high, 0, False),
                                              ("sd_k", self.sd_k, 0, True), ("max_cv", self.max_cv, 0, False),
                                              ("scale", self.scale, 0, True), ("min_cost", self.min_cost, 0, False),
                                              ("min_los", self.min_los, 0, False), ("max_los", self.max_los, 0, False),
                                              ("decimals", self.decimals, 0, False)):
            if value is not None and not (math.isfinite(value) and (value > least if exclusive else value >= least)):
                raise InputError(f"{name} must be a finite number {'above' if exclusive else 'of at least'} {least}, "
                                 f"not {value}")


@dataclass
class Calibration:
    weights: pl.DataFrame        # one row per DRG (see the module doc)
    excluded: pl.DataFrame       # reason, cases
    overall_mean: dict = field(default_factory=dict)  # insurance (or "all") → M in yuan
    cases: int = 0               # input rows


def parse_year_weights(text: str) -> tuple[float, ...] | dict[int, float]:
    """"1:2:7" → (1, 2, 7) (oldest first); "2022=1,2023=2,2024=7" → {2022: 1, ...}."""
    try:
        if "=" in text:
            pairs = (part.split("=") for part in text.replace(" ", "").split(","))
            return {int(year): float(weight) for year, weight in pairs}
        return tuple(float(part) for part in text.split(":"))
    except ValueError:
        raise InputError(f"bad year weights {text!r}: write 1:2:7 (oldest first) or 2022=1,2023=2,2024=7") from None


def _keys(options: WeightOptions) -> list[str]:
    return ["insurance", "drg"] if options.by_insurance else ["drg"]


def _year_weight(frame: pl.LazyFrame, options: WeightOptions) -> pl.LazyFrame:
    year = pl.coalesce(pl.col("discharge_date"), pl.col("admission_date")).dt.year()
    if options.year_weights is None:
        return frame.with_columns(year.alias("year"), pl.lit(1.0).alias("w"))
    if isinstance(options.year_weights, Mapping):
        mapping = {int(k): float(v) for k, v in options.year_weights.items()}
    else:
        years = sorted(frame.select(year.alias("y")).drop_nulls().unique().collect()["y"].to_list())
        recent = years[-len(options.year_weights):]
        weights = list(options.year_weights)[-len(recent):] if recent else []
        mapping = dict(zip(recent, map(float, weights)))
    return frame.with_columns(year.alias("year"),
                              year.replace_strict(mapping, default=0.0, return_dtype=pl.Float64).alias("w"))


@dataclass
class Prepared:
    """A history ready for calibration and the homogeneity report (computed once, shared by both).

    rows:   the included cases (keys, adrg, mdc, yuan, w, kept, los, age, discharge)
    groups: per key (DRG, or insurance and DRG): adrg, mdc, n, n_kept, deaths, median, and the
            year-weighted sums over kept cases W = Σw, S = Σw·c, D = Σw·d, Q = Σw·d², L = Σw·los,
            WL = Σw over kept cases with a LOS, and over all included cases W_all, S_all, D_all, Q_all,
            where d = c − the group's median (a shift that keeps the sums of squares exact in floats)
    """

    options: WeightOptions
    rows: pl.DataFrame
    groups: pl.DataFrame
    excluded: pl.DataFrame
    cases: int


def prepare(grouped: pl.DataFrame | pl.LazyFrame | Prepared, options: WeightOptions) -> Prepared:
    """Inclusion, year weights and trimming (module doc steps 1-3), then the per-group sums."""
    if isinstance(grouped, Prepared):
        return grouped
    frame = grouped.lazy()
    schema = frame.collect_schema()
    missing = [c for c in ("status", "drg", "cost") if c not in schema]
    if missing:
        raise InputError(f"the history lacks {missing}: give a grouped file (`grouper group ... --carry`)")
    frame = frame.with_columns(pl.lit(None, dtype=dtype).alias(name) for name, dtype in (
        ("mdc", pl.String), ("adrg", pl.String), ("los", pl.Int32), ("discharge", pl.Int32), ("age", pl.Int32),
        ("admission_date", pl.Date), ("discharge_date", pl.Date), ("insurance", pl.String)) if name not in schema)
    frame = _year_weight(frame, options)
    los = pl.col("los")
    exclusion = (pl.when(pl.col("status") != "grouped").then(pl.lit("not_grouped"))
                 .when(pl.col("cost").is_null()).then(pl.lit("no_cost"))
                 .when(pl.col("cost") < options.min_cost).then(pl.lit("low_cost")))
    if options.max_los is not None:
        exclusion = exclusion.when(los > options.max_los).then(pl.lit("long_stay"))
    if options.min_los is not None:
        exclusion = exclusion.when(los < options.min_los).then(pl.lit("short_stay"))
    if options.year_weights is not None:
        exclusion = (exclusion.when(pl.col("year").is_null()).then(pl.lit("no_year"))
                     .when(pl.col("w") <= 0).then(pl.lit("old_year")))
    frame = frame.with_columns(exclusion.otherwise(None).alias("exclusion"))
    keys = _keys(options)
    included = frame.filter(pl.col("exclusion").is_null()).select(
        *keys, *(c for c in ("adrg", "mdc") if c not in keys), (pl.col("cost") / 100).alias("yuan"), "w", "los",
        "age", "discharge", pl.col("cost").cast(pl.Int64).alias("_fen"))
    excluded = (frame.filter(pl.col("exclusion").is_not_null()).group_by("exclusion")
                .agg(pl.len().cast(pl.Int64).alias("cases")).rename({"exclusion": "reason"}).sort("reason"))
    rows, excluded, total = pl.collect_all([included, excluded, frame.select(pl.len())])
    rows = rows.with_columns(pl.Series("_gid", group_ids(rows, keys)))
    # per group (by a small integer id: faster than grouping by the text keys, and each row finds its
    # group's bounds by a gather instead of a join): median, trimming bounds, first ADRG/MDC
    bounds = (rows.group_by("_gid").agg(*(pl.first(k) for k in keys), *(pl.first(c) for c in ("adrg", "mdc")
                                                                         if c not in keys), *_fences(options))
              .sort("_gid"))
    gid = rows["_gid"].to_numpy()
    y = rows["yuan"].to_numpy()
    exact = _ExactQuantiles(rows["_fen"].to_numpy(), gid, bounds.height)
    median = bounds["_median"].to_numpy()[gid]
    if options.trim == "none":
        kept = np.ones(len(y), dtype=bool)
    elif options.trim in ("iqr", "percentile"):
        kept = exact.kept(options)
    else:
        lo, hi = bounds["_lo"].to_numpy()[gid], bounds["_hi"].to_numpy()[gid]
        with np.errstate(invalid="ignore"):
            value = np.log(y)
            kept = np.isnan(lo) | ((value >= lo) & (value <= hi))   # a group of one has no SD (logsd): kept
    d = y - median
    w = rows["w"].to_numpy()
    los = rows["los"].cast(pl.Float64).to_numpy()
    has_los = ~np.isnan(los)
    groups_n = bounds.height

    def total_of(values) -> np.ndarray:
        return np.bincount(gid, weights=values, minlength=groups_n)

    kw = w * kept
    groups = bounds.select(*keys, *(c for c in ("adrg", "mdc") if c not in keys)).with_columns(
        pl.Series("median", exact.median_fen() / 100),
        pl.Series("n", np.bincount(gid, minlength=groups_n).astype(np.int64)),
        pl.Series("n_kept", np.bincount(gid, weights=kept, minlength=groups_n).astype(np.int64)),
        pl.Series("deaths", total_of((rows["discharge"] == 5).fill_null(False).to_numpy()).astype(np.int64)),
        pl.Series("W", total_of(kw)), pl.Series("S", total_of(kw * y)), pl.Series("D", total_of(kw * d)),
        pl.Series("Q", total_of(kw * d * d)), pl.Series("L", total_of(np.where(has_los, kw * np.nan_to_num(los), 0.0))),
        pl.Series("WL", total_of(kw * has_los)),
        pl.Series("W_all", total_of(w)), pl.Series("S_all", total_of(w * y)), pl.Series("D_all", total_of(w * d)),
        pl.Series("Q_all", total_of(w * d * d)),
    )
    rows = rows.drop("_gid", "_fen").with_columns(pl.Series("kept", kept))
    return Prepared(options, rows, groups, excluded, int(total.item()))


class _ExactQuantiles:
    """Per-group quantiles of integer fen, exactly: linear interpolation (numpy's default) at p = a/b
    gives x[i] + f/b × (x[i+1] − x[i]) with i, f = divmod((n − 1) × a, b), so b × the quantile is an
    integer. The trimming fences and the median are worked out in those integers: a cost exactly on
    a fence is kept (it was lost in floating point), and a half-fen median is rounded half up."""

    def __init__(self, fen: np.ndarray, gid: np.ndarray, groups: int):
        self.sorted, self.gid = _sorted_within_groups(fen.astype(np.int64), gid, groups), gid
        self.n = np.bincount(gid, minlength=groups).astype(np.int64)
        self.start = np.cumsum(self.n) - self.n
        self.fen = fen.astype(np.int64)

    def scaled(self, p: Fraction) -> tuple[np.ndarray, int]:
        """(b × the p-quantile of each group, b), exact."""
        a, b = p.numerator, p.denominator
        i, f = np.divmod((self.n - 1) * a, b)
        low = self.sorted[self.start + i]
        high = self.sorted[self.start + np.minimum(i + 1, self.n - 1)]
        return low * b + f * (high - low), b

    def median_fen(self) -> np.ndarray:
        """Each group's median in fen, a half fen rounded half up."""
        twice, _ = self.scaled(Fraction(1, 2))
        return (twice + 1) // 2

    def kept(self, options: "WeightOptions") -> np.ndarray:
        if options.trim == "iqr":
            q1, b = self.scaled(Fraction(1, 4))
            q3, _ = self.scaled(Fraction(3, 4))
            low_k, high_k = _fraction(options.iqr_low), _fraction(options.iqr_high)
            # lo = Q1 − k·IQR ≤ cost ≤ Q3 + k'·IQR, multiplied through by b and the k denominators
            d = low_k.denominator * high_k.denominator
            iqr = q3 - q1
            lo = (q1 * d - low_k.numerator * high_k.denominator * iqr)[self.gid]
            hi = (q3 * d + high_k.numerator * low_k.denominator * iqr)[self.gid]
            value = self.fen * (b * d)
            return (value >= lo) & (value <= hi)
        lo, b_lo = self.scaled(_fraction(options.pct_low) / 100)
        hi, b_hi = self.scaled(_fraction(options.pct_high) / 100)
        return (self.fen * b_lo >= lo[self.gid]) & (self.fen * b_hi <= hi[self.gid])


def _sorted_within_groups(values: np.ndarray, gid: np.ndarray, groups: int) -> np.ndarray:
    """The values ordered by (group id, value): one sort of a combined integer key (group × span +
    value) when it fits in int64 — a tenth of the time of a two-key lexsort of 10^7 rows."""
    if not len(values):
        return values
    low = int(values.min())
    span = int(values.max()) - low + 1
    if groups * span >= 2**62:
        return values[np.lexsort((values, gid))]
    key = np.sort(gid.astype(np.int64) * span + (values - low))
    return key % span + low


def _fraction(value: float) -> Fraction:
    """An option as the decimal it was written as (0.5, 2.5, 1.5), exactly."""
    return Fraction(Decimal(str(value)))


def _fences(options: WeightOptions) -> list[pl.Expr]:
    """Per-group median (a float: only the shift of the sums of squares) and, for logsd, the
    trimming bounds on ln cost (`_lo`/`_hi`); iqr and percentile bounds are exact (`_ExactQuantiles`)."""
    c = pl.col("yuan")
    out = [c.median().alias("_median")]
    if options.trim == "logsd":
        log = c.log()
        out += [(log.mean() - options.sd_k * log.std(ddof=1)).alias("_lo"),
                (log.mean() + options.sd_k * log.std(ddof=1)).alias("_hi")]
    return out


def group_moments(groups: pl.DataFrame | pl.LazyFrame) -> list[pl.Expr]:
    """Trimmed mean m, weighted population variance and SSW = W·var of each group, from its sums."""
    mean = pl.col("S") / pl.col("W")
    variance = (pl.col("Q") / pl.col("W") - (pl.col("D") / pl.col("W")) ** 2).clip(lower_bound=0)
    return [mean.alias("trimmed_mean"), variance.alias("variance"), (variance * pl.col("W")).alias("ssw")]


def calibrate_weights(grouped: pl.DataFrame | pl.LazyFrame | Prepared, options: WeightOptions | None = None,
                      **overrides) -> Calibration:
    """Relative weights from a grouped history (see the module doc); `overrides` set WeightOptions fields.
    `grouped` may be the result of `prepare` (shared with the homogeneity report)."""
    options = grouped.options if isinstance(grouped, Prepared) and options is None and not overrides \
        else _options(options, overrides)
    prepared = prepare(grouped, options)
    keys = _keys(options)
    scope = ["insurance"] if options.by_insurance else []
    groups = prepared.groups.lazy().with_columns(group_moments(prepared.groups))
    if scope:
        overall = groups.group_by(scope).agg((pl.col("S").sum() / pl.col("W").sum()).alias("M"))
        adrg = groups.group_by([*scope, "adrg"]).agg((pl.col("S").sum() / pl.col("W").sum()).alias("adrg_mean"),
                                                     pl.col("n_kept").sum().alias("adrg_kept"))
        stats = groups.join(overall, on=scope, how="left", nulls_equal=True)
    else:
        overall = groups.select((pl.col("S").sum() / pl.col("W").sum()).alias("M"))
        adrg = groups.group_by("adrg").agg((pl.col("S").sum() / pl.col("W").sum()).alias("adrg_mean"),
                                           pl.col("n_kept").sum().alias("adrg_kept"))
        stats = groups.join(overall, how="cross")
    stats = stats.join(adrg, on=[*scope, "adrg"], how="left", nulls_equal=True)
    thin = pl.col("n_kept") < options.min_cases
    basis = (pl.when(~thin).then(pl.lit("own"))
             .when(pl.col("adrg_kept").fill_null(0) >= options.min_cases).then(pl.lit("adrg"))
             .otherwise(pl.lit("thin")))
    rw_own = pl.col("trimmed_mean") / pl.col("M")
    weight = pl.when(pl.col("basis") == "adrg").then(pl.col("adrg_mean") / pl.col("M")).otherwise(rw_own)
    result = stats.with_columns(
        basis.alias("basis"), rw_own.alias("rw_own"), (pl.col("n") - pl.col("n_kept")).alias("n_trimmed"),
        (pl.col("S_all") / pl.col("W_all")).alias("mean"), (pl.col("L") / pl.col("WL")).alias("los_mean"),
        (pl.col("variance").sqrt() / pl.col("trimmed_mean")).alias("cv"),
        (pl.col("deaths") / pl.col("n")).alias("mortality"))
    result = result.with_columns(weight.alias("weight")).with_columns(
        (pl.col("weight") * options.scale).alias("points"),
        ((pl.col("basis") == "own") & (pl.col("cv").fill_null(0) <= options.max_cv)).alias("stable"),
    )
    result = _risk(result, options, scope)
    if options.decimals is not None:
        result = result.with_columns(pl.col("weight", "points").round(options.decimals), pl.col("cv", "mortality").round(4),
                                     pl.col("los_mean").round(2), pl.col("rw_own").round(6))
    columns = [*keys, "adrg", "mdc", "weight", "points", "n", "n_trimmed", "n_kept", "mean", "median",
               "trimmed_mean", "cv", "los_mean", "basis", "stable", "rw_own", "deaths", "mortality", "risk"]
    result = result.with_columns(pl.col("mean", "trimmed_mean").round(2),
                                 pl.col("n", "n_trimmed", "n_kept", "deaths").cast(pl.Int64))
    weights, overall_df = pl.collect_all([result.select(columns).sort(keys, nulls_last=True), overall])
    mean_by_scope = ({row[0]: row[1] for row in overall_df.iter_rows()} if scope
                     else {"all": overall_df["M"].item() if overall_df.height else None})
    return Calibration(weights, prepared.excluded, mean_by_scope, prepared.cases)


def _risk(result: pl.LazyFrame, options: WeightOptions, scope: list[str]) -> pl.LazyFrame:
    eligible = pl.col("n") >= options.risk_min_cases
    positive = eligible & (pl.col("mortality") > 0)
    log = pl.when(positive).then(pl.col("mortality").log())
    over = scope or None
    mean = log.mean().over(over) if over else log.mean()
    sd = log.std(ddof=1).over(over) if over else log.std(ddof=1)
    z = (log - mean) / sd
    risk = (pl.when(~eligible).then(None)
            .when(pl.col("mortality") == 0).then(pl.lit("low"))
            .when(z.is_null()).then(None)
            .when(z < options.risk_z).then(pl.lit("low"))
            .when(z < 0).then(pl.lit("mid_low"))
            .when(z < 1).then(pl.lit("mid_high"))
            .otherwise(pl.lit("high")))
    return result.with_columns(risk.alias("risk"))


def _options(options: WeightOptions | None, overrides: dict) -> WeightOptions:
    from dataclasses import replace

    options = options or WeightOptions()
    return replace(options, **overrides) if overrides else options
