"""Where the time goes for 1,000,000 cases, stage by stage (one thread, medians).

read (Parquet or CSV → raw text frame) → canonicalise (columns found, code lists split) →
parse (encode: the kernel interns the codes and parses the fields from Polars' text buffers) →
validate (the kernel's check pass over the parsed batch → problems frame) → kernel (grouping) →
results frame → write (Parquet or CSV). "kernel with validation" is the two compiled walks
together (check pass + grouping, arrays only, no frames; not summed again). `group_frame` = parse +
validate + kernel + results. The end-to-end Parquet path sums read Parquet, canonicalise,
group_frame, write Parquet.
"""
import polars as pl
import pytest

from conftest import median_of, record
from grouper import io
from grouper.engine.encode import encode_cases
from grouper.engine.results import results_frame
from grouper.engine.run import run_kernel

N = 1_000_000
ROUNDS = dict(rounds=5, iterations=1, warmup_rounds=1)


@pytest.fixture(autouse=True)
def _group(benchmark):
    benchmark.group = "stages"


def stage(benchmark, name: str, order: int, *, in_total: bool = True) -> None:
    median = median_of(benchmark)
    record(benchmark, value=median, unit="s", stage=name, order=order, in_total=in_total, cases=N,
           cases_per_s=N / median)


@pytest.fixture(scope="module")
def files_1m(case_files):
    return {".parquet": case_files.get(N, ".parquet"), ".csv": case_files.get(N, ".csv")}


def test_read_parquet(benchmark, files_1m):
    raw = benchmark.pedantic(pl.read_parquet, args=(files_1m[".parquet"],), **ROUNDS)
    assert raw.height == N
    stage(benchmark, "read Parquet (raw text frame)", 1)


def test_read_csv(benchmark, files_1m):
    raw = benchmark.pedantic(pl.read_csv, args=(files_1m[".csv"],), kwargs={"infer_schema": False}, **ROUNDS)
    assert raw.height == N
    stage(benchmark, "read CSV (raw text frame; instead of Parquet)", 2, in_total=False)


def test_read_wide_gbk(benchmark, case_files):
    """The wide GBK export (35 columns, Chinese text) read and canonicalised as `grouper group` streams
    it: GB text decoded (compiled tables), parsed by Polars, wide cells joined and split."""
    path = case_files.wide_gbk(N)

    def read():
        return sum(batch.height for batch in io.iter_case_batches(path, batch_size=N))

    assert benchmark.pedantic(read, **ROUNDS) == N
    stage(benchmark, "read + canonicalise a wide GBK CSV (instead of the Parquet rows above)", 2, in_total=False)


def test_canonicalise(benchmark, raw_1m):
    cases = benchmark.pedantic(io.cases_from_frame, args=(raw_1m,), **ROUNDS)
    assert cases.height == N
    stage(benchmark, "canonicalise (find columns, split dx/proc lists)", 3)


def test_encode(benchmark, plan, cases_1m):
    batch = benchmark.pedantic(encode_cases, args=(plan, cases_1m), **ROUNDS)
    assert len(batch.skip) == N
    stage(benchmark, "parse (encode: intern codes, parse fields → kernel arrays)", 4)


def test_reading_thread(benchmark, plan, files_1m):
    """What the reading thread of `grouper group` does to the Parquet input: read, canonicalise and
    encode it in batches of 50,000 rows (1 M rows: ten progress steps, halved for two in flight),
    the code lists interned as they are split and the number fields parsed as they are looked at
    (grouper.io.ReadAhead). Its parts are the read, canonicalise and parse stages above (those
    without the reader's help): not summed. `thread_cpu_s`: the CPU time of the thread itself
    (Polars decodes Parquet in threads of its own)."""
    import time

    from grouper.pipeline import encode, read_ahead

    cpu = []

    def read():
        start, rows, reader = time.thread_time(), 0, read_ahead(plan)
        for cases in io.iter_case_batches(files_1m[".parquet"], batch_size=50_000, ahead=reader):
            encode(plan, cases, ahead=reader.take())
            rows += cases.height
        cpu.append(time.thread_time() - start)
        return rows

    assert benchmark.pedantic(read, **ROUNDS) == N
    stage(benchmark, "reading thread of the command: read + canonicalise + parse a Parquet file, 50,000-row batches "
          "(not summed)", 4.5, in_total=False)
    benchmark.extra_info["thread_cpu_s"] = sorted(cpu)[len(cpu) // 2]


def test_validate(benchmark, plan, cases_1m, batch_1m):
    try:
        from grouper.validate import check_cases
    except ImportError:
        pytest.skip("this engine has no validation stage")
    found = benchmark.pedantic(check_cases, args=(plan, cases_1m, batch_1m), kwargs={"threads": 1}, **ROUNDS)
    stage(benchmark, "validate (compiled check pass → problems frame)", 5)
    benchmark.extra_info["problems"] = found.height


def test_kernel(benchmark, plan, batch_1m):
    out = benchmark.pedantic(run_kernel, args=(plan, batch_1m), kwargs={"threads": 1}, **ROUNDS)
    assert len(out[0]) == N
    stage(benchmark, "kernel (grouping, 1 thread)", 6)


def test_kernel_with_validation(benchmark, plan, cases_1m, batch_1m):
    """The check pass and the grouping, the kernel calls alone (what one walk over the batch costs)."""
    from grouper.validate import find_problems

    def both():
        find_problems(plan, cases_1m, batch_1m, threads=1)
        return run_kernel(plan, batch_1m, threads=1)

    out = benchmark.pedantic(both, **ROUNDS)
    assert len(out[0]) == N
    stage(benchmark, "kernel with validation (check pass + grouping, 1 thread; not summed)", 6.5, in_total=False)


def test_results(benchmark, plan, cases_1m, batch_1m):
    import inspect

    out = run_kernel(plan, batch_1m, threads=1)
    args = (plan, cases_1m, batch_1m, out)
    if "problems" in inspect.signature(results_frame).parameters:  # results carry per-case warnings
        from grouper.validate import check_cases

        args += (check_cases(plan, cases_1m, batch_1m, threads=1),)
    results = benchmark.pedantic(results_frame, args=args, **ROUNDS)
    assert results.height == N
    stage(benchmark, "results frame (ids → labels, warnings)", 7)


@pytest.fixture(scope="module")
def results_1m(plan, cases_1m):
    from grouper.pipeline import group_frame

    return group_frame(plan, cases_1m, threads=1)


def test_write_parquet(benchmark, results_1m, workdir):
    benchmark.pedantic(io.write_results, args=(results_1m, workdir / "stage-out.parquet"), **ROUNDS)
    stage(benchmark, "write Parquet", 8)


def test_write_csv(benchmark, results_1m, workdir):
    benchmark.pedantic(io.write_results, args=(results_1m, workdir / "stage-out.csv"), **ROUNDS)
    stage(benchmark, "write CSV (instead of Parquet)", 9, in_total=False)
