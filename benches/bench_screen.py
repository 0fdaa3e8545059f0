"""The supervision screens on 10,000,000 grouped cases (marked `huge`).

The grouped file is built directly (seeded NumPy, as bench_settle.py: 600 DRGs, 200 hospitals),
with the fields the shipped screens read: fund payments, sex and age, departments and doctors,
one phone and address per patient (a few shared), a few validation warnings. In a fresh process
(peak RSS by getrusage): read the grouped file → run every shipped rule → write the folder.

Target (issue 23): under 30 s, with its peak RSS recorded (bounded memory: linear in the cases).
"""
from __future__ import annotations

import os

import numpy as np
import polars as pl
import pytest

from bench_settle import grouped_cases
from conftest import record, run_measured

pytestmark = pytest.mark.huge

N = 10_000_000

SCREEN = """
import sys
from pathlib import Path
from grouper.screen.run import load_cases, screen, write_screening
from grouper.screen.screens import load_screens
cases = load_cases(sys.argv[1])
result = screen(cases, load_screens(), key=b"bench key of thirty-two bytes.." )
assert result.summary["cases"] == int(sys.argv[3])
folder = Path(sys.argv[2])
folder.mkdir(exist_ok=True)
write_screening(result, folder)
print(result.summary["findings"])
"""


def screened_cases(n: int, seed: int = 11) -> pl.DataFrame:
    """bench_settle's grouped year plus the fields the screens read (seeded)."""
    frame, _ = grouped_cases(n)
    rng = np.random.default_rng(seed)
    patients = frame["patient_id"].cast(pl.Int64)
    shared = rng.random(n) < 0.001      # one case in a thousand gives one of 2,000 shared phones
    phone = np.where(shared, 17_000_000_000 + rng.integers(0, 2_000, n), 13_000_000_000 + patients.to_numpy())
    warned = pl.Series(rng.random(n) < 0.001)
    warned = pl.select(pl.when(warned).then(pl.lit("female_dx_on_male"))).to_series()
    return frame.with_columns(
        pl.Series("fund_paid", (frame["cost"].to_numpy() * np.where(rng.random(n) < 0.6, 0.8, 0.6)).astype(np.int64)),
        warned.str.split("|").fill_null(pl.lit([], dtype=pl.List(pl.String))).alias("warnings"),
        pl.Series("sex", rng.integers(1, 3, n).astype(np.int8)),
        pl.Series("age", rng.integers(0, 95, n).astype(np.int32)),
        pl.lit(None, dtype=pl.Int32).alias("age_days"),   # as `grouper group --carry` writes: every carried column
        pl.Series("dept", rng.integers(0, 25, n)).cast(pl.String),
        (pl.col("hospital") + "-D" + pl.Series(rng.integers(0, 40, n)).cast(pl.String)).alias("doctor"),   # 40 a hospital
        pl.Series("phone", phone).cast(pl.String),
        (pl.lit("路") + (patients % 1_000_003).cast(pl.String)).alias("address"),
    )


@pytest.fixture(scope="module")
def screen_input(workdir):
    path = workdir / "screen-10m.parquet"
    screened_cases(N).write_parquet(path)
    os.sync()  # the input is on disk before anything is timed
    return path


def test_screen_10m(benchmark, screen_input, workdir):
    """One run in a fresh process (the figure includes reading the 10 M-row file and writing the folder);
    its peak RSS is recorded beside it: bounded, linear in the cases (no copy of the year per rule)."""
    measured = {}

    def run():
        measured.update(run_measured(SCREEN, screen_input, workdir / "screens-10m", N))

    benchmark.group = "screen"
    benchmark.pedantic(run, rounds=1, iterations=1)
    record(benchmark, target="screen 10,000,000 grouped cases (read, every shipped rule, write the folder)", op="<=",
           threshold=30.0, value=measured["seconds"], unit="s", peak_rss_mib=round(measured["peak_rss_mib"]),
           findings=int(measured["stdout"].strip().splitlines()[-1]), order=70)
    assert measured["peak_rss_mib"] < 8 * 1024
