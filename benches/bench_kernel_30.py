"""Kernel on the CHS-DRG 3.0 draft vs 1.1: 1,000,000 cases in memory, one thread.

3.0 adds DRG-level tests before the CC/MCC splits (82 age DRGs, 12 other-procedure DRGs), rules
with a second secondary-diagnosis list and CC tests split by empty exclusion tables (815 DRGs,
511 rule rows). Target: within 10 % of 1.1. Measured on each scheme's own golden set resampled
to 1 M cases, interleaved round by round.
"""
from pathlib import Path

import pytest

from conftest import SEED, record
from grouper.engine.run import run_kernel

N = 1_000_000
SHARED_30 = Path(__file__).resolve().parents[1].parent / "shared" / "chs-drg-3.0-draft"


@pytest.fixture(scope="session")
def plan30(workdir):
    if not (SHARED_30 / "golden" / "cases.csv").is_file():
        pytest.skip(f"CHS-DRG 3.0 draft tables not found at {SHARED_30}")
    from grouper.importers.chs_drg import import_chs_drg
    from grouper.scheme import load_scheme

    import_chs_drg(SHARED_30, workdir / "chs-drg-3.0")
    return load_scheme(workdir / "chs-drg-3.0").plan


@pytest.fixture(scope="session")
def batch30_own(plan30):
    """The 3.0 golden set resampled to 1 M cases, encoded for the 3.0 plan (validation applied)."""
    from grouper.io import cases_from_frame
    from grouper.pipeline import prepare
    from grouper.synth import read_source, resample_cases

    cases = cases_from_frame(resample_cases(read_source(SHARED_30 / "golden" / "cases.csv"), N, seed=SEED))
    return prepare(plan30, cases).batch


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
