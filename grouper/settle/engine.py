"""Settle a year of grouped cases under a policy: case types, points, point values, payments.

Stages, each one function over a whole Polars frame (so no result depends on row order):

    prepare → attach base points (a BaseSource) → coefficients and prices → classify
    → points → readmission → pay (point value, largest remainder) → hospitals, groups, pools

**The seam for other payment methods.** Only `BaseSource.attach` knows what a group is.
`DrgWeights` reads a weights table (`drg, weight[, mean]`): base points = RW × scale. A DIP
source (grouper/dip) gives each case its DIP group, its score as `base_points` and the group's
mean cost; case classification, coefficients, point values, sharing bands, clearing and the
report are shared, and a policy file selects the source by `policy.method` ("points"/"rate"
use DRG weights; a DIP policy passes its own source to `settle`).

Exactness: money is integer fen (Int64). Case points are rounded half up to 1e-6 and kept as
integer micro-points, so totals are exact and independent of order. Under the points method a
pool's distributable budget D is shared in proportion to points by the largest-remainder method
in exact integer arithmetic (Int128): each case gets ⌊points × D ÷ T⌋ fen, and the fen left over
go one each to the cases with the largest remainders (ties: hospital, then id, then row content),
so Σ payments = D to the fen. Rate-method payments, standards, sharing adjustments and monthly
prepayments are rounded half up to the fen, each on its own.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Protocol

import numpy as np
import polars as pl

from ..errors import InputError
from .policy import Policy, level_value

MICRO = 1_000_000  # points are kept as integer micro-points

CASE_TYPES = ("normal", "high", "low", "incomplete", "per_diem", "special_review", "excluded", "ungrouped", "invalid")
GROUP_PAID = ("normal", "high", "low", "incomplete", "per_diem", "special_review")

# Columns the engine reads; the optional ones are filled with nulls (a rule needing them then never fires).
REQUIRED_COLUMNS = ("status", "drg", "hospital", "cost")
OPTIONAL_COLUMNS = {
    "id": pl.String, "adrg": pl.String, "hospital_level": pl.Int8, "insurance": pl.String,
    "admission_date": pl.Date, "discharge_date": pl.Date, "patient_id": pl.String,
    "special_review": pl.Boolean, "los": pl.Int32, "discharge": pl.String,
    "aux_factor": pl.Float64,  # DIP: the auxiliary catalogue's factor (grouper/dip)
}


class BaseSource(Protocol):
    """Where a case's base points come from (see the module docstring)."""

    def attach(self, cases: pl.DataFrame) -> pl.DataFrame:
        """Return `cases` with four columns added:

        group        String   the payment group (DRG code, DIP code), null when the case has none
        rw           Float64  relative weight, shown per case and used for CMI (null when unknown)
        base_points  Float64  base points B: RW × scale (points method), RW (rate method), or a
                              DIP score; null makes the case `excluded` (rule `weights`)
        group_mean   Float64  the group's mean cost in fen, for ratio.reference = group_mean
        """
        ...


@dataclass(frozen=True)
class DrgWeights:
    """Base points from a weights table: `drg, weight` (RW), optionally `mean` (yuan per case)."""

    weights: pl.DataFrame
    scale: float = 100.0

    @classmethod
    def from_csv(cls, path, scale: float) -> "DrgWeights":
        try:
            frame = pl.read_csv(path, infer_schema=False)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise InputError(f"cannot read weights table {path}: {exc}") from None
        return cls(frame, scale)

    def attach(self, cases: pl.DataFrame) -> pl.DataFrame:
        w = self.weights
        if "drg" not in w.columns or "weight" not in w.columns:
            raise InputError(f"a weights table needs columns drg and weight (it has {', '.join(w.columns)})")
        mean = pl.col("mean").cast(pl.Float64, strict=False) * 100 if "mean" in w.columns else pl.lit(None, pl.Float64)
        weight = pl.col("weight").cast(pl.Float64, strict=False)
        # a weight or mean that is not a positive number is no weight (the case is excluded, rule `weights`)
        table = (w.select(pl.col("drg").cast(pl.String).alias("group"),
                          pl.when(weight > 0).then(weight).alias("rw"),
                          pl.when(mean > 0).then(mean).alias("group_mean"))
                 .filter(pl.col("group").is_not_null())
                 .unique("group", keep="first", maintain_order=True)
                 .with_columns((pl.col("rw") * self.scale).alias("base_points")))
        return (cases.with_columns(pl.col("drg").alias("group"))
                .join(table, on="group", how="left", maintain_order="left"))


@dataclass(frozen=True)
class Settlement:
    """The results of `settle`: per case (input order), per hospital, per group, per pool."""

    cases: pl.DataFrame
    hospitals: pl.DataFrame
    groups: pl.DataFrame
    pools: pl.DataFrame
    policy: Policy


# -- helpers --------------------------------------------------------------------------------

def _level_expr(table: dict, level: pl.Expr) -> pl.Expr:
    """Per-level lookup: the level's own value, else the `default` entry, else null."""
    default = table.get("default")
    mapping = {k: float(v) for k, v in table.items() if k != "default"}
    return level.replace_strict(mapping, default=None if default is None else float(default), return_dtype=pl.Float64)


def _is_in(column: str, codes) -> pl.Expr:
    return pl.col(column).is_in(list(codes or ())) if codes else pl.lit(False)


def _round_micro(expr: pl.Expr) -> pl.Expr:
    """Non-negative points → integer micro-points, half up."""
    return (expr.clip(lower_bound=0.0) * MICRO + 0.5).floor().cast(pl.Int64, strict=False)  # NaN → null


def _half_up_fen(expr: pl.Expr) -> pl.Expr:
    return (expr + 0.5).floor().cast(pl.Int64, strict=False)  # NaN / infinity → null


def _exact_sum(expr: pl.Expr) -> pl.Expr:
    """Sum of a Float64 column to 1e-6, in integers, so that it does not depend on row order."""
    return (expr * MICRO).round(0).cast(pl.Int64).sum() / MICRO


def _to_fen(value: Decimal) -> int:
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


# -- stages ---------------------------------------------------------------------------------

def prepare(cases: pl.DataFrame) -> pl.DataFrame:
    """Check and cast the columns the engine reads; add `row` (input position)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in cases.columns]
    if missing:
        raise InputError(f"cases to settle need columns {', '.join(missing)} (a grouped file with the settlement fields)")
    exprs = [pl.col("status").cast(pl.String), pl.col("drg").cast(pl.String), pl.col("hospital").cast(pl.String),
             pl.col("cost").cast(pl.Int64, strict=False)]
    for name, dtype in OPTIONAL_COLUMNS.items():
        if name in cases.columns:
            source = pl.col(name)
            if dtype == pl.Boolean and cases.schema[name] != pl.Boolean:
                source = source.cast(pl.String).str.to_lowercase().is_in(["1", "true", "t", "y", "yes", "是"])
            exprs.append(source.cast(dtype, strict=False).alias(name))
        else:
            exprs.append(pl.lit(None, dtype).alias(name))
    out = cases.select(exprs).with_row_index("row")
    if "id" not in cases.columns:
        out = out.with_columns((pl.col("row") + 1).cast(pl.String).alias("id"))
    return out.with_columns(pl.col("special_review").fill_null(False))


def _prices(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Coefficient, pool and (rate method) base rate per case."""
    v = policy.values
    basic = _is_in("group", v["basic_groups"]["drgs"])
    level = pl.when(basic).then(pl.lit(v["basic_groups"]["level"], pl.Int8)).otherwise(pl.col("hospital_level"))
    coef = _level_expr(v["coefficients"]["level"], level)
    hospitals = v["coefficients"]["hospitals"]
    if hospitals:
        own = pl.col("hospital").replace_strict({k: float(x) for k, x in hospitals.items()}, default=None, return_dtype=pl.Float64)
        coef = pl.when(basic | own.is_null()).then(coef).otherwise(own)
    if "fixed_coefficient" in frame.columns:  # a source's own coefficient (DIP 基层病种) wins
        coef = pl.coalesce(pl.col("fixed_coefficient"), coef)
    drgs = v["coefficients"]["drgs"]
    if drgs:
        coef = coef * pl.col("group").replace_strict({k: float(x) for k, x in drgs.items()}, default=1.0, return_dtype=pl.Float64)
    annual = v["budget"]["annual"] or {}
    if "all" in annual:
        pool = pl.lit("all")
    elif annual:
        pool = pl.when(pl.col("insurance").is_in(list(annual))).then(pl.col("insurance"))
    else:
        pool = pl.col("insurance").fill_null("all")
    exprs = [coef.alias("coefficient"), pool.cast(pl.String).alias("pool"), level.alias("price_level")]
    if policy.method == "rate":
        rates = v["rate"]["base_rate"]
        rate = _level_expr(rates["all"], level) * 100 if "all" in rates else pl.lit(None, pl.Float64)
        for insurance, table in rates.items():  # a named insurance type wins over `all`
            if insurance != "all":
                rate = pl.when(pl.col("insurance") == insurance).then(_level_expr(table, level) * 100).otherwise(rate)
        exprs.append(rate.alias("rate_fen"))
    return frame.with_columns(exprs)


def _ratio_threshold(case: str, v: dict) -> tuple[pl.Expr, pl.Expr]:
    """(threshold, test) for the high or low case type."""
    rule = v["cases"][case]
    threshold = _level_expr(rule["threshold"], pl.col("hospital_level"))
    r = pl.col("cost_ratio")
    if case == "high":
        test = r >= threshold if rule["inclusive"] else r > threshold
    else:
        test = r <= threshold if rule["inclusive"] else r < threshold
    return threshold, test.fill_null(False)


def classify_fixed(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `case_type` and `rule` (the policy key that decided the type) where the cost ratio plays no part.

    In order, the first that holds: invalid (grouping status; unreadable cost; no coefficient or
    base rate for the hospital level) → ungrouped (no_adrg, ungroupable) → excluded (no base
    points: rule `weights`; points method: no budget pool for the insurance type; the
    exclusions) → per_diem. Other cases stay untyped (null) for `classify_by_ratio`.
    """
    v = policy.values
    per_day = v["cases"]["per_diem"]["per_day"] or {}
    ex = v["cases"]["exclusions"]
    steps: list[tuple[pl.Expr, str, str]] = [
        (pl.col("status") == "invalid", "invalid", "status"),
        (pl.col("cost").is_null() | (pl.col("cost") < 0), "invalid", "cost"),
        (pl.col("status") != "grouped", "ungrouped", "status"),
        (pl.col("coefficient").is_null(), "invalid", "coefficients.level"),
    ]
    if policy.method == "rate":
        steps.append((pl.col("rate_fen").is_null(), "invalid", "rate.base_rate"))
    steps.append((pl.col("base_points").is_null() & ~_is_in("group", per_day), "excluded", "weights"))
    if policy.method == "points":
        steps.append((pl.col("pool").is_null(), "excluded", "budget.annual"))
    if ex["los_at_most"] is not None:
        steps.append((pl.col("los") <= ex["los_at_most"], "excluded", "cases.exclusions.los_at_most"))
    if ex["los_at_least"] is not None:
        steps.append((pl.col("los") >= ex["los_at_least"], "excluded", "cases.exclusions.los_at_least"))
    if ex["cost_below"] is not None:
        steps.append((pl.col("cost") < ex["cost_below"], "excluded", "cases.exclusions.cost_below"))
    if ex["drgs"]:
        steps.append((_is_in("group", ex["drgs"]), "excluded", "cases.exclusions.drgs"))
    if per_day:
        steps.append((_is_in("group", per_day) & pl.col("los").is_null(), "invalid", "los"))
        steps.append((_is_in("group", per_day), "per_diem", "cases.per_diem.per_day"))
    kind, key = _first_match(steps)
    return frame.with_columns(kind.alias("case_type"), key.alias("rule"))


def classify_by_ratio(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `reference` (fen), `cost_ratio` and type the cases `classify_fixed` left open.

    In order: special_review (flagged, within the cap) → incomplete → high → low → normal.
    The reference is the group's mean cost or the case's payment standard at the budget point
    value (`budget_fen_per_point`) or base rate.
    """
    v = policy.values
    cases = v["cases"]
    price = pl.col("rate_fen") if policy.method == "rate" else pl.col("budget_fen_per_point")
    reference = (pl.col("group_mean") if v["ratio"]["reference"] == "group_mean"
                 else pl.col("base_points") * pl.col("coefficient") * price)
    frame = frame.with_columns(reference.alias("reference")).with_columns(
        (pl.col("cost") / pl.col("reference")).alias("cost_ratio"))
    frame = _special_review(frame, cases["special_review"])
    incomplete = cases["incomplete"]
    high_threshold, high = _ratio_threshold("high", v)
    low_threshold, low = _ratio_threshold("low", v)
    steps: list[tuple[pl.Expr, str, str]] = []
    if incomplete["discharge"]:
        test = pl.col("discharge").is_in([str(d) for d in incomplete["discharge"]])
        if incomplete["max_los"] is not None:
            test = test & (pl.col("los") <= incomplete["max_los"])
        steps.append((test, "incomplete", "cases.incomplete"))
    steps += [(high, "high", "cases.high"), (low, "low", "cases.low"), (pl.lit(True), "normal", "normal")]
    open_ = pl.col("case_type").is_null()
    kind, key = _first_match(steps)
    return frame.with_columns(
        pl.when(open_).then(kind).otherwise(pl.col("case_type")).alias("case_type"),
        pl.when(open_).then(key).otherwise(pl.col("rule")).alias("rule"),
        high_threshold.alias("high_threshold"), low_threshold.alias("low_threshold"),
    )


def _first_match(steps: list[tuple[pl.Expr, str, str]]) -> tuple[pl.Expr, pl.Expr]:
    """(case_type, rule) of the first step whose test holds; null when none holds."""
    kind: pl.Expr = pl.lit(None, pl.String)
    rule: pl.Expr = pl.lit(None, pl.String)
    for test, case_type, key in reversed(steps):
        holds = test.fill_null(False)
        kind = pl.when(holds).then(pl.lit(case_type)).otherwise(kind)
        rule = pl.when(holds).then(pl.lit(key)).otherwise(rule)
    return kind, rule


def _special_review(frame: pl.DataFrame, rule: dict) -> pl.DataFrame:
    """Accept flagged cases not yet typed (so paid by group) up to the cap, highest cost ratio first.

    The cap is ⌊cap × n⌋ cases, n = the cases not yet typed, per hospital or over the region.
    Ties in cost ratio are broken by hospital, then id (then cost and input position).
    """
    scope = ["hospital"] if rule["cap_scope"] == "hospital" else []
    open_ = pl.col("case_type").is_null()
    counts = frame.filter(open_).group_by(scope or pl.lit(1).alias("_all")).len("_n")
    share = Decimal(rule["cap"])
    counts = counts.with_columns(((pl.col("_n").cast(pl.Int64) * int(share * MICRO)) // MICRO).alias("_allowed"))
    flagged = (frame.filter(open_ & pl.col("special_review"))
               .select("row", "hospital", "id", "cost", pl.col("cost_ratio").fill_null(0.0).alias("_r"))
               .sort(["hospital", "_r", "id", "cost", "row"], descending=[False, True, False, False, False], nulls_last=True))
    if not scope:
        flagged = flagged.sort(["_r", "hospital", "id", "cost", "row"], descending=[True, False, False, False, False],
                               nulls_last=True).with_columns(pl.lit(1).alias("_all"))
    flagged = (flagged.with_columns(pl.int_range(1, pl.len() + 1).over(scope or "_all").alias("_rank"))
               .join(counts, on=scope or "_all", how="left")
               .select("row", (pl.col("_rank") <= pl.col("_allowed")).alias("_accepted")))
    frame = frame.join(flagged, on="row", how="left", maintain_order="left")
    accepted = pl.col("_accepted").fill_null(False)
    over = pl.col("_accepted").not_().fill_null(False)
    to_fee = over & pl.lit(rule["over_cap"] == "fee_for_service")
    return frame.with_columns(
        pl.when(accepted).then(pl.lit("special_review")).when(to_fee).then(pl.lit("excluded"))
        .otherwise(pl.col("case_type")).alias("case_type"),
        pl.when(accepted).then(pl.lit("cases.special_review")).when(to_fee).then(pl.lit("cases.special_review.over_cap"))
        .otherwise(pl.col("rule")).alias("rule"),
    ).drop("_accepted")


# -- points ---------------------------------------------------------------------------------

def _standard_points(policy: Policy) -> pl.Expr:
    """Points of a case paid at its group's standard: B × c; per-diem: per-day points × days (× c)."""
    per_diem = policy["cases"]["per_diem"]
    per_day = per_diem["per_day"] or {}
    normal = pl.col("base_points") * pl.col("coefficient")
    if not per_day:
        return normal
    days = pl.col("los").clip(lower_bound=1).cast(pl.Float64)  # a same-day stay counts one day
    daily = pl.col("group").replace_strict({k: float(x) for k, x in per_day.items()}, default=None, return_dtype=pl.Float64) * days
    if per_diem["coefficient"]:
        daily = daily * pl.col("coefficient")
    return pl.when(pl.col("case_type") == "per_diem").then(daily).otherwise(normal)


def _formula(name: str, case: str, policy: Policy, price: pl.Expr) -> pl.Expr | None:
    """Points of one case type under a named formula; None means fee-for-service (the actual cost)."""
    B, c, r, cost = pl.col("base_points"), pl.col("coefficient"), pl.col("cost_ratio"), pl.col("cost")
    t = pl.col(f"{case}_threshold") if case in ("high", "low") else None
    if name == "fee_for_service":
        return None
    return {
        "standard": lambda: B * c,
        "cost": lambda: cost / price,
        "excess_ratio": lambda: B * c + B * (r - t),
        "excess_ratio_coefficient": lambda: B * c * (1 + r - t),
        "excess_ratio_plus_coefficient": lambda: B * (r - t + c),
        "excess_cost": lambda: B * c + float(policy["cases"]["high"]["marginal"]) * (cost - t * pl.col("reference")) / price,
        "ratio": lambda: B * c * r,
        "ratio_capped": lambda: pl.min_horizontal(B * c * r, B),
        "ratio_capped_no_coefficient": lambda: pl.min_horizontal(B * r, B),
    }[name]()


def case_points(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `paid_by` (group / fee_for_service / none) and `points` (Float64, before readmission).

    `price` is fen per point (budget point value) or fen per unit of RW (base rate): a cost-based
    formula turns the actual cost into points at that price.
    """
    cases = policy["cases"]
    price = pl.col("rate_fen") if policy.method == "rate" else pl.col("budget_fen_per_point")
    cost_points = pl.col("cost") / price
    points = pl.lit(None, pl.Float64)
    paid_by = pl.lit("group")
    table = {
        "normal": pl.col("base_points") * pl.col("coefficient"),
        "per_diem": _standard_points(policy),
        "high": _formula(cases["high"]["formula"], "high", policy, price),
        "low": _formula(cases["low"]["formula"], "low", policy, price),
        "incomplete": _formula(cases["incomplete"]["formula"], "incomplete", policy, price),
        "special_review": _formula(cases["special_review"]["pay"], "special_review", policy, price),
    }
    for case_type, expr in table.items():
        is_type = pl.col("case_type") == case_type
        if expr is None:
            paid_by = pl.when(is_type).then(pl.lit("fee_for_service")).otherwise(paid_by)
        else:
            points = pl.when(is_type).then(expr).otherwise(points)
    unpaid = pl.col("case_type").is_in(["ungrouped", "invalid"])
    ungrouped = cases["ungrouped"]["pay"]
    cost_known = pl.col("cost").is_not_null() & price.is_not_null() & pl.col("pool").is_not_null()
    if ungrouped == "cost":
        points = pl.when(unpaid & cost_known).then(cost_points).otherwise(points)
        paid_by = pl.when(unpaid).then(pl.when(cost_known).then(pl.lit("group")).otherwise(pl.lit("fee_for_service"))) \
            .otherwise(paid_by)
    else:
        paid_by = pl.when(unpaid).then(pl.lit(ungrouped)).otherwise(paid_by)
    paid_by = (pl.when(pl.col("case_type") == "excluded").then(pl.lit("fee_for_service")).otherwise(paid_by))
    # a cost that is unknown cannot be paid by item
    paid_by = pl.when((paid_by == "fee_for_service") & pl.col("cost").is_null()).then(pl.lit("none")).otherwise(paid_by)
    return frame.with_columns(paid_by.alias("paid_by")).with_columns(
        pl.when(pl.col("paid_by") == "group").then(points).otherwise(None).alias("points"))


def readmissions(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `readmission_factor`: the policy factor for an earlier stay followed, within the window,
    by a stay of the same patient in the same ADRG (or DRG); 1 otherwise.

    Both stays must be grouped; the earlier one must be paid by group (not special review);
    a stay is reduced once however many stays follow; either stay's DRG or ADRG being listed
    in `exceptions` spares it. Stays are ordered by admission date, discharge date, id.
    """
    rule = policy["readmission"]
    one = pl.lit(1.0).alias("readmission_factor")
    if rule["days"] is None:
        return frame.with_columns(one)
    key = "group" if rule["same"] == "drg" else "adrg"
    partition = ["patient_id", key, *(["hospital"] if rule["same_hospital"] else [])]
    exceptions = list(rule["exceptions"] or ())
    stays = (frame.filter((pl.col("status") == "grouped") & pl.col("patient_id").is_not_null() & pl.col(key).is_not_null()
                          & pl.col("admission_date").is_not_null() & pl.col("discharge_date").is_not_null())
             .select(*dict.fromkeys(["row", *partition, "admission_date", "discharge_date", "id", "group", "adrg", "case_type",
                                     "paid_by"]))
             .sort([*partition, "admission_date", "discharge_date", "id", "row"]))
    excepted = pl.col("group").is_in(exceptions) | pl.col("adrg").is_in(exceptions) if exceptions else pl.lit(False)
    stays = stays.with_columns(
        pl.col("admission_date").shift(-1).over(partition).alias("_next_admission"),
        excepted.shift(-1).over(partition).alias("_next_excepted"),
        excepted.alias("_excepted"))
    gap = (pl.col("_next_admission") - pl.col("discharge_date")).dt.total_days()
    reduced = ((gap >= 0) & (gap <= rule["days"]) & ~pl.col("_excepted") & ~pl.col("_next_excepted").fill_null(False)
               & (pl.col("paid_by") == "group") & (pl.col("case_type") != "special_review")).fill_null(False)
    hits = stays.filter(reduced).select("row", pl.lit(float(rule["factor"])).alias("readmission_factor"))
    return (frame.join(hits, on="row", how="left", maintain_order="left")
            .with_columns(pl.col("readmission_factor").fill_null(1.0)))


# -- money ----------------------------------------------------------------------------------

def _budget_point_values(frame: pl.DataFrame, policy: Policy) -> dict[str, dict]:
    """Per pool: budget, reserve, fee-for-service inside, distributable before the year, 预算点值 (fen per point).

    预算点值 = (budget − reserve − the cost of cases paid from the pool by cost outside the
    points: fee-for-service exclusions and ungrouped cases when fee_for_service_inside, and
    ungrouped cases valued by cost) ÷ the standard points of the cases paid by group.
    Computed after `classify_fixed`; a value in the policy replaces it.
    """
    v = policy.values
    annual = v["budget"]["annual"] or {}
    share = Decimal(v["budget"]["reserve_share"])
    inside = v["budget"]["fee_for_service_inside"]
    fixed_value = v["points"]["budget_point_value"]
    ungrouped_by_cost = v["cases"]["ungrouped"]["pay"] == "cost"
    typed = pl.col("case_type")
    ffs_known = (typed == "excluded") | (typed.is_in(["ungrouped", "invalid"]) & pl.lit(v["cases"]["ungrouped"]["pay"] == "fee_for_service"))
    by_cost = typed.is_in(["ungrouped", "invalid"]) & pl.lit(ungrouped_by_cost)
    sums = (frame.filter(pl.col("pool").is_not_null())
            .with_columns(_standard_points(policy).alias("_standard"))
            .group_by("pool")
            .agg(pl.col("cost").filter(ffs_known).sum().alias("ffs"),
                 pl.col("cost").filter(by_cost).sum().alias("by_cost"),
                 pl.col("_standard").filter(typed.is_null() | (typed == "per_diem")).sum().alias("standard_points")))
    found = {row["pool"]: row for row in sums.iter_rows(named=True)}
    pools = {}
    for pool, budget in annual.items():
        row = found.get(pool, {"ffs": 0, "by_cost": 0, "standard_points": 0.0})
        reserve = _to_fen(Decimal(budget) * share)
        ffs = int(row["ffs"] or 0) if inside else 0
        planned = budget - reserve - ffs - int(row["by_cost"] or 0)
        if fixed_value is not None:
            value = float(Decimal(fixed_value) * 100)
        else:
            value = planned / row["standard_points"] if row["standard_points"] and planned > 0 else None
        pools[pool] = {"pool": pool, "budget": budget, "reserve": reserve, "budget_fen_per_point": value}
    return pools


def _largest_remainder(frame: pl.DataFrame, distributable: dict[str, int]) -> pl.DataFrame:
    """`payment` for group-paid cases: each pool's distributable fen shared by micro-points, exactly."""
    paid = pl.col("paid_by") == "group"
    totals = frame.filter(paid).group_by("pool").agg(pl.col("points_micro").sum().alias("_total"))
    shares = pl.DataFrame({"pool": list(distributable), "_d": list(distributable.values())},
                          schema={"pool": pl.String, "_d": pl.Int64})
    work = (frame.filter(paid).select("row", "pool", "hospital", "id", "cost", "points_micro")
            .join(totals, on="pool").join(shares, on="pool")
            .filter(pl.col("_total") > 0)
            .with_columns((pl.col("points_micro").cast(pl.Int128) * pl.col("_d")).alias("_p")))
    # the remainder is below the pool's total micro-points, which fits Int64
    work = work.with_columns((pl.col("_p") // pl.col("_total")).cast(pl.Int64).alias("_floor"),
                             (pl.col("_p") % pl.col("_total")).cast(pl.Int64).alias("_rem")).drop("_p")
    left = dict(work.group_by("pool").agg((pl.col("_d").first() - pl.col("_floor").sum()).alias("_left")).iter_rows())
    # The k = _left cases with the largest remainders get one more fen; ties: hospital, id, cost, row.
    # Only the cases at the k-th remainder need the tie order, so no full sort.
    extra = np.zeros(frame.height, dtype=np.int64)
    for pool, k in left.items():
        if k <= 0:
            continue
        part = work.filter(pl.col("pool") == pool).select("row", "_rem", "hospital", "id", "cost")
        cut = part["_rem"].top_k(k).min()
        above = part.filter(pl.col("_rem") > cut)["row"]
        tied = (part.filter(pl.col("_rem") == cut).sort(["hospital", "id", "cost", "row"], nulls_last=True)
                .head(k - above.len())["row"])
        extra[above.to_numpy()] = 1
        extra[tied.to_numpy()] = 1
    payments = work.select("row", (pl.col("_floor") + pl.Series(extra[work["row"].to_numpy()])).alias("payment"))
    return frame.join(payments, on="row", how="left", maintain_order="left")


def _pay(frame: pl.DataFrame, policy: Policy, pools: dict[str, dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add `payment`, `price` and `standard` (fen) per case; returns (cases, pools summary)."""
    v = policy.values
    ffs = pl.col("paid_by") == "fee_for_service"
    frame = frame.with_columns(
        _round_micro(pl.col("points") * pl.col("readmission_factor")).alias("points_micro"))
    if policy.method == "rate":
        rate = pl.col("rate_fen").round(0).cast(pl.Int64)
        payment = (pl.when(pl.col("paid_by") == "group").then((pl.col("points_micro") * rate + MICRO // 2) // MICRO)
                   .when(ffs).then(pl.col("cost")).otherwise(pl.lit(0, pl.Int64)))
        frame = frame.with_columns(payment.alias("payment"), pl.col("rate_fen").alias("_price_fen"))
        summary = _rate_pools(frame, policy)
    else:
        inside = v["budget"]["fee_for_service_inside"]
        ffs_by_pool = dict(frame.filter(ffs & pl.col("pool").is_not_null()).group_by("pool")
                           .agg(pl.col("cost").sum()).iter_rows())
        distributable = {}
        for pool, p in pools.items():
            outside = int(ffs_by_pool.get(pool) or 0) if inside else 0
            p["fee_for_service_inside"] = outside
            distributable[pool] = max(p["budget"] - p["reserve"] - outside, 0)
            p["distributable"] = distributable[pool]
        frame = _largest_remainder(frame, distributable)
        totals = dict(frame.filter(pl.col("paid_by") == "group").group_by("pool").agg(pl.col("points_micro").sum()).iter_rows())
        for pool, p in pools.items():
            total = int(totals.get(pool) or 0)
            p["points"] = total / MICRO
            p["settlement_fen_per_point"] = p["distributable"] * MICRO / total if total else None
        value = pl.col("pool").replace_strict({k: p["settlement_fen_per_point"] for k, p in pools.items()}, default=None,
                                              return_dtype=pl.Float64)
        frame = frame.with_columns(
            pl.when(pl.col("paid_by") == "group").then(pl.col("payment")).when(ffs).then(pl.col("cost"))
            .otherwise(pl.lit(0, pl.Int64)).fill_null(0).alias("payment"),
            value.alias("_price_fen"))
        summary = _points_pools(frame, pools)
    standard = _half_up_fen(_standard_points(policy) * pl.col("_price_fen"))
    frame = frame.with_columns(
        (pl.col("_price_fen") / 100).alias("price"),
        pl.when(pl.col("case_type").is_in(GROUP_PAID)).then(standard).otherwise(None).alias("standard"),
        (pl.col("payment") - pl.col("cost")).alias("surplus"),
        (pl.col("points_micro") / MICRO).alias("points"),
    )
    return frame, summary


def _points_pools(frame: pl.DataFrame, pools: dict[str, dict]) -> pl.DataFrame:
    paid = dict(frame.filter(pl.col("paid_by") == "group").group_by("pool").agg(pl.col("payment").sum()).iter_rows())
    rows = []
    for pool, p in pools.items():
        rows.append({
            "pool": pool, "budget": p["budget"], "reserve": p["reserve"], "fee_for_service_inside": p["fee_for_service_inside"],
            "distributable": p["distributable"], "points": p["points"],
            "budget_point_value": None if p["budget_fen_per_point"] is None else p["budget_fen_per_point"] / 100,
            "settlement_point_value": None if p["settlement_fen_per_point"] is None else p["settlement_fen_per_point"] / 100,
            "paid_by_points": int(paid.get(pool) or 0),
        })
    return pl.DataFrame(rows, schema=_POOL_SCHEMA)


def _rate_pools(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    annual = policy["budget"]["annual"] or {}
    share = Decimal(policy["budget"]["reserve_share"])
    sums = {r["pool"]: r for r in frame.group_by("pool").agg(
        pl.col("points_micro").filter(pl.col("paid_by") == "group").sum().alias("points"),
        pl.col("payment").filter(pl.col("paid_by") == "group").sum().alias("paid")).iter_rows(named=True)}
    rows = []
    for pool in sorted({*annual, *(k for k in sums if k is not None)}):
        budget = annual.get(pool)
        reserve = None if budget is None else _to_fen(Decimal(budget) * share)
        s = sums.get(pool, {"points": 0, "paid": 0})
        rows.append({"pool": pool, "budget": budget, "reserve": reserve, "fee_for_service_inside": 0,
                     "distributable": None if budget is None else budget - reserve, "points": (s["points"] or 0) / MICRO,
                     "budget_point_value": None, "settlement_point_value": None, "paid_by_points": int(s["paid"] or 0)})
    return pl.DataFrame(rows, schema=_POOL_SCHEMA)


_POOL_SCHEMA = {"pool": pl.String, "budget": pl.Int64, "reserve": pl.Int64, "fee_for_service_inside": pl.Int64,
                "distributable": pl.Int64, "points": pl.Float64, "budget_point_value": pl.Float64,
                "settlement_point_value": pl.Float64, "paid_by_points": pl.Int64}


# -- per hospital ---------------------------------------------------------------------------

def sharing_adjustment(payment: int, cost: int, surplus_bands: list[dict], deficit_bands: list[dict]) -> int:
    """结余留用、超支分担 for one hospital, in fen (negative: recovered from the hospital; positive: paid by the fund).

    The bands cut the surplus (payment − cost) or the overspend (cost − payment), as shares of the
    payment, into pieces: a surplus piece is recovered at (1 − retain), an overspend piece is borne
    by the fund at `fund`. Past the last band's end the hospital keeps the surplus and bears the
    overspend. The sum is rounded half up to the fen.
    """
    if payment <= 0 or payment == cost:
        return 0
    amount = Decimal(abs(payment - cost))
    bands, key, sign = (surplus_bands, "retain", -1) if payment > cost else (deficit_bands, "fund", 1)
    total, lower = Decimal(0), Decimal(0)
    for band in bands:
        upper = amount if band["upto"] is None else min(amount, Decimal(band["upto"]) * payment)
        piece = max(upper - lower, Decimal(0))
        total += piece * ((1 - Decimal(band[key])) if key == "retain" else Decimal(band[key]))
        if band["upto"] is not None:
            lower = max(lower, Decimal(band["upto"]) * payment)
        if upper >= amount:
            break
    return sign * _to_fen(total)


def _prepayment_amount(policy: Policy) -> pl.Expr:
    """A case's part of its month's amount, in fen (before the prepayment ratio)."""
    if policy["prepayment"]["basis"] == "cost":
        return pl.col("cost").fill_null(0).cast(pl.Float64)
    if policy.method == "rate":
        return pl.col("payment").cast(pl.Float64)
    by_points = pl.col("points_micro") / MICRO * pl.col("budget_fen_per_point")
    return pl.when(pl.col("paid_by") == "group").then(by_points).otherwise(pl.col("payment")).fill_null(0.0)


def hospitals_frame(cases: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """One row per hospital: cases by type, points, payment, cost, sharing, prepaid vs due (清算)."""
    group = pl.col("paid_by") == "group"
    ffs = pl.col("paid_by") == "fee_for_service"
    typed = [(pl.col("case_type") == t).sum().alias(f"n_{t}") for t in CASE_TYPES]
    ratio = Decimal(policy["prepayment"]["ratio"])
    monthly = (cases.with_columns(_prepayment_amount(policy).alias("_amount"),
                                  pl.col("discharge_date").dt.truncate("1mo").alias("_month"))
               .group_by("hospital", "_month").agg(pl.col("_amount").sum())
               .with_columns(_half_up_fen(pl.col("_amount") * float(ratio)).alias("_prepaid"))
               .group_by("hospital").agg(pl.col("_prepaid").sum().alias("prepaid")))
    level = (cases.group_by("hospital", "hospital_level").len()
             .sort(["hospital", "len", "hospital_level"], descending=[False, True, True], nulls_last=True)
             .group_by("hospital", maintain_order=True).first().select("hospital", "hospital_level"))
    grouped = pl.col("status") == "grouped"
    out = (cases.group_by("hospital").agg(
        pl.len().alias("cases"), *typed,
        pl.col("case_type").is_in(GROUP_PAID).sum().alias("drg_cases"),
        pl.col("special_review").sum().alias("special_review_flagged"),
        _exact_sum(pl.col("rw").filter(grouped)).alias("rw_sum"),
        (_exact_sum(pl.col("rw").filter(grouped)) / pl.col("rw").filter(grouped).count()).alias("cmi"),
        pl.col("points_micro").filter(group).sum().alias("_points"),
        pl.col("payment").filter(group).sum().alias("drg_payment"),
        pl.col("payment").filter(ffs).sum().alias("ffs_payment"),
        pl.col("payment").sum().alias("payment"),
        pl.col("cost").filter(group).sum().alias("drg_cost"),
        pl.col("cost").sum().alias("cost"))
        .join(level, on="hospital", how="left", nulls_equal=True)
        .join(monthly, on="hospital", how="left", nulls_equal=True)
        .sort("hospital", nulls_last=True))
    s = policy["sharing"]
    adjustments = [sharing_adjustment(int(p or 0), int(c or 0), s["surplus"], s["deficit"])
                   for p, c in out.select("drg_payment", "drg_cost").iter_rows()]
    out = out.with_columns(
        (pl.col("_points") / MICRO).alias("points"),
        (pl.col("n_special_review") / pl.col("drg_cases")).alias("special_review_share"),
        (pl.col("drg_payment") - pl.col("drg_cost")).alias("drg_surplus"),
        pl.Series("sharing_adjustment", adjustments, dtype=pl.Int64),
    ).with_columns((pl.col("payment") + pl.col("sharing_adjustment")).alias("final_payment")).with_columns(
        (pl.col("final_payment") - pl.col("cost")).alias("surplus_after_sharing"),
        pl.col("prepaid").fill_null(0),
    ).with_columns((pl.col("final_payment") - pl.col("prepaid")).alias("due"))
    return out.select("hospital", "hospital_level", "cases", *[f"n_{t}" for t in CASE_TYPES], "drg_cases",
                      "special_review_flagged", "special_review_share", "rw_sum", "cmi", "points", "drg_payment",
                      "ffs_payment", "payment", "drg_cost", "cost", "drg_surplus", "sharing_adjustment", "final_payment",
                      "surplus_after_sharing", "prepaid", "due")


def groups_frame(cases: pl.DataFrame, column: str = "drg") -> pl.DataFrame:
    """One row per group: cases, RW, mean cost, cases by ratio type, points, payment, cost, surplus."""
    return (cases.filter(pl.col(column).is_not_null() & (pl.col("status") == "grouped"))
            .group_by(column).agg(
                pl.len().alias("cases"), pl.col("rw").first().alias("rw"),
                pl.when(pl.col("cost").count() > 0).then(pl.col("cost").sum() / pl.col("cost").count()).alias("mean_cost"),
                (pl.col("case_type") == "high").sum().alias("n_high"), (pl.col("case_type") == "low").sum().alias("n_low"),
                _exact_sum(pl.col("points")).alias("points"), pl.col("payment").sum().alias("payment"),
                pl.col("cost").sum().alias("cost"), pl.col("surplus").sum().alias("surplus"))
            .with_columns(_half_up_fen(pl.col("mean_cost")))
            .sort(column))


CASE_COLUMNS = ("id", "hospital", "hospital_level", "insurance", "pool", "status", "group", "adrg", "rw", "case_type", "rule",
                "cost", "cost_ratio", "base_points", "coefficient", "readmission_factor", "points", "price", "standard",
                "payment", "paid_by", "surplus", "special_review", "discharge_date")


def settle(cases: pl.DataFrame, policy: Policy, source: BaseSource, *, column: str = "drg") -> Settlement:
    """Settle a frame of grouped cases (the grouped-file columns) under `policy`, base points from `source`.

    `column` names the group column in the outputs ("drg"; a DIP source passes "dip").
    """
    frame = source.attach(prepare(cases))
    frame = _prices(frame, policy)
    frame = classify_fixed(frame, policy)
    pools = _budget_point_values(frame, policy) if policy.method == "points" else {}
    frame = frame.with_columns(pl.col("pool").replace_strict(
        {k: p["budget_fen_per_point"] for k, p in pools.items()}, default=None, return_dtype=pl.Float64)
        .alias("budget_fen_per_point"))
    frame = classify_by_ratio(frame, policy)
    frame = case_points(frame, policy)
    frame = readmissions(frame, policy)
    frame, pool_summary = _pay(frame, policy, pools)
    frame = frame.sort("row")
    hospitals = hospitals_frame(frame, policy)
    out = frame.select(CASE_COLUMNS).rename({"group": column})
    groups = groups_frame(out, column)
    return Settlement(out, hospitals, groups, pool_summary, policy)
