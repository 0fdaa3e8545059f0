"""`grouper settle` end to end on small files: outputs, money format, compare, errors."""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.outputs import OUTPUT_MARKER
from grouper.payment.settle_files import MONEY, read_table
from settle_helpers import WEIGHTS, cases

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "tables" / "policies"


def _grouped_csv(tmp_path: Path) -> Path:
    frame = cases({"cost": 123_450}, {"drg": "B11", "cost": 260_001, "hospital": "H2", "hospital_level": 2},
                  {"status": "no_adrg", "drg": None}, {"insurance": "resident", "special_review": True})
    path = tmp_path / "grouped.csv"
    money = frame.with_columns((pl.col("cost") / 100).map_elements(lambda y: f"{y:.2f}", return_dtype=pl.String))
    money.write_csv(path)
    return path


def test_settle_writes_every_table(tmp_path, capsys):
    WEIGHTS.write_csv(tmp_path / "w.csv")
    out = tmp_path / "out"
    code = main(["settle", str(_grouped_csv(tmp_path)), "--policy", str(POLICIES / "zhejiang-points.toml"),
                 "--weights", str(tmp_path / "w.csv"), "-o", str(out), "--format", "csv"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir() if p.name != OUTPUT_MARKER) == ["cases.csv", "drgs.csv", "hospitals.csv", "pools.csv", "summary.json"]
    per_case = read_table(out / "cases.csv", MONEY["cases"])
    assert per_case.height == 4 and per_case["cost"].to_list() == [123_450, 260_001, 100_000, 100_000]
    assert (out / "hospitals.csv").read_text().count(".") > 0
    text = (out / "cases.csv").read_text().splitlines()[1]
    assert "1234.50" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "points" and summary["cases"] == 4
    pools = read_table(out / "pools.csv", MONEY["pools"])
    hospitals = read_table(out / "hospitals.csv", MONEY["hospitals"])
    assert hospitals["drg_payment"].sum() == pools["paid_by_points"].sum()
    assert "结算点值" in capsys.readouterr().err


def test_settle_compare_writes_the_change(tmp_path):
    WEIGHTS.write_csv(tmp_path / "w.csv")
    out = tmp_path / "out"
    code = main(["settle", str(_grouped_csv(tmp_path)), "--policy", str(POLICIES / "zhejiang-points.toml"),
                 "--compare", str(POLICIES / "rate-region.toml"), "--weights", str(tmp_path / "w.csv"), "-o", str(out), "-q"])
    assert code == 0
    hospitals = pl.read_csv(out / "compare_hospitals.csv")
    assert set(hospitals["hospital"]) == {"H1", "H2"}
    assert {"payment_before", "payment_after", "payment_change", "surplus_change"} <= set(hospitals.columns)
    # points under a points policy and under a rate policy measure different things: not compared
    assert not any(c.startswith("points") for c in hospitals.columns)
    first = hospitals.row(0, named=True)  # the change is after − before (it was the new payment)
    assert first["payment_change"] == pytest.approx(first["payment_after"] - first["payment_before"])
    assert (out / "change" / "hospitals.csv").exists() and (out / "compare_drgs.csv").exists()


def test_policy_error_exit_1_with_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[policy]\nname = "x"\nmethod = "points"\nbudjet = 1\n', encoding="utf-8")
    code = main(["settle", "x.csv", "--policy", str(bad), "--weights", "w.csv", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 1 and f"{bad}:4:1" in err and "budjet" in err and "Traceback" not in err


def test_missing_columns_exit_3(tmp_path, capsys):
    WEIGHTS.write_csv(tmp_path / "w.csv")
    pl.DataFrame({"status": ["grouped"], "drg": ["A11"]}).write_csv(tmp_path / "g.csv")
    code = main(["settle", str(tmp_path / "g.csv"), "--policy", str(POLICIES / "rate-region.toml"),
                 "--weights", str(tmp_path / "w.csv"), "-o", str(tmp_path / "o")])
    assert code == 3 and "hospital" in capsys.readouterr().err


def test_settlement_quick_start_runs_at_a_small_scale(tmp_path, monkeypatch):
    """The Settlement quick start of docs/settlement.md, command by command, with fewer cases."""
    import re
    import shlex

    section = (ROOT / "docs" / "settlement.md").read_text(encoding="utf-8")
    block = section[section.index("```bash", section.index("Quick start")) + 7:]
    block = block[:block.index("```")].replace("\\\n", " ")
    commands = [line.strip() for line in block.splitlines() if line.strip()]
    assert [c.split()[1] for c in commands] == ["synth", "group", "calibrate", "synth", "group", "settle", "settle", "settle",
                                                "report"]
    monkeypatch.chdir(tmp_path)
    for command in commands:
        command = re.sub(r"--cases (\d+)", lambda m: f"--cases {int(m[1]) // 100}", command)
        argv = [str(ROOT / a) if a.startswith("tables/") else a for a in shlex.split(command)[1:]]
        assert main([*argv, *(["-q"] if argv[0] in ("synth", "group", "calibrate", "settle") else [])]) == 0, command
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert text.count('<figure class="chart"') == 7
    pools = read_table(tmp_path / "settlement-zhejiang" / "pools.csv", MONEY["pools"])
    assert (pools["paid_by_points"] == pools["distributable"]).all()


def test_settle_reads_a_grouped_excel_file_like_its_csv_twin(tmp_path):
    # An .xlsx grouped file (grouper group --carry -o X.xlsx) was taken for raw cases: its header was
    # never looked at, so settle asked for a diagnosis column (exit 3).
    history = ROOT / "tables" / "demo" / "history.csv"
    (tmp_path / "w.csv").write_bytes((ROOT / "tables" / "demo" / "drg_weights.csv").read_bytes())
    tables = {}
    for kind in ("csv", "xlsx"):
        grouped = tmp_path / f"grouped.{kind}"
        assert main(["group", str(history), "-o", str(grouped), "--carry", "-q"]) == 0
        out = tmp_path / f"out-{kind}"
        assert main(["settle", str(grouped), "--policy", str(POLICIES / "zhejiang-points.toml"),
                     "--weights", str(tmp_path / "w.csv"), "-o", str(out), "--format", "csv", "-q"]) == 0
        tables[kind] = (out / "cases.csv").read_text(encoding="utf-8")
    assert tables["xlsx"] == tables["csv"] and tables["csv"].count("\n") == 2001
