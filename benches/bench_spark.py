"""Grouping on Spark `local[2]` against the single process, on the same cases (marked `huge`).

The cases are the golden set resampled to N rows (GROUPER_BENCH_SPARK_N, default 10,000,000) in
one Parquet file. Each side runs in a fresh process, file to file:

- single process: `grouper.api.group_file` (Parquet → Parquet, both cores);
- Spark: `spark.read.parquet` → `grouper.spark.group` → `write.parquet`, master `local[2]`
  (Spark's start-up included: what a user waits for).

The figure is the ratio Spark ÷ single (the cost of running on the engine of the warehouse); both
outputs are compared row by row afterwards (same ids, same status, MDC, ADRG, DRG).
"""
from __future__ import annotations

import os
import time

import polars as pl
import pytest

from conftest import record, run_measured

pytestmark = pytest.mark.huge
pyspark = pytest.importorskip("pyspark")

N = int(os.environ.get("GROUPER_BENCH_SPARK_N", 10_000_000))

SINGLE = """
import sys
from grouper.api import group_file
group_file(sys.argv[1], sys.argv[2], sys.argv[3])
"""

SPARK = """
import sys
from pyspark.sql import SparkSession
import grouper.spark as gs
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false").config("spark.driver.memory", "6g")
         .config("spark.sql.execution.arrow.maxRecordsPerBatch", "200000").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
cases = spark.read.parquet(sys.argv[1])
gs.group(cases, sys.argv[3], keep_input=False).write.mode("overwrite").parquet(sys.argv[2])
spark.stop()
"""


def test_spark_local2_against_single_process(benchmark, case_files, pack, workdir):
    source = case_files.get(N, ".parquet")
    single_out, spark_out = workdir / "spark-single.parquet", workdir / "spark-out"
    runs: dict[str, list[float]] = {"single": [], "spark": []}

    def both():
        started = time.perf_counter()
        runs["single"].append(run_measured(SINGLE, source, single_out, pack, timeout=3600)["seconds"])
        runs["spark"].append(run_measured(SPARK, source, spark_out, pack, timeout=3600)["seconds"])
        return time.perf_counter() - started

    benchmark.pedantic(both, rounds=1, iterations=1)
    single, spark = min(runs["single"]), min(runs["spark"])
    got = pl.scan_parquet(spark_out / "*.parquet").select("id", "status", "mdc", "adrg", "drg").collect().sort("id")
    want = pl.read_parquet(single_out, columns=["id", "status", "mdc", "adrg", "drg"]).sort("id")
    assert got.equals(want)
    record(benchmark, value=spark / single, unit="× single process", cases=N, single_s=round(single, 2),
           spark_s=round(spark, 2), note=f"Spark local[2] {spark:.1f} s vs one process {single:.1f} s, {N:,} cases")
