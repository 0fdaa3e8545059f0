"""Fuzz tests (hypothesis): no input crashes a run or loses a row, and no scheme text crashes the
parser or the checks.

- records: random and malformed values (unicode, huge and negative numbers, floats, empty lists,
  None everywhere, odd separators, List columns with null items) go through reading
  (`cases_from_frame`), validation and grouping with the demo pack, the demo pack with every
  built-in check set to `error`, and the mini pack, with both kernels: every row comes out, in
  order, with a consistent status/reason/warnings, and the problems frame is well-formed;
- scheme text: token soup from the grammar's vocabulary, arbitrary text, and token-level mutations of
  the demo scheme go through `parse_text` and `check_scheme` (with the demo tables): only
  SchemeError may come out, every diagnostic points at a line ≥ 1, and a mutated scheme that checks
  clean compiles and groups the demo sample without losing a row. Two crashes it found in
  grouper/lang/check.py are kept as regression tests below.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouper import reasons
from grouper.engine import ir
from grouper.engine.kernel import get_kernel
from grouper.pipeline import group_frame
from grouper.errors import SchemeError
from grouper.io import cases_from_frame, read_cases
from grouper.lang.parse import parse_text
from grouper.scheme import check_scheme, load_scheme
from grouper.validate import QualityReport

DEMO = Path(__file__).resolve().parent.parent / "tables" / "demo"
MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.data_too_large])


def _kernels():
    kernels = [get_kernel("python")]
    try:
        kernels.append(get_kernel("cython"))
    except ImportError:
        pass
    return kernels


KERNELS = _kernels()
RECORDS = settings(FUZZ, max_examples=100)


@pytest.fixture(scope="module")
def plans(tmp_path_factory):
    strict = tmp_path_factory.mktemp("strict")
    for file in DEMO.iterdir():
        if file.is_file():
            shutil.copyfile(file, strict / file.name)
    with (strict / "scheme.grp").open("a", encoding="utf-8") as fh:
        fh.write("\n" + "\n".join(f"validate {code} = error" for code in reasons.CATALOGUE) + "\n")
    return [load_scheme(DEMO).plan, load_scheme(strict).plan, load_scheme(MINI).plan]


# ---- records --------------------------------------------------------------------------------------

CODES = ["J18.900", "K35.800", "P07.300x001", "S06.000", "S27.000", "C56.x00", "47.0100", "39.6500", "51.2300",
         "K80.100x001", "A01.001+K77.0*", "W01.000", "j18.900", "K35.9", ""]
NUMBERS = ["0", "1", "2", "9", "-1", "12.0", "1e9", "99999999999", "-2147483648", "2147483647", "2147483648",
           " 40 ", "0x10", "NaN", "inf", "١٢", "４０", "1,000", "男", "女", "F", "male"]
weird_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
scalar = st.one_of(st.none(), st.sampled_from(NUMBERS), weird_text)
separator = st.sampled_from(["|", ",", "||", " | ", "|,", ";", " ", "\t", ""])


@st.composite
def code_text(draw) -> str | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    items = draw(st.lists(st.one_of(st.sampled_from(CODES), weird_text), max_size=6))
    return draw(separator).join(items)


@st.composite
def code_list(draw) -> list | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    return draw(st.lists(st.one_of(st.none(), st.sampled_from(CODES), weird_text), max_size=6))


@st.composite
def records(draw) -> pl.DataFrame:
    n = draw(st.integers(0, 12))
    list_columns = draw(st.booleans())
    numeric = draw(st.sampled_from([None, pl.Int64, pl.Float64]))
    data: dict[str, pl.Series] = {}
    if draw(st.booleans()):
        data["id"] = pl.Series([draw(st.one_of(st.none(), weird_text)) for _ in range(n)], dtype=pl.String)
    for name in ("sex", "age", "age_days", "weight", "dept", "los", "discharge"):
        if name != "dept" and numeric is not None and draw(st.booleans()):
            if numeric == pl.Int64:
                values = [draw(st.one_of(st.none(), st.integers(-2**63, 2**63 - 1))) for _ in range(n)]
            else:
                values = [draw(st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))) for _ in range(n)]
            data[name] = pl.Series(values, dtype=numeric)
        else:
            data[name] = pl.Series([draw(scalar) for _ in range(n)], dtype=pl.String)
    for name in ("dx", "proc"):
        if list_columns:
            data[name] = pl.Series([draw(code_list()) for _ in range(n)], dtype=pl.List(pl.String))
        else:
            data[name] = pl.Series([draw(code_text()) for _ in range(n)], dtype=pl.String)
    return pl.DataFrame(data)


@RECORDS
@given(raw=records(), which=st.integers(0, 2), kernel=st.sampled_from(KERNELS))
def test_random_records_never_crash_or_lose_rows(plans, raw, which, kernel):
    plan = plans[which]
    cases = cases_from_frame(raw)
    assert cases.height == raw.height
    results, problems = group_frame(plan, cases, kernel=kernel, problems=True)
    assert results.height == raw.height
    assert results["id"].to_list() == cases["id"].to_list()
    if "id" not in raw.columns:
        assert results["id"].to_list() == [str(i + 1) for i in range(raw.height)]
    assert results.columns == ["id", "status", "mdc", "adrg", "drg", "reason", "warnings"]
    assert set(results["status"]) <= set(ir.STATUS_NAMES)
    invalid = results["status"] == "invalid"
    assert (results["reason"].is_not_null() == invalid).all()
    known = set(reasons.CATALOGUE) | set(plan.invalid_names)
    assert set(results["reason"].drop_nulls()) <= known
    assert set(results["warnings"].explode().drop_nulls()) <= set(reasons.CATALOGUE) | set(plan.warn_names)
    assert problems.columns == ["row", "id", "dept", "reason", "level", "detail"]
    assert set(problems["level"]) <= {"error", "warning"}
    assert ((problems["row"] < raw.height).all() if problems.height else True)
    # every blocked case's reason is one of its error problems
    errors = problems.filter(pl.col("level") == "error").group_by("row").agg("reason")
    for row, errs in errors.iter_rows():
        assert results["reason"][row] in errs
    report = QualityReport(plan)
    report.add(cases, problems)
    summary = report.frame()
    assert summary.filter((pl.col("scope") == "all") & (pl.col("reason") == "(any)"))["total"].to_list() == [raw.height]


@RECORDS
@given(raw=records())
def test_random_records_through_a_csv_file(tmp_path_factory, plans, raw):
    """The same through the file reader: the text of the records written as CSV and read back."""
    if raw.height == 0:
        return
    text = raw.with_columns(pl.col(c).cast(pl.List(pl.String)).list.join("|") for c in ("dx", "proc")
                            if isinstance(raw.schema[c], pl.List))
    path = tmp_path_factory.mktemp("csv") / "cases.csv"
    text.write_csv(path)
    try:
        cases = read_cases(path)
    except Exception as exc:  # the reader may refuse a file (InputError) but never crash otherwise
        from grouper.errors import InputError

        assert isinstance(exc, InputError), repr(exc)
        return
    results = group_frame(plans[0], cases)
    assert results.height == cases.height
    assert results["id"].to_list() == cases["id"].to_list()


# ---- scheme text -----------------------------------------------------------------------------------

def _vocabulary() -> list[str]:
    grammar = (Path(__file__).resolve().parent.parent / "grammars" / "scheme.lark").read_text(encoding="utf-8")
    keywords = sorted(set(re.findall(r'"([a-z_]+)"', grammar)))
    return [*keywords, "pdx", "pproc", "any", "no", "dx", "proc", "secondary", "sex", "age", "age_days", "weight",
            "los", "discharge", "dept", "missing", "present", "male", "female", "mdc_dx", "adrg_dx", "cc", "OR",
            "mcc", "MDCX", "XX1", "XX19", "code", "site", "unknown_dx", "error", "warning", "off",
            "{", "}", "(", ")", "[", "]", "=", "!=", "<", "<=", ">", ">=", ",", ".", "..", "|", "&", "*", "#",
            '"x"', '"MDCP"', '""', '"a.csv"', '"mdc_dx.csv"', "0", "1", "-1", "28", "99999999999",
            "\n", "\"unterminated", "中文", "é"]


VOCABULARY = _vocabulary()
HEADER = 'scheme "fuzz" version "1"\n'


def _assert_spans(diagnostics):
    for d in diagnostics:
        assert d.span is not None, d
        assert d.span.line >= 1 and d.span.column >= 1, d


def _parse_only_scheme_errors(text: str):
    try:
        return parse_text(text)
    except SchemeError as exc:
        assert exc.diagnostics
        _assert_spans(exc.diagnostics)
        return None


@FUZZ
@given(tokens=st.lists(st.sampled_from(VOCABULARY), max_size=40), header=st.booleans(),
       glue=st.sampled_from([" ", "\n", "", "  \t"]))
def test_token_soup(tokens, header, glue):
    _parse_only_scheme_errors((HEADER if header else "") + glue.join(tokens))


@FUZZ
@given(text=st.text(max_size=200), header=st.booleans())
def test_arbitrary_text(text, header):
    _parse_only_scheme_errors((HEADER if header else "") + text)


DEMO_TEXT = (DEMO / "scheme.grp").read_text(encoding="utf-8")
TOKEN = re.compile(r'"(?:\\.|[^"\\\n])*"|#[^\n]*|\s+|[A-Za-z_][A-Za-z0-9_]*|-?\d+|\.\.|[<>!]=|.', re.S)
DEMO_TOKENS = TOKEN.findall(DEMO_TEXT)
assert "".join(DEMO_TOKENS) == DEMO_TEXT
SIGNIFICANT = [i for i, t in enumerate(DEMO_TOKENS) if not t.isspace() and not t.startswith("#")]

NUMBERS_AT = [i for i in SIGNIFICANT if re.fullmatch(r"-?\d+", DEMO_TOKENS[i])]

mutation = st.tuples(st.sampled_from(["delete", "insert", "swap", "replace", "duplicate", "number"]),
                     st.integers(0, len(SIGNIFICANT) - 1), st.integers(0, len(SIGNIFICANT) - 1),
                     st.sampled_from(VOCABULARY), st.integers(-2**40, 2**40))


def mutate(ops) -> str:
    tokens = list(DEMO_TOKENS)
    for op, a, b, word, number in ops:
        i, j = SIGNIFICANT[a], SIGNIFICANT[b]
        if op == "delete":
            tokens[i] = ""
        elif op == "insert":
            tokens[i] = f"{word} {tokens[i]}"
        elif op == "swap":
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == "replace":
            tokens[i] = word
        elif op == "number":
            tokens[NUMBERS_AT[a % len(NUMBERS_AT)]] = str(number)
        else:
            tokens[i] = f"{tokens[i]} {tokens[j]}"
    return "".join(tokens)


# Two crashes this fuzz test found in check.py (now fixed), kept as regression tests.
def test_filter_on_a_missing_column_is_a_diagnostic(demo_copy):
    text = DEMO_TEXT.replace('pdx in adrg_dx[adrg = "ES3"]', 'pdx in adrg_dx[nosuch = "ES3"]')
    (demo_copy / "scheme.grp").write_text(text, encoding="utf-8")
    _, diagnostics = check_scheme(demo_copy)
    assert [d.code for d in diagnostics if d.severity == "error"] == ["unknown-column"]


def test_huge_number_is_a_diagnostic(demo_copy):
    (demo_copy / "scheme.grp").write_text(DEMO_TEXT.replace("los >= 13", "los >= 99999999999"), encoding="utf-8")
    _, diagnostics = check_scheme(demo_copy)
    assert [d.code for d in diagnostics if d.severity == "error"] == ["bad-value"]


@pytest.fixture(scope="module")
def demo_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mutated")
    for file in DEMO.glob("*.csv"):
        shutil.copyfile(file, folder / file.name)
    return folder


@pytest.fixture(scope="module")
def demo_cases():
    return read_cases(DEMO / "discharges.csv")


@FUZZ
@given(ops=st.lists(mutation, min_size=1, max_size=3))
def test_mutated_demo_scheme(demo_copy, demo_cases, ops):
    (demo_copy / "scheme.grp").write_text(mutate(ops), encoding="utf-8")
    scheme, diagnostics = check_scheme(demo_copy)  # only SchemeError is caught inside
    _assert_spans(diagnostics)
    if scheme is None or any(d.severity == "error" for d in diagnostics):
        return
    try:
        plan = load_scheme(demo_copy, cache=False).plan
    except SchemeError as exc:
        _assert_spans(exc.diagnostics)
        return
    results = group_frame(plan, demo_cases, kernel=get_kernel("python"))
    assert results["id"].to_list() == demo_cases["id"].to_list()
