"""The settlement's own end-of-run checks: what a payer looks at before paying.

`check_inputs` runs before settling and refuses (InputError, naming the file and field) what
cannot be settled meaningfully: a policy whose pools are per insurance type over cases with no
insurance column, per-level policy values over cases with no hospital-level column, and weights
that do not belong to the cases' scheme (9 in 10 grouped cases or more without a weight).

`settlement_checks` runs after settling and returns `Checks`: per pool the budget, what was paid
from it and what was not (each fen with its reason), so that for every pool

    paid from the pool + Σ undistributed = budget, to the fen;

cases by type, the excluded share, cases whose group the weights do not list, policy codes no
group has, and `warnings`: each a sentence a payer should read (`grouper settle --strict` exits 4
when there is one). `Checks.as_dict()` is what summary.json and the report show.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ..errors import InputError
from ..fields import fen_text

# why budget fen were not paid (keys of Checks.pools[...]["undistributed"])
REASONS = {
    "reserve": "held back as 调剂金 (budget.reserve_share)",
    "no_cases": "the pool has no case paid by points",
    "rate_unspent": "the rate method pays by rate, not by sharing the budget: this much of the distributable budget was not spent",
    "rate_overspent": "the rate method paid more than the distributable budget (negative: spent beyond it)",
    "fee_for_service_over": "fee-for-service payments inside the budget exceeded it (negative: spent beyond it)",
}


@dataclass
class Checks:
    pools: list[dict]
    cases_by_type: dict[str, int]
    cases: int
    excluded_share: float
    unweighted: dict
    unknown_policy_codes: dict[str, list[str]]
    duplicates: int = 0  # duplicate case ids are refused before settling
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"pools": self.pools, "cases": self.cases, "cases_by_type": self.cases_by_type,
                "excluded_share": self.excluded_share, "duplicate_ids": self.duplicates,
                "cases_without_weight": self.unweighted, "unknown_policy_codes": self.unknown_policy_codes,
                "undistributed_reasons": REASONS, "warnings": self.warnings}


def _needs_levels(policy) -> list[str]:
    v = policy.values
    keys = [("coefficients.level", v["coefficients"]["level"]), ("cases.high.threshold", v["cases"]["high"]["threshold"]),
            ("cases.low.threshold", v["cases"]["low"]["threshold"])]
    if policy.method == "rate":
        keys += [(f"rate.base_rate.{k}", t) for k, t in (v["rate"]["base_rate"] or {}).items()]
    return [key for key, table in keys if table and "default" not in table]


def check_inputs(columns, policy) -> None:
    """Refuse a policy that the cases' columns cannot serve (see the module doc)."""
    columns = set(columns)
    annual = policy["budget"]["annual"] or {}
    if "insurance" not in columns and annual and "all" not in annual:
        raise InputError(f"the cases have no insurance column, but {policy.path} shares its budget per insurance type "
                         f"(budget.annual: {', '.join(annual)}): every case would fall outside every pool. "
                         "Group with --carry from a file with the insurance field, or use `budget.annual.all`")
    if "hospital_level" not in columns and _needs_levels(policy):
        raise InputError(f"the cases have no hospital_level column, but {policy.path} sets "
                         f"{', '.join(_needs_levels(policy))} per hospital level without a `default`: "
                         "every case would be invalid. Group with --carry from a file with the level field")


def check_weights(frame: pl.DataFrame) -> None:
    """Refuse weights that do not belong to the cases' scheme: 9 in 10 grouped cases or more (of at
    least 10) whose group has no base points (`frame`: the cases with the source's columns attached)."""
    grouped = (pl.col("status") == "grouped") & pl.col("group").is_not_null() & pl.col("_per_day").is_null()
    missing = grouped & pl.col("base_micro").is_null()
    n, m = frame.select(grouped.sum().alias("n"), missing.sum().alias("m")).row(0)
    if n >= 10 and m * 10 >= n * 9:
        examples = frame.filter(missing)["group"].unique().sort().head(5).to_list()
        raise InputError(f"{m:,} of {n:,} grouped cases have a group the weights table does not list "
                         f"(e.g. {', '.join(examples)}): do the weights belong to the scheme the cases were grouped with?")


def _policy_codes(policy) -> dict[str, list[str]]:
    v = policy.values
    return {"cases.exclusions.drgs": list(v["cases"]["exclusions"]["drgs"] or ()),
            "basic_groups.drgs": list(v["basic_groups"]["drgs"] or ()),
            "cases.per_diem.per_day": list(v["cases"]["per_diem"]["per_day"] or ()),
            "coefficients.drgs": list(v["coefficients"]["drgs"] or ())}


def settlement_checks(frame: pl.DataFrame, pools: pl.DataFrame, policy, source, column: str) -> Checks:
    """The checks of a finished settlement (`frame`: the engine's working frame; see the module doc)."""
    from .settle_codes import CASE_TYPES, PAY, RULE, TYPE

    warnings: list[str] = []
    # one pass over the cases: everything below is read from this small table
    summary = (frame.lazy().group_by("pool", "case_type", "rule", "paid_by")
               .agg(pl.len().alias("n"), pl.col("payment").sum(), (pl.col("cost") < 0).sum().alias("negative"))
               .collect())
    counts = dict(summary.group_by("case_type").agg(pl.col("n").sum()).iter_rows())
    rules = dict(summary.group_by("rule").agg(pl.col("n").sum()).iter_rows())
    by_type = {t: int(counts.get(TYPE[t], 0)) for t in CASE_TYPES}
    n = frame.height
    excluded = by_type["excluded"]
    # cases whose group the weights (or the DIP catalogue) do not list
    no_weight = frame.filter(pl.col("rule") == RULE["weights"]) if rules.get(RULE["weights"]) else frame.clear()
    unweighted = {"cases": no_weight.height,
                  "groups": no_weight["group"].drop_nulls().unique().sort().head(20).to_list()}
    if no_weight.height:
        warnings.append(f"{no_weight.height:,} grouped cases ({no_weight.height / max(n, 1):.1%}) have a {column} the "
                        f"weights do not list and are paid by item: {', '.join(unweighted['groups'][:5])}")
    codes = getattr(source, "codes", None)
    unknown = {}
    if codes is not None:
        for key, listed in _policy_codes(policy).items():
            strangers = sorted(c for c in listed if c not in codes)
            if strangers:
                unknown[key] = strangers
                warnings.append(f"{policy.path}: `{key}` names groups the weights do not have: {', '.join(strangers[:5])}"
                                f"{' …' if len(strangers) > 5 else ''} (they match no case)")
    negative = int(summary["negative"].sum())
    if negative:
        warnings.append(f"{negative:,} cases have a negative cost: invalid (rule cost), paid nothing")
    outside = rules.get(RULE["budget.annual"], 0)
    if outside:
        warnings.append(f"{outside:,} cases belong to no budget pool (their insurance type is not in budget.annual): "
                        "paid by item outside the budget")
    for level_rule, key in ((RULE["coefficients.level"], "coefficients.level"), (RULE["rate.base_rate"], "rate.base_rate")):
        missing = rules.get(level_rule, 0)
        if missing:
            warnings.append(f"{missing:,} cases are invalid: `{key}` has no value for their hospital level")
    pool_rows = _pool_checks(summary, pools, policy, PAY, warnings)
    return Checks(pool_rows, by_type, n, round(excluded / n, 6) if n else 0.0, unweighted, unknown, 0, warnings)


def _pool_checks(summary: pl.DataFrame, pools: pl.DataFrame, policy, PAY, warnings: list[str]) -> list[dict]:
    """Per pool: budget, paid from it, undistributed by reason; warnings for what a payer must see
    (`summary`: cases and payments by pool, type, rule and how paid)."""
    group, ffs = pl.col("paid_by") == PAY["group"], pl.col("paid_by") == PAY["fee_for_service"]
    sums = {r["pool"]: r for r in summary.group_by("pool").agg(
        pl.when(group).then(pl.col("payment")).sum().alias("by_group"),
        pl.when(ffs).then(pl.col("payment")).sum().alias("by_item")).iter_rows(named=True)}
    inside = policy["budget"]["fee_for_service_inside"]
    rows = []
    for p in pools.iter_rows(named=True):
        name, budget = p["pool"], p["budget"]
        s = sums.get(name, {"by_group": 0, "by_item": 0})
        by_group, by_item = int(s["by_group"] or 0), int(s["by_item"] or 0)
        if budget is None:  # rate method: a pool the policy has no budget for
            rows.append({"pool": name, "budget": None, "paid": by_group, "paid_outside": by_item, "undistributed": {}})
            continue
        reserve = p["reserve"] or 0
        undistributed = {"reserve": reserve}
        if policy.method == "rate":
            paid, outside = by_group, by_item
            left = budget - reserve - paid
            undistributed["rate_unspent" if left >= 0 else "rate_overspent"] = left
            if left < 0:
                warnings.append(f"pool {name}: the rate method paid {fen_text(paid)} yuan against a distributable budget of "
                                f"{fen_text(budget - reserve)} yuan ({-left / max(budget - reserve, 1):.1%} over)")
        else:
            paid = by_group + (by_item if inside else 0)
            outside = 0 if inside else by_item
            over = (by_item if inside else 0) - (budget - reserve)
            if over > 0:
                undistributed["fee_for_service_over"] = -over
                warnings.append(f"pool {name}: fee-for-service payments inside the budget ({fen_text(by_item)} yuan) exceed "
                                f"the budget after the reserve ({fen_text(budget - reserve)} yuan): nothing is left to share by points")
            left = budget - reserve - paid - undistributed.get("fee_for_service_over", 0)
            if left:
                undistributed["no_cases"] = left
                warnings.append(f"pool {name}: {fen_text(left)} yuan of its budget is paid to nobody "
                                f"({'it has no cases' if not p['cases'] else 'no case in it is paid by points'})")
            elif p["points"] == 0 and p["cases"] == 0:
                warnings.append(f"pool {name} has no cases")
        rows.append({"pool": name, "budget": budget, "paid": paid, "paid_outside": outside,
                     "undistributed": {k: v for k, v in undistributed.items() if v}})
    return rows
