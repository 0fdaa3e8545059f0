"""Case validation (病案质控): every catalogue check with a minimal case, severities, warn rules,
code conversion, the warnings column, the problems frame, the quality report and the CLI."""
from __future__ import annotations

import csv
from pathlib import Path

import polars as pl
import pytest

from grouper import reasons
from grouper.cli import main
from grouper.pipeline import group_frame
from grouper.io import cases_from_frame, read_cases
from grouper.scheme import load_scheme
from grouper.validate import DX_FORMAT, PROC_FORMAT, QualityReport, quality_report

DEMO = Path(__file__).resolve().parent.parent / "tables" / "demo"
COLUMNS = ["id", "sex", "age", "age_days", "weight", "dept", "los", "discharge", "dx", "proc"]
BASE = {"id": "c1", "sex": "1", "age": "40", "age_days": None, "weight": None, "dept": "D1", "los": "5",
        "discharge": "1", "dx": "J18.900", "proc": ""}

DX_DICT = ["A00.000", "J18.900", "K35.800", "N80.000", "W01.000", "P07.300", "A01.001+K77.0*"]
PROC_DICT = ["47.0100", "51.2300", "01.6x00"]

SCHEME = """scheme "validation" version "1"
table dx_dict = "dx_dict.csv"
table proc_dict = "proc_dict.csv"
table dx_map = "dx_map.csv" key from
table proc_map = "proc_map.csv" key from
dictionary dx = dx_dict
dictionary proc = proc_dict
{maps}
{extra}
invalid sex_missing "性别缺失 / sex is missing" when sex is missing
warn female_dx_on_male "男性患者使用女性专用诊断 / a female-only diagnosis on a male patient"
    when sex = male and any dx in {{"N80.000"}}
mdc MDCG "digestive" when pdx in {{"K35.800"}} {{
  adrg GD1 "appendectomy" when pproc in {{"47.0100"}} {{
    drg GD19
  }}
}}
mdc MDCE "respiratory" when pdx in {{"J18.900", "A00.000", "W01.000", "N80.000"}} {{
  adrg ES1 "respiratory" when true {{
    drg ES19
  }}
}}
"""


def write_pack(folder: Path, extra: str = "", maps: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dx_dict.csv").write_text("code,name\n" + "".join(f"{c},x\n" for c in DX_DICT), encoding="utf-8")
    (folder / "proc_dict.csv").write_text("code,name\n" + "".join(f"{c},x\n" for c in PROC_DICT), encoding="utf-8")
    (folder / "dx_map.csv").write_text("from,to\nK35.8,K35.800\nJ18.000x001,J18.900\n", encoding="utf-8")
    (folder / "proc_map.csv").write_text("from,to\n47.01,47.0100\n", encoding="utf-8")
    text = SCHEME.format(maps="map dx = dx_map\nmap proc = proc_map" if maps else "", extra=extra)
    (folder / "scheme.grp").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return load_scheme(write_pack(tmp_path_factory.mktemp("plain"))).plan


@pytest.fixture(scope="module")
def mapped(tmp_path_factory):
    return load_scheme(write_pack(tmp_path_factory.mktemp("mapped"), maps=True)).plan


def cases(*rows: dict) -> pl.DataFrame:
    full = [{**BASE, "id": f"c{i + 1}", **row} for i, row in enumerate(rows)]
    return cases_from_frame(pl.DataFrame(full, schema={c: pl.String for c in COLUMNS}))


def run(plan, *rows: dict):
    return group_frame(plan, cases(*rows), problems=True)


def found(problems: pl.DataFrame, row: int = 0) -> set[tuple]:
    return {(r["reason"], r["level"], r["detail"]) for r in problems.filter(pl.col("row") == row).iter_rows(named=True)}


# ---- every catalogue check, with a minimal case ---------------------------------------------------

# reason → (case fields, expected detail)
MINIMAL = {
    "malformed_sex": ({"sex": "x"}, "x"),
    "malformed_age": ({"age": "abc"}, "abc"),
    "malformed_age_days": ({"age_days": "1.5"}, "1.5"),
    "malformed_weight": ({"weight": "heavy"}, "heavy"),
    "malformed_los": ({"los": "5d"}, "5d"),
    "malformed_discharge": ({"discharge": "?"}, "?"),
    "missing_dx": ({"dx": ""}, None),
    "implausible_age": ({"age": "151"}, "151"),
    "implausible_age_days": ({"age": "40", "age_days": "100"}, "100 d / 40 y"),
    "implausible_weight": ({"age": "0", "age_days": "3", "weight": "50", "dx": "P07.300"}, "50"),
    "implausible_los": ({"los": "-2"}, "-2"),
    "unknown_discharge": ({"discharge": "7"}, "7"),
    "bad_dx_format": ({"dx": "J18.900|j18.9"}, "j18.9"),
    "bad_proc_format": ({"proc": "5123"}, "5123"),
    "unknown_dx": ({"dx": "J18.900|B99.999"}, "B99.999"),
    "unknown_proc": ({"proc": "99.9999"}, "99.9999"),
    "unmapped_dx": ({"dx": "J18.900|B99.999"}, "B99.999"),
    "unmapped_proc": ({"proc": "99.9999"}, "99.9999"),
    "not_principal_dx": ({"dx": "W01.000|J18.900"}, "W01.000"),
    "duplicate_dx": ({"dx": "J18.900|A00.000|J18.900"}, "J18.900"),
    "duplicate_proc": ({"proc": "47.0100|47.0100"}, "47.0100"),
}


def test_every_catalogue_code_has_a_minimal_case():
    # the settlement-field checks have theirs in tests/test_payment_fields.py; malformed_line comes
    # from reading a CSV file and cannot be lowered: tests/test_malformed_lines.py
    from grouper.fields import SETTLEMENT_REASONS

    assert set(MINIMAL) | set(SETTLEMENT_REASONS) | reasons.FIXED_LEVEL == set(reasons.CATALOGUE)


def test_a_clean_case_has_no_problem(plain, mapped):
    for plan in (plain, mapped):
        results, problems = run(plan, {})
        assert problems.height == 0
        assert results.row(0) == ("c1", "grouped", "MDCE", "ES1", "ES19", None, [])


@pytest.mark.parametrize("code", list(MINIMAL))
def test_minimal_case_is_reported(plain, mapped, code):
    fields, detail = MINIMAL[code]
    plan = mapped if code.startswith("unmapped") else plain
    results, problems = run(plan, fields)
    level = reasons.CATALOGUE[code].level
    assert (code, level, detail) in found(problems), found(problems)
    row = results.row(0, named=True)
    if level == "error":
        assert (row["status"], row["reason"]) == ("invalid", code)
        assert row["warnings"] == [] or code not in row["warnings"]
    else:
        assert row["status"] != "invalid"
        assert code in row["warnings"]


@pytest.mark.parametrize("code", list(MINIMAL))
def test_validate_error_blocks(tmp_path, code):
    plan = load_scheme(write_pack(tmp_path, f"validate {code} = error", maps=code.startswith("unmapped"))).plan
    fields, detail = MINIMAL[code]
    results, problems = run(plan, fields, {})
    assert (code, "error", detail) in found(problems)
    assert results.select("status", "reason").rows() == [("invalid", code), ("grouped", None)]
    assert code not in results["warnings"][0]


@pytest.mark.parametrize("code", list(MINIMAL))
def test_validate_off_suppresses(tmp_path, code):
    plan = load_scheme(write_pack(tmp_path, f"validate {code} = off", maps=code.startswith("unmapped"))).plan
    results, problems = run(plan, MINIMAL[code][0])
    assert code not in problems["reason"].to_list()
    assert results["reason"][0] != code and code not in results["warnings"][0]


def test_malformed_as_warning_groups_with_the_field_missing(tmp_path):
    plan = load_scheme(write_pack(tmp_path, "validate malformed_los = warning")).plan
    results, problems = run(plan, {"los": "five"}, {"sex": "?"})
    assert results.select("status", "reason").rows() == [("grouped", None), ("invalid", "malformed_sex")]
    assert results["warnings"].to_list() == [["malformed_los"], []]


def test_every_malformed_field_is_reported_and_the_first_blocks(plain):
    results, problems = run(plain, {"age": "x", "los": "y", "sex": "?"})
    assert {r for r, _, _ in found(problems)} == {"malformed_sex", "malformed_age", "malformed_los"}
    assert results["reason"][0] == "malformed_sex"  # catalogue order


def test_built_in_errors_come_before_the_schemes_invalid_rules(tmp_path):
    plan = load_scheme(write_pack(tmp_path, "validate unknown_dx = error\nvalidate duplicate_dx = error")).plan
    results, problems = run(plan, {"sex": None, "dx": "J18.900|B99.999|B99.999"}, {"sex": None})
    assert results["reason"].to_list() == ["unknown_dx", "sex_missing"]
    # the scheme's invalid rule is a problem too (level error), but only where the kernel ran it
    assert found(problems, 1) == {("sex_missing", "error", None)}
    assert ("sex_missing", "error", None) not in found(problems, 0)
    assert ("duplicate_dx", "error", "B99.999") in found(problems, 0)


def test_empty_items(plain):
    # empty pdx: missing_dx only; empty secondary / procedure items: bad format with detail ""
    results, problems = run(plain, {"dx": "|J18.900||", "proc": "|47.0100"})
    assert found(problems) == {("missing_dx", "warning", None), ("bad_dx_format", "warning", ""),
                               ("bad_proc_format", "warning", "")}
    assert results["warnings"].to_list()[0] == ["missing_dx", "bad_dx_format", "bad_proc_format"]


def test_age_and_weight_plausibility(plain):
    rows = [{"age": "0", "age_days": "400", "weight": "3000", "dx": "P07.300"},  # infant of 400 days
            {"age": "2", "age_days": "800"},                                      # fine
            {"age": "0", "age_days": "3", "weight": "0", "dx": "P07.300"},         # weight 0: warned, grouped
            {"age": "-1"}, {"age_days": "-3", "age": None}]
    results, problems = run(plain, *rows)
    assert ("implausible_age_days", "warning", "400 d / 0 y") in found(problems, 0)
    assert found(problems, 1) == set()
    assert found(problems, 2) == {("implausible_weight", "warning", "0")}
    assert ("implausible_age", "warning", "-1") in found(problems, 3)
    assert ("implausible_age_days", "warning", "-3 d") in found(problems, 4)


def test_not_principal_dx(plain):
    _, problems = run(plain, {"dx": "A01.001+K77.0*"}, {"dx": "K77.0*|J18.900"}, {"dx": "J18.900|W01.000"},
                      {"dx": "Y99.000"})
    assert "not_principal_dx" not in {r for r, _, _ in found(problems, 0)}  # dagger/asterisk pair
    assert ("not_principal_dx", "warning", "K77.0*") in found(problems, 1)
    assert "not_principal_dx" not in {r for r, _, _ in found(problems, 2)}  # only the principal counts
    assert "not_principal_dx" not in {r for r, _, _ in found(problems, 3)}  # Y99 is not V01-Y98


# ---- scheme warn rules ----------------------------------------------------------------------------

def test_warn_rule(plain):
    results, problems = run(plain, {"dx": "J18.900|N80.000"}, {"sex": "2", "dx": "J18.900|N80.000"},
                            {"sex": "abc", "dx": "N80.000"})
    assert found(problems, 0) == {("female_dx_on_male", "warning", None)}
    assert found(problems, 1) == set()
    assert results["status"].to_list()[:2] == ["grouped", "grouped"]
    assert results["warnings"].to_list()[:2] == [["female_dx_on_male"], []]
    # a blocked case is still checked by the warn rules (with its unreadable field missing)
    assert results["status"][2] == "invalid" and ("female_dx_on_male", "warning", None) not in found(problems, 2)


# ---- code conversion ----------------------------------------------------------------------------

def test_code_conversion(mapped):
    results, problems = run(mapped, {"dx": "K35.8|J18.000x001|B99.999", "proc": "47.01|51.2300|99.9999"},
                            {"dx": "K35.800", "proc": "47.0100"})
    assert results.select("status", "drg").rows() == [("grouped", "GD19"), ("grouped", "GD19")]
    assert {p for p in found(problems) if p[0].startswith("unmapped")} == {
        ("unmapped_dx", "warning", "B99.999"), ("unmapped_proc", "warning", "99.9999")}
    assert found(problems, 1) == set()  # dictionary codes need no entry
    # the converted codes are what the other checks see: only the unmapped ones are unknown
    assert {p for p in found(problems) if p[0].startswith("unknown")} == {
        ("unknown_dx", "warning", "B99.999"), ("unknown_proc", "warning", "99.9999")}


def test_without_maps_codes_are_not_converted(plain):
    results, problems = run(plain, {"dx": "K35.8", "proc": "47.01"})
    assert results["status"][0] == "ungroupable"
    assert "unmapped_dx" not in problems["reason"].to_list()


# ---- results, problems frame, quality report --------------------------------------------------------

def test_warnings_column_and_problem_frame_shape(plain):
    results, problems = run(plain, {"dx": "J18.900|J18.900|j18", "dept": "ICU"}, {}, {"sex": None, "dept": None})
    assert results.columns == ["id", "status", "mdc", "adrg", "drg", "reason", "warnings"]
    assert results.schema["warnings"] == pl.List(pl.String)
    assert results["warnings"].to_list() == [["bad_dx_format", "unknown_dx", "duplicate_dx"], [], []]
    assert problems.columns == ["row", "id", "dept", "reason", "level", "detail"]
    assert problems.schema["row"] == pl.UInt32
    assert problems.select("row", "id", "dept", "reason").rows() == [
        (0, "c1", "ICU", "bad_dx_format"), (0, "c1", "ICU", "unknown_dx"), (0, "c1", "ICU", "duplicate_dx"),
        (2, "c3", None, "sex_missing")]
    assert group_frame(plain, cases({})).columns == results.columns


def test_quality_report_counts_by_dept(plain):
    rows = [{"dept": "A", "dx": "J18.900|J18.900"}, {"dept": "A", "dx": "J18.900|J18.900|B99.999"},
            {"dept": "B", "sex": None}, {"dept": "B"}, {"dept": None, "dx": "B99.999"}]
    frame = cases(*rows)
    _, problems = group_frame(plain, frame, problems=True)
    report = quality_report(plain, frame, problems)
    assert report.columns == ["scope", "dept", "reason", "level", "value", "cases", "total", "percent", "message_zh",
                              "message_en"]
    table = {(r["scope"], r["dept"], r["reason"]): (r["cases"], r["total"]) for r in report.iter_rows(named=True)}
    assert table[("all", None, "(any)")] == (4, 5)
    assert table[("all", None, "duplicate_dx")] == (2, 5)
    assert table[("all", None, "unknown_dx")] == (2, 5)
    assert table[("all", None, "sex_missing")] == (1, 5)
    assert table[("dept", "A", "(any)")] == (2, 2)
    assert table[("dept", "B", "(any)")] == (1, 2)
    assert table[("dept", "B", "sex_missing")] == (1, 2)
    assert table[("dept", None, "unknown_dx")] == (1, 1)
    messages = {r["reason"]: (r["message_zh"], r["message_en"]) for r in report.iter_rows(named=True)}
    assert messages["duplicate_dx"] == ("诊断编码重复", "a diagnosis code is listed twice")
    assert messages["sex_missing"] == ("性别缺失", "sex is missing")  # a scheme rule's "zh / en" message
    # batch by batch gives the same as all at once
    streamed = QualityReport(plain)
    for start in range(0, frame.height, 2):
        part = frame.slice(start, 2)
        streamed.add(part, group_frame(plain, part, problems=True)[1])
    assert streamed.frame().equals(report)


def test_quality_report_without_problems(plain):
    frame = cases({}, {"dept": "X"})
    report = quality_report(plain, frame, group_frame(plain, frame, problems=True)[1])
    assert report.select("scope", "dept", "reason", "cases", "total").rows() == [
        ("all", None, "(any)", 0, 2), ("dept", "D1", "(any)", 0, 1), ("dept", "X", "(any)", 0, 1)]


def test_cli_report(tmp_path, capsys):
    pack = write_pack(tmp_path / "pack")
    src = tmp_path / "cases.csv"
    src.write_text("id,sex,age,dept,dx,proc\n1,1,40,A,J18.900|J18.900,\n2,,40,B,J18.900,\n3,1,40,A,J18.900,\n",
                   encoding="utf-8")
    for name in ("report.csv", "report.parquet", "report.xlsx"):
        assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(pack),
                     "--report", str(tmp_path / name), "--batch-size", "2"]) == 0
    err = capsys.readouterr().err
    assert "Quality report" in err and "duplicate_dx" in err and "sex_missing" in err
    report = pl.read_csv(tmp_path / "report.csv", infer_schema=False)
    assert pl.read_parquet(tmp_path / "report.parquet").height == report.height == pl.read_excel(
        tmp_path / "report.xlsx").height
    rows = {(r["scope"], r["dept"], r["reason"]): r["cases"] for r in report.iter_rows(named=True)}
    assert rows[("all", None, "(any)")] == "2" and rows[("dept", "A", "duplicate_dx")] == "1"
    results = pl.read_csv(tmp_path / "r.csv", infer_schema=False)
    assert results["warnings"].fill_null("").to_list() == ["duplicate_dx", "", ""]
    # -q: no tables; a report with an unknown extension is an input error
    assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(pack), "-q",
                 "--report", str(tmp_path / "q.csv")]) == 0
    assert capsys.readouterr().err == ""
    assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(pack),
                 "--report", str(tmp_path / "report.txt")]) == 3


# ---- the demo pack -------------------------------------------------------------------------------

def test_demo_warnings_are_as_expected():
    """expected.csv's `warnings` column (derived by hand) is what the demo scheme reports."""
    with open(DEMO / "expected.csv", encoding="utf-8", newline="") as f:
        expected = {r["id"]: r["warnings"].split("|") if r["warnings"] else [] for r in csv.DictReader(f)}
    results = group_frame(load_scheme(DEMO).plan, read_cases(DEMO / "discharges.csv"))
    assert dict(zip(results["id"], results["warnings"].to_list())) == expected


# ---- the national tables ---------------------------------------------------------------------------

def test_code_formats_fit_the_dictionaries(chs_tables):
    for file, pattern in (("dx_dict.csv", DX_FORMAT), ("proc_dict.csv", PROC_FORMAT)):
        codes = pl.read_csv(chs_tables / file, infer_schema=False)["code"]
        assert codes.str.contains(pattern).mean() >= 0.999, file
        assert codes.str.contains(pattern).all(), codes.filter(~codes.str.contains(pattern)).head(5).to_list()
    garbage = pl.Series(["", "j18.900", "J18.9", "J18", "J18.9001", "J18.900x01", "J18.900+", "XYZ", "51.23",
                         "5123", "51.2300x01", "N/A", "-", "0", "J18.900 ", " 51.2300", "51.2300|", "Ｊ18.900"])
    assert not garbage.str.contains(DX_FORMAT).any()
    assert not garbage.str.contains(PROC_FORMAT).any()


def test_national_pack_warnings(chs_pack, chs_scheme, golden_cases):
    sex_table = pl.read_csv(chs_pack / "sex_specific_dx.csv", infer_schema=False)
    lists = pl.read_csv(chs_pack / "mdc_dx.csv", infer_schema=False)
    both = set(lists.filter(pl.col("mdc") == "MDCM")["code"]) & set(lists.filter(pl.col("mdc") == "MDCN")["code"])
    assert both and not both & set(sex_table["code"])  # codes of both sexes' lists are neither
    assert set(sex_table["sex"]) == {"1", "2"}
    assert chs_scheme.plan.warn_names == ["female_dx_on_male", "male_dx_on_female", "newborn_dx_on_adult"]
    results, problems = group_frame(chs_scheme.plan, golden_cases, problems=True)
    counts = dict(problems.group_by("reason").agg(pl.col("row").n_unique()).iter_rows())
    assert counts["female_dx_on_male"] > 0 and counts["male_dx_on_female"] > 0 and counts["newborn_dx_on_adult"] > 0
    # defaults never block: the only invalid cases are the reference's (the scheme's invalid rules)
    assert set(problems.filter(pl.col("level") == "error")["reason"]) <= set(chs_scheme.plan.invalid_names)
    assert results.filter(pl.col("status") == "invalid").height == 244


def test_national_pack_with_maps(chs_tables, tmp_path, golden_cases):
    from grouper.importers.chs_drg import import_chs_drg
    from grouper.scheme import check_scheme

    import_chs_drg(chs_tables, tmp_path / "pack", with_maps=True)
    text = (tmp_path / "pack" / "scheme.grp").read_text(encoding="utf-8")
    assert "map dx = dx_map" in text and "map proc = proc_map" in text
    _, diagnostics = check_scheme(tmp_path / "pack")
    assert not [d for d in diagnostics if d.severity == "error"]
    plan = load_scheme(tmp_path / "pack").plan
    results, problems = group_frame(plan, golden_cases, problems=True)
    expected = pl.read_csv(chs_tables / "golden" / "expected.csv", infer_schema=False)
    changed = expected.join(results, on="id", suffix="_got").filter(pl.any_horizontal(
        pl.col(c).fill_null("") != pl.col(f"{c}_got").fill_null("") for c in ("status", "mdc", "adrg", "drg")))
    # the maps are not the identity (4,388 dx and 560 proc entries change the code): 10 golden cases
    # group differently after conversion, the rest exactly as the reference (which does not convert)
    assert changed.height == 10
    assert {"unmapped_dx", "unmapped_proc"} <= set(problems["reason"])
