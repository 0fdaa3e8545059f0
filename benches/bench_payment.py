"""Payment wing: the synthetic history generator, calibration and hospital metrics at scale.

- `grouper synth history` generation: 1,000,000 cases of the national scheme into a frame, target
  ≥ 1,000,000 cases/s (the one-off template building, which groups 60,000 random cases once, is
  measured separately);
- calibration of 10,000,000 grouped cases (read the grouped Parquet file's needed columns, then
  `calibrate_weights`), target ≤ 20 s; the homogeneity report on the same cases is measured too;
- hospital metrics on the same 10 M grouped cases, target ≤ 10 s;
- (`huge`) peak RSS of `grouper calibrate weights` and `grouper metrics` on the 10 M file in a fresh
  process (memory bounded: the columns read, a few intermediate frames).

The 10 M grouped file is built once per session: a 1 M synthetic history of the national
scheme (40 hospitals, 3 years, seed 7) grouped with `--carry`, repeated 10 times with new ids.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from conftest import record, run_measured, throughput

N_SYNTH = 1_000_000
N_BIG = 10_000_000

_session: dict[str, object] = {}


@pytest.fixture(scope="session")
def generator(scheme):
    from grouper.payment.history import HistoryGenerator

    if "generator" not in _session:
        _session["generator"] = HistoryGenerator(scheme, hospitals_n=40, years=3, cases=N_SYNTH, seed=7)
    return _session["generator"]


@pytest.fixture(scope="session")
def grouped_10m(generator, scheme, workdir) -> Path:
    """10 M grouped cases (Parquet, money Int64 fen): the 1 M history grouped, repeated 10 times."""
    path = workdir / "grouped-10m.parquet"
    if not path.exists():
        from grouper.pipeline import grouped_batches

        history = generator.frame(0, N_SYNTH)
        grouped = pl.concat([g.results for g in grouped_batches(history, scheme.plan, carry=True)])
        import pyarrow.parquet as pq

        writer = None
        for copy in range(N_BIG // N_SYNTH):
            part = grouped.with_columns((pl.lit(f"C{copy}-") + pl.col("id")).alias("id")).to_arrow()
            writer = writer or pq.ParquetWriter(path, part.schema, compression="zstd")
            writer.write_table(part)
        writer.close()
    return path


def test_synth_templates(benchmark, scheme):
    from grouper.payment.history import HistoryParams, pack_templates

    benchmark.group = "payment"
    templates = benchmark.pedantic(pack_templates, args=(scheme, HistoryParams(), 7), rounds=1, iterations=1)
    record(benchmark, value=len(templates.drg), unit="templates", drgs=len(set(templates.drg)),
           note="one-off per generator: 60,000 random cases grouped once")


def test_synth_history_1m(benchmark, generator):
    benchmark.group = "payment"
    frame = benchmark.pedantic(generator.frame, args=(0, N_SYNTH), rounds=3, iterations=1)
    assert frame.height == N_SYNTH
    throughput(benchmark, N_SYNTH, target="`grouper synth history`: 1 M cases generated",
               op=">=", threshold=1_000_000, order=20)


def _read(path: Path, fields) -> pl.DataFrame:
    from grouper.grouped import read_grouped

    return read_grouped(path, columns=list(fields))


def test_calibrate_10m(benchmark, grouped_10m):
    from grouper.payment.weights import NEEDED, calibrate_weights

    def run():
        return calibrate_weights(_read(grouped_10m, NEEDED), year_weights=(1, 2, 7))

    benchmark.group = "payment"
    calibration = benchmark.pedantic(run, rounds=3, iterations=1)
    assert calibration.cases == N_BIG
    seconds = benchmark.stats.stats.median
    record(benchmark, target="`calibrate weights`: 10 M grouped cases (read + calibrate)", value=seconds,
           unit="s", op="<=", threshold=20, order=21, cases_per_s=N_BIG / seconds, drgs=calibration.weights.height)


def test_homogeneity_10m(benchmark, grouped_10m):
    from grouper.payment.homogeneity import homogeneity
    from grouper.payment.weights import NEEDED

    benchmark.group = "payment"
    report = benchmark.pedantic(lambda: homogeneity(_read(grouped_10m, NEEDED)), rounds=1, iterations=1)
    assert report.riv.height > 1
    record(benchmark, value=benchmark.stats.stats.median, unit="s", cases=N_BIG)


def test_metrics_10m(benchmark, grouped_10m):
    from grouper.payment.metrics import NEEDED, hospital_metrics
    from grouper.payment.weights import calibrate_weights

    weights = calibrate_weights(_read(grouped_10m, ("status", "drg", "adrg", "mdc", "cost", "los", "discharge"))).weights

    def run():
        return hospital_metrics(_read(grouped_10m, NEEDED), weights)

    benchmark.group = "payment"
    metrics = benchmark.pedantic(run, rounds=3, iterations=1)
    assert metrics.filter(pl.col("dept").is_null()).height == 40
    seconds = benchmark.stats.stats.median
    record(benchmark, target="`metrics`: 10 M grouped cases (read + indicators)", value=seconds, unit="s",
           op="<=", threshold=10, order=22, cases_per_s=N_BIG / seconds)


CALIBRATE = """
import sys
from grouper.cli import main
sys.exit(main(["calibrate", "weights", sys.argv[1], "-o", sys.argv[2], "--report", sys.argv[3], "-q"]))
"""

METRICS = """
import sys
from grouper.cli import main
sys.exit(main(["metrics", sys.argv[1], "--weights", sys.argv[2], "-o", sys.argv[3], "-q"]))
"""


@pytest.mark.huge
def test_memory_calibrate_and_metrics_10m(benchmark, grouped_10m, workdir):
    weights, report, metrics = workdir / "weights.csv", workdir / "homogeneity", workdir / "metrics.csv"
    measured = {}

    def run():
        measured["calibrate"] = run_measured(CALIBRATE, grouped_10m, weights, report)
        measured["metrics"] = run_measured(METRICS, grouped_10m, weights, metrics)

    benchmark.group = "memory"
    benchmark.pedantic(run, rounds=1, iterations=1)
    peak = max(m["peak_rss_mib"] for m in measured.values())
    record(benchmark, target="memory, `calibrate weights --report` and `metrics` on 10 M grouped cases, peak RSS",
           value=peak, unit="MiB", op="<=", threshold=4096, order=23,
           calibrate_s=measured["calibrate"]["seconds"], calibrate_mib=measured["calibrate"]["peak_rss_mib"],
           metrics_s=measured["metrics"]["seconds"], metrics_mib=measured["metrics"]["peak_rss_mib"])
