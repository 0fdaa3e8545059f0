"""Correctness on resampled data: 1,000,000 cases drawn from the golden set still group 100 %
like the reference (joined on src_id), in memory and streaming (not timed beyond one round)."""
import polars as pl

from conftest import mismatches_against_golden, record
from grouper import api
from grouper.pipeline import group_frame

N = 1_000_000


def test_resampled_in_memory(benchmark, plan, cases_1m, raw_1m, expected):
    benchmark.group = "conformance"
    results = benchmark.pedantic(group_frame, args=(plan, cases_1m), rounds=1, iterations=1)
    assert results["id"].equals(raw_1m["id"])
    bad = mismatches_against_golden(results, raw_1m["src_id"], expected)
    record(benchmark, target="conformance on 1 M resampled cases, in memory", value=100 * (N - bad) / N,
           unit="%", op=">=", threshold=100.0, order=10, mismatches=bad)
    assert bad == 0


def test_resampled_streaming(benchmark, scheme, case_files, expected):
    benchmark.group = "conformance"
    path = case_files.get(N, ".csv")

    def stream():
        return pl.concat(api.group_batches(path, scheme, batch_size=300_000))

    results = benchmark.pedantic(stream, rounds=1, iterations=1)
    src = pl.read_csv(path, columns=["id", "src_id"], infer_schema=False)
    assert results["id"].equals(src["id"])
    bad = mismatches_against_golden(results, src["src_id"], expected)
    record(benchmark, target="conformance on 1 M resampled cases, streaming (CSV, batches of 300 k)",
           value=100 * (N - bad) / N, unit="%", op=">=", threshold=100.0, order=11, mismatches=bad)
    assert bad == 0
