"""The settlement's case codes: a case's type, the rule that decided it and how it is paid, shared
by the engine (grouper.payment.settle) and its end-of-run checks (settle_checks)."""
from __future__ import annotations

CASE_TYPES = ("normal", "high", "low", "incomplete", "transfer", "per_diem", "special_review", "excluded", "ungrouped",
              "invalid")

# While settling, a case's type, the rule that decided it and how it is paid are small integer
# codes (UInt8): 10,000,000 cases then carry three bytes each, not three strings. The outputs
# turn them into Polars Enums with the names below (Parquet stores them as dictionaries).

RULES = ("status", "cost", "coefficients.level", "rate.base_rate", "weights", "budget.annual",
         "cases.exclusions.los_at_most", "cases.exclusions.los_at_least", "cases.exclusions.cost_below",
         "cases.exclusions.drgs", "los", "cases.per_diem.per_day", "cases.special_review",
         "cases.special_review.over_cap", "cases.incomplete", "cases.transfer", "cases.high", "cases.low",
         "cases.outliers", "normal")
PAID_BY = ("group", "fee_for_service", "none")
TYPE = {name: code for code, name in enumerate(CASE_TYPES)}
RULE = {name: code for code, name in enumerate(RULES)}
PAY = {name: code for code, name in enumerate(PAID_BY)}
