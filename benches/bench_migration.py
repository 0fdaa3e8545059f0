"""A version switch (`grouper migration`) on a 10,000,000-case year (marked `huge`).

The year is the CHS-DRG 1.1 golden set resampled to 10 M raw cases with settlement fields added
(seeded NumPy: 200 hospitals of three levels, two insurance types, log-normal costs, 2025 dates).
In a fresh process: group under 1.1 and 2.0, calibrate weights for each, settle both under the
shipped Zhejiang-style policy (budget sized to the year), compare, write the folder. Target: per
version within the settle benchmark's budget (10 s for 10 M cases, bench_settle.py), i.e. the
whole switch ≤ 2 × 10 s; the figure is seconds per version.
"""
from __future__ import annotations

import os
import re

import numpy as np
import polars as pl
import pytest

from conftest import ROOT, SHARED, record, run_measured

pytestmark = pytest.mark.huge

N = int(os.environ.get("GROUPER_BENCH_MIGRATION_N", 10_000_000))   # smaller for a smoke run
SETTLE_BUDGET_S = 10.0   # bench_settle.py: settle 10 M grouped cases

MIGRATION = """
import sys
from grouper.versions.migration import migration_impact, write_migration
migration = migration_impact(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4])
assert migration.comparison.base.cases.height == int(sys.argv[6])
write_migration(migration, sys.argv[5])
"""


@pytest.fixture(scope="module")
def migration_inputs(case_files, pack, workdir):
    from grouper.importers.chs_drg import import_chs_drg

    pack20 = workdir / "chs-drg-2.0-migration"
    import_chs_drg(SHARED.parent / "chs-drg-2.0", pack20)
    raw = pl.read_parquet(case_files.get(N, ".parquet"))
    rng = np.random.default_rng(11)
    n = raw.height
    hospital = rng.integers(0, 200, n)
    admission = rng.integers(0, 330, n)
    los = np.clip(rng.poisson(6, n), 1, 60)
    items = raw["proc"].cast(pl.String).fill_null("").str.count_matches(r"[^|]+").to_numpy()
    year = raw.with_columns(
        pl.Series("hospital", np.char.add("H", hospital.astype(str))),
        pl.Series("hospital_level", np.array([3, 2, 1], dtype=np.int8)[hospital % 3]),
        pl.Series("insurance", np.where(rng.random(n) < 0.6, "employee", "resident")),
        pl.Series("cost", np.round(np.exp(np.log(300_000 + 150_000 * items) + rng.normal(0, 0.45, n))).astype(np.int64)),
        pl.Series("los", los.astype(np.int32)).cast(pl.String),
        (pl.lit(np.datetime64("2025-01-01")) + pl.duration(days=pl.Series(admission))).cast(pl.Date).alias("admission_date"),
        pl.Series("patient_id", rng.integers(0, n // 3, n).astype(str)),
    ).with_columns((pl.col("admission_date") + pl.duration(days=pl.col("los").cast(pl.Int32))).alias("discharge_date"))
    cases = workdir / "migration-10m.parquet"
    year.write_parquet(cases)
    budget = year.group_by("insurance").agg(pl.col("cost").sum()).sort("insurance")
    text = (ROOT / "tables" / "policies" / "zhejiang-points.toml").read_text(encoding="utf-8")
    sized = "\n".join(f"{name} = {int(total * 0.97) // 100}.00" for name, total in budget.iter_rows())
    text = re.sub(r"employee = [\d_.]+\s*(#.*)?\nresident = [\d_.]+", sized, text)
    text = text.replace('drgs = "zhejiang-drg-coefficients.csv"', "")
    policy = workdir / "migration-policy.toml"
    policy.write_text(text, encoding="utf-8")
    os.sync()
    return cases, pack, pack20, policy


def test_migration_10m(benchmark, migration_inputs, workdir):
    cases, pack11, pack20, policy = migration_inputs
    out = workdir / "migration-10m"
    runs = []

    def run():
        os.sync()
        runs.append(run_measured(MIGRATION, cases, pack11, pack20, policy, out, N))

    benchmark.group = "migration"
    benchmark.pedantic(run, rounds=1, iterations=1)
    seconds = runs[0]["seconds"]
    record(benchmark, target="version switch 1.1 → 2.0 on 10,000,000 cases: seconds per version (group, calibrate, "
                             "settle; ≤ the settle budget)", op="<=", threshold=SETTLE_BUDGET_S,
           value=seconds / 2, unit="s", total_s=round(seconds, 2), peak_rss_mib=round(runs[0]["peak_rss_mib"]), order=62)
