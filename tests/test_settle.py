"""Settlement: every case type and formula, both methods, sharing bands and clearing, computed by hand.

Unless a test says otherwise: weights A11 RW 1.0 (mean 1,000 yuan), A13 RW 1.5, B11 RW 2.0
(mean 2,000), GZ14 RW 0.5; points scale 100, so A11 has base points B = 100. Money is fen.
"""
from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from grouper.payment.settle import sharing_adjustment
from grouper.payment.api import settle_cases
from settle_helpers import WEIGHTS, base_points_policy, base_rate_policy, cases, policy


def settled(tmp_path, tree, *rows):
    return settle_cases(cases(*rows), policy(tmp_path, tree), WEIGHTS)


def row(s, case_id):
    return s.cases.filter(pl.col("id") == case_id).row(0, named=True)


# A fixed 预算点值 of 10 yuan (1,000 fen) per point makes cost-based points easy to check by hand.
FIXED = {"points": {"scale": 100, "budget_point_value": 10}}


def test_normal_case_points_and_type(tmp_path):
    s = settled(tmp_path, base_points_policy(), {"cost": 100_000})
    r = row(s, "c1")
    assert (r["case_type"], r["rule"], r["cost_ratio"], r["points"]) == ("normal", "normal", 1.0, 100.0)
    assert r["payment"] == 1_000_000  # the only case takes the whole budget


@pytest.mark.parametrize("formula, coefficient, expected", [
    ("excess_ratio", 1.0, 100 + 100 * (4 - 3)),                 # B·c + B·(r − t) = 200
    ("excess_ratio", 0.9, 100 * 0.9 + 100 * (4 - 3)),           # 190
    ("excess_ratio_coefficient", 0.9, 100 * 0.9 * (1 + 4 - 3)),  # B·c·(1 + r − t) = 180
    ("excess_ratio_plus_coefficient", 0.9, 100 * (4 - 3 + 0.9)),  # B·(r − t + c) = 190
    ("cost", 1.0, 400_000 / 1000),                               # cost ÷ 预算点值 = 400
    ("standard", 0.9, 90),
])
def test_high_case_formulas(tmp_path, formula, coefficient, expected):
    tree = base_points_policy(**FIXED, coefficients={"level": coefficient},
                              cases={"high": {"threshold": 3, "formula": formula}, "incomplete": {"discharge": []}})
    r = row(settled(tmp_path, tree, {"cost": 400_000}), "c1")  # ratio 4,000 ÷ 1,000 = 4
    assert (r["case_type"], r["rule"]) == ("high", "cases.high")
    assert r["points"] == pytest.approx(expected, abs=1e-6)


def test_high_excess_cost_pays_a_share_of_the_cost_above_threshold(tmp_path):
    tree = base_points_policy(**FIXED, cases={"high": {"threshold": 3, "formula": "excess_cost", "marginal": 0.8},
                                               "incomplete": {"discharge": []}})
    r = row(settled(tmp_path, tree, {"cost": 400_000}), "c1")
    # B·c + 0.8 × (cost − t × mean) ÷ 预算点值 = 100 + 0.8 × (400,000 − 300,000) ÷ 1,000 = 180
    assert r["points"] == pytest.approx(180)


def test_high_fee_for_service_pays_the_cost_outside_the_points(tmp_path):
    tree = base_points_policy(cases={"high": {"threshold": 3, "formula": "fee_for_service"}, "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"cost": 400_000}, {"cost": 100_000})
    high, normal = row(s, "c1"), row(s, "c2")
    assert (high["case_type"], high["paid_by"], high["payment"], high["points"]) == ("high", "fee_for_service", 400_000, None)
    assert normal["payment"] == 1_000_000  # outside the budget by default: the normal case takes all of it


@pytest.mark.parametrize("inclusive, cost, expected", [
    (False, 300_000, "normal"),  # ratio exactly 3: not high when the bound is exclusive
    (True, 300_000, "high"),
    (False, 300_001, "high"),
])
def test_high_threshold_boundary(tmp_path, inclusive, cost, expected):
    tree = base_points_policy(cases={"high": {"threshold": 3, "inclusive": inclusive}, "incomplete": {"discharge": []}})
    assert row(settled(tmp_path, tree, {"cost": cost}), "c1")["case_type"] == expected


def test_thresholds_per_hospital_level(tmp_path):
    tree = base_points_policy(cases={"high": {"threshold": {"3": 3, "2": 2, "1": 2}}, "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"cost": 250_000, "hospital_level": 3}, {"cost": 250_000, "hospital_level": 2, "hospital": "H2"})
    assert [row(s, "c1")["case_type"], row(s, "c2")["case_type"]] == ["normal", "high"]


@pytest.mark.parametrize("formula, inclusive, cost, case_type, points", [
    ("ratio", True, 30_000, "low", 100 * 0.3),         # B·c·r = 30
    ("ratio", True, 40_000, "low", 100 * 0.4),         # ratio exactly 0.4, inclusive: low
    ("ratio", False, 40_000, "normal", 100),           # exclusive: normal
    ("ratio_capped", True, 30_000, "low", 30),
    ("cost", True, 30_000, "low", 30_000 / 1000),      # cost ÷ 预算点值 = 30
    ("standard", True, 30_000, "low", 100),
])
def test_low_case_formulas(tmp_path, formula, inclusive, cost, case_type, points):
    tree = base_points_policy(**FIXED, cases={"low": {"threshold": 0.4, "inclusive": inclusive, "formula": formula},
                                               "incomplete": {"discharge": []}})
    r = row(settled(tmp_path, tree, {"cost": cost}), "c1")
    assert (r["case_type"], r["points"]) == (case_type, pytest.approx(points))


def test_low_fee_for_service(tmp_path):
    tree = base_points_policy(cases={"low": {"formula": "fee_for_service"}, "incomplete": {"discharge": []}})
    r = row(settled(tmp_path, tree, {"cost": 30_000}), "c1")
    assert (r["case_type"], r["paid_by"], r["payment"]) == ("low", "fee_for_service", 30_000)


@pytest.mark.parametrize("formula, expected", [
    ("ratio_capped", 100),                  # min(B·c·r, B) = min(100 × 1.2 × 0.9, 100): capped at the base points (Hangzhou)
    ("ratio_capped_no_coefficient", 90),    # min(B·r, B) = 90 (Jinhua)
    ("ratio", 108),                         # B·c·r
    ("standard", 120),
])
def test_incomplete_stay_formulas(tmp_path, formula, expected):
    tree = base_points_policy(coefficients={"level": 1.2},
                              cases={"incomplete": {"discharge": [4, 5], "formula": formula}})
    s = settled(tmp_path, tree, {"cost": 90_000, "discharge": "5"}, {"cost": 90_000, "discharge": "1"})
    assert (row(s, "c1")["case_type"], row(s, "c1")["points"]) == ("incomplete", pytest.approx(expected))
    assert row(s, "c2")["case_type"] == "normal"


def test_incomplete_only_within_max_los(tmp_path):
    tree = base_points_policy(cases={"incomplete": {"discharge": [5], "max_los": 2}})
    s = settled(tmp_path, tree, {"discharge": "5", "los": 2}, {"discharge": "5", "los": 3})
    assert [row(s, "c1")["case_type"], row(s, "c2")["case_type"]] == ["incomplete", "normal"]


def test_per_diem_points_are_per_day_times_days(tmp_path):
    tree = base_points_policy(coefficients={"level": 0.9},
                              cases={"per_diem": {"per_day": {"GZ14": 8.5}}, "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"drg": "GZ14", "los": 10, "cost": 900_000}, {"drg": "GZ14", "los": 0})
    assert (row(s, "c1")["case_type"], row(s, "c1")["points"]) == ("per_diem", pytest.approx(85))  # 8.5 × 10, no coefficient
    assert row(s, "c2")["points"] == pytest.approx(8.5)  # a same-day stay counts one day


def test_per_diem_with_coefficient(tmp_path):
    tree = base_points_policy(coefficients={"level": 0.9},
                              cases={"per_diem": {"per_day": {"GZ14": 10}, "coefficient": True}, "incomplete": {"discharge": []}})
    assert row(settled(tmp_path, tree, {"drg": "GZ14", "los": 10}), "c1")["points"] == pytest.approx(90)


def test_exclusions_are_paid_by_item(tmp_path):
    tree = base_points_policy(cases={"exclusions": {"los_at_most": 2, "los_at_least": 60, "cost_below": "5.00", "drgs": ["B11"]},
                                     "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"los": 2}, {"los": 60}, {"cost": 499}, {"drg": "B11"}, {"drg": "ZZ99"}, {"los": 3})
    got = [(r["case_type"], r["rule"], r["paid_by"], r["payment"] == r["cost"]) for r in s.cases.iter_rows(named=True)]
    assert got == [
        ("excluded", "cases.exclusions.los_at_most", "fee_for_service", True),
        ("excluded", "cases.exclusions.los_at_least", "fee_for_service", True),
        ("excluded", "cases.exclusions.cost_below", "fee_for_service", True),
        ("excluded", "cases.exclusions.drgs", "fee_for_service", True),
        ("excluded", "weights", "fee_for_service", True),      # no weight for ZZ99
        ("normal", "normal", "group", False),
    ]


def test_ungrouped_and_invalid_cases_have_a_type(tmp_path):
    s = settled(tmp_path, base_points_policy(), {"status": "no_adrg", "drg": None}, {"status": "ungroupable", "drg": None},
                {"status": "invalid", "drg": None}, {"cost": None}, {})
    assert s.cases["case_type"].to_list() == ["ungrouped", "ungrouped", "invalid", "invalid", "normal"]
    assert s.cases["rule"].to_list() == ["status", "status", "status", "cost", "normal"]
    assert s.cases["payment"].to_list()[:4] == [100_000, 100_000, 100_000, 0]  # fee-for-service; no cost, no payment


@pytest.mark.parametrize("pay, paid_by, payment", [("none", "none", 0), ("fee_for_service", "fee_for_service", 100_000)])
def test_ungrouped_pay_choices(tmp_path, pay, paid_by, payment):
    tree = base_points_policy(cases={"ungrouped": {"pay": pay}, "incomplete": {"discharge": []}})
    r = row(settled(tmp_path, tree, {"status": "no_adrg", "drg": None}, {}), "c1")
    assert (r["paid_by"], r["payment"]) == (paid_by, payment)


def test_ungrouped_by_cost_gets_points_worth_its_cost(tmp_path):
    tree = base_points_policy(**FIXED, cases={"ungrouped": {"pay": "cost"}, "incomplete": {"discharge": []}})
    r = row(settled(tmp_path, tree, {"status": "no_adrg", "drg": None, "cost": 50_000}, {}), "c1")
    assert (r["paid_by"], r["points"]) == ("group", pytest.approx(50))  # 50,000 fen ÷ 1,000 fen per point


def test_special_review_cap_and_pay(tmp_path):
    # 20 DRG cases at H1, 3 flagged; cap 10% → ⌊0.1 × 20⌋ = 2 accepted: the highest cost ratios (c1, c2)
    tree = base_points_policy(**FIXED, cases={"special_review": {"cap": 0.1, "pay": "cost"}, "incomplete": {"discharge": []}})
    rows = [{"special_review": True, "cost": 250_000}, {"special_review": True, "cost": 200_000},
            {"special_review": True, "cost": 150_000}] + [{}] * 17
    s = settled(tmp_path, tree, *rows)
    assert s.cases["case_type"].to_list()[:3] == ["special_review", "special_review", "normal"]
    assert row(s, "c1")["points"] == pytest.approx(250)  # cost ÷ 预算点值
    h = s.hospitals.row(0, named=True)
    assert (h["n_special_review"], h["special_review_flagged"], h["drg_cases"], h["special_review_share"]) == (2, 3, 20, 0.1)


def test_special_review_over_cap_fee_for_service(tmp_path):
    tree = base_points_policy(cases={"special_review": {"cap": 0.0, "over_cap": "fee_for_service"}, "incomplete": {"discharge": []}})
    r = row(settled(tmp_path, tree, {"special_review": True}, {}), "c1")
    assert (r["case_type"], r["rule"], r["paid_by"]) == ("excluded", "cases.special_review.over_cap", "fee_for_service")


def test_special_review_cap_over_the_region(tmp_path):
    tree = base_points_policy(cases={"special_review": {"cap": 0.5, "cap_scope": "region", "pay": "standard"},
                                     "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"special_review": True, "cost": 120_000, "hospital": "H1"},
                {"special_review": True, "cost": 110_000, "hospital": "H2"}, {"hospital": "H2"}, {"hospital": "H1"})
    # region: ⌊0.5 × 4⌋ = 2 accepted; per hospital it would have been ⌊0.5 × 2⌋ = 1 each as well, so check the order:
    assert s.cases["case_type"].to_list() == ["special_review", "special_review", "normal", "normal"]


def test_readmission_halves_the_earlier_stay(tmp_path):
    tree = base_points_policy(readmission={"days": 15, "same": "adrg", "factor": 0.5, "exceptions": ["C11"]})
    d = dt.date
    s = settled(tmp_path, tree,
                {"patient_id": "p1", "admission_date": d(2025, 1, 1), "discharge_date": d(2025, 1, 5)},
                {"patient_id": "p1", "drg": "A13", "admission_date": d(2025, 1, 20), "discharge_date": d(2025, 1, 25)},  # 15 days later
                {"patient_id": "p2", "admission_date": d(2025, 1, 1), "discharge_date": d(2025, 1, 5)},
                {"patient_id": "p2", "admission_date": d(2025, 1, 21), "discharge_date": d(2025, 1, 25)},  # 16 days: no
                {"patient_id": "p3", "drg": "C11", "adrg": "C11", "admission_date": d(2025, 1, 1), "discharge_date": d(2025, 1, 5)},
                {"patient_id": "p3", "drg": "C11", "adrg": "C11", "admission_date": d(2025, 1, 6), "discharge_date": d(2025, 1, 9)})
    assert s.cases["readmission_factor"].to_list() == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert row(s, "c1")["points"] == pytest.approx(50)  # 100 × 0.5; the later stay (A13, B = 150) is not reduced
    assert row(s, "c2")["points"] == pytest.approx(150)


def test_readmission_same_drg_only(tmp_path):
    tree = base_points_policy(readmission={"days": 15, "same": "drg"})
    s = settled(tmp_path, tree, {"patient_id": "p1"}, {"patient_id": "p1", "drg": "A13",
                                                       "admission_date": dt.date(2025, 1, 7), "discharge_date": dt.date(2025, 1, 9)})
    assert s.cases["readmission_factor"].to_list() == [1.0, 1.0]


def test_points_method_point_values_and_largest_remainder(tmp_path):
    # Budget 10,000.00 yuan, reserve 5% → distributable 950,000 fen; points 100 + 200 = 300.
    tree = base_points_policy(budget={"reserve_share": 0.05, "annual": {"all": "10000.00"}})
    s = settled(tmp_path, tree, {"cost": 100_000}, {"drg": "B11", "cost": 200_000})
    pool = s.pools.row(0, named=True)
    assert (pool["budget"], pool["reserve"], pool["distributable"]) == (1_000_000, 50_000, 950_000)
    # 预算点值 = 950,000 fen ÷ 300 standard points = 31.6667 yuan; 结算点值 the same here (no outliers)
    assert pool["budget_point_value"] == pytest.approx(9500 / 300)
    assert pool["settlement_point_value"] == pytest.approx(9500 / 300)
    # 950,000 × 100/300 = 316,666.67 and × 200/300 = 633,333.33: floors 316,666 + 633,333 = 949,999;
    # the one fen left goes to the larger remainder (0.67): the first case
    assert s.cases["payment"].to_list() == [316_667, 633_333]
    assert s.hospitals["drg_payment"].sum() == 950_000


def test_budget_pools_per_insurance_type(tmp_path):
    tree = base_points_policy(budget={"reserve_share": 0, "annual": {"employee": "1000.00", "resident": "3000.00"}})
    s = settled(tmp_path, tree, {"insurance": "employee"}, {"insurance": "resident"}, {"insurance": "other"})
    assert s.cases["payment"].to_list()[:2] == [100_000, 300_000]
    assert (row(s, "c3")["case_type"], row(s, "c3")["rule"]) == ("excluded", "budget.annual")


def test_fee_for_service_inside_the_budget(tmp_path):
    tree = base_points_policy(budget={"reserve_share": 0, "fee_for_service_inside": True, "annual": {"all": "10000.00"}},
                              cases={"exclusions": {"los_at_least": 60}, "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"los": 60, "cost": 200_000}, {})
    assert s.pools.row(0, named=True)["distributable"] == 800_000  # 1,000,000 − the excluded case's 200,000
    assert s.cases["payment"].to_list() == [200_000, 800_000]


def test_coefficients_hospital_drg_and_basic_groups(tmp_path):
    (tmp_path / "hosp.csv").write_text("hospital,coefficient\nH9,1.1\n")
    (tmp_path / "drg.csv").write_text("drg,coefficient\nA13,1.2\n")
    tree = base_points_policy(**FIXED, coefficients={"level": {"3": 1.0, "2": 0.8, "1": 0.7}, "hospitals": "hosp.csv",
                                                      "drgs": "drg.csv"},
                              basic_groups={"drgs": ["B11"], "level": 1}, cases={"incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"hospital_level": 2, "hospital": "H2"}, {"hospital": "H9", "hospital_level": 2},
                {"drg": "A13", "hospital_level": 2, "hospital": "H2", "cost": 150_000},
                {"drg": "B11", "hospital": "H9", "cost": 200_000})
    assert s.cases["coefficient"].to_list() == pytest.approx([0.8, 1.1, 0.8 * 1.2, 0.7])  # basic group: level 1's, not H9's


def test_rate_method_payment_is_rw_times_base_rate(tmp_path):
    tree = base_rate_policy(basic_groups={"drgs": ["B11"], "level": 2})
    s = settled(tmp_path, tree, {"drg": "A13", "cost": 1_500_000},   # 1.5 × 10,000 yuan
                {"drg": "A13", "insurance": "resident", "hospital_level": 2, "hospital": "H2", "cost": 1_000_000},  # 1.5 × 7,000
                {"drg": "B11", "cost": 1_600_000})                   # basic group: level-2 employee rate 8,000 × 2.0
    assert s.cases["payment"].to_list() == [1_500_000, 1_050_000, 1_600_000]
    assert s.cases["standard"].to_list() == [1_500_000, 1_050_000, 1_600_000]
    assert s.cases["price"].to_list() == [10_000, 7_000, 8_000]


def test_rate_method_outliers_by_standard(tmp_path):
    tree = base_rate_policy(ratio={"reference": "standard"},
                            cases={"high": {"threshold": 3, "formula": "excess_cost", "marginal": 0.8},
                                   "low": {"threshold": 0.3, "inclusive": False, "formula": "cost"},
                                   "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"cost": 4_000_000}, {"cost": 200_000}, {"cost": 1_000_000})
    # standard 1.0 × 10,000 yuan: ratio 4 → high: 10,000 + 0.8 × (40,000 − 30,000) = 18,000 yuan
    assert s.cases["case_type"].to_list() == ["high", "low", "normal"]
    assert s.cases["payment"].to_list() == [1_800_000, 200_000, 1_000_000]  # low by cost: its 2,000 yuan


def test_rate_method_unknown_insurance_without_all_is_invalid(tmp_path):
    r = row(settled(tmp_path, base_rate_policy(), {"insurance": "other"}), "c1")
    assert (r["case_type"], r["rule"]) == ("invalid", "rate.base_rate")


@pytest.mark.parametrize("payment, cost, expected", [
    (100_000, 80_000, -5_000),    # surplus 20%: first 10% (10,000) kept; next 10,000 kept at 50% → 5,000 recovered
    (100_000, 95_000, 0),         # surplus 5%: inside the first band
    (100_000, 115_000, 5_000),    # overspend 15%: fund bears 50% of the first 10,000, nothing past it
    (100_000, 105_000, 2_500),
    (100_000, 100_000, 0),
    (0, 10_000, 0),
])
def test_sharing_bands(payment, cost, expected):
    surplus = [{"upto": 0.1, "retain": 1}, {"upto": None, "retain": 0.5}]
    deficit = [{"upto": 0.1, "fund": 0.5}, {"upto": None, "fund": 0}]
    assert sharing_adjustment(payment, cost, surplus, deficit) == expected


def test_sharing_past_the_last_band_end_is_kept_or_borne():
    assert sharing_adjustment(100_000, 50_000, [{"upto": 0.1, "retain": 0.0}], []) == -10_000
    assert sharing_adjustment(100_000, 200_000, [], [{"upto": 0.2, "fund": 1.0}]) == 20_000


def test_hospital_clearing_prepaid_vs_due(tmp_path):
    # rate method, prepayment 85% of each month's cost: Jan 1,000.00 + Feb 333.33 yuan
    tree = base_rate_policy(prepayment={"ratio": 0.85, "basis": "cost"}, sharing={"surplus": [{"retain": 0.5}]},
                            cases={"low": {"threshold": 0.01}, "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"cost": 100_000, "discharge_date": dt.date(2025, 1, 10)},
                {"cost": 33_333, "discharge_date": dt.date(2025, 2, 10)})
    h = s.hospitals.row(0, named=True)
    # prepaid: 0.85 × 100,000 = 85,000; 0.85 × 33,333 = 28,333.05 → 28,333 (half up per month)
    assert h["prepaid"] == 113_333
    # payments 2 × 1,000,000 fen; cost 133,333; surplus 1,866,667, half recovered → −933,333.5 → −933,334 (half up)
    assert (h["drg_payment"], h["drg_surplus"], h["sharing_adjustment"]) == (2_000_000, 1_866_667, -933_334)
    assert h["final_payment"] == 2_000_000 - 933_334
    assert h["due"] == h["final_payment"] - 113_333
    assert h["surplus_after_sharing"] == h["final_payment"] - 133_333


def test_prepayment_at_the_budget_point_value(tmp_path):
    tree = base_points_policy(**FIXED, prepayment={"ratio": 0.5, "basis": "standard"})
    s = settled(tmp_path, tree, {}, {"discharge_date": dt.date(2025, 2, 3)})
    # each month: 100 points × 1,000 fen × 0.5 = 50,000
    assert s.hospitals.row(0, named=True)["prepaid"] == 100_000


def test_every_row_is_kept_in_input_order(tmp_path):
    rows = [{"status": "invalid", "drg": None}, {}, {"drg": "ZZ99"}, {"status": "no_adrg", "drg": None}, {"cost": 1}]
    s = settled(tmp_path, base_points_policy(), *rows)
    assert s.cases["id"].to_list() == ["c1", "c2", "c3", "c4", "c5"]
    assert s.cases["case_type"].null_count() == 0


def test_hospital_table_counts_and_cmi(tmp_path):
    s = settled(tmp_path, base_points_policy(), {}, {"drg": "B11", "cost": 200_000}, {"hospital": "H2"})
    h1 = s.hospitals.filter(pl.col("hospital") == "H1").row(0, named=True)
    assert (h1["cases"], h1["n_normal"], h1["cmi"], h1["points"]) == (2, 2, 1.5, 300)
    assert s.hospitals["drg_payment"].sum() == 1_000_000


@pytest.mark.parametrize("weight, mean, problem", [
    ("0.0", "1000.0", "weight '0.0' is not a positive number"),
    ("-1", "1000.0", "weight '-1' is not a positive number"),
    ("", "1000.0", "weight blank is not a positive number"),
    ("NaN", "1000.0", "weight 'NaN' is not a positive number"),
    ("inf", "1000.0", "weight 'inf' is not a positive number"),
    ("1e308", "1000.0", "weight '1e308' is not a positive number"),
    ("1.5", "-5", "mean '-5' is not a positive amount"),
    ("1.5", "0", "mean '0' is not a positive amount"),
])
def test_weights_that_are_not_positive_are_refused_with_their_line(tmp_path, weight, mean, problem):
    from grouper.errors import InputError

    weights = pl.DataFrame({"drg": ["A13", "A11"], "weight": ["1.5", weight], "mean": ["1500", mean]})
    with pytest.raises(InputError, match=f"line 3, drg A11: {problem}"):
        settle_cases(cases({}), policy(tmp_path, base_points_policy()), weights)


def test_a_drg_listed_twice_in_the_weights_is_refused(tmp_path):
    from grouper.errors import InputError

    weights = pl.DataFrame({"drg": ["A11", "A11"], "weight": ["1.0", "2.0"], "mean": ["1000", "2000"]})
    with pytest.raises(InputError, match="line 3: drg A11 is listed twice"):
        settle_cases(cases({}), policy(tmp_path, base_points_policy()), weights)


def test_a_weight_without_a_mean_leaves_the_ratio_unknown(tmp_path):
    weights = pl.DataFrame({"drg": ["A13"], "weight": ["1.5"], "mean": [None]}, schema={"drg": pl.String, "weight": pl.String,
                                                                                        "mean": pl.String})
    s = settle_cases(cases({"drg": "A13", "cost": 150_000}), policy(tmp_path, base_points_policy()), weights)
    assert (row(s, "c1")["case_type"], row(s, "c1")["cost_ratio"]) == ("normal", None)


def test_a_budget_used_up_by_fee_for_service_warns(tmp_path):
    # 10,000.00 yuan, no reserve; the excluded B11 case costs 12,000.00 and is paid by item inside the budget
    tree = base_points_policy(budget={"fee_for_service_inside": True},
                              cases={"exclusions": {"drgs": ["B11"]}, "incomplete": {"discharge": []}})
    s = settled(tmp_path, tree, {"drg": "B11", "cost": 1_200_000}, {"cost": 100_000})
    assert s.cases["payment"].to_list() == [1_200_000, 0]
    assert len(s.warnings) == 1 and "pool all" in s.warnings[0] and "nothing is left to share" in s.warnings[0]
    assert "12,000.00" in s.warnings[0]
    assert not settled(tmp_path, base_points_policy(), {"cost": 100_000}).warnings
