"""End to end: `grouper group` on 5,000,000 cases, Parquet → Parquet and CSV → CSV, in-process
(grouper.cli.main, streaming in batches of 1,000,000 rows on all cores, as from a shell minus
interpreter start-up); and the whole command on 1,000,000 cases, process start and plan load
included (a fresh `python -m grouper group` each round): Parquet → Parquet, a wide GBK CSV → CSV,
and Parquet → Parquet on one core (`--threads 1`, Polars on one thread too) against all cores.
The plan comes from the plan cache.
"""
import os
import subprocess
import sys
import time

import pytest

from conftest import parquet_rows, record, self_peak_rss_mib, throughput
from grouper.cli import main

N = 5_000_000
N_COMMAND = 1_000_000


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


@pytest.fixture(scope="module")
def compiled():
    """grouper's bytecode, as an install leaves it (pip compiles every module): from a checkout, with
    PYTHONDONTWRITEBYTECODE set, each fresh process would compile its ~60 modules again (~0.15 s)."""
    import compileall

    import grouper

    compileall.compile_dir(os.path.dirname(grouper.__file__), quiet=1)


def _command(source, output, pack, *options, env=None):
    """`python -m grouper group` in a fresh process (start-up, imports and plan load included)."""
    argv = [sys.executable, "-m", "grouper", "group", str(source), "-o", str(output), "--scheme", str(pack), "-q",
            *options]
    subprocess.run(argv, check=True, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("shape, threshold, order", [("parquet", 1_000_000, 3), ("wide-gbk", 500_000, 6)],
                         ids=["parquet", "wide-gbk-csv"])
def test_group_command_1m(benchmark, case_files, pack, scheme, workdir, compiled, shape, threshold, order):
    source = case_files.get(N_COMMAND, ".parquet") if shape == "parquet" else case_files.wide_gbk(N_COMMAND)
    output = workdir / ("command-out.parquet" if shape == "parquet" else "command-out.csv")
    benchmark.group = "end-to-end"
    benchmark.pedantic(_command, args=(source, output, pack), rounds=3, iterations=1, warmup_rounds=1)
    kind = "Parquet → Parquet" if shape == "parquet" else "wide GBK CSV → CSV"
    throughput(benchmark, N_COMMAND, target=f"end to end, the whole `grouper group` command (process start and "
               f"plan load included), {kind}, 1 M cases", op=">=", threshold=threshold, order=order,
               input_mib=source.stat().st_size / 2**20)
    output.unlink()


def test_group_command_two_cores(benchmark, case_files, pack, scheme, workdir, compiled):
    """The whole command on 1 M cases with one thread everywhere vs all cores, rounds interleaved."""
    source = case_files.get(N_COMMAND, ".parquet")
    output = workdir / "threads-out.parquet"
    one, all_cores = [], []

    def rounds():
        for _ in range(3):
            for times, options, env in ((one, ["--threads", "1"], {"POLARS_MAX_THREADS": "1"}), (all_cores, [], {})):
                started = time.perf_counter()
                _command(source, output, pack, *options, env=env)
                times.append(time.perf_counter() - started)

    benchmark.group = "end-to-end"
    benchmark.pedantic(rounds, rounds=1, iterations=1)
    speedup = sorted(one)[1] / sorted(all_cores)[1]
    record(benchmark, target="the whole `grouper group` command, 1 M cases Parquet → Parquet: all cores vs one "
           f"(median of 3 interleaved rounds, {os.cpu_count()} cores)", value=speedup, unit="×", op=">=",
           threshold=1.8, order=7, one_thread_s=sorted(one)[1], all_cores_s=sorted(all_cores)[1])
    output.unlink()
