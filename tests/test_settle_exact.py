"""Issue 16, "Exactness" and "Silently wrong money": each defect reproduced by hand, computed exactly.

Every expected figure below is worked out by hand from the stated rounding rules (grouper/payment/
settle.py's module doc): points are integer micro-points rounded half up once per formula,
thresholds are compared exactly, money is half up to the fen.
"""
from __future__ import annotations

import polars as pl
import pytest

from grouper.errors import InputError
from grouper.payment.api import settle_cases
from settle_helpers import base_points_policy, base_rate_policy, cases, policy


def one(s, case_id="c1"):
    return s.cases.filter(pl.col("id") == case_id).row(0, named=True)


def weights(*rows) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"drg": pl.String, "weight": pl.String, "mean": pl.String}, orient="row")


def test_per_diem_under_the_rate_method_pays_yuan_per_day(tmp_path):
    # per_day is yuan per day: 2,000 yuan/day × 2 days = 4,000.00 (it was × the base rate: 40,000,000.00)
    tree = base_rate_policy(cases={"per_diem": {"per_day": {"GZ14": 2000}}, "incomplete": {"discharge": []}})
    s = settle_cases(cases({"drg": "GZ14", "los": 2, "cost": 300_000}), policy(tmp_path, tree),
                     weights(("GZ14", "0.5", "500")))
    r = one(s)
    assert (r["case_type"], r["payment"], r["standard"]) == ("per_diem", 400_000, 400_000)
    assert r["points"] == pytest.approx(0.4)  # 4,000 yuan ÷ the 10,000-yuan base rate


def test_per_diem_under_the_rate_method_with_the_coefficient(tmp_path):
    # 1,234.56 yuan/day × 3 days × 0.85 = 3,148.128 → 3,148.13
    tree = base_rate_policy(coefficients={"level": 0.85},
                            cases={"per_diem": {"per_day": {"GZ14": 1234.56}, "coefficient": True},
                                   "incomplete": {"discharge": []}})
    s = settle_cases(cases({"drg": "GZ14", "los": 3}), policy(tmp_path, tree), weights(("GZ14", "0.5", "500")))
    assert one(s)["payment"] == 314_813


def test_per_diem_yuan_with_more_than_two_decimals_is_refused_under_the_rate_method(tmp_path):
    from grouper.errors import PolicyError

    tree = base_rate_policy(cases={"per_diem": {"per_day": {"GZ14": 10.001}}})
    with pytest.raises(PolicyError, match="per_day is yuan per day"):
        policy(tmp_path, tree)


# mean 1,024.10 yuan; 0.4 × 1,024.10 = 409.64 and 3 × 1,024.10 = 3,072.30 exactly (in floats, 40964 ÷ 102410
# is 0.39999999999999997 and 307230 ÷ 102410 is 3.0000000000000004)
RATE_LOW = base_rate_policy(ratio={"reference": "group_mean"},
                            cases={"low": {"threshold": 0.4, "inclusive": True, "formula": "ratio"},
                                   "high": {"threshold": 3, "inclusive": False, "formula": "excess_ratio"},
                                   "incomplete": {"discharge": []}})


def test_a_cost_exactly_on_the_low_threshold_is_low(tmp_path):
    s = settle_cases(cases({"cost": 40_964}), policy(tmp_path, RATE_LOW), weights(("A11", "1.0", "1024.10")))
    r = one(s)
    # low, B·c·r = 1.0 × 0.4 = 0.4 points × 10,000 yuan = 4,000.00 (it was normal: 10,000.00)
    assert (r["case_type"], r["cost_ratio"], r["payment"]) == ("low", 0.4, 400_000)


def test_a_cost_exactly_on_an_exclusive_high_threshold_is_not_high(tmp_path):
    s = settle_cases(cases({"cost": 307_230}), policy(tmp_path, RATE_LOW), weights(("A11", "1.0", "1024.10")))
    assert (one(s)["case_type"], one(s)["payment"]) == ("normal", 1_000_000)
    inclusive = {**RATE_LOW, "cases": {**RATE_LOW["cases"], "high": {"threshold": 3, "inclusive": True,
                                                                      "formula": "excess_ratio"}}}
    s = settle_cases(cases({"cost": 307_230}), policy(tmp_path, inclusive), weights(("A11", "1.0", "1024.10")))
    assert one(s)["case_type"] == "high"  # B·c + B·(r − t) = 1.0 + 0 = 1.0 point: 10,000.00
    assert one(s)["payment"] == 1_000_000


def test_excess_cost_half_micro_point_rounds_up(tmp_path):
    # RW 0.1846, base rate 16,000 yuan (level 3), reference = standard = 0.1846 × 16,000 = 2,953.60 yuan;
    # cost 8,916.89 > 3 × 2,953.60 = 8,860.80: high. Points = 0.1846 + 0.8 × (8,916.89 − 8,860.80) ÷ 16,000
    # = 0.1846 + 0.0028045 = 0.1874045 → 0.187405 (half up); × 16,000 = 2,998.48 (floats gave 2,998.46)
    tree = base_rate_policy(rate={"base_rate": {"all": {"3": 16000, "2": 15000, "1": 12500}}},
                            cases={"high": {"threshold": 3, "formula": "excess_cost", "marginal": 0.8},
                                   "incomplete": {"discharge": []}})
    s = settle_cases(cases({"cost": 891_689}), policy(tmp_path, tree), weights(("A11", "0.1846", "2000")))
    r = one(s)
    assert (r["case_type"], r["points"], r["payment"], r["standard"]) == ("high", 0.187405, 299_848, 295_360)


def test_b_times_c_half_micro_point_rounds_up(tmp_path):
    # B = 3.05554275 × 100 = 305.554275; c = 0.5: B·c = 152.7771375 → 152.777138 (floats: 152.777137)
    tree = base_points_policy(coefficients={"level": 0.5}, points={"scale": 100, "budget_point_value": 10})
    s = settle_cases(cases({"cost": 150_000}), policy(tmp_path, tree), weights(("A11", "3.05554275", None)))
    assert one(s)["points"] == 152.777138
    assert one(s)["base_points"] == 305.554275


def test_the_budget_point_value_is_exact_and_independent_of_row_order(tmp_path):
    # B = 0.3333333 × 100 = 33.33333 and 0.1777777 × 100 = 17.77777 (exact in micro-points); the standard
    # points of the year = 3 × 33.33333 + 17.77777 = 117.77776 (an integer sum of micro-points, in any
    # order); budget 10,000.00 yuan: 预算点值 = 10,000 ÷ 117.77776 = 84.9056731933… → 84.905673 (half up,
    # six decimals of yuan), published and used as such
    w = weights(("A11", "0.3333333", "1000"), ("A13", "0.1777777", "1000"))
    rows = [{"cost": 100_000 + i} for i in range(3)] + [{"drg": "A13", "cost": 100_000}]
    pol = policy(tmp_path, base_points_policy())
    first = settle_cases(cases(*rows), pol, w)
    assert first.pools["budget_point_value"].to_list() == [84.905673]
    for seed in range(4):
        shuffled = cases(*rows).sample(fraction=1.0, shuffle=True, seed=seed)
        again = settle_cases(shuffled, pol, w)
        assert again.pools.equals(first.pools)
        assert again.cases.sort("id").equals(first.cases.sort("id"))


@pytest.mark.parametrize("status", [None, "", "GROUPED", "grouped ", "paid"])
def test_a_status_that_is_not_a_grouping_status_is_refused(tmp_path, status):
    with pytest.raises(InputError, match=r"row 2 \(id c2\): status .* is not a grouping status"):
        settle_cases(cases({}, {"status": status}), policy(tmp_path, base_points_policy()), weights(("A11", "1", "1000")))


def test_duplicate_case_ids_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"id 'k1' is given to more than one case"):
        settle_cases(cases({"id": "k1"}, {"id": "k2"}, {"id": "k1"}), policy(tmp_path, base_points_policy()),
                     weights(("A11", "1", "1000")))


@pytest.mark.parametrize("hospital", [None, "", "  "])
def test_a_blank_hospital_is_refused(tmp_path, hospital):
    with pytest.raises(InputError, match=r"row 1 \(id c1\): hospital .* is blank"):
        settle_cases(cases({"hospital": hospital}), policy(tmp_path, base_points_policy()), weights(("A11", "1", "1000")))


def test_a_negative_cost_is_invalid_and_paid_nothing(tmp_path):
    # ungrouped and invalid cases are paid by item under this policy: −100.00 was paid −100.00
    tree = base_points_policy(cases={"ungrouped": {"pay": "fee_for_service"}, "incomplete": {"discharge": []}})
    s = settle_cases(cases({"cost": -10_000}, {"cost": 100_000}), policy(tmp_path, tree), weights(("A11", "1", "1000")))
    r = one(s)
    assert (r["case_type"], r["rule"], r["paid_by"], r["payment"]) == ("invalid", "cost", "none", 0)
    assert any("negative cost" in w for w in s.warnings)


def test_an_implausible_cost_is_refused(tmp_path):
    # 10¹³ yuan would take 99 % of its pool
    with pytest.raises(InputError, match=r"row 2 \(id c2\): cost .* not a plausible case cost"):
        settle_cases(cases({}, {"cost": 10**15}), policy(tmp_path, base_points_policy()), weights(("A11", "1", "1000")))


def test_policy_coefficient_table_with_a_duplicate_row_is_refused(tmp_path):
    from grouper.errors import PolicyError

    (tmp_path / "coef.csv").write_text("drg,coefficient\nA11,1.1\nA11,0.9\n", encoding="utf-8")
    with pytest.raises(PolicyError, match="A11 is listed twice"):
        policy(tmp_path, base_points_policy(coefficients={"drgs": "coef.csv"}))


def test_policy_codes_no_group_has_are_warned(tmp_path):
    tree = base_points_policy(cases={"exclusions": {"drgs": ["ZZ99"]}, "per_diem": {"per_day": {"QQ11": 5}},
                                     "incomplete": {"discharge": []}}, basic_groups={"drgs": ["A11", "XX1"]})
    s = settle_cases(cases({}), policy(tmp_path, tree), weights(("A11", "1", "1000")))
    assert s.checks.unknown_policy_codes == {"cases.exclusions.drgs": ["ZZ99"], "basic_groups.drgs": ["XX1"],
                                             "cases.per_diem.per_day": ["QQ11"]}
    assert sum("names groups the weights do not have" in w for w in s.warnings) == 3


def test_weights_of_another_scheme_are_refused(tmp_path):
    rows = [{"drg": "B11"} for _ in range(9)] + [{"drg": "A11"}]
    with pytest.raises(InputError, match="9 of 10 grouped cases have a group the weights table does not list"):
        settle_cases(cases(*rows), policy(tmp_path, base_points_policy()), weights(("A11", "1", "1000")))


def test_cases_without_the_insurance_or_level_column_are_refused(tmp_path):
    tree = base_points_policy(budget={"annual": {"employee": "100.00", "resident": "100.00"}})
    with pytest.raises(InputError, match="no insurance column"):
        settle_cases(cases({}).drop("insurance"), policy(tmp_path, tree), weights(("A11", "1", "1000")))
    tree = base_points_policy(coefficients={"level": {"3": 1.0, "2": 0.9}})
    with pytest.raises(InputError, match="no hospital_level column.*coefficients.level"):
        settle_cases(cases({}).drop("hospital_level"), policy(tmp_path, tree), weights(("A11", "1", "1000")))


def test_a_threshold_table_missing_a_level_is_refused(tmp_path):
    tree = base_points_policy(cases={"high": {"threshold": {"3": 3.0}}, "incomplete": {"discharge": []}})
    with pytest.raises(InputError, match=r"cases.high.threshold` has no value for level 2 \(1 cases\)"):
        settle_cases(cases({}, {"hospital_level": 2}), policy(tmp_path, tree), weights(("A11", "1", "1000")))


@pytest.mark.parametrize("key, value, problem", [
    (("points", "scale"), "1e300", "not a plausible value"),
    (("budget", "annual", "all"), "1e17", "not a plausible amount"),
    (("coefficients", "level"), "0.1234567", "more than 6 decimals"),
])
def test_implausible_policy_numbers_are_refused(tmp_path, key, value, problem):
    from grouper.errors import PolicyError

    tree = base_points_policy()
    holder = tree
    for part in key[:-1]:
        holder[part] = dict(holder.get(part, {}))
        holder = holder[part]
    holder[key[-1]] = value
    path = tmp_path / "p.toml"
    from settle_helpers import toml_text

    path.write_text(toml_text(tree).replace(f'"{value}"', value), encoding="utf-8")
    from grouper.payment.policy import load_policy

    with pytest.raises(PolicyError, match=problem):
        load_policy(path)


def test_a_pool_with_no_cases_is_a_warning_and_its_budget_undistributed(tmp_path):
    tree = base_points_policy(budget={"annual": {"employee": "100.00", "resident": "50.00"}})
    s = settle_cases(cases({"insurance": "employee"}), policy(tmp_path, tree), weights(("A11", "1", "1000")))
    pools = {p["pool"]: p for p in s.checks.pools}
    assert pools["resident"]["paid"] == 0 and pools["resident"]["undistributed"] == {"no_cases": 5_000}
    assert any("pool resident" in w and "it has no cases" in w for w in s.warnings)


def test_the_rate_method_overspending_its_budget_warns(tmp_path):
    tree = base_rate_policy(budget={"annual": {"all": "9000.00"}, "reserve_share": 0})
    s = settle_cases(cases({"cost": 1_000_000}), policy(tmp_path, tree), weights(("A11", "1", "1000")))  # pays 10,000.00
    pool = s.checks.pools[0]
    assert pool["undistributed"] == {"rate_overspent": -100_000}
    assert pool["paid"] + sum(pool["undistributed"].values()) == pool["budget"]
    assert any("rate method paid 10,000.00 yuan against a distributable budget of 9,000.00" in w for w in s.warnings)
