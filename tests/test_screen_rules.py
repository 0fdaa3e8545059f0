"""Each screen logic on hand-made cases: the cases that must fire and the cases that must not."""
from __future__ import annotations

import math
from datetime import date

import polars as pl
import pytest

from grouper.screen.run import screen
from grouper.screen.screens import load_screens
from screen_helpers import cases, many, rule, screens_file

KEY = b"k" * 32


def run(tmp_path, frame, *rules, weights=None, **kw):
    screens = load_screens(screens_file(tmp_path / "s.toml", *rules))
    return screen(frame, screens, key=KEY, weights=weights, **kw)


def fired(result, code="R") -> list[str]:
    return sorted(result.flags.filter(pl.col("rule") == code)["id"].to_list(), key=lambda x: int(x[1:]))


def test_validation_warning_fires_on_named_warnings_and_reasons(tmp_path):
    frame = cases({"warnings": ["female_dx_on_male"]}, {"warnings": ["duplicate_dx"]}, {},
                  {"status": "invalid", "drg": None, "reason": "sex_mismatch"}, {"warnings": ["x", "newborn_dx_on_adult"]})
    result = run(tmp_path, frame, rule("R", "validation_warning", 'warnings = ["female_dx_on_male", "sex_mismatch"]'))
    assert fired(result) == ["C1", "C4"]
    assert "warnings=female_dx_on_male" in result.flags["evidence"][0]


def test_long_stay_fires_from_min_los(tmp_path):
    result = run(tmp_path, cases({"los": 60}, {"los": 59}, {"los": 200}), rule("R", "long_stay", "min_los = 60"))
    assert fired(result) == ["C1", "C3"]


def test_cost_outlier_against_the_groups_median_at_the_level(tmp_path):
    group = many(5, cost=100_000)
    frame = cases(*group, {"cost": 1_000_000}, {"cost": 999_999},
                  {"cost": 1_000_000, "hospital_level": 2})   # alone at level 2: below min_group_cases
    result = run(tmp_path, frame, rule("R", "cost_outlier", "ratio = 10, min_group_cases = 3"))
    assert fired(result) == ["C6"]
    assert "cost_ratio=10.0" in result.flags["evidence"][0]


def test_mcc_upcoding_compares_with_the_normal_range_of_the_group_without_complications(tmp_path):
    # XA15 at level 3: costs 800-1,600 yuan, stays 4-8 days. Its normal range (Tukey's fence on the log scale):
    # log Q3 + 1.5 × (log Q3 − log Q1), at the level
    plain = [{"drg": "XA15", "cost": c, "los": d} for c, d in ((80_000, 4), (100_000, 5), (120_000, 6), (160_000, 8))]
    costs, stays = pl.Series([80_000, 100_000, 120_000, 160_000]).log(), pl.Series([4, 5, 6, 8]).log()
    fence = lambda x: math.exp(x.quantile(0.75, "linear") + 1.5 * (x.quantile(0.75, "linear") - x.quantile(0.25, "linear")))  # noqa: E731
    cost_limit, los_limit = fence(costs), fence(stays)
    assert 205_000 < cost_limit < 206_000 and 10 < los_limit < 11
    frame = cases(*plain,
                  {"drg": "XA11", "cost": 90_000, "los": 4, "fund_paid": 100_000},                  # C5: fires
                  {"drg": "XA11", "cost": math.floor(cost_limit), "los": math.floor(los_limit)},   # C6: at the limits: fires
                  {"drg": "XA11", "cost": math.floor(cost_limit) + 1, "los": 4},                   # C7: costlier than the range
                  {"drg": "XA11", "cost": 90_000, "los": math.floor(los_limit) + 1},               # C8: longer than the range
                  {"drg": "XA11", "cost": 90_000, "los": 2, "discharge": 5},                       # C9: a death: judged too
                  {"drg": "XA11", "cost": 90_000, "los": 4, "hospital_level": 2},                  # C10: no XA15 at level 2
                  {"drg": "XB11", "cost": 10, "los": 1})                                           # C11: no alternative group
    weights = pl.DataFrame({"drg": ["XA11", "XA15", "XB11"], "weight": [2.0, 1.0, 1.0]})
    result = run(tmp_path, frame, rule("R", "mcc_upcoding", 'min_group_cases = 3, within = "none"'), weights=weights)
    assert fired(result) == ["C5", "C6", "C9"]
    row = result.flags.row(0, named=True)
    assert "alternative_drg=XA15" in row["evidence"] and f"alternative_cost_limit={cost_limit / 100:.2f}" in row["evidence"]
    # money at stake: paid 1,000.00 in XA11 (weight 2) against XA15 (weight 1): 500.00
    assert (row["paid"], row["alternative"], row["at_stake"]) == (100_000, 50_000, 50_000)
    ordinary = run(tmp_path, frame, rule("R", "mcc_upcoding", 'min_group_cases = 3, within = "none", discharge = ["1"]'))
    assert fired(ordinary) == ["C5", "C6"]


def test_mcc_upcoding_falls_back_to_the_next_alternative_suffix(tmp_path):
    frame = cases(*many(3, drg="XA13", cost=100_000, los=5), {"drg": "XA15", "cost": 1, "los": 1},
                  {"drg": "XA11", "cost": 90_000, "los": 5})
    result = run(tmp_path, frame, rule("R", "mcc_upcoding", 'min_group_cases = 3, within = "none"'))
    assert fired(result) == ["C5"]
    assert "alternative_drg=XA13" in result.flags["evidence"][0]


def test_low_weight_admission(tmp_path):
    group = many(4, drg="LW1", cost=100_000, los=4)
    frame = cases(*group,
                  {"drg": "LW1", "cost": 30_000, "los": 1},                   # C5 fires
                  {"drg": "LW1", "cost": 50_000, "los": 1},                   # C6: not cheap enough (0.5 > 0.4)
                  {"drg": "LW1", "cost": 30_000, "los": 3},                   # C7: too long
                  {"drg": "LW1", "cost": 30_000, "los": 2, "discharge": 2},   # C8: a transfer
                  *many(4, drg="HW1", cost=100_000, los=4),
                  {"drg": "HW1", "cost": 30_000, "los": 1})                   # C13: not a low-weight group
    weights = pl.DataFrame({"drg": ["LW1", "HW1"], "weight": [0.5, 0.7]})
    result = run(tmp_path, frame, rule("R", "low_weight_admission", "min_group_cases = 3"), weights=weights)
    assert fired(result) == ["C5"]
    assert result.flags["at_stake"].to_list() == [80_000]   # the whole payment (fund_paid)


def test_self_pay_share_above_the_median_of_its_insurance_and_level(tmp_path):
    frame = cases(*many(5, cost=100_000, fund_paid=80_000),
                  {"cost": 100_000, "fund_paid": 50_000},    # C6: self-pay 0.5 against 0.2: fires
                  {"cost": 100_000, "fund_paid": 65_000},    # C7: 0.35, only 0.15 above
                  {"cost": 5_000, "fund_paid": 0},           # C8: under min_cost
                  *many(3, insurance="resident", cost=100_000, fund_paid=50_000))   # their own median: 0.5
    result = run(tmp_path, frame, rule("R", "self_pay_share", "excess = 0.2, min_cost = 100"))
    assert fired(result) == ["C6"]
    assert result.flags.row(0, named=True)["at_stake"] == 30_000   # 1,000.00 × (0.5 − 0.2)


def test_readmission_within_days_same_hospital_same_adrg(tmp_path):
    frame = cases({"patient_id": "P", "admission_date": date(2024, 1, 1), "los": 9},          # C1 first stay
                  {"patient_id": "P", "admission_date": date(2024, 1, 25), "los": 3},         # C2: 15 days after: fires
                  {"patient_id": "P", "admission_date": date(2024, 3, 1), "los": 3},          # C3: 35 days after
                  {"patient_id": "P", "admission_date": date(2024, 3, 5), "los": 2, "drg": "XB15"},   # other ADRG
                  {"patient_id": "P", "admission_date": date(2024, 3, 10), "los": 2, "hospital": "H2"},  # other hospital
                  {"patient_id": "Q", "admission_date": date(2024, 1, 12), "los": 3})         # someone else
    result = run(tmp_path, frame, rule("R", "readmission", "days = 15"))
    assert fired(result) == ["C2"]
    assert "previous_id=C1" in result.flags["evidence"][0] and "days_between=15" in result.flags["evidence"][0]
    anywhere = run(tmp_path, frame, rule("R", "readmission", 'days = 15, same_hospital = false, same = "any"'))
    assert fired(anywhere) == ["C2", "C4", "C5"]


def test_continuous_stay(tmp_path):
    long_stays = [{"patient_id": "P", "admission_date": date(2024, 1, 1) + (date(2024, 2, 1) - date(2024, 1, 1)) * i,
                   "los": 28} for i in range(11)]                        # 11 × 28 = 308 days in 11 months
    short = [{"patient_id": "Q", "admission_date": date(2024, 1, 1) + (date(2024, 2, 1) - date(2024, 1, 1)) * i,
              "los": 20} for i in range(11)]                             # 220 days
    result = run(tmp_path, cases(*long_stays, *short), rule("R", "continuous_stay", "min_days = 300, window = 365"))
    assert fired(result) == ["C11"]   # the stay that reaches 300 days


def test_transfer_chain(tmp_path):
    frame = cases({"patient_id": "P", "hospital": "H1", "admission_date": date(2024, 1, 1), "los": 3},
                  {"patient_id": "P", "hospital": "H2", "admission_date": date(2024, 1, 5), "los": 3},   # next day
                  {"patient_id": "P", "hospital": "H3", "admission_date": date(2024, 1, 8), "los": 3},   # same day
                  {"patient_id": "Q", "hospital": "H1", "admission_date": date(2024, 1, 1), "los": 3},
                  {"patient_id": "Q", "hospital": "H2", "admission_date": date(2024, 1, 4), "los": 3})   # a chain of 2
    result = run(tmp_path, frame, rule("R", "transfer_chain", "min_stays = 3, days = 1"))
    assert fired(result) == ["C2", "C3"]


def test_shared_contact_counts_distinct_patients(tmp_path):
    frame = cases(*many(5, phone="111"), *many(4, phone="222"), *many(6, phone="333", patient_id="SAME"))
    result = run(tmp_path, frame, rule("R", "shared_contact", 'field = "phone", min_patients = 5'))
    assert fired(result) == ["C1", "C2", "C3", "C4", "C5"]
    evidence = result.flags["evidence"][0]
    assert "patients_sharing=5" in evidence and "111" not in evidence   # the phone is shown hashed


def _one_day_hospitals(rates: dict[str, float], n: int = 100, level: int = 3) -> list[dict]:
    rows = []
    for hospital, rate in rates.items():
        short = round(rate * n)
        rows += [{"hospital": hospital, "hospital_level": level, "los": 1 if i < short else 5} for i in range(n)]
    return rows


def test_provider_share_above_the_percentile_of_peers(tmp_path):
    rates = {f"H{i:02d}": i / 10 for i in range(1, 11)}    # 0.1 .. 1.0: the 80th percentile is 0.82
    small = [{"hospital": "TINY", "hospital_level": 3, "los": 1}] * 10        # rate 1.0 on 10 cases
    other_level = _one_day_hospitals({"L1": 0.05, "L2": 0.06}, level=1)      # its own peers
    result = run(tmp_path, cases(*_one_day_hospitals(rates), *small, *other_level),
                 rule("R", "provider_share", 'area = "one_day", percentile = 80, min_cases = 50'))
    table = result.providers.filter(pl.col("rule") == "R")
    assert sorted(table.filter("flagged")["hospital"].to_list()) == ["H09", "H10", "L2"]
    limit = table.filter(pl.col("hospital") == "H01")["limit"][0]
    assert limit == pytest.approx(0.82)
    everyone = run(tmp_path, cases(*_one_day_hospitals(rates), *small, *other_level),
                   rule("R", "provider_share", 'area = "one_day", percentile = 80, min_cases = 50, peers = "all"'))
    # 12 rates: the 80th percentile lies between 0.7 and 0.8 (0.79)
    assert sorted(everyone.providers.filter("flagged")["hospital"].to_list()) == ["H08", "H09", "H10"]


def test_provider_share_mcc_by_doctor(tmp_path):
    rows = []
    for doctor, mcc in (("A", 10), ("B", 12), ("C", 11), ("D", 40), ("E", 9)):
        rows += [{"doctor": doctor, "drg": "XA11" if i < mcc else "XA15"} for i in range(100)]
    rows += [{"doctor": "A", "drg": "ZZ15"}] * 50       # an ADRG without an MCC group is not counted
    result = run(tmp_path, cases(*rows), rule("R", "provider_share", 'area = "mcc", by = "doctor", min_cases = 50'))
    table = result.providers
    assert table.filter("flagged")["doctor"].to_list() == ["D"]
    assert table.filter(pl.col("doctor") == "A")["cases"][0] == 100


def test_cmi_jump(tmp_path):
    rows = []
    for hospital, heavy_2023, heavy_2024 in (("H1", 10, 10), ("H2", 10, 12), ("H3", 10, 9), ("H4", 10, 60), ("H5", 10, 11)):
        for year, heavy in ((2023, heavy_2023), (2024, heavy_2024)):
            rows += [{"hospital": hospital, "admission_date": date(year, 6, 1), "drg": "HV1" if i < heavy else "LT1"}
                     for i in range(100)]
    weights = pl.DataFrame({"drg": ["HV1", "LT1"], "weight": [3.0, 1.0]})
    result = run(tmp_path, cases(*rows), rule("R", "cmi_jump", "min_cases = 50"), weights=weights)
    assert result.providers.filter("flagged")["hospital"].to_list() == ["H4"]
    # a stray discharge in the next year (a stay over new year) does not make 2025 the year compared
    stray = cases(*rows, {"hospital": "H1", "admission_date": date(2024, 12, 30), "los": 5, "drg": "LT1"})
    result = run(tmp_path, stray, rule("R", "cmi_jump", "min_cases = 50"), weights=weights)
    assert result.providers.filter("flagged")["hospital"].to_list() == ["H4"] and result.providers.height == 5


def _mcc_hospitals(shares=(10, 11, 12, 13, 40)) -> pl.DataFrame:
    """Five hospitals of 100 cases of ADRG XA1, `shares` % of them in XA11; one cheap MCC case each."""
    rows = []
    for number, mcc in enumerate(shares, start=1):
        hospital = f"H{number}"
        rows += [{"hospital": hospital, "drg": "XA15", "cost": 100_000, "los": 5} for _ in range(100 - mcc)]
        rows += [{"hospital": hospital, "drg": "XA11", "cost": 300_000, "los": 9} for _ in range(mcc - 1)]
        rows += [{"hospital": hospital, "drg": "XA11", "cost": 90_000, "los": 4}]
    return cases(*rows)


def test_mcc_upcoding_within_hospitals_whose_mcc_share_stands_out(tmp_path):
    frame = _mcc_hospitals()
    every = run(tmp_path, frame, rule("R", "mcc_upcoding", 'min_group_cases = 3, within = "none"'))
    assert every.flags.height == 5
    # the default: hospitals above Tukey's fence of their peers' MCC shares: Q3 0.13 + 1.5 × IQR 0.02 = 0.16
    within = run(tmp_path, frame, rule("R", "mcc_upcoding", "min_group_cases = 3, min_cases = 50"))
    assert within.flags["hospital"].to_list() == ["H5"]
    assert "unit_mcc_share=0.4" in within.flags["evidence"][0] and "unit_limit=0.16" in within.flags["evidence"][0]
    # no hospital stands out: nothing is listed (a percentile limit would flag the top fifth all the same)
    even = _mcc_hospitals((10, 11, 12, 13, 14))
    assert run(tmp_path, even, rule("R", "mcc_upcoding", "min_group_cases = 3, min_cases = 50")).flags.height == 0
    top = run(tmp_path, even, rule("R", "mcc_upcoding", 'min_group_cases = 3, min_cases = 50, control = "percentile"'))
    assert top.flags["hospital"].to_list() == ["H5"]
    # units below min_cases are not judged
    assert run(tmp_path, frame, rule("R", "mcc_upcoding", "min_group_cases = 3, min_cases = 101")).flags.height == 0


def test_provider_share_with_the_outlier_fence(tmp_path):
    frame = _mcc_hospitals((10, 11, 12, 13, 16))
    fence = run(tmp_path, frame, rule("R", "provider_share", 'area = "mcc", min_cases = 50, control = "fence"'))
    # Q1 0.11, Q3 0.13: the fence is 0.16, and a rate must be above it
    assert fence.providers.filter("flagged").height == 0 and fence.providers["limit"][0] == pytest.approx(0.16)
    wider = run(tmp_path, _mcc_hospitals((10, 11, 12, 13, 17)),
                rule("R", "provider_share", 'area = "mcc", min_cases = 50, control = "fence"'))
    assert wider.providers.filter("flagged")["hospital"].to_list() == ["H5"]


def test_the_shared_sort_of_stays_packs_time_only_when_it_is_exact():
    from datetime import timedelta

    from grouper.screen.rules import _sorted_stays

    def stays(extra=()):
        rows = [(7, date(2024, 3, 1), 5), (3, date(2024, 3, 1), 2), (7, date(2023, 12, 30), 40), (3, date(2024, 3, 1), 1),
                (7, date(2024, 3, 1), 5), (1, date(2025, 1, 2), 0), *extra]
        return pl.DataFrame({"row": pl.Series(range(len(rows)), dtype=pl.UInt32), "_p": pl.Series([r[0] for r in rows], dtype=pl.UInt64),
                             "admission_date": [r[1] for r in rows],
                             "discharge_date": [r[1] + timedelta(days=r[2]) for r in rows]})

    for frame in (stays(), stays([(3, date(2024, 3, 1), 5000)]), stays([(3, date(2024, 3, 1), -1)]),
                  stays([(5, date(1024, 1, 1), 1)])):
        expected = frame.sort("_p", "admission_date", "discharge_date", "row")
        assert _sorted_stays(frame).select(expected.columns).equals(expected)
