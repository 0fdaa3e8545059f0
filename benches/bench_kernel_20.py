"""Kernel on CHS-DRG 2.0 vs 1.1: 1,000,000 cases in memory, one thread.

2.0 has more rules (421 rule rows, 21 qy rules inside MDCs and 3 before them, MDCA entered by
every case, alternative rule rows that cannot be gated), so the question is whether the kernel
keeps its speed. Measured on each scheme's own golden set resampled to 1 M cases, and on the
same cases (the 1.1 golden set) under both schemes.
"""
from pathlib import Path

import pytest

from conftest import golden_batch, national_plan, record
from grouper.engine.run import run_kernel

N = 1_000_000
SHARED_20 = Path(__file__).resolve().parents[1].parent / "shared" / "chs-drg-2.0"


@pytest.fixture(scope="session")
def plan20(workdir):
    if not (SHARED_20 / "golden" / "cases.csv").is_file():
        pytest.skip(f"CHS-DRG 2.0 tables not found at {SHARED_20}")
    return national_plan(SHARED_20, workdir / "chs-drg-2.0")


@pytest.fixture(scope="session")
def batch20_own(plan20):
    """The 2.0 golden set resampled to 1 M cases, encoded for the 2.0 plan (validation applied)."""
    return golden_batch(plan20, SHARED_20, N)


@pytest.fixture(scope="session")
def batch20_same(plan20, cases_1m):
    """The 1.1 benchmark cases (the 1.1 golden set resampled) encoded for the 2.0 plan."""
    from grouper.pipeline import prepare

    return prepare(plan20, cases_1m).batch


def test_kernel_20_vs_11(benchmark, plan, batch_1m, plan20, batch20_own, batch20_same):
    """`run_kernel`, one thread: 1.1 on its cases, 2.0 on its cases, 2.0 on the 1.1 cases, interleaved
    round by round (so load from elsewhere on a shared machine hits all alike); medians. Also 2.0
    without the ADRG gates (the item-class gate plan.adrg_gate_class, and the MDC-level
    plan.adrg_gate_mask the kernel falls back to without it), to show what they buy."""
    import dataclasses
    import time

    benchmark.group = "kernel 2.0 vs 1.1"
    runs = {"1.1": (plan, batch_1m, []), "2.0": (plan20, batch20_own, []), "2.0 on 1.1 cases": (plan20, batch20_same, []),
            "2.0 without ADRG gate": (dataclasses.replace(plan20, adrg_gate_mask=None, adrg_gate_class=None,
                                                          adrg_gate_other=None, adrg_gate_rows=None), batch20_own, [])}

    def interleaved():
        for p, batch, into in runs.values():
            t = time.perf_counter()
            out = run_kernel(p, batch, threads=1)
            into.append(time.perf_counter() - t)
            assert len(out[0]) == N

    benchmark.pedantic(interleaved, rounds=7, iterations=1, warmup_rounds=1)
    median = {name: sorted(times[1:])[len(times[1:]) // 2] for name, (_, _, times) in runs.items()}  # no warm-up
    record(benchmark, target="kernel speed on CHS-DRG 2.0 / on 1.1 (`run_kernel`, 1 thread, own golden sets, interleaved)",
           value=median["1.1"] / median["2.0"], unit="x", op=">=", threshold=0.9, order=4,
           **{f"{name} cases/s": round(N / seconds) for name, seconds in median.items()},
           same_cases_ratio=median["1.1"] / median["2.0 on 1.1 cases"],
           adrg_gate_speedup=median["2.0 without ADRG gate"] / median["2.0"])
