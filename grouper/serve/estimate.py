"""预结算: what one case is expected to be paid, before the year is settled.

The year's settlement (grouper.payment) shares a budget among a year of cases; during the stay there is
one case and the *latest* point value. This module prices that one case under the same policy file,
with the same rules, in exact Decimal arithmetic:

    base points B   DRG: RW × points.scale (points method) or RW (rate method), RW from the weights
                    table (else the pack's `weights`); DIP: 病种分值 × the auxiliary factor
    coefficient c   the hospital level's (or the hospital's own; 基础病组: basic_groups.level's),
                    × the DRG's 差异系数; DIP 基层病种: dip.primary_coefficient
    price           points: the point value given to `grouper serve --point-value` (yuan per point),
                    else the policy's points.budget_point_value; rate: rate.base_rate (yuan per RW)
    standard        B × c × price, rounded half up to the fen (the group's payment standard here)
    reference       the group's mean cost (ratio.reference = group_mean) or the standard
    high / low line threshold × reference (cases.high/low.threshold by hospital level), half up to the fen

The case type follows the policy's order for a single open case: not grouped → `ungrouped`; no base
points or an exclusion (los, cost, listed group) → `excluded` (paid its cost); per-diem group →
`per_diem`; incomplete stay → `incomplete`; cost ratio past the high / low threshold → `high` / `low`;
else `normal`. Points follow the policy's formula for the type; payment = points × price, half up to
the fen; a fee-for-service formula pays the cost. Rules that need other cases (special-review caps,
readmission within days, the year's budget share) are not applied: the estimate says so in `notes`.

Warning levels (事中控费), from the cost against the standard and the lines:
`unknown` (no cost given or nothing to compare), `ok`, `near_standard` (cost ≥ warn_at × standard),
`over_standard` (cost > standard), `near_high` (cost ≥ warn_at × high line), `high_outlier`,
`low_outlier`; `not_by_group` when the case is not paid by its group.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from ..payment.policy import Policy, level_value

WARNING_TEXT = {
    "unknown": "未提供费用, 无法比较",
    "ok": "费用在标准以内",
    "near_standard": "费用接近病组支付标准",
    "over_standard": "费用已超过病组支付标准",
    "near_high": "费用接近高倍率线",
    "high_outlier": "费用已超过高倍率线 (高倍率病例)",
    "low_outlier": "费用低于低倍率线 (低倍率病例)",
    "not_by_group": "本病例不按病组付费",
}
HUNDRED = Decimal(100)


def fen(value: Decimal) -> int:
    """Half up to the fen (values are in fen already)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def decimal(value) -> Decimal | None:
    """A table number (float from a CSV read by Polars) as the decimal it was written as."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float) and value != value:
        return None
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def yuan(fen_value: int | None) -> str | None:
    """Integer fen → yuan text with two decimals ("-0.05")."""
    if fen_value is None:
        return None
    sign = "-" if fen_value < 0 else ""
    return f"{sign}{abs(fen_value) // 100}.{abs(fen_value) % 100:02d}"


@dataclass(frozen=True)
class Pricing:
    """The policy and the point value in force for estimates."""

    policy: Policy
    point_value: Decimal | None = None   # yuan per point (points / dip methods); overrides budget_point_value
    warn_at: Decimal = Decimal("0.8")

    def fen_per_point(self) -> Decimal | None:
        value = self.point_value if self.point_value is not None else self.policy["points"]["budget_point_value"]
        return None if value is None else Decimal(value) * HUNDRED


def estimate(pricing: Pricing, case: dict) -> dict:
    """Estimate one grouped case. `case` holds: status, group, rw / score and aux_factor, group_mean (fen),
    group_level (DIP row level), hospital, hospital_level, insurance, cost (fen), los, discharge."""
    policy = pricing.policy
    v = policy.values
    notes: list[str] = []
    out = {"method": v["policy"]["method"], "policy": policy.name, "case_type": None, "rule": None,
           "base_points": None, "coefficient": None, "points": None, "price": None, "standard": None,
           "reference": None, "cost": yuan(case.get("cost")), "cost_ratio": None, "high_line": None,
           "low_line": None, "payment": None, "warning": None, "warning_text": None, "notes": notes}
    cost = case.get("cost")
    group = case.get("group")

    def done(case_type: str, rule: str, payment: int | None = None) -> dict:
        out["case_type"], out["rule"] = case_type, rule
        if payment is not None:
            out["payment"] = yuan(payment)
        if out["warning"] is None:
            out["warning"] = "not_by_group"
        out["warning_text"] = WARNING_TEXT[out["warning"]]
        return out

    if case.get("status") != "grouped":
        pay = v["cases"]["ungrouped"]["pay"]
        if pay == "none":
            return done("ungrouped", "cases.ungrouped", 0)
        if cost is None:
            notes.append("未提供费用: 未入组病例按费用结算, 无法估算")
        return done("ungrouped", "cases.ungrouped", cost)

    level = case.get("hospital_level")
    basic = group in set(v["basic_groups"]["drgs"] or ())
    price_level = v["basic_groups"]["level"] if basic else level
    coefficient = level_value(v["coefficients"]["level"], price_level)
    own = (v["coefficients"]["hospitals"] or {}).get(case.get("hospital"))
    if own is not None and not basic:
        coefficient = own
    if policy.is_dip and case.get("group_level") == "primary" and v["dip"]["primary_coefficient"] is not None:
        coefficient = v["dip"]["primary_coefficient"]
    if coefficient is not None:
        coefficient = Decimal(coefficient) * Decimal((v["coefficients"]["drgs"] or {}).get(group, 1))
    out["coefficient"] = None if coefficient is None else str(coefficient)

    if policy.method == "rate":
        price = _base_rate(v["rate"]["base_rate"], case.get("insurance"), price_level)
        price = None if price is None else Decimal(price) * HUNDRED
        unit = "元/RW"
    else:
        price = pricing.fen_per_point()
        unit = "元/点"
    out["price"] = None if price is None else f"{price / HUNDRED} {unit}"

    if policy.is_dip:
        score = decimal(case.get("score"))
        factor = decimal(case.get("aux_factor")) if v["dip"]["auxiliary"] else Decimal(1)
        base = None if score is None else score * (factor if factor is not None else Decimal(1))
    else:
        rw = decimal(case.get("rw"))
        scale = Decimal(v["points"]["scale"]) if policy.method == "points" else Decimal(1)
        base = None if rw is None else rw * scale
    out["base_points"] = None if base is None else str(base)

    los, per_day = case.get("los"), (v["cases"]["per_diem"]["per_day"] or {}).get(group)
    ex = v["cases"]["exclusions"]
    if coefficient is None:
        notes.append("医院等级未知或无对应系数 (coefficients.level)")
        return done("invalid", "coefficients.level")
    if price is None and policy.method == "rate":
        notes.append("没有该险种与医院等级的费率 (rate.base_rate)")
        return done("invalid", "rate.base_rate")
    if base is None and per_day is None:
        notes.append(f"{group} 无权重或分值: 按项目付费")
        return done("excluded", "weights", cost)
    for key, holds in (("los_at_most", los is not None and ex["los_at_most"] is not None and los <= ex["los_at_most"]),
                       ("los_at_least", los is not None and ex["los_at_least"] is not None and los >= ex["los_at_least"]),
                       ("cost_below", cost is not None and ex["cost_below"] is not None and cost < ex["cost_below"]),
                       ("drgs", group in set(ex["drgs"] or ()))):
        if holds:
            return done("excluded", f"cases.exclusions.{key}", cost)
    if price is None:
        notes.append("没有点值 (--point-value 或 points.budget_point_value) 或费率: 只给出点数")

    def priced(points: Decimal) -> int | None:
        return None if price is None else fen(points * price)

    if per_day is not None:
        if los is None:
            notes.append("床日付费病组需要住院天数")
            return done("invalid", "los")
        points = Decimal(per_day) * max(los, 1)
        if v["cases"]["per_diem"]["coefficient"]:
            points *= coefficient
        out["points"] = str(points)
        return done("per_diem", "cases.per_diem.per_day", priced(points))

    standard_points = base * coefficient
    standard = priced(standard_points)
    out["standard"] = yuan(standard)
    reference = decimal(case.get("group_mean")) if v["ratio"]["reference"] == "group_mean" else (
        None if standard is None else Decimal(standard))
    if v["ratio"]["reference"] == "group_mean" and reference is None:
        notes.append(f"{group} 无均次费用 (weights 表的 mean 列): 无法判断高低倍率")
    t_high = level_value(v["cases"]["high"]["threshold"], level)
    t_low = level_value(v["cases"]["low"]["threshold"], level)
    ratio = None
    if reference is not None and reference > 0:
        out["reference"] = yuan(fen(reference))
        if t_high is not None:
            out["high_line"] = yuan(fen(Decimal(t_high) * reference))
        if t_low is not None:
            out["low_line"] = yuan(fen(Decimal(t_low) * reference))
        if cost is not None:
            ratio = Decimal(cost) / reference
            out["cost_ratio"] = str(ratio.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))
    notes.append("特例单议、再入院与年度清算不在预结算之内")

    cases = v["cases"]
    incomplete = cases["incomplete"]
    discharge = case.get("discharge")
    if incomplete["discharge"] and discharge is not None and str(discharge) in {str(d) for d in incomplete["discharge"]} \
            and (incomplete["max_los"] is None or (los is not None and los <= incomplete["max_los"])):
        case_type, rule = "incomplete", "cases.incomplete"
    elif ratio is not None and t_high is not None and _beyond(ratio, Decimal(t_high), cases["high"]["inclusive"], high=True):
        case_type, rule = "high", "cases.high"
    elif ratio is not None and t_low is not None and _beyond(ratio, Decimal(t_low), cases["low"]["inclusive"], high=False):
        case_type, rule = "low", "cases.low"
    else:
        case_type, rule = "normal", "normal"
    formula = {"high": cases["high"]["formula"], "low": cases["low"]["formula"],
               "incomplete": incomplete["formula"], "normal": "standard"}[case_type]
    t = {"high": t_high, "low": t_low}.get(case_type)
    if formula == "fee_for_service":
        payment = cost
    else:
        points = _points(formula, base, coefficient, ratio, None if t is None else Decimal(t), cost, price, reference,
                         Decimal(cases["high"]["marginal"]))
        if points is None:
            notes.append(f"公式 {formula} 需要费用与点值")
            payment = None
        else:
            out["points"] = str(points.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP))
            payment = priced(points)
    out["warning"] = _warning(case_type, cost, standard, out["high_line"], pricing.warn_at, t_high, reference)
    return done(case_type, rule, payment)


def _base_rate(rates: dict, insurance, level):
    table = rates.get(insurance) if insurance in rates and insurance != "all" else rates.get("all")
    return None if table is None else level_value(table, level)


def _beyond(ratio: Decimal, threshold: Decimal, inclusive: bool, *, high: bool) -> bool:
    if high:
        return ratio >= threshold if inclusive else ratio > threshold
    return ratio <= threshold if inclusive else ratio < threshold


def _points(formula: str, B: Decimal, c: Decimal, r: Decimal | None, t: Decimal | None, cost: int | None,
            price: Decimal | None, reference: Decimal | None, marginal: Decimal) -> Decimal | None:
    """Points under a policy formula (grouper.payment.settle's table, in Decimal); None when an input is missing."""
    if formula == "standard":
        return B * c
    if formula == "cost":
        return None if cost is None or not price else Decimal(cost) / price
    if r is None:
        return None
    if formula == "excess_ratio":
        return B * c + B * (r - t)
    if formula == "excess_ratio_coefficient":
        return B * c * (1 + r - t)
    if formula == "excess_ratio_plus_coefficient":
        return B * (r - t + c)
    if formula == "excess_cost":
        return None if not price else B * c + marginal * (Decimal(cost) - t * reference) / price
    if formula == "ratio":
        return B * c * r
    if formula == "ratio_capped":
        return min(B * c * r, B)
    if formula == "ratio_capped_no_coefficient":
        return min(B * r, B)
    raise ValueError(f"unknown formula {formula!r}")


def _warning(case_type: str, cost: int | None, standard: int | None, high_line: str | None, warn_at: Decimal,
             t_high, reference: Decimal | None) -> str:
    if case_type == "high":
        return "high_outlier"
    if case_type == "low":
        return "low_outlier"
    if cost is None:
        return "unknown"
    if t_high is not None and reference is not None and reference > 0 and cost >= warn_at * Decimal(t_high) * reference:
        return "near_high"
    if standard is None:
        return "unknown"
    if cost > standard:
        return "over_standard"
    if cost >= warn_at * standard:
        return "near_standard"
    return "ok"
