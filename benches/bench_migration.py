"""A version switch (`grouper migration`) on a 10,000,000-case year (marked `huge`).

The year is the CHS-DRG 1.1 golden set resampled to 10 M raw cases with settlement fields added
(seeded NumPy: 200 hospitals of three levels, two insurance types, log-normal costs, 2025 dates).
In a fresh process: `migration_impact` (read the year once, type its settlement fields once, group
it under 1.1 and under 2.0 with the pipeline's batch function, calibrate weights for each, settle
both under the shipped Zhejiang-style policy, budget sized to the year, compare) and
`write_migration` (the folder). Each stage is timed (`on_stage`); the two versions are calibrated
and settled side by side (one stage), so a version's share is half of every stage after grouping.

**What "per version" covers** (the target): the work a version's settlement does from its grouped
cases — calibrating its weights, settling it, and half of comparing and writing the folder (both
settlements' case tables, the comparison tables) — against the settle benchmark's budget for the
same work on the same number of cases (10 s for 10 M grouped cases read, settled and written,
bench_settle.py). Grouping is not in it: that is the grouping pipeline's own cost, measured by its
own benchmarks (bench_end_to_end.py, bench_stages.py); the benchmark records it beside the figure
(seconds, and cases/s per version), together with the whole run per version (total / 2).
"""
from __future__ import annotations

import json
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
import json, sys, time
from grouper.versions.migration import migration_impact, write_migration
now = lambda: (time.perf_counter(), time.process_time())  # wall, and CPU of the process (all its threads)
marks = [("load", now())]
migration = migration_impact(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4],
                             on_stage=lambda name: marks.append((name, now())))
assert migration.comparison.base.cases.height == int(sys.argv[6])
marks.append(("write", now()))
write_migration(migration, sys.argv[5])
marks.append(("end", now()))
print(json.dumps({name: [round(end[0] - start[0], 3), round(end[1] - start[1], 3)]
                  for (name, start), (_, end) in zip(marks, marks[1:])}))
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
    stages = json.loads(runs[0]["stdout"].strip().splitlines()[-1])   # stage → [wall s, CPU s]
    # per version: its calibration and settlement, and half of what both share from there on
    settle_side = ("calibrate and settle", "compare", "write")   # both versions side by side, then the two together
    per_version, per_version_cpu = (sum(stages[name][i] for name in settle_side) / 2 for i in (0, 1))
    record(benchmark, target="version switch 1.1 → 2.0 on 10,000,000 cases: seconds per version from its grouped cases "
                             "(calibrate, settle, half of compare + write; ≤ the settle budget)", op="<=",
           threshold=SETTLE_BUDGET_S, value=per_version, unit="s", total_s=round(seconds, 2),
           per_version_cpu_s=round(per_version_cpu, 2), whole_run_per_version_s=round(seconds / 2, 2),
           grouping_s=stages["group"][0], grouping_cpu_s=stages["group"][1],
           grouping_cases_per_s_per_version=round(2 * N / stages["group"][0]), stages_wall_cpu_s=stages,
           peak_rss_mib=round(runs[0]["peak_rss_mib"]), order=62)
