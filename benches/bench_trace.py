"""`--trace` costs nothing when unused: `group_file` on 1 M cases without a trace request, and with
one traced row. The default path never looks at tracing beyond one `is not None` per batch."""
import pytest

from conftest import throughput
from grouper.api import group_file
from grouper.explain import TraceRequest

N = 1_000_000


@pytest.mark.parametrize("traced", [False, True], ids=["default", "one-traced-row"])
def test_trace_overhead(benchmark, case_files, scheme, workdir, traced):
    source = case_files.get(N, ".parquet")
    output = workdir / "trace-out.parquet"
    request = TraceRequest(ids=frozenset({"R000000001"})) if traced else None

    benchmark.group = "trace"
    benchmark.pedantic(lambda: group_file(source, output, scheme, trace=request), rounds=3, iterations=1)
    throughput(benchmark, N, note="group_file, 1 M cases, " + ("one traced row" if traced else "no --trace"))
    output.unlink()
