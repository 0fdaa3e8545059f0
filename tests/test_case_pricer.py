"""The one-case pricer (grouper.payment.settle.CasePricer, 预结算 of `grouper serve`) is the settle engine:
the same rule builders worked out per case by grouper.payment.row_ops. Here: row_ops' arithmetic and
null logic against the compiled kernel and Polars, and estimates priced one by one against the same
cases priced through `price_cases`. (Every `settle` of the settlement tests also compares the two,
case by case: tests/conftest.py `settled_cases_priced_alike`.)"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from grouper.errors import InputError
from grouper.payment import row_ops
from grouper.payment.settle import KERNEL, MAX_COST
from grouper.serve import estimate, service

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "tables" / "policies"
DEMO = ROOT / "tables" / "demo"


def test_exact_products_are_the_kernels():
    rng = np.random.default_rng(5)
    big = rng.integers(0, 1 << 62, 400)
    small = rng.integers(0, 1_000_000, 400)
    a = np.concatenate([big, small, [0, 5, 7, -1, 3, 10**12]]).astype(np.int64)
    b = np.concatenate([small, big, [1, 1, 1, 4, -1, 10**6]]).astype(np.int64)
    d = np.concatenate([rng.integers(1, 1 << 40, 800), [1, 2, 14, 3, 3, 0]]).astype(np.int64)  # 5/2, 7/14: ties
    out = np.empty(len(a), np.int64)
    KERNEL.mul_div_half_up(a, b, d, out)
    assert [row_ops.mul_div_half_up(int(x), int(y), int(z)) for x, y, z in zip(a, b, d)] == \
        [None if o < 0 else int(o) for o in out]
    c = np.roll(a, 3)
    signs = np.empty(len(a), np.int8)
    KERNEL.compare_products(a, b, c, d, signs)
    assert [row_ops.compare_products(int(w), int(x), int(y), int(z)) for w, x, y, z in zip(a, b, c, d)] == \
        [None if s == 2 else int(s) for s in signs]
    assert row_ops.mul_div_half_up(None, 1, 1) is None


@pytest.mark.parametrize("x, y", [(None, True), (None, False), (True, False), (False, False), (True, True)])
def test_row_values_follow_polars_null_logic(x, y):
    frame = pl.DataFrame({"x": [x], "y": [y]}, schema={"x": pl.Boolean, "y": pl.Boolean})
    row = row_ops.RowOps({"x": x, "y": y})
    for build in (lambda o: o.col("x") & o.col("y"), lambda o: o.col("x") | o.col("y"), lambda o: ~o.col("x"),
                  lambda o: o.when(o.col("x")).then(o.lit(1)).otherwise(o.lit(2)),
                  lambda o: o.when(o.col("x")).then(o.lit(1)).when(o.col("y")).then(o.lit(3))):
        assert build(row).v == frame.select(build(pl).alias("r"))["r"][0]


@pytest.mark.parametrize("n, d", [(-7, 2), (7, 2), (None, 3), (5, 0), (1 << 70, 1)])
def test_row_integers_follow_polars_int128(n, d):
    frame = pl.DataFrame({"n": [n], "d": [d]}, schema={"n": pl.Int128, "d": pl.Int128})
    row = row_ops.RowOps({"n": n, "d": d})
    for build in (lambda o: o.col("n") // o.col("d"), lambda o: (o.col("n") * 2).cast(pl.Int64, strict=False),
                  lambda o: o.min_horizontal(o.col("n") // o.col("d"), o.lit(3)), lambda o: o.col("n").clip(lower_bound=0),
                  lambda o: o.col("n").is_in([7, -7]), lambda o: o.coalesce(o.col("n"), o.col("d"))):
        assert build(row).v == frame.select(build(pl).alias("r"))["r"][0]


def _inputs(policy: Path, packs: Path = DEMO, point_value=None, weights=DEMO / "drg_weights.csv", cases=None):
    state = service.load_state(service.Settings(packs=(service.PackSpec(packs),), policy=policy, weights=weights,
                                                point_value=point_value))
    raw = pl.read_csv(cases or DEMO / "history.csv", infer_schema=False)
    records = [{k: v for k, v in r.items() if v is not None} for r in raw.to_dicts()]
    grouped = service.group_cases(state, records, settlement=True)
    kind = grouped.kind
    return state, service.estimate_inputs(grouped), state.packs[kind][-1].source


@pytest.mark.parametrize("policy, point_value", [("rate-region.toml", None), ("zhejiang-points.toml", Decimal("9.5")),
                                                 ("zhejiang-points.toml", None)])
def test_an_estimate_priced_alone_is_the_frame_estimate(policy, point_value):
    state, inputs, source = _inputs(POLICIES / policy, point_value=point_value)
    by_frame = estimate.estimates(state.pricing, inputs, source)   # 2,000 cases: through price_cases
    assert len(inputs) > estimate.ONE_BY_ONE
    alone = [estimate.estimates(state.pricing, [case], source)[0] for case in inputs]
    assert alone == by_frame
    # the same cases without a cost (still in the ward)
    inputs = [{**case, "cost": None} for case in inputs[:300]]
    assert [estimate.estimates(state.pricing, [case], source)[0] for case in inputs] == \
        estimate.estimates(state.pricing, inputs * 2, source)[:300]
    assert len({e["case_type"] for e in by_frame}) >= 3 and any(e["payment"] for e in by_frame)


def test_a_dip_estimate_priced_alone_is_the_frame_estimate():
    dip = ROOT / "tables" / "dip-demo"
    state, inputs, source = _inputs(POLICIES / "dip-example.toml", dip, Decimal("12"), None, dip / "discharges.csv")
    by_frame = estimate.estimates(state.pricing, inputs * (1 + estimate.ONE_BY_ONE // len(inputs)), source)
    assert [estimate.estimates(state.pricing, [case], source)[0] for case in inputs] == by_frame[:len(inputs)]


def test_one_case_is_priced_without_a_frame(monkeypatch):
    """The issue's p99 < 1 ms: one case must not pay the ~13 ms of the frame engine."""
    state, inputs, source = _inputs(POLICIES / "rate-region.toml")

    def no_frame(*args, **kwargs):
        raise AssertionError("a one-case estimate went through price_cases")

    wanted = estimate.estimates(state.pricing, inputs[:3], source)
    monkeypatch.setattr(estimate, "price_cases", no_frame)
    assert estimate.estimates(state.pricing, inputs[:3], source) == wanted


def test_what_the_engine_refuses_is_refused_alike():
    state, inputs, source = _inputs(POLICIES / "rate-region.toml")
    case = next(c for c in inputs if c["status"] == "grouped")
    with pytest.raises(InputError, match="not a plausible case cost"):
        estimate.estimates(state.pricing, [{**case, "cost": MAX_COST}], source)
    # a value not of its column's type goes to the frame, which reads it as Polars does
    assert estimate._engine_row({**case, "los": 3.0}) is None
    assert estimate._engine_row(case) is not None
