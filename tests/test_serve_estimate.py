"""预结算 (grouper.serve.estimate): the money is the settle engine's. An estimate equals what `grouper
settle` pays the same case under the same policy and point value — rate method: the payment itself;
points and DIP methods: the case type and points, and points × the point value (the year's payment
shares a budget) — over the demo history; and the warning levels, a case without a cost, a policy
without a point value, DIP packs served like DRG packs."""
from __future__ import annotations

import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import polars as pl
import pytest

from grouper.serve import service
from grouper.payment.api import load_cases, settle_cases
from grouper.payment.policy import load_policy

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "tables" / "policies"
DEMO = ROOT / "tables" / "demo"
HISTORY = DEMO / "history.csv"
WEIGHTS = DEMO / "drg_weights.csv"


def fixed_point_value(tmp_path: Path, value: str) -> Path:
    """zhejiang-points.toml with its budget point value fixed (the year's value, known)."""
    for file in POLICIES.iterdir():
        shutil.copy(file, tmp_path / file.name)
    policy = tmp_path / "zhejiang-points.toml"
    policy.write_text(policy.read_text(encoding="utf-8").replace("scale = 100 ", f"scale = 100\nbudget_point_value = {value} "),
                      encoding="utf-8")
    return policy


def served_and_settled(policy: Path, point_value: Decimal | None = None):
    """(serve's results with estimates by id, settle's case table by id) for the demo history."""
    state = service.load_state(service.Settings(packs=(service.PackSpec(DEMO),), policy=policy, weights=WEIGHTS,
                                                point_value=point_value))
    raw = pl.read_csv(HISTORY, infer_schema=False)
    records = [{k: v for k, v in r.items() if v is not None} for r in raw.to_dicts()]
    served = {r["id"]: r for r in service.result_dicts(state, service.group_cases(state, records, settlement=True),
                                                       with_estimate=True)}
    settled = settle_cases(load_cases(HISTORY, DEMO), load_policy(policy), WEIGHTS).cases
    flagged = set(raw.filter(pl.col("special_review").str.to_lowercase().is_in(["true", "1"]))["id"])
    # what needs the other cases of the year is not estimated: special review and readmissions
    alone = settled.filter(~pl.col("id").is_in(list(flagged)) & (pl.col("readmission_factor") == 1.0))
    assert alone.height > 1500
    return served, {r["id"]: r for r in alone.iter_rows(named=True)}


def test_rate_method_estimate_is_what_settle_pays():
    served, settled = served_and_settled(POLICIES / "rate-region.toml")
    for case_id, s in settled.items():
        e = served[case_id]["estimate"]
        assert (e["case_type"], e["rule"]) == (s["case_type"], s["rule"]), case_id
        assert Decimal(e["payment"]) * 100 == s["payment"], case_id
        if s["standard"] is not None:
            assert Decimal(e["standard"]) * 100 == s["standard"], case_id
    assert {e["estimate"]["case_type"] for e in served.values()} >= {"normal", "high", "low", "excluded"}


def test_points_method_estimate_is_settle_points_at_the_point_value(tmp_path):
    policy = fixed_point_value(tmp_path, "9.5")
    served, settled = served_and_settled(policy)
    for case_id, s in settled.items():
        e = served[case_id]["estimate"]
        assert (e["case_type"], e["rule"]) == (s["case_type"], s["rule"]), case_id
        if s["paid_by"] == "group":
            points = Decimal(e["points"])
            assert points == Decimal(repr(s["points"])), case_id
            assert Decimal(e["payment"]) == (points * Decimal("9.5")).quantize(Decimal("0.01"), ROUND_HALF_UP), case_id
        elif s["paid_by"] == "fee_for_service":
            assert Decimal(e["payment"]) * 100 == s["payment"] == s["cost"], case_id
    # --point-value overrides the policy's value, as it would the year's
    served, _ = served_and_settled(policy, Decimal("10"))
    paid = next(r["estimate"] for r in served.values() if r["estimate"]["case_type"] == "normal")
    assert paid["price"] == "10 元/点"
    assert Decimal(paid["payment"]) == (Decimal(paid["points"]) * 10).quantize(Decimal("0.01"), ROUND_HALF_UP)


def test_warning_levels_and_a_case_without_cost():
    state = service.load_state(service.Settings(packs=(service.PackSpec(DEMO),), policy=POLICIES / "rate-region.toml",
                                                weights=WEIGHTS))
    case = {"sex": 1, "age": 67, "los": 21, "discharge": 1, "dx": ["J80.x00", "J96.000"], "proc": ["39.6500"],
            "hospital": "H1", "hospital_level": 3, "insurance": "employee"}
    without = service.estimate_one(state, case)["estimate"]
    assert without["case_type"] is None and without["payment"] is None and without["warning"] == "unknown"
    assert without["standard"] and without["high_line"] and without["low_line"]
    standard, high = Decimal(without["standard"]), Decimal(without["high_line"])
    levels = {}
    for cost in (standard * Decimal("0.5"), standard * Decimal("0.9"), standard * Decimal("1.1"), high * Decimal("0.9"),
                 high * 2, standard * Decimal("0.2")):
        e = service.estimate_one(state, {**case, "cost": str(cost.quantize(Decimal("0.01")))})["estimate"]
        levels[e["warning"]] = e["case_type"]
    assert levels == {"ok": "normal", "near_standard": "normal", "over_standard": "normal", "near_high": "normal",
                      "high_outlier": "high", "low_outlier": "low"}
    excluded = service.estimate_one(state, {**case, "los": 1, "cost": "100"})["estimate"]
    assert (excluded["case_type"], excluded["payment"], excluded["warning"]) == ("excluded", "100.00", "not_by_group")


def test_points_method_without_a_point_value_gives_points_only():
    state = service.load_state(service.Settings(packs=(service.PackSpec(DEMO),), policy=POLICIES / "zhejiang-points.toml",
                                                weights=WEIGHTS))
    e = service.estimate_one(state, {"dx": ["J80.x00", "J96.000"], "proc": ["39.6500"], "sex": 1, "age": 67,
                                     "hospital_level": 3, "insurance": "employee", "cost": "20000", "los": 21})["estimate"]
    assert e["points"] and e["payment"] is None and any("点值" in n for n in e["notes"])


def test_dip_packs_are_served_like_drg_packs():
    from grouper.dip import group_dip

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
    paid = [r for r in rows if r["estimate"]["case_type"] == "normal"]
    assert paid
    for r in paid:   # the engine's rounding: B × c half up to the micro-point, × 12 yuan half up to the fen
        e = r["estimate"]
        assert Decimal(e["payment"]) == (Decimal(e["points"]) * 12).quantize(Decimal("0.01"), ROUND_HALF_UP)
    what_if = service.try_scenarios(state, records[0], ["each"])
    assert what_if[0]["changes"] == "(as recorded)" and what_if[0]["dip"] == expected["dip"][0]
    assert service.explain(state, records[0])["dip"] == expected["dip"][0]


@pytest.mark.parametrize("policy", ["rate-region.toml", "zhejiang-points.toml"])
def test_a_policy_the_weights_cannot_price_refuses_the_load(tmp_path, policy):
    bad = tmp_path / "weights.csv"
    bad.write_text("drg,weight\nAH11,-1\n", encoding="utf-8")
    with pytest.raises(Exception, match="weight"):
        service.load_state(service.Settings(packs=(service.PackSpec(DEMO),), policy=POLICIES / policy, weights=bad))
