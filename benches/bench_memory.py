"""Memory (marked `huge`): peak RSS of a fresh process, measured with getrusage(RUSAGE_CHILDREN).

- in memory: `grouper.group(file)` on 10,000,000 cases (the whole file read, grouped, and the
  result frame written) must peak below 4 GiB;
- streaming: `grouper.group_file(file, out, batch_size=1_000_000)` on 50,000,000 cases must peak
  below 2 GiB, and give the in-memory results: the 10 M file is the first 10 M rows of the 50 M
  file (same seed; see grouper.synth), so the first 10 M streamed result rows must equal the
  in-memory results exactly; every one of the 50 M rows must also match the golden expected
  result of its source case (conformance, joined on src_id).
"""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from conftest import mismatches_against_golden, parquet_rows, parquet_windows, record, run_measured

pytestmark = pytest.mark.huge

N_MEMORY = 10_000_000
N_STREAM = 50_000_000
GIB = 1024  # MiB

IN_MEMORY = """
import sys, grouper
scheme = grouper.load_scheme(sys.argv[1])
results = grouper.group(sys.argv[2], scheme)
assert results.height == int(sys.argv[4])
results.write_parquet(sys.argv[3])
"""

STREAMING = """
import sys, grouper
scheme = grouper.load_scheme(sys.argv[1])
rows = grouper.group_file(sys.argv[2], sys.argv[3], scheme, batch_size=1_000_000)
assert rows == int(sys.argv[4])
"""

_session: dict[str, Path] = {}


def check_conformance(output: Path, source: Path, expected: pl.DataFrame, rows: int) -> int:
    bad = 0
    for got, src in zip(parquet_windows(output, ["id", "status", "mdc", "adrg", "drg"], rows),
                        parquet_windows(source, ["id", "src_id"], rows)):
        assert got["id"].equals(src["id"]), "result rows are not in input order"
        bad += mismatches_against_golden(got, src["src_id"], expected)
    return bad


def test_memory_in_memory_10m(benchmark, case_files, pack, scheme, workdir, expected):
    source = case_files.get(N_MEMORY, ".parquet")
    output = workdir / "in-memory-10m.parquet"
    measured = {}

    def run():
        measured.update(run_measured(IN_MEMORY, pack, source, output, N_MEMORY))

    benchmark.group = "memory"
    benchmark.pedantic(run, rounds=1, iterations=1)
    _session["in_memory_10m"] = output
    record(benchmark, target="memory, 10 M cases grouped in memory (`grouper.group`), peak RSS",
           value=measured["peak_rss_mib"], unit="MiB", op="<=", threshold=4 * GIB, order=8,
           seconds=measured["seconds"], cases_per_s=N_MEMORY / measured["seconds"])
    bad = check_conformance(output, source, expected, N_MEMORY)
    benchmark.extra_info["conformance_mismatches"] = bad
    assert bad == 0


def test_streaming_50m(benchmark, case_files, pack, scheme, workdir, expected):
    source = case_files.get(N_STREAM, ".parquet")
    output = workdir / "streamed-50m.parquet"
    measured = {}

    def run():
        measured.update(run_measured(STREAMING, pack, source, output, N_STREAM))

    benchmark.group = "memory"
    benchmark.pedantic(run, rounds=1, iterations=1)
    record(benchmark, target="memory, 50 M cases streamed (`group_file(batch_size=1_000_000)`), peak RSS",
           value=measured["peak_rss_mib"], unit="MiB", op="<=", threshold=2 * GIB, order=9,
           seconds=measured["seconds"], cases_per_s=N_STREAM / measured["seconds"])
    assert parquet_rows(output) == N_STREAM

    # identity with the in-memory mode: the first 10 M rows of the 50 M file are the 10 M file
    in_memory = _session.get("in_memory_10m")
    if in_memory is None or not in_memory.exists():  # the in-memory benchmark was deselected
        from grouper.pipeline import group_frame
        from grouper.io import cases_from_frame

        in_memory = workdir / "in-memory-10m-prefix.parquet"
        prefix = pl.read_parquet(source, n_rows=N_MEMORY)
        group_frame(scheme.plan, cases_from_frame(prefix)).write_parquet(in_memory)
        del prefix
    streamed_prefix = pl.scan_parquet(output).head(N_MEMORY).collect()
    identical = streamed_prefix.equals(pl.read_parquet(in_memory))
    benchmark.extra_info["identical_to_in_memory_first_10m"] = identical
    del streamed_prefix
    assert identical, "streamed results differ from the in-memory results on the first 10 M rows"

    bad = check_conformance(output, source, expected, N_STREAM)
    benchmark.extra_info["conformance_mismatches"] = bad
    assert bad == 0
    output.unlink()
