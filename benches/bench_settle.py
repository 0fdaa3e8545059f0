"""Settlement and report on 10,000,000 grouped cases (marked `huge`).

The grouped file is built directly (seeded NumPy, no grouping: this measures settlement): 600
DRGs with log-normal costs around RW × 10,000 yuan, 200 hospitals of three levels, two insurance
pools, 2 % ungrouped, 1 % flagged for special review, patients with readmissions, one year of
discharge dates. Each measurement runs in a fresh process (peak RSS by getrusage):

- `grouper settle` equivalent (read → settle under the shipped Zhejiang-style policy → write the
  folder): ≤ 10 s (median of three runs), with its peak RSS recorded (bounded memory);
- `grouper report` on that folder: ≤ 5 s and an HTML file under 5 MB.
"""
from __future__ import annotations

import datetime as dt
import os
import re

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, record, run_measured

pytestmark = pytest.mark.huge

N = 10_000_000
DRGS = 600
HOSPITALS = 200

SETTLE = """
import sys
from grouper.payment.settle_files import load_cases, write_settlement
from grouper.payment.api import settle_cases
cases = load_cases(sys.argv[1])
settlement = settle_cases(cases, sys.argv[2], sys.argv[3])
assert settlement.cases.height == int(sys.argv[5])
write_settlement(settlement, sys.argv[4])
"""

REPORT = """
import sys
from grouper.report.html import write_report
write_report(sys.argv[1], sys.argv[2])
"""


def grouped_cases(n: int, seed: int = 7) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(grouped cases, weights) — synthetic, seeded."""
    rng = np.random.default_rng(seed)
    codes = np.array([f"{chr(65 + i % 26)}{chr(65 + (i // 26) % 26)}{i % 9 + 1}{(i % 3) * 2 + 1}" for i in range(DRGS)])
    codes = np.unique(codes)
    rw = np.round(np.exp(rng.normal(0, 0.6, len(codes))), 4)
    popularity = rng.zipf(1.6, len(codes)).astype(float)
    drg_index = rng.choice(len(codes), n, p=popularity / popularity.sum())
    hospital = rng.integers(0, HOSPITALS, n)
    level = np.array([3] * 50 + [2] * 90 + [1] * 60, dtype=np.int8)[hospital]
    cost = np.exp(np.log(rw[drg_index] * 10_000 * 100) + rng.normal(0, 0.45, n))
    tail = rng.random(n) < 0.02
    cost[tail] *= rng.uniform(3, 8, tail.sum())
    los = np.clip(np.round(rw[drg_index] * 6 * np.exp(rng.normal(0, 0.4, n))), 1, 90).astype(np.int32)
    admission = rng.integers(0, 330, n)
    status = np.where(rng.random(n) < 0.02, "no_adrg", "grouped")
    drg = np.where(status == "grouped", codes[drg_index], None)
    frame = pl.DataFrame({
        "id": pl.int_range(0, n, eager=True).cast(pl.String),
        "status": status, "drg": drg,
        "adrg": pl.Series(drg, dtype=pl.String).str.slice(0, 3),
        "los": los, "discharge": np.where(rng.random(n) < 0.02, 5, 1).astype(np.int32),
        "hospital": "H" + pl.Series(hospital).cast(pl.String).str.zfill(3),
        "hospital_level": level,
        "insurance": np.where(rng.random(n) < 0.6, "employee", "resident"),
        "cost": cost.astype(np.int64),
        "admission_date": pl.Series(admission).cast(pl.Int32) + (dt.date(2025, 1, 1) - dt.date(1970, 1, 1)).days,
        "patient_id": rng.integers(0, n // 3, n).astype(str),
        "special_review": rng.random(n) < 0.01,
    }).with_columns(pl.col("admission_date").cast(pl.Date))
    frame = frame.with_columns((pl.col("admission_date") + pl.duration(days=pl.col("los"))).alias("discharge_date"))
    weights = pl.DataFrame({"drg": codes, "weight": rw, "mean": np.round(rw * 10_000, 2)})
    return frame, weights


@pytest.fixture(scope="module")
def settle_inputs(workdir):
    frame, weights = grouped_cases(N)
    cases, weights_csv = workdir / "settle-10m.parquet", workdir / "settle-weights.csv"
    frame.write_parquet(cases)
    weights.write_csv(weights_csv)
    # the shipped policy, with a budget sized to this synthetic year (its cost by insurance type, less 3 %)
    budget = frame.group_by("insurance").agg(pl.col("cost").sum()).sort("insurance")
    text = (ROOT / "tables" / "policies" / "zhejiang-points.toml").read_text(encoding="utf-8")
    policy = workdir / "settle-policy.toml"
    sized = "\n".join(f"{name} = {int(total * 0.97) // 100}.00" for name, total in budget.iter_rows())
    text = re.sub(r"employee = [\d_.]+\s*(#.*)?\nresident = [\d_.]+", sized, text)
    text = text.replace('drgs = "zhejiang-drg-coefficients.csv"', "")
    policy.write_text(text, encoding="utf-8")
    os.sync()  # the 10 M-row input is on disk before anything is timed, not still being written back
    return cases, policy, weights_csv


def test_settle_10m(benchmark, settle_inputs, workdir):
    """Three runs (the machine's own noise is about ±10 %); the figure is their median."""
    cases, policy, weights = settle_inputs
    out = workdir / "settlement-10m"
    runs = []

    def run():
        os.sync()  # not timing the write-back of the run before
        runs.append(run_measured(SETTLE, cases, policy, weights, out, N))

    benchmark.group = "settle"
    benchmark.pedantic(run, rounds=3, iterations=1)
    paid = pl.read_csv(out / "pools.csv")
    assert paid.height == 2
    seconds = sorted(r["seconds"] for r in runs)
    record(benchmark, target="settle 10,000,000 grouped cases (read, settle, write the folder)", op="<=", threshold=10.0,
           value=seconds[1], unit="s", runs=[round(x, 2) for x in seconds],
           peak_rss_mib=round(max(r["peak_rss_mib"] for r in runs)), order=60)


def test_settle_10m_memory(benchmark, settle_inputs, workdir):
    """Peak RSS of the run above, measured again on its own."""
    cases, policy, weights = settle_inputs
    measured = {}

    def run():
        measured.update(run_measured(SETTLE, cases, policy, weights, workdir / "settlement-10m-b", N))

    os.sync()  # not timing the write-back of the run before

    benchmark.group = "settle"
    benchmark.pedantic(run, rounds=1, iterations=1)
    # bounded: linear in the cases (about 350 bytes per case), no copy of the whole frame per stage
    record(benchmark, target="settle 10,000,000 cases: peak RSS (MiB)", op="<=", threshold=4 * 1024,
           value=measured["peak_rss_mib"], unit="MiB", order=61)


def test_report_10m(benchmark, settle_inputs, workdir):
    out = workdir / "settlement-10m"
    if not (out / "summary.json").exists():
        cases, policy, weights = settle_inputs
        run_measured(SETTLE, cases, policy, weights, out, N)
    html = workdir / "report-10m.html"
    measured = {}

    def run():
        measured.update(run_measured(REPORT, out, html))

    benchmark.group = "settle"
    benchmark.pedantic(run, rounds=3, iterations=1)
    size_mb = html.stat().st_size / 1e6
    record(benchmark, target="report for 10,000,000 cases: seconds", op="<=", threshold=5.0, value=measured["seconds"],
           unit="s", order=62)
    record_size = {"size_mb": round(size_mb, 2), "peak_rss_mib": round(measured["peak_rss_mib"])}
    benchmark.extra_info.update(record_size)
    assert size_mb < 5
