"""Kernel: 1,000,000 cases already in memory; one thread vs all cores."""
import os

import pytest

from conftest import median_of, record, throughput
from grouper.engine.run import run_kernel
from grouper.pipeline import group_frame

N = 1_000_000
CORES = os.cpu_count() or 1


@pytest.mark.parametrize("threads", [1, CORES], ids=lambda t: f"threads{t}")
def test_group_frame(benchmark, plan, cases_1m, threads, medians):
    """Canonical Polars frame → result frame: encode, validate, kernel, results."""
    benchmark.group = "kernel"
    result = benchmark.pedantic(group_frame, args=(plan, cases_1m), kwargs={"threads": threads},
                                rounds=5, iterations=1, warmup_rounds=1)
    assert result.height == N
    medians[f"group_frame/{threads}"] = median_of(benchmark)
    if threads == 1:
        throughput(benchmark, N, target="kernel, frame → results (`group_frame`), 1 thread", op=">=",
                   threshold=1_000_000, order=1)
    else:
        throughput(benchmark, N)


@pytest.mark.parametrize("threads", [1, CORES], ids=lambda t: f"threads{t}")
def test_run_kernel(benchmark, plan, batch_1m, threads, medians):
    """The compiled kernel call alone, on an already encoded batch."""
    benchmark.group = "kernel"
    out = benchmark.pedantic(run_kernel, args=(plan, batch_1m), kwargs={"threads": threads},
                             rounds=10, iterations=1, warmup_rounds=1)
    assert len(out[0]) == N
    medians[f"run_kernel/{threads}"] = median_of(benchmark)
    if threads == 1:
        throughput(benchmark, N, target="kernel call alone (`run_kernel`), 1 thread", op=">=",
                   threshold=1_000_000, order=2)
    else:
        throughput(benchmark, N)


@pytest.mark.skipif(CORES < 2, reason="needs 2 cores")
def test_kernel_scaling(benchmark, plan, batch_1m, medians):
    """Speed-up of the kernel call on all cores over one thread (medians of interleaved rounds)."""
    import time

    benchmark.group = "scaling"
    one, many = [], []

    def both():  # interleave, so load from elsewhere hits both sides alike
        for threads, into in ((1, one), (CORES, many)):
            t = time.perf_counter()
            run_kernel(plan, batch_1m, threads=threads)
            into.append(time.perf_counter() - t)

    benchmark.pedantic(both, rounds=7, iterations=1, warmup_rounds=1)
    one, many = sorted(one[1:]), sorted(many[1:])  # drop the warm-up round
    speedup = one[len(one) // 2] / many[len(many) // 2]
    record(benchmark, target=f"kernel speed-up, {CORES} threads vs 1 (`run_kernel`)", value=speedup, unit="x",
           op=">=", threshold=1.8, order=3, one_thread_s=one[len(one) // 2], all_cores_s=many[len(many) // 2],
           cores=CORES)
    if "group_frame/1" in medians and f"group_frame/{CORES}" in medians:
        benchmark.extra_info["group_frame_speedup"] = medians["group_frame/1"] / medians[f"group_frame/{CORES}"]
