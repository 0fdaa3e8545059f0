"""Shared set-up of the benchmark suite (see benches/README.md).

Everything big lives in one temporary folder made at session start and removed at session end
(GROUPER_BENCH_TMP chooses its parent; default: the system temp dir): the CHS-DRG 1.1 pack,
imported from ../shared/chs-drg-1.1, its plan cache, and the case files resampled from the
golden set, each written once per session on first use.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHES = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHES))

import report  # noqa: E402  (benches/report.py: JSON → Markdown table)

SHARED = Path(os.environ.get("GROUPER_SHARED_DIR") or ROOT.parent / "shared") / "chs-drg-1.1"  # as tests/conftest.py
SEED = 20240601
COMPARED = ["status", "mdc", "adrg", "drg"]


def pytest_report_header(config):
    return [f"grouper bench: tables {SHARED}, seed {SEED}, cpus {os.cpu_count()}, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"]


# --------------------------------------------------------------------------------------------
# session data


@pytest.fixture(scope="session")
def tables() -> Path:
    if not (SHARED / "golden" / "cases.csv").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the CHS-DRG 1.1 tables are missing at {SHARED}")
        pytest.skip(f"CHS-DRG 1.1 tables not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def workdir():
    """One temp folder for the whole session; removed at the end (files here reach GBs)."""
    parent = os.environ.get("GROUPER_BENCH_TMP") or None
    path = Path(tempfile.mkdtemp(prefix="grouper-bench-", dir=parent))
    old_cache = os.environ.get("GROUPER_CACHE_DIR")
    os.environ["GROUPER_CACHE_DIR"] = str(path / "plan-cache")  # never the user's plan cache
    try:
        yield path
    finally:
        if old_cache is None:
            os.environ.pop("GROUPER_CACHE_DIR", None)
        else:
            os.environ["GROUPER_CACHE_DIR"] = old_cache
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pack(tables, workdir) -> Path:
    from grouper.importers.chs_drg import import_chs_drg

    target = workdir / "chs-drg-1.1"
    import_chs_drg(tables, target)
    return target


@pytest.fixture(scope="session")
def scheme(pack):
    from grouper.scheme import load_scheme

    return load_scheme(pack)  # also fills the session's plan cache


@pytest.fixture(scope="session")
def plan(scheme):
    return scheme.plan


@pytest.fixture(scope="session")
def golden_source(tables) -> Path:
    return tables / "golden" / "cases.csv"


@pytest.fixture(scope="session")
def expected(tables) -> pl.DataFrame:
    return pl.read_csv(tables / "golden" / "expected.csv", infer_schema=False).rename({"id": "src_id"})


class CaseFiles:
    """Resampled case files of the golden set, written on first request and reused."""

    def __init__(self, source: Path, folder: Path):
        self.source, self.folder = source, folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def get(self, n: int, suffix: str) -> Path:
        from grouper.synth import write_resampled

        path = self.folder / f"cases-{n}-seed{SEED}{suffix}"
        if not path.exists():
            started = time.perf_counter()
            write_resampled(self.source, n, path, seed=SEED)
            print(f"\n[bench data] wrote {path.name} ({path.stat().st_size / 2**20:,.0f} MiB) "
                  f"in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        return path


    def wide_gbk(self, n: int) -> Path:
        """The `n`-case file as a GBK CSV in the wide shape hospital exports have: 结算清单 headers,
        主要诊断编码 + 其他诊断编码1..15, 主要手术操作编码 + 其他手术操作编码1..7, a hospital, a
        cost and a patient name (Chinese text in every row), every field as text."""
        path = self.folder / f"cases-{n}-seed{SEED}-wide-gbk.csv"
        if not path.exists():
            cases = pl.read_parquet(self.get(n, ".parquet"))
            dx, proc = cases["dx"].str.split("|"), cases["proc"].str.split("|")
            names = {"id": "清单流水号", "sex": "性别", "age": "年龄", "age_days": "年龄不足1周岁的年龄(天)",
                     "weight": "新生儿出生体重(克)", "dept": "出院科别", "los": "实际住院天数", "discharge": "离院方式"}
            wide = cases.select([pl.col(k).alias(v) for k, v in names.items()]).with_columns(
                pl.lit("H330100001").alias("定点医疗机构编码"), pl.lit("12345.67").alias("医疗总费用"),
                pl.lit("张三").alias("患者姓名"), dx.list.get(0, null_on_oob=True).alias("主要诊断编码"),
                *(dx.list.get(i, null_on_oob=True).alias(f"其他诊断编码{i}") for i in range(1, 16)),
                proc.list.get(0, null_on_oob=True).alias("主要手术操作编码"),
                *(proc.list.get(i, null_on_oob=True).alias(f"其他手术操作编码{i}") for i in range(1, 8)))
            partial = path.with_name(path.name + ".partial")
            partial.write_bytes(wide.write_csv().encode("gbk"))
            partial.replace(path)
        return path


@pytest.fixture(scope="session")
def case_files(golden_source, workdir) -> CaseFiles:
    return CaseFiles(golden_source, workdir / "data")


@pytest.fixture(scope="session")
def raw_1m(golden_source) -> pl.DataFrame:
    """1,000,000 resampled cases as read from a file (text columns, id + src_id)."""
    from grouper.synth import read_source, resample_cases

    return resample_cases(read_source(golden_source), 1_000_000, seed=SEED)


@pytest.fixture(scope="session")
def cases_1m(raw_1m) -> pl.DataFrame:
    """The same cases as the canonical case frame (what group_frame takes)."""
    from grouper.io import cases_from_frame

    return cases_from_frame(raw_1m)


@pytest.fixture(scope="session")
def batch_1m(plan, cases_1m):
    from grouper.engine.encode import encode_cases

    return encode_cases(plan, cases_1m)


@pytest.fixture(scope="session")
def medians() -> dict[str, float]:
    """Median seconds of benchmarks run earlier in the session, by key (for derived figures)."""
    return {}


# --------------------------------------------------------------------------------------------
# helpers for the benchmark modules


def median_of(benchmark) -> float:
    """Median seconds of the benchmark's rounds (NaN under --benchmark-disable: no stats)."""
    stats = getattr(benchmark, "stats", None)
    return float(stats.stats.median) if stats is not None else float("nan")


def record(benchmark, *, target: str | None = None, value: float, unit: str, op: str | None = None,
           threshold: float | None = None, note: str = "", **extra) -> None:
    """Put the figure of a benchmark (and its target, if it has one) into extra_info.

    benches/report.py turns these into the Markdown table: target | median | met?
    """
    info = benchmark.extra_info
    info.update(extra)
    info["value"] = value
    info["unit"] = unit
    info["loadavg_1m"] = round(os.getloadavg()[0], 2)
    if note:
        info["note"] = note
    if target is not None:
        info["target"] = target
        info["op"] = op
        info["threshold"] = threshold
        info["met"] = bool(value >= threshold if op == ">=" else value <= threshold)


def throughput(benchmark, n: int, **kw) -> float:
    """Record n / median seconds as cases/s; returns it."""
    rate = n / median_of(benchmark)
    record(benchmark, value=rate, unit="cases/s", cases=n, median_s=median_of(benchmark), **kw)
    return rate


# Runs argv[1:] as a child and prints its peak RSS. A wrapper process per measurement, so
# RUSAGE_CHILDREN sees exactly one child (it is the max over all children ever waited for).
_RSS_WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "t = time.perf_counter()\n"
    "rc = subprocess.run(sys.argv[1:]).returncode\n"
    "seconds = time.perf_counter() - t\n"
    "print(json.dumps({'rc': rc, 'seconds': seconds,"
    " 'maxrss_kib': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n"
)


def run_measured(script: str, *args: str, timeout: float = 1800) -> dict:
    """Run `python -c script args...` in a fresh process; returns {'seconds', 'peak_rss_mib', 'stdout'}."""
    proc = subprocess.run([sys.executable, "-c", _RSS_WRAPPER, sys.executable, "-c", script, *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=os.environ.copy(), cwd=ROOT)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"measured child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    summary = json.loads(lines[-1])
    if summary["rc"] != 0:
        raise AssertionError(f"measured script failed ({summary['rc']}):\n{proc.stdout}\n{proc.stderr}")
    return {"seconds": summary["seconds"], "peak_rss_mib": summary["maxrss_kib"] / 1024,
            "stdout": "\n".join(lines[:-1])}


def self_peak_rss_mib() -> float:
    """Peak RSS of this (pytest) process so far: holds other benchmarks' data too."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mismatches_against_golden(results: pl.DataFrame, src_ids: pl.Series, expected: pl.DataFrame) -> int:
    """Rows whose status/MDC/ADRG/DRG differ from the golden expected result of their source case."""
    got = results.select(COMPARED).with_columns(src_ids.alias("src_id"))
    joined = got.join(expected, on="src_id", how="left", suffix="_want")
    if joined["status_want"].null_count():
        raise AssertionError("some src_id values are not in the golden expected.csv")
    differ = pl.any_horizontal([pl.col(c).fill_null("") != pl.col(f"{c}_want").fill_null("") for c in COMPARED])
    return int(joined.select(differ.sum()).item())


def parquet_windows(path: Path, columns: list[str], rows: int, window: int = 2_000_000):
    """Consecutive row windows of a Parquet file (bounded memory), as frames."""
    lazy = pl.scan_parquet(path).select(columns)
    for offset in range(0, rows, window):
        yield lazy.slice(offset, window).collect()


def parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows


# --------------------------------------------------------------------------------------------
# the Markdown table (target | median | met?) next to the saved JSON


def pytest_benchmark_update_json(config, benchmarks, output_json):
    out = ROOT / ".benchmarks"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(output_json, indent=2, default=str), encoding="utf-8")
    table = report.render(output_json)
    (out / "report.md").write_text(table, encoding="utf-8")
    config._grouper_report = table


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    table = getattr(config, "_grouper_report", None)
    if table:
        terminalreporter.write_sep("=", "grouper targets (also in .benchmarks/report.md)")
        terminalreporter.write_line(table)
    started = getattr(config, "_grouper_started", None)
    if started is not None:
        terminalreporter.write_line(f"benchmark suite wall time: {time.perf_counter() - started:.0f} s")


def pytest_configure(config):
    config._grouper_started = time.perf_counter()


def national_plan(tables: Path, folder: Path):
    """Import a national table set (../shared/chs-drg-*) into `folder` and load its plan."""
    from grouper.importers.chs_drg import import_chs_drg
    from grouper.scheme import load_scheme

    import_chs_drg(tables, folder)
    return load_scheme(folder).plan


def golden_batch(plan, tables: Path, n: int):
    """The table set's golden cases resampled to n, encoded for `plan` (validation applied)."""
    from grouper.io import cases_from_frame
    from grouper.pipeline import prepare
    from grouper.synth import read_source, resample_cases

    cases = cases_from_frame(resample_cases(read_source(tables / "golden" / "cases.csv"), n, seed=SEED))
    return prepare(plan, cases).batch
