"""Properties of settlement over random histories and policies.

- Points method: Σ payments of the cases paid by points = each pool's distributable budget, to the fen.
- Results do not depend on row order, nor on the batch size the file is read with.
"""
from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouper.payment import policy_schema as schema
from grouper.payment.api import settle_cases
from settle_helpers import WEIGHTS, base_points_policy, base_rate_policy, cases, policy

DRGS = ["A11", "A13", "B11", "GZ14", "ZZ99"]


@st.composite
def histories(draw, max_size=60):
    n = draw(st.integers(1, max_size))
    rows = []
    for i in range(n):
        status = draw(st.sampled_from(["grouped"] * 8 + ["no_adrg", "ungroupable", "invalid"]))
        hospital = draw(st.sampled_from(["H1", "H2", "H3", "H4"]))
        admission = dt.date(2025, 1, 1) + dt.timedelta(days=draw(st.integers(0, 330)))
        los = draw(st.integers(0, 80))
        rows.append({
            "id": f"k{i}", "status": status, "drg": draw(st.sampled_from(DRGS)) if status == "grouped" else None,
            "hospital": hospital, "hospital_level": {"H1": 3, "H2": 3, "H3": 2, "H4": 1}[hospital],
            "insurance": draw(st.sampled_from(["employee", "resident", "390"])),
            "cost": draw(st.one_of(st.integers(0, 10_000_000), st.just(None) if i % 7 == 3 else st.integers(1, 10))),
            "los": los, "discharge": draw(st.sampled_from(["1", "1", "1", "4", "5"])),
            "special_review": draw(st.booleans()), "patient_id": f"p{draw(st.integers(0, n // 3))}",
            "admission_date": admission, "discharge_date": admission + dt.timedelta(days=los),
        })
    return cases(*rows)


@st.composite
def points_policies(draw):
    money = lambda: f"{draw(st.integers(0, 10**9)) / 100:.2f}"  # noqa: E731
    annual = draw(st.sampled_from(["single", "split"]))
    tree = base_points_policy(
        budget={"reserve_share": draw(st.sampled_from([0, 0.05, 0.1])),
                "fee_for_service_inside": draw(st.booleans()),
                "annual": {"all": money()} if annual == "single" else {"employee": money(), "resident": money()}},
        coefficients={"level": {"3": 1.0, "2": draw(st.sampled_from([0.8, 0.95])), "1": 0.7}},
        cases={
            "high": {"threshold": draw(st.sampled_from([2, 3])), "inclusive": draw(st.booleans()),
                     "formula": draw(st.sampled_from([f for f in schema.HIGH_FORMULAS if f != "excess_cost"]))},
            "low": {"threshold": draw(st.sampled_from([0.3, 0.5])), "formula": draw(st.sampled_from(schema.LOW_FORMULAS))},
            "incomplete": {"discharge": [4, 5], "formula": draw(st.sampled_from(schema.INCOMPLETE_FORMULAS))},
            "per_diem": {"per_day": {"GZ14": 7.5}},
            "exclusions": {"los_at_least": 60},
            "special_review": {"cap": draw(st.sampled_from([0.0, 0.05, 0.5])), "pay": draw(st.sampled_from(["cost", "standard"]))},
            "ungrouped": {"pay": draw(st.sampled_from(["fee_for_service", "cost", "none"]))},
        },
        readmission={"days": 15, "factor": 0.5},
        ratio={"reference": draw(st.sampled_from(["group_mean", "standard"]))},
    )
    return tree


def _settle(frame, tree):
    with tempfile.TemporaryDirectory() as tmp:
        return settle_cases(frame, policy(Path(tmp), tree), WEIGHTS)


PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(histories(), points_policies())
def test_payments_add_up_to_the_distributable_budget(frame, tree):
    s = _settle(frame, tree)
    paid = dict(s.cases.filter(pl.col("paid_by") == "group").group_by("pool").agg(pl.col("payment").sum()).iter_rows())
    for pool in s.pools.iter_rows(named=True):
        if pool["points"] > 0:
            assert paid[pool["pool"]] == pool["distributable"] == pool["paid_by_points"]
        else:
            assert paid.get(pool["pool"], 0) == 0
    assert s.hospitals["drg_payment"].sum() == s.pools["paid_by_points"].sum()
    assert s.hospitals["payment"].sum() == s.cases["payment"].sum()
    assert s.cases.height == frame.height and s.cases["case_type"].null_count() == 0


@PROPERTY
@given(histories(), points_policies(), st.randoms(use_true_random=False))
def test_row_order_does_not_matter(frame, tree, random):
    order = list(range(frame.height))
    random.shuffle(order)
    shuffled = frame[order]
    a, b = _settle(frame, tree), _settle(shuffled, tree)
    assert b.cases["id"].to_list() == shuffled["id"].to_list()  # output follows the input order
    assert a.cases.sort("id").equals(b.cases.sort("id"))
    assert a.hospitals.equals(b.hospitals) and a.pools.equals(b.pools) and a.groups.equals(b.groups)


@pytest.fixture(scope="module")
def raw_history(tmp_path_factory):
    from grouper.payment.history import synth_history

    path = tmp_path_factory.mktemp("history") / "history.parquet"
    from grouper.fields import MONEY_COLUMNS, yuan_decimal

    history = synth_history(hospitals=5, years=1, cases=400, seed=3)  # money in fen; a raw file holds yuan
    history.with_columns(yuan_decimal(pl.col(c)) for c in MONEY_COLUMNS if c in history.columns).write_parquet(path)
    return path


@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_batch_size_does_not_matter(tmp_path, raw_history, batch_size):
    """Raw cases grouped in batches of any size (grouper.group_file, carry=True) settle to the same results."""
    from grouper.api import group_file

    tree = base_points_policy(readmission={"days": 15}, cases={"special_review": {"cap": 0.05}, "incomplete": {"discharge": [5]}})
    weights = pl.DataFrame({"drg": DEMO_DRGS, "weight": [1.0 + i / 10 for i in range(len(DEMO_DRGS))],
                            "mean": [8000.0 + 300 * i for i in range(len(DEMO_DRGS))]})
    results = []
    for size in (1_000_000, batch_size):
        grouped = tmp_path / f"grouped-{size}.parquet"
        group_file(raw_history, grouped, batch_size=size, carry=True)
        results.append(settle_cases(grouped, policy(tmp_path, tree), weights))
    whole, batched = results
    assert whole.cases.height == 400 and whole.cases.equals(batched.cases) and whole.hospitals.equals(batched.hospitals)
    assert (whole.cases["case_type"] == "normal").sum() > 100


DEMO_DRGS = ["AH11", "AH15", "PS11", "PS13", "PS15", "PS21", "PS25", "PS39", "PS43", "PS45", "PU13", "PU15", "ZC11",
             "ZC15", "ZZ11", "ZZ15", "NA19", "NA29", "NR13", "NR15", "ES31", "ES33", "ES35", "GD13", "GD15", "GD23",
             "GD25", "GZ11", "GZ13", "GZ14", "GZ15", "HC21", "HC25"]


@st.composite
def rate_policies(draw):
    money = lambda: f"{draw(st.integers(0, 10**8)) / 100:.2f}"  # noqa: E731
    return base_rate_policy(
        budget={"annual": {"all": money()}, "reserve_share": draw(st.sampled_from([0, 0.03]))},
        cases={"high": {"threshold": draw(st.sampled_from([2, 3])), "formula": draw(st.sampled_from(schema.HIGH_FORMULAS))},
               "low": {"threshold": 0.4, "formula": draw(st.sampled_from(schema.LOW_FORMULAS))},
               "per_diem": {"per_day": {"GZ14": draw(st.sampled_from([800, 1234.56]))}},
               "transfer": {"discharge": draw(st.sampled_from([[], [4]]))},
               "ungrouped": {"pay": draw(st.sampled_from(["fee_for_service", "none"]))}},
        readmission={"days": 15, "factor": 0.5})


@PROPERTY
@given(histories(), st.one_of(points_policies(), rate_policies()))
def test_every_pool_closes_to_the_fen_with_a_reason_for_each_undistributed_fen(frame, tree):
    """Σ paid + Σ undistributed = budget in every pool, to the fen; every undistributed amount has a reason."""
    from grouper.payment.settle_checks import REASONS

    s = _settle(frame, tree)
    assert s.checks.pools
    for pool in s.checks.pools:
        if pool["budget"] is None:
            continue
        assert set(pool["undistributed"]) <= set(REASONS)
        assert pool["paid"] + sum(pool["undistributed"].values()) == pool["budget"]
    by_pool = s.cases.filter(pl.col("paid_by") == "group").group_by("pool").agg(pl.col("payment").sum())
    for name, paid in by_pool.iter_rows():
        checked = next((p for p in s.checks.pools if p["pool"] == name), None)
        if checked is not None and tree["policy"]["method"] == "rate":
            assert checked["paid"] == paid
    assert sum(s.checks.cases_by_type.values()) == frame.height


def test_shuffled_and_rethreaded_runs_write_byte_identical_files(tmp_path):
    """The same cases settled with 1 and 2 Polars threads, and shuffled, give the same bytes."""
    import os
    import subprocess
    import sys

    from grouper.cli import main

    root = Path(__file__).resolve().parents[1]
    grouped = tmp_path / "g.parquet"
    assert main(["group", str(root / "tables" / "demo" / "history.csv"), "-o", str(grouped), "--carry", "-q"]) == 0
    assert main(["calibrate", "weights", str(grouped), "-o", str(tmp_path / "w.csv"), "-q"]) == 0
    pl.read_parquet(grouped).sample(fraction=1.0, shuffle=True, seed=5).write_parquet(tmp_path / "shuffled.parquet")
    runs = []
    for name, source, threads in (("one", grouped, "1"), ("two", grouped, "2"), ("shuffled", tmp_path / "shuffled.parquet", "2")):
        out = tmp_path / name
        env = {**os.environ, "POLARS_MAX_THREADS": threads}
        subprocess.run([sys.executable, "-m", "grouper", "settle", str(source), "--policy",
                        str(root / "tables" / "policies" / "zhejiang-points.toml"), "--weights", str(tmp_path / "w.csv"),
                        "-o", str(out), "--format", "csv", "-q"], check=True, env=env, cwd=tmp_path)
        runs.append(out)
    for table in ("hospitals.csv", "drgs.csv", "pools.csv", "summary.json"):
        assert len({(run / table).read_bytes() for run in runs}) == 1, table
    assert (runs[0] / "cases.csv").read_bytes() == (runs[1] / "cases.csv").read_bytes()
    ordered = [pl.read_csv(run / "cases.csv", infer_schema=False).sort("id") for run in (runs[0], runs[2])]
    assert ordered[0].equals(ordered[1])
