"""预结算: what a case is expected to be paid, before the year is settled.

The money is the settlement engine's: `CasePricer` (up to ONE_BY_ONE cases, one at a time) or
`price_cases` (more, in one frame) of grouper.payment.settle prices each case by the stages of
`grouper settle`, the same rules either way — base points from the same source (a DRG weights
table: RW × scale, or a DIP pack's scores × the auxiliary factor), coefficient, price, case type,
points and payment, each rounded where the engine rounds it. What needs the other cases of the year (the budget share,
special-review caps, readmissions) is not applied, and `notes` says so; under the points method the
price is the point value given to `grouper serve --point-value` (else the policy's
`points.budget_point_value`), so the payment is what `grouper settle` pays the case when the year's
point value is that one.

This module only turns the engine's integers into the answer's text (yuan with two decimals, points
to six decimals) and adds the warning level (事中控费), from the cost against the standard and the
lines: `unknown` (no cost given or nothing to compare), `ok`, `near_standard` (cost ≥ warn_at ×
standard), `over_standard` (cost > standard), `near_high` (cost ≥ warn_at × high line),
`high_outlier`, `low_outlier`; `not_by_group` when the case is not paid by its group.
"""
from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from ..payment.policy import Policy
from ..payment.settle import COEF, MICRO, PRICE, UNIT, CasePricer, point_value_in_force, price_cases

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
BY_GROUP = ("normal", "high", "low", "incomplete", "transfer", "special_review")
NOT_IN_ESTIMATE = "特例单议、再入院与年度清算不在预结算之内"


def yuan(fen_value: int | None) -> str | None:
    """Integer fen → yuan text with two decimals ("-0.05")."""
    if fen_value is None:
        return None
    sign = "-" if fen_value < 0 else ""
    return f"{sign}{abs(fen_value) // 100}.{abs(fen_value) % 100:02d}"


def _exact(value: int | None, unit: int, places: int | None = None) -> str | None:
    """An engine integer in 1/unit as decimal text (to `places` decimals, else as short as exact)."""
    if value is None:
        return None
    number = Decimal(value) / unit
    return f"{number:.{places}f}" if places is not None else format(number.normalize(), "f")


@dataclass(frozen=True)
class Pricing:
    """The policy and the point value in force for estimates."""

    policy: Policy
    point_value: Decimal | None = None   # yuan per point (points / dip methods); overrides budget_point_value
    warn_at: Decimal = Decimal("0.8")
    # the one-case pricers by source (made by `pricer`, when the state is loaded): id → (source, pricer)
    pricers: dict = field(default_factory=dict, compare=False, repr=False)

    def pricer(self, source) -> CasePricer:
        """The settle engine's one-case pricer of `source` under this policy and point value (made once)."""
        found = self.pricers.get(id(source))
        if found is None or found[0] is not source:
            found = self.pricers[id(source)] = (source, CasePricer(self.policy, source, point_value=self.point_value,
                                                                   columns=ENGINE_SCHEMA, discharge_type=pl.Int32))
        return found[1]

    def fen_per_point(self) -> Decimal | None:
        value = point_value_in_force(self.policy, self.point_value)
        return None if value is None else value * 100


ENGINE_SCHEMA = {"id": pl.String, "status": pl.String, "drg": pl.String, "hospital": pl.String, "cost": pl.Int64,
                 "hospital_level": pl.Int8, "insurance": pl.String, "los": pl.Int32, "discharge": pl.Int32,
                 "admission_date": pl.Date, "discharge_date": pl.Date, "aux_factor": pl.Float64}


# Up to this many cases are priced one by one (CasePricer, ~0.1 ms a case), more through one frame
# (price_cases: ~13 ms, then a few µs a case). Both are the settle engine and give the same answers.
ONE_BY_ONE = 64
_PYTHON_TYPES = {pl.String: str, pl.Int64: int, pl.Int32: int, pl.Int8: int, pl.Date: datetime.date, pl.Float64: float}
_BITS = {pl.Int64: 63, pl.Int32: 31, pl.Int8: 7}


def _engine_row(case: dict) -> dict | None:
    """A case as the engine's typed columns (ENGINE_SCHEMA), or None when a value is not of its
    column's type (the frame then takes it as Polars does, or refuses it)."""
    row = {name: case.get(name) for name in ENGINE_SCHEMA if name not in ("id", "drg", "hospital")}
    row["drg"], row["hospital"] = case.get("group"), case.get("hospital") or "-"
    for name, value in row.items():
        if value is None:
            continue
        dtype = ENGINE_SCHEMA[name]
        if type(value) is not _PYTHON_TYPES[dtype] or (dtype in _BITS and not -(1 << _BITS[dtype]) <= value < 1 << _BITS[dtype]):
            return None
    return row


def estimates(pricing: Pricing, cases: list[dict], source) -> list[dict]:
    """Estimate grouped cases under `pricing` with base points from `source` (the settle engine's
    BaseSource: DrgWeights or DipScores). Each case holds: status, group, hospital, hospital_level,
    insurance, cost (fen), los, discharge, admission_date, discharge_date, aux_factor (DIP)."""
    if not cases:
        return []
    if len(cases) <= ONE_BY_ONE:
        rows = [_engine_row(case) for case in cases]
        priced = None if None in rows else pricing.pricer(source).price_all(rows)
        if priced is not None:
            return [_answer(pricing, case, row) for case, row in zip(cases, priced)]
    frame = pl.DataFrame({
        "id": [str(i) for i in range(len(cases))],
        **{name: [c.get(name) for c in cases] for name in ENGINE_SCHEMA if name not in ("id", "drg", "hospital")},
        "drg": [c.get("group") for c in cases],
        # the engine pays every case to a hospital; a case sent without one is priced as nobody's own
        "hospital": [c.get("hospital") or "-" for c in cases],
    }, schema=ENGINE_SCHEMA)
    priced = price_cases(frame, pricing.policy, source, point_value=pricing.point_value)
    return [_answer(pricing, case, row) for case, row in zip(cases, priced.iter_rows(named=True))]


def _answer(pricing: Pricing, case: dict, row: dict) -> dict:
    policy = pricing.policy
    method = policy["policy"]["method"]
    cost = case.get("cost")
    notes: list[str] = []
    by_group = row["paid_by"] == "group"
    price = row["price_e4"]
    unit = "元/RW" if method == "rate" else "元/点"
    out = {"method": method, "policy": policy.name, "case_type": row["case_type"], "rule": row["rule"],
           "base_points": _exact(row["base_micro"], MICRO), "coefficient": _exact(row["coef"], COEF),
           "points": _exact(row["points_micro"], MICRO, 6) if by_group else None,
           "price": None if price is None else f"{_exact(price, PRICE * 100)} {unit}",
           "standard": yuan(row["standard"]), "reference": yuan(row["reference"]), "cost": yuan(cost),
           "cost_ratio": _exact(row["ratio_micro"], UNIT), "high_line": yuan(row["high_line"]),
           "low_line": yuan(row["low_line"]), "payment": yuan(row["payment"]), "warning": None,
           "warning_text": None, "notes": notes}
    if cost is None:   # still in the ward: the standard and the lines, the type and payment wait for the cost
        out.update(case_type=None, rule=None, points=None, payment=None)
        notes.append("未提供费用: 给出病组标准与高低倍率线, 病例类型与支付待费用确定")
    elif by_group and row["payment"] is not None and price is None:
        out["payment"] = None
    if price is None and method != "rate" and case.get("status") == "grouped":
        notes.append("没有点值 (--point-value 或 points.budget_point_value): 只给出点数")
    if row["base_micro"] is None and case.get("status") == "grouped":
        notes.append(f"{case.get('group')} 无权重或分值: 按项目付费")
    notes.append(NOT_IN_ESTIMATE)
    out["warning"] = _warning(out["case_type"], cost, row, pricing.warn_at, paid_by_group=by_group or cost is None)
    out["warning_text"] = WARNING_TEXT[out["warning"]]
    return out


def _warning(case_type: str | None, cost: int | None, row: dict, warn_at: Decimal, *, paid_by_group: bool) -> str:
    if case_type == "high":
        return "high_outlier"
    if case_type == "low":
        return "low_outlier"
    if not paid_by_group or (case_type is not None and case_type not in BY_GROUP):
        return "not_by_group"
    if cost is None:
        return "unknown"
    high_line, standard = row["high_line"], row["standard"]
    if high_line is not None and cost >= warn_at * high_line:
        return "near_high"
    if standard is None:
        return "unknown"
    if cost > standard:
        return "over_standard"
    if cost >= warn_at * standard:
        return "near_standard"
    return "ok"
