"""DIP grouping: 1,000,000 synthetic cases against a 10,000-row synthetic catalogue (grouper.dip.synth)."""
import pytest

from conftest import median_of, throughput
from grouper.dip import load_dip_scheme
from grouper.dip.run import encode_dip, group_dip_frame, run_dip_kernel
from grouper.dip.synth import synthetic_cases, write_synthetic_pack

N = 1_000_000
ROWS = 10_000


@pytest.fixture(scope="module")
def dip_pack(workdir):
    return load_dip_scheme(write_synthetic_pack(workdir / "dip-synthetic", rows=ROWS, seed=0))


@pytest.fixture(scope="module")
def dip_cases(dip_pack, workdir):
    return synthetic_cases(workdir / "dip-synthetic", N, seed=1)


@pytest.fixture(scope="module")
def dip_batch(dip_pack, dip_cases):
    return encode_dip(dip_pack.plan, dip_cases)


def test_dip_catalogue_size(dip_pack):
    assert sum(len(rows) for rows in dip_pack.rows.values()) == ROWS


def test_dip_run_kernel(benchmark, dip_pack, dip_batch, medians):
    """The compiled DIP kernel alone, one thread, on an encoded batch."""
    benchmark.group = "dip"
    out = benchmark.pedantic(run_dip_kernel, args=(dip_pack.plan, dip_batch), kwargs={"threads": 1},
                             rounds=10, iterations=1, warmup_rounds=1)
    assert len(out[0]) == N
    medians["dip_run_kernel/1"] = median_of(benchmark)
    throughput(benchmark, N, target="DIP kernel (`run_dip_kernel`), 10,000-row catalogue, 1 thread", op=">=",
               threshold=1_000_000, order=20)


def test_dip_group_frame(benchmark, dip_pack, dip_cases, medians):
    """Canonical frame → DIP result frame (encode + kernel + results), one thread."""
    benchmark.group = "dip"
    result = benchmark.pedantic(group_dip_frame, args=(dip_pack.plan, dip_cases), kwargs={"threads": 1},
                                rounds=5, iterations=1, warmup_rounds=1)
    assert result.height == N
    medians["dip_group_frame/1"] = median_of(benchmark)
    throughput(benchmark, N, target="DIP frame → results (`group_dip_frame`), 1 thread", op=">=",
               threshold=1_000_000, order=21)


def test_dip_encode(benchmark, dip_pack, dip_cases):
    benchmark.group = "dip"
    benchmark.pedantic(encode_dip, args=(dip_pack.plan, dip_cases), rounds=5, iterations=1, warmup_rounds=1)
    throughput(benchmark, N)


def test_dip_compile(benchmark, workdir):
    """Parse + check + compile the 10,000-row catalogue, without the plan cache."""
    benchmark.group = "dip"
    benchmark.pedantic(load_dip_scheme, args=(workdir / "dip-synthetic",), kwargs={"cache": False},
                       rounds=3, iterations=1)


def test_dip_compile_cached(benchmark, workdir, dip_pack):
    """The same pack from the plan cache (the `dip_pack` fixture made the entry)."""
    benchmark.group = "dip"
    loaded = benchmark.pedantic(load_dip_scheme, args=(workdir / "dip-synthetic",), rounds=10, iterations=1,
                                warmup_rounds=1)
    assert sum(len(rows) for rows in loaded.rows.values()) == ROWS


def test_dip_reference_agreement_200k(dip_pack, dip_cases):
    """Large-scale check (not timed): the compiled kernel and the reference interpreter agree on
    200,000 of the benchmark's cases against the 10,000-row catalogue."""
    from grouper.dip.reference import reference_group

    sample = dip_cases.slice(0, 200_000)
    assert group_dip_frame(dip_pack.plan, sample).equals(reference_group(dip_pack, sample))
