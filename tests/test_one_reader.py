"""Every entry point reads an input the same way (issue 17, item 3): the Python API takes the
reading options `grouper group` takes, and explain_case takes a row as a user reads it."""
from __future__ import annotations

from pathlib import Path

import polars as pl

import grouper
from grouper.explain import explain_case, what_if, Change
from grouper.scheme import load_scheme

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
HEADER = "id,sex,age,los,dx,proc\n"
GOOD = "1,1,40,5,K35.800|J18.900,47.0100\n2,2,30,3,K35.800,\n3,,40,5,K35.800,47.0100\n"


def test_group_and_group_batches_take_skip_rows_and_sheet(tmp_path):
    scheme = load_scheme(MINI)
    titled = tmp_path / "titled.csv"
    titled.write_text("2026年1月出院病人清单\n" + HEADER + GOOD, encoding="utf-8")
    plain = grouper.group(pl.read_csv((HEADER + GOOD).encode(), infer_schema=False), scheme)
    assert grouper.group(titled, scheme, skip_rows=1).equals(plain)
    batches = list(grouper.group_batches(titled, scheme, batch_size=2, skip_rows=1))
    assert pl.concat(batches).equals(plain)

    workbook = tmp_path / "two.xlsx"
    import xlsxwriter

    with xlsxwriter.Workbook(workbook) as book:
        frame = pl.read_csv((HEADER + GOOD).encode(), infer_schema=False)
        frame.head(2).write_excel(book, worksheet="一月")
        frame.tail(1).write_excel(book, worksheet="二月")
    assert grouper.group(workbook, scheme, sheet="二月")["id"].to_list() == ["3"]
    assert grouper.group(workbook, scheme, sheet="all").equals(plain)
    assert pl.concat(grouper.group_batches(workbook, scheme, sheet=2))["id"].to_list() == ["3"]


def test_explain_case_takes_a_row_of_read_csv(tmp_path):
    scheme = load_scheme(MINI)
    path = tmp_path / "cases.csv"
    path.write_text(HEADER + GOOD, encoding="utf-8")
    row = pl.read_csv(path).head(1)  # sex, age, los as integers; dx and proc as |-separated text
    explained = explain_case(scheme, row)
    expected = grouper.group(row, scheme).row(0, named=True)  # the same frame, grouped
    assert (explained.status, explained.drg) == (expected["status"], expected["drg"])
    assert explained.case["dx"] == ["K35.800", "J18.900"]
    scenarios = what_if(scheme, row, [[Change("remove", "dx", "J18.900")]])
    assert scenarios[0].drg == expected["drg"]
