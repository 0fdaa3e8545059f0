"""Wide exports as hospitals write them (issue 17, item 1): every spelling of grouper.headers is
read, every column that feeds nothing is listed, and a code column of an unknown spelling is an
error until the user maps it, never silently lost diagnoses."""
from __future__ import annotations

import polars as pl
import pytest

from grouper import io
from grouper.cli import main
from grouper.errors import InputError
from grouper.scheme import load_scheme

APPENDICITIS = ("K35.300", "E87.600", "47.0901")  # demo pack: GD13 with the CC E87.600, GD15 without


def wide(tmp_path, other_header: str, *, principal="主要诊断编码", extra: dict | None = None):
    row = {"病案号": "A1", "性别": "1", "年龄": "30", principal: APPENDICITIS[0], other_header: APPENDICITIS[1],
           "主要手术操作编码": APPENDICITIS[2], "住院天数": "5", "离院方式": "1", **(extra or {})}
    path = tmp_path / "wide.csv"
    pl.DataFrame([row]).write_csv(path)
    return path


@pytest.mark.parametrize("header", ["其他诊断编码1", "其它诊断编码1", "次要诊断编码1", "其他诊断1", "其他诊断编码_1",
                                    "其他诊断编码(1)", "其他诊断编码（1）", "其他诊断编码 1", "其他诊断代码1",
                                    "出院其他诊断编码1", "其他诊断编码"])
def test_other_diagnosis_spellings_are_read(tmp_path, header):
    cases = io.read_cases(wide(tmp_path, header))
    assert cases["dx"].to_list() == [list(APPENDICITIS[:2])]
    import grouper

    assert grouper.group(wide(tmp_path, header))["drg"].to_list() == ["GD13"]


def test_a_cell_of_several_other_codes(tmp_path):
    path = wide(tmp_path, "其他诊断编码")
    frame = pl.read_csv(path, infer_schema=False).with_columns(pl.lit("E87.600，I10.x00|J18.900").alias("其他诊断编码"))
    assert io.cases_from_frame(frame)["dx"].to_list() == [["K35.300", "E87.600", "I10.x00", "J18.900"]]


def test_hqms_first_page_columns(tmp_path):
    frame = pl.DataFrame([{"BAH": "1", "XB": "2", "NL": "40", "JBDM": "K35.300", "JBDM1": "E87.600",
                           "JBDM2": "I10.x00", "SSJCZBM1": "47.0901", "SSJCZBM2": "54.5100"}])
    cases = io.cases_from_frame(frame)
    assert cases.select("id", "sex", "age", "dx", "proc").rows() == [
        ("1", "2", "40", ["K35.300", "E87.600", "I10.x00"], ["47.0901", "54.5100"])]


def test_settlement_list_procedure_spellings(tmp_path):
    frame = pl.DataFrame([{"主要诊断编码": "K35.300", "主要手术及操作编码": "47.0901", "其他手术及操作编码1": "54.5100",
                           "其他手术及操作编码2": "45.1300"}])
    assert io.cases_from_frame(frame)["proc"].to_list() == [["47.0901", "54.5100", "45.1300"]]


def test_unused_columns_are_listed(tmp_path, capsys):
    seen = []
    path = wide(tmp_path, "其他诊断编码1", extra={"姓名": "张三", "其他诊断1": "低钾血症", "入院诊断编码": "K35.300"})
    io.read_cases(path, on_unused=seen.append)
    assert seen == [("姓名", "其他诊断1", "入院诊断编码")]  # 其他诊断1 beside 其他诊断编码1: the names
    report = tmp_path / "report.csv"
    assert main(["group", str(path), "-o", str(tmp_path / "r.csv"), "--report", str(report)]) == 0
    assert "input columns not used (3): 姓名, 其他诊断1, 入院诊断编码" in capsys.readouterr().err
    rows = pl.read_csv(report, infer_schema=False).filter(pl.col("scope") == "input")
    assert rows.select("reason", "value").rows() == [("unused_column", "姓名"), ("unused_column", "其他诊断1"),
                                                     ("unused_column", "入院诊断编码")]


def test_an_unknown_code_column_is_an_error_until_mapped(tmp_path, capsys):
    path = wide(tmp_path, "附加诊断编码1")
    with pytest.raises(InputError, match="附加诊断编码1 look like diagnosis or procedure codes"):
        io.read_cases(path)
    out = tmp_path / "r.csv"
    assert main(["group", str(path), "-o", str(out), "-q"]) == 3
    assert "--column other_dx=" in capsys.readouterr().err and not out.exists()
    # mapped as the other diagnoses (the stem of the numbered columns, or the header itself)
    for stem in ("附加诊断编码", "附加诊断编码1"):
        assert io.read_cases(path, columns={"other_dx": stem})["dx"].to_list() == [list(APPENDICITIS[:2])]
    assert main(["group", str(path), "-o", str(out), "-q", "--column", "other_dx=附加诊断编码"]) == 0
    assert pl.read_csv(out)["drg"].to_list() == ["GD13"]
    # or left out on purpose: then it is listed as unused
    seen = []
    cases = io.read_cases(path, columns={"ignore": "附加诊断编码1"}, on_unused=seen.append)
    assert cases["dx"].to_list() == [["K35.300"]] and seen == [("附加诊断编码1",)]


def test_an_unknown_procedure_column_is_an_error(tmp_path):
    path = wide(tmp_path, "其他诊断编码1", extra={"介入操作编码1": "00.6600"})
    with pytest.raises(InputError, match="介入操作编码1"):
        io.read_cases(path)
    assert io.read_cases(path, columns={"other_proc": "介入操作编码"})["proc"].to_list() == [["47.0901", "00.6600"]]


def test_grouping_the_issue_example_under_the_demo_pack(tmp_path):
    """K35.300 + E87.600 from an export spelling 其它 lands in GD13, not GD15 (the CC was dropped)."""
    import grouper

    results = grouper.group(wide(tmp_path, "其它诊断编码1"), load_scheme(None))
    assert results.select("status", "drg").rows() == [("grouped", "GD13")]


def test_the_docs_list_every_spelling():
    """docs/commands.md's tables are the table of grouper.headers, spelling for spelling."""
    from pathlib import Path

    from grouper.headers import DX_FAMILIES, PROC_FAMILIES, SPELLINGS

    docs = (Path(__file__).resolve().parents[1] / "docs" / "commands.md").read_text(encoding="utf-8").lower()
    fields = ("id", "sex", "age", "age_days", "weight", "dept", "los", "discharge", "dx", "proc")
    spellings = [s for f in fields for s in SPELLINGS[f]]
    spellings += [s for family in DX_FAMILIES + PROC_FAMILIES
                  for s in family.principal_headers + family.other_stems + family.numbered_stems]
    missing = [s for s in spellings if f" {s}," not in docs and f" {s} |" not in docs and f"| {s}," not in docs]
    assert not missing


def test_unused_columns_are_listed_for_a_dip_pack_too(tmp_path, capsys):
    from pathlib import Path

    dip_demo = Path(__file__).resolve().parents[1] / "tables" / "dip-demo"
    path = wide(tmp_path, "其他诊断编码1", extra={"姓名": "张三"})
    assert main(["group", str(path), "-o", str(tmp_path / "r.csv"), "--scheme", str(dip_demo)]) == 0
    assert "input columns not used (1): 姓名" in capsys.readouterr().err
