"""Batch encoding and results: no lost rows, bad values become statuses, never crashes."""
from pathlib import Path

import polars as pl
import pytest

from grouper.engine.kernel import get_kernel
from grouper.engine.encode import encode_cases
from grouper.pipeline import group_frame
from grouper.io import cases_from_frame
from grouper.scheme import load_scheme

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
KERNELS = ["python", "cython"]


@pytest.fixture(scope="module")
def mini():
    return load_scheme(MINI).plan


def frame(rows):
    cols = ["id", "sex", "age", "age_days", "weight", "dept", "los", "discharge", "dx", "proc"]
    return cases_from_frame(pl.DataFrame([dict(zip(cols, r)) for r in rows], schema={c: pl.String for c in cols}))


def kernel(name):
    try:
        return get_kernel(name)
    except ImportError:
        pytest.skip("Cython kernel not built")


@pytest.mark.parametrize("kname", KERNELS)
def test_mini_groups(mini, kname):
    cases = frame([
        ("appendix+mcc", "1", "40", None, None, None, "5", "1", "K35.800|J18.900", "47.0100"),
        ("appendix+cc", "2", "40", None, None, None, "5", "1", "K35.800|K80.100x001", "47.0100"),
        ("appendix", "2", "40", None, None, None, "5", "1", "K35.800", "47.0100"),
        ("gall tags 2", "1", "50", None, None, None, "14", "1", "K80.100x001", "99.9999|51.2300"),
        ("gall tags 1&3 short", "1", "50", None, None, None, "3", "1", "K80.100x001", "51.2200|47.0100"),
        ("gall medical", "1", "50", None, None, "OTHER", "3", "1", "K80.100x001", ""),
        ("gall medical child", "1", "10", None, None, None, "3", "1", "K80.100x001", ""),
        ("gall medical icu", "1", "50", None, None, "ICU", "3", "1", "K80.100x001", ""),
        ("trauma 2 sites", "1", "30", None, None, None, "3", "1", "S06.000|S27.000", ""),
        ("trauma 1 site", "1", "30", None, None, None, "3", "1", "S06.000|S06.000", ""),
        ("lung child", "1", "5", "2000", None, None, "3", "1", "J18.900", ""),
        ("lung adult", "1", "50", "2000", None, None, "3", "1", "J18.900", ""),
        ("no sex", None, "50", None, None, None, "3", "1", "J18.900", ""),
        ("bad age", "1", "abc", None, None, None, "3", "1", "J18.900", ""),
        ("word sex", "男", "12.0", "1", None, None, "3", "1", "J18.900", ""),
    ])
    res = group_frame(mini, cases, kernel=kernel(kname))
    got = {r["id"]: (r["status"], r["drg"] or r["mdc"], r["reason"]) for r in res.iter_rows(named=True)}
    assert got == {
        "appendix+mcc": ("grouped", "GD11", None),
        "appendix+cc": ("grouped", "GD13", None),
        "appendix": ("grouped", "GD15", None),
        "gall tags 2": ("grouped", "HC12", None),
        "gall tags 1&3 short": ("grouped", "HC15", None),
        "gall medical": ("grouped", "GZ19", None),
        "gall medical child": ("no_adrg", "MDCG", None),
        "gall medical icu": ("no_adrg", "MDCG", None),
        "trauma 2 sites": ("grouped", "ZZ19", None),
        "trauma 1 site": ("ungroupable", None, None),
        "lung child": ("grouped", "ES19", None),
        "lung adult": ("no_adrg", "MDCE", None),
        "no sex": ("invalid", None, "sex_missing"),
        "bad age": ("invalid", None, "malformed_age"),
        "word sex": ("grouped", "ES19", None),
    }


def test_mcc_excluded_by_own_table(mini):
    # J18.900 is an MCC in exclusion table T1, and J18.900 as pdx excludes T1.
    cases = frame([("x", "1", "40", None, None, None, "5", "1", "J18.900|J18.900", "")])
    batch = encode_cases(mini, cases)
    assert batch.dx_codes.tolist()[0] == batch.dx_codes.tolist()[1] != 0


@pytest.mark.parametrize("kname", KERNELS)
def test_row_count_and_order_kept_for_garbage(mini, kname):
    rows = [(str(i), s, a, d, w, None, l, None, dx, px) for i, (s, a, d, w, l, dx, px) in enumerate([
        ("", "", "", "", "", "", ""), ("9", "-1", "x", "1e9", "", "|||", "|"), ("1", "99999999999", "0", "0", "",
                                                                                   "K35.800", "47.0100"),
        (None, None, None, None, None, None, None), ("2", " 40 ", " 3 ", "", "7.5", "k35.800", "47.0100"),
    ])]
    res = group_frame(mini, frame(rows), kernel=kernel(kname))
    assert res["id"].to_list() == [str(i) for i in range(5)]
    assert res["status"].to_list() == ["invalid", "invalid", "invalid", "invalid", "invalid"]
    assert res["reason"].to_list() == ["sex_missing", "malformed_age_days", "malformed_age", "sex_missing",
                                       "malformed_los"]


def test_empty_frame(mini):
    res = group_frame(mini, frame([]))
    assert res.height == 0 and res.columns == ["id", "status", "mdc", "adrg", "drg", "reason", "warnings"]


def test_codes_are_compared_exactly(mini):
    cases = frame([("lower", "1", "40", None, None, None, "5", "1", "k35.800", "47.0100"),
                   ("space", "1", "40", None, None, None, "5", "1", " K35.800", "47.0100")])
    assert group_frame(mini, cases)["status"].to_list() == ["ungroupable", "ungroupable"]


def test_a_scheme_naming_no_code_groups(tmp_path):
    """Regression (issue 18): a scheme that names no code at all (every condition on fields) passed
    `check` but `group` raised a Polars SchemaError while interning codes (str joined with null)."""
    (tmp_path / "scheme.grp").write_text('scheme "fields only" version "1"\n'
                                         'mdc MDCA when age >= 0 { adrg A1 when true { drg A19 "all" } }\n',
                                         encoding="utf-8")
    plan = load_scheme(tmp_path).plan
    assert plan.codes == []
    cases = frame([("a", "1", "40", None, None, None, "5", "1", "K35.800", "47.0100"),
                   ("b", "1", None, None, None, None, "5", "1", "", "")])
    for name in KERNELS:
        got = group_frame(plan, cases, kernel=kernel(name)).select("status", "drg").rows()
        assert got == [("grouped", "A19"), ("ungroupable", None)]   # a missing age enters no MDC
