"""预结算 of one case (grouper.serve.estimate): each case type and formula in exact Decimal, both
methods and DIP; and DIP packs served through the same service functions as DRG."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from grouper.serve.estimate import Pricing, estimate
from grouper.payment.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "tables" / "policies"


@pytest.fixture(scope="module")
def rate():
    return Pricing(load_policy(POLICIES / "rate-region.toml"))


def case(**kw):
    return {"status": "grouped", "group": "XX11", "rw": Decimal("1.2"), "group_mean": None, "hospital": "H1",
            "hospital_level": 3, "insurance": "employee", "cost": 1_000_000, "los": 5, "discharge": 1, **kw}


def test_rate_method_normal_high_low(rate):
    # 1.2 RW × coefficient 1.0 × 17,500 yuan/RW (employee, level 3) = 21,000.00; cost 10,000.00: ok
    e = estimate(rate, case())
    assert (e["case_type"], e["standard"], e["payment"], e["warning"]) == ("normal", "21000.00", "21000.00", "ok")
    assert (e["high_line"], e["low_line"], e["cost_ratio"]) == ("63000.00", "6300.00", "0.4762")
    # high (ratio ≥ 3, inclusive), excess_cost with marginal 0.8: 1.2 + 0.8 × (70,000 − 63,000) / 17,500 = 1.52 RW
    e = estimate(rate, case(cost=7_000_000))
    assert (e["case_type"], e["payment"], e["warning"], e["points"]) == ("high", "26600.00", "high_outlier", "1.520000")
    # low (ratio < 0.3), formula cost: paid the cost
    e = estimate(rate, case(cost=500_000))
    assert (e["case_type"], e["payment"], e["warning"]) == ("low", "5000.00", "low_outlier")
    # near the standard and near the high line (warn_at 0.8)
    assert estimate(rate, case(cost=1_700_000))["warning"] == "near_standard"
    assert estimate(rate, case(cost=2_200_000))["warning"] == "over_standard"
    assert estimate(rate, case(cost=5_100_000))["warning"] == "near_high"


def test_rate_method_exclusions_basic_groups_and_unknowns(rate):
    e = estimate(rate, case(los=1))
    assert (e["case_type"], e["rule"], e["payment"]) == ("excluded", "cases.exclusions.los_at_most", "10000.00")
    e = estimate(rate, case(status="no_adrg", group=None))
    assert (e["case_type"], e["payment"], e["warning"]) == ("ungrouped", "10000.00", "not_by_group")
    # 基础病组 GD25: the level-2 base rate (15,000) at a level-3 hospital
    assert estimate(rate, case(group="GD25"))["standard"] == "18000.00"
    # resident rate; no weight → excluded; unknown level → no coefficient
    assert estimate(rate, case(insurance="resident"))["standard"] == "19200.00"
    assert estimate(rate, case(rw=None))["rule"] == "weights"
    assert estimate(rate, case(hospital_level=None))["rule"] == "rate.base_rate"   # no base rate for the level
    e = estimate(rate, case(cost=None))
    assert (e["warning"], e["payment"]) == ("unknown", "21000.00")


def test_points_method_needs_a_point_value():
    policy = load_policy(POLICIES / "zhejiang-points.toml")
    without = estimate(Pricing(policy), case(group="GB11", cost=None))
    assert without["payment"] is None and without["points"] == "120.000000"
    assert any("点值" in n for n in without["notes"])
    e = estimate(Pricing(policy, Decimal("10.25")), case(group="GB11", cost=None, group_mean=800_000))
    # 120 points × 10.25 yuan; group mean 8,000.00 → high line 24,000.00 (level 3: 3×), low line 3,200.00
    assert (e["payment"], e["high_line"], e["low_line"]) == ("1230.00", "24000.00", "3200.00")
    incomplete = estimate(Pricing(policy, Decimal("10")), case(group="GB11", discharge=5, group_mean=800_000))
    # ratio_capped: min(B × c × ratio, B) = min(120 × 1.25, 120) = 120 points
    assert (incomplete["case_type"], incomplete["points"], incomplete["payment"]) == ("incomplete", "120.000000", "1200.00")
    per_diem = estimate(Pricing(policy, Decimal("10")), case(group="GZ14", los=10))
    assert (per_diem["case_type"], per_diem["points"], per_diem["payment"]) == ("per_diem", "85.0", "850.00")


def test_dip_packs_are_served_like_drg_packs():
    from grouper.dip import group_dip
    from grouper.serve import service

    state = service.load_state(service.Settings(packs=(service.PackSpec(ROOT / "tables" / "dip-demo"),),
                                                policy=POLICIES / "dip-example.toml", point_value=Decimal("12")))
    assert state.kinds() == ["dip"]
    raw = pl.read_csv(ROOT / "tables" / "dip-demo" / "discharges.csv", infer_schema=False)
    records = [{k: v for k, v in r.items() if v is not None} for r in raw.to_dicts()]
    grouped = service.group_cases(state, records, settlement=True)
    expected = group_dip(ROOT / "tables" / "dip-demo" / "discharges.csv", ROOT / "tables" / "dip-demo")
    columns = ["id", "status", "dip", "dip_level", "score", "aux", "aux_factor", "reason"]
    assert service.result_frame(grouped).select(columns).equals(expected.select(columns))
    rows = service.result_dicts(state, grouped, with_estimate=True)
    paid = [r for r in rows if r["status"] == "grouped"]
    assert paid and all(r["estimate"]["payment"] is not None for r in paid)
    first = paid[0]
    coefficient = Decimal(first["estimate"]["coefficient"])
    base = Decimal(first["estimate"]["base_points"])
    if first["estimate"]["case_type"] == "normal":
        assert Decimal(first["estimate"]["payment"]) == (base * coefficient * 12).quantize(Decimal("0.01"))
    what_if = service.try_scenarios(state, records[0], ["each"])
    assert what_if[0]["changes"] == "(as recorded)" and what_if[0]["dip"] == expected["dip"][0]
    with pytest.raises(service.UnsupportedError):
        service.explain(state, records[0])
