"""End to end: `grouper group` on 5,000,000 cases, Parquet → Parquet and CSV → CSV.

The command runs in-process (grouper.cli.main), streaming in batches of 1,000,000 rows on all
cores, exactly as from a shell minus interpreter start-up; the plan comes from the plan cache.
"""
import pytest

from conftest import parquet_rows, self_peak_rss_mib, throughput
from grouper.cli import main

N = 5_000_000


@pytest.mark.parametrize("suffix, threshold, order", [(".parquet", 300_000, 4), (".csv", 150_000, 5)],
                         ids=["parquet", "csv"])
def test_group_file(benchmark, case_files, pack, scheme, workdir, suffix, threshold, order):
    source = case_files.get(N, suffix)
    output = workdir / f"e2e-out{suffix}"

    def run():
        assert main(["group", str(source), "-o", str(output), "--scheme", str(pack), "-q"]) == 0

    benchmark.group = "end-to-end"
    benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    rows = parquet_rows(output) if suffix == ".parquet" else sum(1 for _ in output.open("rb")) - 1
    assert rows == N
    kind = suffix.lstrip(".").capitalize() if suffix == ".parquet" else "CSV"
    throughput(benchmark, N, target=f"end to end, `grouper group` {kind} → {kind}, 5 M cases", op=">=",
               threshold=threshold, order=order, input_mib=source.stat().st_size / 2**20,
               pytest_process_peak_rss_mib=self_peak_rss_mib())
    output.unlink()
