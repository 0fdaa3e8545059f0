"""The `grouper` command: exit codes, stdout/stderr split, file formats."""
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
BROKEN = Path(__file__).parent / "fixtures" / "broken.grp"
CASES = "id,sex,age,age_days,weight,dept,los,discharge,dx,proc\n1,1,40,,,,5,1,K35.800|J18.900,47.0100\n2,,40,,,,5,1,K35.800,\n"


def test_group_csv_to_parquet_and_xlsx(tmp_path, capsys):
    src = tmp_path / "cases.csv"
    src.write_text(CASES, encoding="utf-8")
    for out in ("r.parquet", "r.xlsx", "r.csv"):
        assert main(["group", str(src), "-o", str(tmp_path / out), "--scheme", str(MINI)]) == 0
    res = pl.read_parquet(tmp_path / "r.parquet")
    assert res.columns == ["id", "status", "mdc", "adrg", "drg", "reason", "warnings"]
    assert res.rows() == [("1", "grouped", "MDCG", "GD1", "GD11", None, []),
                          ("2", "invalid", None, None, None, "sex_missing", [])]
    assert pl.read_excel(tmp_path / "r.xlsx")["drg"].to_list()[0] == "GD11"
    assert pl.read_csv(tmp_path / "r.csv")["status"].to_list() == ["grouped", "invalid"]
    captured = capsys.readouterr()
    assert captured.out == ""  # data goes to files, messages to stderr
    assert "Cases by status" in captured.err and "GD11" in captured.err


def test_group_gbk_wide_file(tmp_path):
    src = tmp_path / "gbk.csv"
    text = "病案号,性别,年龄,主要诊断编码,其他诊断编码1,其他诊断编码2,主要手术操作编码,其他手术操作编码1\n" \
           "A1,1,40,K35.800,,J18.900,47.0100,\n"
    src.write_bytes(text.encode("gbk"))
    out = tmp_path / "r.csv"
    assert main(["group", str(src), "-o", str(out), "--scheme", str(MINI), "-q"]) == 0
    assert pl.read_csv(out).row(0)[:5] == ("A1", "grouped", "MDCG", "GD1", "GD11")


def test_check_exit_codes(capsys):
    assert main(["check", str(MINI)]) == 0
    assert "0 error(s)" in capsys.readouterr().err
    assert main(["check", str(BROKEN)]) == 1
    err = capsys.readouterr().err
    assert "broken.grp:6:38: error[syntax]" in err and "^" in err


def test_group_with_broken_scheme_exits_1(tmp_path, capsys):
    src = tmp_path / "cases.csv"
    src.write_text(CASES, encoding="utf-8")
    assert main(["group", str(src), "-o", str(tmp_path / "r.csv"), "--scheme", str(BROKEN)]) == 1
    assert "error[syntax]" in capsys.readouterr().err


def test_input_errors_exit_3(tmp_path, capsys):
    assert main(["group", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI)]) == 3
    bad = tmp_path / "cases.csv"
    bad.write_text("a,b\n1,2\n", encoding="utf-8")
    assert main(["group", str(bad), "-o", str(tmp_path / "r.csv"), "--scheme", str(MINI)]) == 3
    assert main(["group", str(bad), "-o", str(tmp_path / "r.json"), "--scheme", str(MINI)]) == 3
    assert "error:" in capsys.readouterr().err


def test_usage_error_exits_2():
    with pytest.raises(SystemExit) as info:
        main(["group"])
    assert info.value.code == 2


def test_import_then_check(chs_tables, tmp_path, capsys):
    pack = tmp_path / "pack"
    assert main(["import", "chs-drg", str(chs_tables), "-o", str(pack)]) == 0
    assert (pack / "scheme.grp").is_file() and (pack / "cc.csv").is_file()
    assert main(["check", str(pack)]) == 0
    assert "26 MDCs, 376 ADRGs, 628 DRGs; 0 error(s)" in capsys.readouterr().err


def test_console_script_version(tmp_path):
    out = subprocess.run([sys.executable, "-m", "grouper", "--version"], capture_output=True, text=True, check=True,
                         cwd=tmp_path)  # not the checkout: test the installed package
    assert "kernel" in out.stdout
