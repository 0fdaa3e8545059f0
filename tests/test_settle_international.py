"""Policies international payers use, written as data in the policy file (../shared/settlement.md §3),
each with a worked example computed by hand from the formula."""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from grouper.errors import PolicyError
from grouper.payment.api import settle_cases
from settle_helpers import base_points_policy, base_rate_policy, cases, policy


def one(s, case_id="c1"):
    return s.cases.filter(pl.col("id") == case_id).row(0, named=True)


def table(**columns) -> pl.DataFrame:
    return pl.DataFrame({k: [str(v) for v in vs] for k, vs in columns.items()})


# -- CMS IPPS cost outliers (§3.1) ------------------------------------------------------------

CMS = base_rate_policy(
    rate={"base_rate": {"all": 10000}}, ratio={"reference": "standard"},
    cases={"outliers": "fixed_loss", "high": {"fixed_loss": "25800.00", "cost_to_charge": 0.5, "marginal": 0.8},
           "incomplete": {"discharge": []}})


def test_cms_cost_outlier_pays_the_marginal_share_above_the_fixed_loss_threshold(tmp_path):
    # RW 2.0 × 10,000 = 20,000.00 standard; charges 120,000.00 × CCR 0.5 = cost 60,000.00 > 20,000 + 25,800:
    # outlier = 0.8 × (60,000 − 45,800) = 11,360.00 → payment 31,360.00 (points 2 + 1.136 = 3.136)
    w = table(drg=["B11"], weight=["2.0"], mean=["20000"])
    s = settle_cases(cases({"drg": "B11", "cost": 12_000_000}, {"drg": "B11", "cost": 9_000_000}), policy(tmp_path, CMS), w)
    high = one(s)
    assert (high["case_type"], high["rule"], high["points"], high["payment"]) == ("high", "cases.outliers", 3.136, 3_136_000)
    # 90,000.00 × 0.5 = 45,000.00 is below 45,800.00: the standard (there are no low cases)
    assert (one(s, "c2")["case_type"], one(s, "c2")["payment"]) == ("normal", 2_000_000)


def test_cms_outliers_need_the_fixed_loss_and_the_standard_as_reference(tmp_path):
    tree = base_rate_policy(ratio={"reference": "group_mean"}, cases={"outliers": "fixed_loss"})
    with pytest.raises(PolicyError, match="needs `cases.high.fixed_loss`") as caught:
        policy(tmp_path, tree)
    assert "ratio.reference = \"standard\"" in str(caught.value.diagnostics)


# -- transfers paid per diem (§3.2) -----------------------------------------------------------

def _transfer(tmp_path, extra_days, mean_los, *rows):
    tree = base_points_policy(points={"scale": 100, "budget_point_value": 10},
                              cases={"transfer": {"discharge": [2], "extra_days": extra_days, "mean_los": mean_los},
                                     "incomplete": {"discharge": []}})
    w = table(drg=["B11"], weight=["2.0"], mean=["2000"], los_mean=["8"], gmlos=["7.5"])
    return settle_cases(cases(*rows), policy(tmp_path, tree), w)


def test_a_transfer_is_paid_per_diem_with_the_first_day_doubled(tmp_path):
    # Washington: B·c = 200 points ÷ mean LOS 8 = 25 per day; LOS 2 + 1 = 3 days → 75 points;
    # LOS 10 → 11 × 25 = 275, capped at the full 200; a discharge home (1) is not a transfer
    s = _transfer(tmp_path, 1, "los_mean", {"drg": "B11", "los": 2, "discharge": "2", "cost": 150_000},
                  {"drg": "B11", "los": 10, "discharge": "2", "cost": 150_000}, {"drg": "B11", "los": 2, "cost": 150_000})
    assert (one(s)["case_type"], one(s)["rule"], one(s)["points"]) == ("transfer", "cases.transfer", 75.0)
    assert one(s, "c2")["points"] == 200.0
    assert one(s, "c3")["case_type"] == "normal"


def test_a_transfer_with_the_geometric_mean_and_no_extra_day(tmp_path):
    # Oregon / Medicare: 200 ÷ GMLOS 7.5 × 2 days = 53.3333333… → 53.333333 (half up to the micro-point)
    s = _transfer(tmp_path, 0, "gmlos", {"drg": "B11", "los": 2, "discharge": "2", "cost": 150_000})
    assert one(s)["points"] == 53.333333


# -- G-DRG length-of-stay deductions and surcharges (§3.3) --------------------------------------

GDRG = base_rate_policy(rate={"base_rate": {"all": 3500}}, coefficients={"level": 1.0},
                        cases={"outliers": "los_limits", "los_limits": {"count": "nights"},
                               "incomplete": {"discharge": []}})


def _stay(nights: int, **row) -> dict:
    admission = dt.date(2025, 3, 1)
    return {"drg": "B11", "admission_date": admission, "discharge_date": admission + dt.timedelta(days=nights),
            "los": nights + 1, "cost": 500_000, **row}


def test_g_drg_deductions_below_and_surcharges_above_the_los_limits(tmp_path):
    # RW 1.5 at 3,500 (base rate per RW): 5,250.00 for a normal stay.
    # First deduction day 2, 0.3 per day: 1 night (the discharge day is not counted) → 2 + 1 − 1 = 2
    # deduction days → RW 1.5 − 0.6 = 0.9 → 3,150.00. First surcharge day 10, 0.1 per day: 12 nights →
    # 12 − 10 + 1 = 3 surcharge days → RW 1.8 → 6,300.00.
    w = table(drg=["B11"], weight=["1.5"], mean=["5000"], los_low=["2"], los_low_weight=["0.3"], los_high=["10"],
              los_high_weight=["0.1"])
    s = settle_cases(cases(_stay(1), _stay(12), _stay(5)), policy(tmp_path, GDRG), w)
    assert [(r["case_type"], r["points"], r["payment"]) for r in s.cases.iter_rows(named=True)] == [
        ("low", 0.9, 315_000), ("high", 1.8, 630_000), ("normal", 1.5, 525_000)]
    assert one(s)["rule"] == "cases.outliers"


def test_g_drg_deduction_never_goes_below_zero(tmp_path):
    w = table(drg=["B11"], weight=["1.5"], mean=["5000"], los_low=["5"], los_low_weight=["0.5"])
    s = settle_cases(cases(_stay(0)), policy(tmp_path, GDRG), w)  # 5 + 1 − 0 = 6 days × 0.5 = 3 > 1.5
    assert (one(s)["case_type"], one(s)["payment"]) == ("low", 0)


# -- low-cost formulas without the hospital coefficient ---------------------------------------

def test_a_low_formula_without_the_coefficient(tmp_path):
    # B = 100, c = 0.9, ratio 200 ÷ 1,000 = 0.2: ratio_no_coefficient pays B·r = 20 points (ratio: B·c·r = 18)
    tree = base_points_policy(points={"scale": 100, "budget_point_value": 10}, coefficients={"level": 0.9},
                              cases={"low": {"formula": "ratio_no_coefficient"}, "incomplete": {"discharge": []}})
    w = table(drg=["A11"], weight=["1.0"], mean=["1000"])
    assert one(settle_cases(cases({"cost": 20_000}), policy(tmp_path, tree), w))["points"] == 20.0
