"""The shipped demo pack (tables/demo): it checks clean, and groups its sample as expected.

tables/demo/expected.csv holds the expected result of every case of tables/demo/discharges.csv,
derived by hand from the rules in tables/demo/scheme.grp (its `note` column says why). It is not
grouper output: a mismatch means the engine, the scheme or the expectation is wrong.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

import polars as pl
import pytest

from grouper.engine import _kernel_py
from grouper.io import CANONICAL_COLUMNS, read_cases
from grouper.pipeline import group_frame
from grouper.scheme import check_scheme, load_scheme, scheme_path

DEMO = Path(__file__).resolve().parent.parent / "tables" / "demo"
RESULT_COLUMNS = ("status", "mdc", "adrg", "drg", "reason")
STATUSES = {"grouped", "no_adrg", "ungroupable", "invalid"}


def _rows(name: str) -> list[dict[str, str]]:
    with open(DEMO / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _kernels():
    """The Python reference kernel always; the Cython kernel when it is built."""
    yield pytest.param(_kernel_py, id="python")
    try:
        from grouper import _kernel
    except ImportError:
        if os.environ.get("GROUPER_REQUIRE_EXTENSION", "") not in ("", "0"):
            raise
        yield pytest.param(None, id="cython", marks=pytest.mark.skip(reason="Cython kernel not built"))
    else:
        yield pytest.param(_kernel, id="cython")


@pytest.fixture(scope="module")
def scheme():
    return load_scheme(DEMO)


@pytest.fixture(scope="module")
def expected() -> dict[str, dict[str, str]]:
    return {row["id"]: row for row in _rows("expected.csv")}


def _group(scheme, kernel) -> dict[str, dict[str, str]]:
    results = group_frame(scheme.plan, read_cases(DEMO / "discharges.csv"), kernel=kernel)
    return {row["id"]: {c: row[c] or "" for c in RESULT_COLUMNS} for row in results.iter_rows(named=True)}


# ---- the pack itself --------------------------------------------------------------------------

def test_demo_checks_clean(scheme):
    assert [d.render() for d in scheme.diagnostics] == []
    ast, found = check_scheme(DEMO)
    assert ast is not None
    assert [d.render() for d in found] == []


def test_demo_is_the_default_pack():
    # The installed package ships a copy of tables/demo: the same files, maybe another place.
    default = scheme_path(None)
    assert default.read_bytes() == (DEMO / "scheme.grp").read_bytes()
    for table in DEMO.glob("*.csv"):
        assert (default.parent / table.name).read_bytes() == table.read_bytes()
    assert load_scheme().plan.name == "演示方案 Demo"


def test_demo_shape(scheme):
    plan = scheme.plan
    assert (plan.name, plan.version) == ("演示方案 Demo", "2026.1")
    assert plan.mdc_codes == ["MDCA", "MDCP", "MDCZ", "MDCN", "MDCE", "MDCG", "MDCH"]
    assert plan.invalid_names == ["sex_missing", "sex_invalid", "age_missing", "age_days_missing",
                                  "birth_weight_missing"]
    assert len(plan.drg_codes) == len(set(plan.drg_codes))
    for mdc in scheme.ast.mdcs:
        for adrg in mdc.adrgs:
            assert adrg.drgs[-1].cond is None, adrg.code
            assert all(drg.code.startswith(adrg.code[:2]) for drg in adrg.drgs), adrg.code


def test_pack_files_are_flat_and_declared(scheme):
    # The package data globs are */*.grp and */*.csv: nothing may sit in a subfolder.
    assert [p.name for p in DEMO.iterdir() if p.is_dir() and p.name != "__pycache__"] == []
    declared = {t.file for t in scheme.ast.tables}
    assert declared <= {p.name for p in DEMO.glob("*.csv")}
    assert {p.name for p in DEMO.glob("*.csv")} - declared == {"discharges.csv", "expected.csv", "history.csv"}  # sample inputs, not tables


def test_table_codes_are_in_the_dictionaries():
    """Every code of every table is in its dictionary, and a `name` column agrees with it."""
    dx = {r["code"]: r["name"] for r in _rows("dx_dict.csv")}
    proc = {r["code"]: r["name"] for r in _rows("proc_dict.csv")}
    tables = {"mdc_dx.csv": ("code", dx), "adrg_dx.csv": ("code", dx), "cc.csv": ("code", dx),
              "cc_exclusion.csv": ("pdx", dx), "adrg_proc.csv": ("code", proc), "or_proc.csv": ("code", proc)}
    for name, (key, dictionary) in tables.items():
        rows = _rows(name)
        assert rows, name
        for row in rows:
            assert row[key] in dictionary, (name, row)
            assert row["name"] == dictionary[row[key]], (name, row)
    assert len(dx) == len(_rows("dx_dict.csv")) and len(proc) == len(_rows("proc_dict.csv"))


# ---- the sample -------------------------------------------------------------------------------

def test_sample_is_canonical(expected):
    with open(DEMO / "discharges.csv", encoding="utf-8", newline="") as f:
        header = next(csv.reader(f))
    assert tuple(header) == CANONICAL_COLUMNS
    ids = [r["id"] for r in _rows("discharges.csv")]
    assert len(ids) == len(set(ids))
    assert 60 <= len(ids) <= 100
    assert sorted(ids) == sorted(expected)
    assert {row["status"] for row in expected.values()} == STATUSES


@pytest.mark.parametrize("kernel", list(_kernels()))
def test_sample_groups_as_expected(scheme, expected, kernel):
    got = _group(scheme, kernel)
    assert list(got) == [r["id"] for r in _rows("discharges.csv")]  # one result per case, in order
    wrong = {}
    for case_id, want in expected.items():
        want_result = {c: want[c] for c in RESULT_COLUMNS}
        if got[case_id] != want_result:
            wrong[case_id] = {"got": got[case_id], "expected": want_result, "why": want["note"]}
    assert wrong == {}


def test_sample_covers_every_group(scheme, expected):
    got = _group(scheme, _kernel_py)
    grouped = [r for r in got.values() if r["status"] == "grouped"]
    assert sorted({r["drg"] for r in grouped}) == sorted(scheme.plan.drg_codes)
    assert sorted({r["adrg"] for r in grouped}) == sorted(scheme.plan.adrg_codes)
    assert sorted({r["mdc"] for r in grouped}) == sorted(scheme.plan.mdc_codes)
    # every input check fires at least once, and a malformed field is caught while reading
    reasons = {r["reason"] for r in got.values() if r["status"] == "invalid"}
    assert set(scheme.plan.invalid_names) | {"malformed_age"} <= reasons


def test_expected_file_is_consistent(scheme, expected):
    """The hand-written expectations use only codes of the scheme, and in the right hierarchy."""
    drg_parent = {d.code: (m.code, a.code) for m in scheme.ast.mdcs for a in m.adrgs for d in a.drgs}
    for case_id, row in expected.items():
        assert row["status"] in STATUSES, case_id
        if row["status"] == "grouped":
            assert drg_parent[row["drg"]] == (row["mdc"], row["adrg"]), case_id
        else:
            assert row["adrg"] == row["drg"] == "", case_id
        if row["status"] == "no_adrg":
            assert row["mdc"] in scheme.plan.mdc_codes, case_id
        elif row["status"] != "grouped":
            assert row["mdc"] == "", case_id
        assert (row["reason"] != "") == (row["status"] == "invalid"), case_id
        assert row["note"], case_id


def test_sample_reads_as_documented():
    cases = read_cases(DEMO / "discharges.csv")
    by_id = {row["id"]: row for row in cases.iter_rows(named=True)}
    assert by_id["U04"]["dx"] == [""]            # empty diagnosis: principal diagnosis ""
    assert by_id["P01"]["proc"] == []            # no procedures
    assert by_id["I04"]["age"] == "abc"          # kept as text; rejected when grouping
    assert cases.schema["dx"] == pl.List(pl.String)
