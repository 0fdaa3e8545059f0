"""`grouper serve` on loopback (bounded in count and time; the server runs in its own process):

- one case in process (JSON case → grouped result and estimate, no HTTP, no explain): p99 < 1 ms;
- HTTP, 32 concurrent keep-alive clients, one case per request (/v1/group): p99 < 10 ms and
  ≥ 2,000 requests/s;
- HTTP batch (/v1/group/batch), 10,000 cases per request: ≥ 200,000 cases/s;
- a bounded soak (mixed requests for SOAK_SECONDS): the server's resident memory after it is within
  SOAK_GROWTH_MB of what it was after warm-up.

The load generator is asyncio over raw sockets (one process, 32 connections) on the same machine,
so it takes CPU from the server it measures; figures are for the 2-core project machine.
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest

from conftest import ROOT, record

CLIENTS = 32
HTTP_SECONDS = 8.0
BATCH = 10_000
BATCH_REQUESTS = 5
SOAK_SECONDS = 30.0
SOAK_GROWTH_MB = 25.0
POLICY = ROOT / "tables" / "policies" / "zhejiang-points.toml"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def records(golden_source) -> list[dict]:
    raw = pl.read_csv(golden_source, infer_schema=False)
    return [{k: v for k, v in r.items() if v is not None} for r in raw.to_dicts()]


@pytest.fixture(scope="module")
def server(pack, workdir):
    port = _free_port()
    log = Path(workdir) / "serve-bench.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "grouper", "serve", "--scheme", str(pack), "--port", str(port),
                                    "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 120
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log.read_text())
            time.sleep(0.2)
    yield process, port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


async def _request(reader, writer, path: str, body: bytes) -> tuple[int, bytes]:
    writer.write(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                 % (path.encode(), len(body)) + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return status, await reader.readexactly(length)


async def _load(port: int, bodies: list[bytes], seconds: float, path: str = "/v1/group") -> tuple[list[float], int]:
    """CLIENTS keep-alive connections sending `bodies` round-robin for `seconds`: latencies, failures."""
    latencies: list[float] = []
    failures = 0
    stop = time.perf_counter() + seconds

    async def client(k: int):
        nonlocal failures
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = k
        while time.perf_counter() < stop:
            started = time.perf_counter()
            status, _ = await _request(reader, writer, path, bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)
            failures += status != 200
            i += CLIENTS
        writer.close()

    await asyncio.gather(*(client(k) for k in range(CLIENTS)))
    return latencies, failures


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_one_case_in_process(benchmark, pack, records):
    from grouper.serve import service

    state = service.load_state(service.Settings(packs=(service.PackSpec(pack),), policy=POLICY,
                                                point_value=Decimal("9.5")))
    cases = [{**r, "hospital_level": "3", "insurance": "310", "cost": "12345.67"} for r in records[:2000]]
    for case in cases[:50]:   # warm-up
        service.group_one(state, case, estimate=True)
    times = []

    def run():
        for case in cases:
            started = time.perf_counter()
            service.group_one(state, case, estimate=True)   # what POST /v1/group and /v1/estimate run
            times.append(time.perf_counter() - started)

    benchmark.pedantic(run, rounds=1, iterations=1)
    p99 = _p99(times) * 1000
    record(benchmark, target="one case in process (group + estimate) p99", value=p99, unit="ms", op="<=", threshold=1.0,
           cases=len(times), median_ms=sorted(times)[len(times) // 2] * 1000)


def test_one_case_in_process_group_only(benchmark, pack, records):
    """The grouping part of the above (grouper.onecase, what POST /v1/group runs without a policy)."""
    from grouper.serve import service

    state = service.load_state(service.Settings(packs=(service.PackSpec(pack),)))
    cases = records[:2000]
    for case in cases[:50]:   # warm-up
        service.group_one(state, case)
    times = []

    def run():
        for case in cases:
            started = time.perf_counter()
            service.group_one(state, case)
            times.append(time.perf_counter() - started)

    benchmark.pedantic(run, rounds=1, iterations=1)
    record(benchmark, value=_p99(times) * 1000, unit="ms", cases=len(times),
           median_ms=sorted(times)[len(times) // 2] * 1000)


def test_http_one_case_32_clients(benchmark, server, records):
    _, port = server
    bodies = [json.dumps(r).encode() for r in records[:5000]]
    asyncio.run(_load(port, bodies, 1.0))   # warm-up
    result = {}

    def run():
        started = time.perf_counter()
        latencies, failures = asyncio.run(_load(port, bodies, HTTP_SECONDS))
        result.update(latencies=latencies, failures=failures, seconds=time.perf_counter() - started)

    benchmark.pedantic(run, rounds=1, iterations=1)
    latencies = result["latencies"]
    rate = len(latencies) / result["seconds"]
    assert result["failures"] == 0
    record(benchmark, target="HTTP 32 clients, one case per request: requests/s", value=rate, unit="req/s", op=">=",
           threshold=2000, requests=len(latencies), p99_ms=_p99(latencies) * 1000)
    benchmark.extra_info["p99_target"] = {"target": "p99 ≤ 10 ms", "value_ms": _p99(latencies) * 1000,
                                          "met": _p99(latencies) * 1000 <= 10}


def test_http_batch_10000(benchmark, server, records):
    _, port = server
    body = json.dumps({"cases": records[:BATCH]}).encode()

    async def one():
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
        status, content = await _request(reader, writer, "/v1/group/batch", body)
        writer.close()
        assert status == 200 and json.loads(content)["count"] == BATCH

    asyncio.run(one())   # warm-up
    benchmark.pedantic(lambda: asyncio.run(one()), rounds=BATCH_REQUESTS, iterations=1)
    median = benchmark.stats.stats.median
    record(benchmark, target="HTTP batch, 10,000 cases per request", value=BATCH / median, unit="cases/s", op=">=",
           threshold=200_000, median_s=median)


def test_soak_memory(benchmark, server, records):
    process, port = server
    singles = [json.dumps(r).encode() for r in records[:5000]]
    batch = json.dumps({"cases": records[:1000]}).encode()
    asyncio.run(_load(port, singles, 2.0))
    before = _rss_mb(process.pid)
    result = {}

    async def soak():
        stop = time.perf_counter() + SOAK_SECONDS
        done = 0
        while time.perf_counter() < stop:
            await _load(port, singles, 2.0)
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 26)
            await _request(reader, writer, "/v1/group/batch", batch)
            writer.close()
            done += 1
        return done

    benchmark.pedantic(lambda: result.update(rounds=asyncio.run(soak())), rounds=1, iterations=1)
    after = _rss_mb(process.pid)
    record(benchmark, target="soak: resident memory growth", value=after - before, unit="MB", op="<=",
           threshold=SOAK_GROWTH_MB, before_mb=before, after_mb=after, seconds=SOAK_SECONDS)
