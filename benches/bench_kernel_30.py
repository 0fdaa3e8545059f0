"""Kernel on the CHS-DRG 3.0 draft vs 1.1: 1,000,000 cases in memory, one thread.

3.0 adds DRG-level tests before the CC/MCC splits (82 age DRGs, 12 other-procedure DRGs), rules
with a second secondary-diagnosis list and CC tests split by empty exclusion tables (815 DRGs,
511 rule rows). Target: within 10 % of 1.1. Measured on each scheme's own golden set resampled
to 1 M cases, interleaved round by round.
"""
from pathlib import Path

import pytest

from conftest import golden_batch, national_plan, record
from grouper.engine.run import run_kernel

N = 1_000_000
SHARED_30 = Path(__file__).resolve().parents[1].parent / "shared" / "chs-drg-3.0-draft"


@pytest.fixture(scope="session")
def plan30(workdir):
    if not (SHARED_30 / "golden" / "cases.csv").is_file():
        pytest.skip(f"CHS-DRG 3.0 draft tables not found at {SHARED_30}")
    return national_plan(SHARED_30, workdir / "chs-drg-3.0")


@pytest.fixture(scope="session")
def batch30_own(plan30):
    """The 3.0 golden set resampled to 1 M cases, encoded for the 3.0 plan (validation applied)."""
    return golden_batch(plan30, SHARED_30, N)


def test_kernel_30_vs_11(benchmark, plan, batch_1m, plan30, batch30_own):
    """`run_kernel`, one thread: 1.1 on its cases and 3.0 on its cases, interleaved; medians."""
    import time

    benchmark.group = "kernel 3.0 vs 1.1"
    runs = {"1.1": (plan, batch_1m, []), "3.0": (plan30, batch30_own, [])}

    def interleaved():
        for p, batch, into in runs.values():
            t = time.perf_counter()
            out = run_kernel(p, batch, threads=1)
            into.append(time.perf_counter() - t)
            assert len(out[0]) == N

    benchmark.pedantic(interleaved, rounds=7, iterations=1, warmup_rounds=1)
    median = {name: sorted(times[1:])[len(times[1:]) // 2] for name, (_, _, times) in runs.items()}  # no warm-up
    record(benchmark, target="kernel speed on CHS-DRG 3.0 draft / on 1.1 (`run_kernel`, 1 thread, own golden sets, "
                             "interleaved)",
           value=median["1.1"] / median["3.0"], unit="x", op=">=", threshold=0.9, order=5,
           **{f"{name} cases/s": round(N / seconds) for name, seconds in median.items()})
