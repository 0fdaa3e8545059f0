"""What `grouper group` says about a run on stderr, and records in its output (issue 7, defect 9
and the "Also" list)."""
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from grouper.cli import main
from grouper.io import read_cases
from grouper.scheme import content_hash, scheme_path

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
HEADER = "id,sex,age,los,dx,proc\n"
ROWS = ["1,1,40,5,K35.800|J18.900,47.0100", "2,2,30,3,K35.800,", "3,1,40,5,K35.800,47.0100"]


def workbook(path: Path) -> Path:
    import xlsxwriter

    frame = pl.read_csv((HEADER + "\n".join(ROWS)).encode(), infer_schema=False)
    with xlsxwriter.Workbook(path) as book:
        frame.head(2).write_excel(book, worksheet="一月")
        frame.tail(1).write_excel(book, worksheet="二月")
    return path


def test_a_workbook_with_several_sheets_says_so(tmp_path, capsys):
    book = workbook(tmp_path / "cases.xlsx")
    assert main(["group", str(book), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q"]) == 0
    assert pl.read_csv(tmp_path / "r.csv").height == 2
    err = capsys.readouterr().err
    assert "2 sheets (一月, 二月)" in err and "--sheet all" in err
    assert main(["group", str(book), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q", "--sheet", "all"]) == 0
    assert pl.read_csv(tmp_path / "r.csv", infer_schema=False)["id"].to_list() == ["1", "2", "3"]
    assert "sheets" not in capsys.readouterr().err
    assert read_cases(book, sheet="二月")["id"].to_list() == ["3"]


def test_the_run_names_its_scheme_and_records_it(tmp_path, capsys):
    src = tmp_path / "cases.csv"
    src.write_text(HEADER + "\n".join(ROWS) + "\n", encoding="utf-8")
    out = tmp_path / "r.parquet"
    assert main(["group", str(src), "-o", str(out), "--scheme", str(MINI)]) == 0
    err = capsys.readouterr().err
    digest = content_hash(scheme_path(MINI))
    assert f"scheme: mini 1 from {scheme_path(MINI)} (content hash {digest[:16]})" in err
    assert "3 cases → " in err and " s, " in err and "cases/s" in err  # elapsed time and throughput
    recorded = json.loads(pq.read_schema(out).metadata[b"grouper.scheme"])
    assert recorded == {"name": "mini", "version": "1", "path": str(scheme_path(MINI)), "content_hash": digest}


def test_a_title_row_is_named_with_the_option_that_skips_it(tmp_path, capsys):
    src = tmp_path / "cases.csv"
    src.write_text("2026年1月出院病人清单\n\n" + HEADER + "\n".join(ROWS) + "\n", encoding="utf-8")
    assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q"]) == 3
    err = capsys.readouterr().err
    assert "line 3 of cases.csv looks like the header" in err and "--skip-rows 2" in err
    assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q", "--skip-rows", "2"]) == 0
    assert pl.read_csv(tmp_path / "r.csv").height == 3


def test_utf16_with_bom_is_detected(tmp_path):
    src = tmp_path / "cases.csv"
    src.write_bytes((HEADER + "\n".join(ROWS) + "\n").encode("utf-16"))
    assert read_cases(src)["id"].to_list() == ["1", "2", "3"]


def test_trace_ids_that_match_nothing_or_several_are_named(tmp_path, capsys):
    src = tmp_path / "cases.csv"
    src.write_text(HEADER + "\n".join(ROWS + ["1,2,30,3,K35.800,"]) + "\n", encoding="utf-8")
    assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI), "-q",
                 "--trace", "1", "--trace", "99"]) == 0
    err = capsys.readouterr().err
    assert "--trace 99: no case has this id" in err and "--trace 1: 2 cases have this id" in err


def test_explain_says_when_an_id_occurs_twice(tmp_path, capsys):
    src = tmp_path / "cases.csv"
    src.write_text(HEADER + "\n".join(ROWS + ["1,2,30,3,K35.800,"]) + "\n", encoding="utf-8")
    assert main(["explain", "--scheme", str(MINI), "--cases", str(src), "--id", "1"]) == 0
    assert "id '1' occurs 2 times" in capsys.readouterr().err
