"""Outputs a Chinese hospital office can use (issue 17): CSV encodings for Excel, reproducible
files, the printable report, the default scheme said out loud, terminal tables at 80 columns."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.errors import InputError
from grouper.writers import write_results
from settle_helpers import WEIGHTS, cases

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ROOT / "tables" / "policies"
MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
CASES = ("病案号,性别,年龄,出院科别,实际住院天数,离院方式,主要诊断编码,其他诊断编码1,主要手术操作编码\n"
         "甲1,1,40,普外科,5,1,K35.800,J18.900,47.0100\n"
         "甲2,,40,普外科,5,1,K35.800,,\n")
BOM = b"\xef\xbb\xbf"


@pytest.fixture
def cases_csv(tmp_path):
    path = tmp_path / "cases.csv"
    path.write_text(CASES, encoding="utf-8")
    return path


# --- CSV encodings -----------------------------------------------------------------------------

def test_csv_output_defaults_to_utf8_with_bom(cases_csv, tmp_path):
    out = tmp_path / "r.csv"
    assert main(["group", str(cases_csv), "-o", str(out), "--scheme", str(MINI), "-q"]) == 0
    data = out.read_bytes()
    assert data.startswith(BOM) and data.count(BOM) == 1
    assert "甲1" in data.decode("utf-8-sig")


def test_output_encoding_gbk_and_utf8(cases_csv, tmp_path):
    gbk, plain = tmp_path / "gbk.csv", tmp_path / "plain.csv"
    assert main(["group", str(cases_csv), "-o", str(gbk), "--scheme", str(MINI), "-q", "--output-encoding", "gbk"]) == 0
    assert main(["group", str(cases_csv), "-o", str(plain), "--scheme", str(MINI), "-q",
                 "--output-encoding", "utf-8"]) == 0
    assert gbk.read_bytes().decode("gbk") == plain.read_bytes().decode("utf-8")
    assert "甲1".encode("gbk") in gbk.read_bytes() and not plain.read_bytes().startswith(BOM)


def test_unknown_output_encoding_is_a_usage_error(cases_csv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["group", str(cases_csv), "-o", str(tmp_path / "r.csv"), "--output-encoding", "latin-9"])
    assert exit_.value.code == 2 and "utf-8-sig" in capsys.readouterr().err


def test_a_value_gbk_cannot_hold_is_an_error_not_a_question_mark(tmp_path):
    frame = pl.DataFrame({"id": ["1", "2"], "dept": ["普外科", "儿科😀"]})
    with pytest.raises(InputError, match="gb18030"):
        write_results(frame, tmp_path / "r.csv", encoding="gbk")
    assert not (tmp_path / "r.csv").exists()
    write_results(frame, tmp_path / "r.csv", encoding="gb18030")
    assert pl.read_csv((tmp_path / "r.csv").read_bytes().decode("gb18030").encode())["dept"][1] == "儿科😀"


def _grouped_csv(tmp_path: Path) -> Path:
    frame = cases({"cost": 123_450}, {"drg": "B11", "cost": 260_001, "hospital": "第二人民医院", "hospital_level": 2})
    money = frame.with_columns((pl.col("cost") / 100).map_elements(lambda y: f"{y:.2f}", return_dtype=pl.String))
    path = tmp_path / "grouped.csv"
    money.write_csv(path)
    return path


@pytest.mark.parametrize("encoding", ["gbk", "utf-8-sig"])
def test_settle_tables_in_any_encoding_are_read_back_by_report(tmp_path, encoding):
    WEIGHTS.write_csv(tmp_path / "w.csv")
    out = tmp_path / "out"
    assert main(["settle", str(_grouped_csv(tmp_path)), "--policy", str(POLICIES / "zhejiang-points.toml"),
                 "--weights", str(tmp_path / "w.csv"), "-o", str(out), "--format", "csv", "-q",
                 "--output-encoding", encoding]) == 0
    raw = (out / "hospitals.csv").read_bytes()
    assert raw.startswith(BOM) == (encoding == "utf-8-sig")
    assert "第二人民医院" in raw.decode("gbk" if encoding == "gbk" else "utf-8-sig")
    assert main(["report", str(out), "-o", str(tmp_path / "r.html")]) == 0
    assert "第二人民医院" in (tmp_path / "r.html").read_text(encoding="utf-8")


def test_weights_written_in_gbk_are_read_by_settle(tmp_path):
    write_results(WEIGHTS, tmp_path / "w.csv", encoding="gbk")
    assert main(["settle", str(_grouped_csv(tmp_path)), "--policy", str(POLICIES / "zhejiang-points.toml"),
                 "--weights", str(tmp_path / "w.csv"), "-o", str(tmp_path / "out"), "-q"]) == 0


# --- identical input, identical bytes ----------------------------------------------------------

def test_xlsx_is_byte_identical_run_to_run(cases_csv, tmp_path):
    first, second = tmp_path / "a.xlsx", tmp_path / "b.xlsx"
    assert main(["group", str(cases_csv), "-o", str(first), "--scheme", str(MINI), "-q"]) == 0
    time.sleep(1.1)  # the workbook's creation time used to be "now", to the second
    assert main(["group", str(cases_csv), "-o", str(second), "--scheme", str(MINI), "-q"]) == 0
    assert first.read_bytes() == second.read_bytes()
    back = pl.read_excel(first, infer_schema_length=0)
    assert back["id"].to_list() == ["甲1", "甲2"] and back["drg"].to_list() == ["GD11", None]


def test_xlsx_creation_time_follows_source_date_epoch(tmp_path, monkeypatch):
    import zipfile

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    write_results(pl.DataFrame({"id": ["1"]}), tmp_path / "r.xlsx")
    core = zipfile.ZipFile(tmp_path / "r.xlsx").read("docProps/core.xml").decode()
    assert "2023-11-14T22:13:20Z" in core


@pytest.fixture(scope="module")
def settlement_40(tmp_path_factory):
    """A settlement of 40 hospitals (the report used to print 21 of them)."""
    import grouper
    from grouper.payment.history import synth_history
    from grouper.payment.settle_files import write_settlement
    from grouper.payment.api import settle_cases

    folder = tmp_path_factory.mktemp("report40") / "settlement"
    grouped = grouper.group(synth_history(hospitals=40, years=1, cases=4000, seed=5), carry=True)
    kept = grouped.filter(pl.col("status") == "grouped")
    overall = kept["cost"].mean()
    weights = (kept.group_by("drg").agg(pl.col("cost").mean().alias("m"))
               .select("drg", (pl.col("m") / overall).alias("weight"), (pl.col("m") / 100).alias("mean")))
    write_settlement(settle_cases(grouped, POLICIES / "zhejiang-points.toml", weights), folder)
    return folder


def test_report_is_byte_identical_and_dated_only_by_source_date_epoch(settlement_40, tmp_path, monkeypatch, capsys):
    first, second = tmp_path / "a.html", tmp_path / "b.html"
    assert main(["report", str(settlement_40), "-o", str(first)]) == 0
    assert main(["report", str(settlement_40), "-o", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    assert not re.search(r"generated \d{4}-\d\d-\d\d", first.read_text(encoding="utf-8"))
    assert f"→ {first}" in capsys.readouterr().err   # report says what it wrote
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    assert main(["report", str(settlement_40), "-o", str(first)]) == 0
    assert "generated 1970-01-01 00:00 UTC" in first.read_text(encoding="utf-8")


# --- the report on paper -------------------------------------------------------------------------

def _figures(text: str) -> list[tuple[str, str]]:
    return re.findall(r'<figure class="chart"[^>]*><figcaption>(.*?)</figcaption>(.*?)</figure>', text, re.S)


def test_report_charts_are_titled_once_and_labelled_in_chinese(settlement_40):
    from grouper.report.html import render_report

    text = render_report(settlement_40)
    figures = _figures(text)
    assert len(figures) == 5
    labels = []
    for caption, svg in figures:
        inside = [re.sub(r"<[^>]+>", "", t).strip() for t in re.findall(r"<text[^>]*>(.*?)</text>", svg, re.S)]
        assert not any(t and len(t) > 3 and (t in caption) for t in inside), (caption, inside)
        labels += inside
    for label in ("病例组合指数 CMI", "病例数", "正常病例", "相对权重 (RW)", "本年次均费用 (元)"):
        assert any(label in t for t in labels), label
    assert "@media print" in text


def test_report_prints_every_hospital_row_and_column(settlement_40, tmp_path):
    chromium, pdftotext = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("pdftotext")
    if chromium is None or pdftotext is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium or pdftotext is not installed (.ci/run installs them)")
        pytest.skip("chromium or pdftotext (poppler-utils) not installed")
    from grouper.fields import fen_text
    from grouper.payment.settle_files import MONEY, read_table

    report, pdf = tmp_path / "report.html", tmp_path / "report.pdf"
    assert main(["report", str(settlement_40), "-o", str(report)]) == 0
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    f"--user-data-dir={tmp_path / 'profile'}", f"--print-to-pdf={pdf}", report.as_uri()],
                   check=True, capture_output=True, timeout=120)
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    hospitals = read_table(settlement_40 / "hospitals.csv", MONEY["hospitals"])
    assert hospitals.height == 40
    last = hospitals.columns[-1]
    for row in hospitals.iter_rows(named=True):
        # the row is on paper, with its right-most column (cut off the page before)
        line = next((l for l in text.splitlines() if re.match(rf"\s*{row['hospital']}\s+\d", l)), None)
        assert line is not None, f"hospital {row['hospital']} is not printed"
        assert line.rstrip().endswith(fen_text(row[last])), (line, last)


# --- the default scheme and policy ----------------------------------------------------------------

def test_omitting_the_scheme_warns_loudly(cases_csv, tmp_path, capsys):
    assert main(["group", str(cases_csv), "-o", str(tmp_path / "r.csv"), "-q"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: no scheme given: using the shipped DEMO pack") == 1


def test_scheme_from_environment_then_config_file(cases_csv, tmp_path, monkeypatch, capsys):
    config = tmp_path / "config-home" / "grouper" / "config.toml"
    config.parent.mkdir(parents=True)
    shutil.copytree(MINI, config.parent / "mini")
    config.write_text('scheme = "mini"\n', encoding="utf-8")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    out = tmp_path / "r.parquet"

    def scheme_used(*extra):
        assert main(["group", str(cases_csv), "-o", str(out), *extra]) == 0
        err = capsys.readouterr().err
        assert "DEMO" not in err
        return json.loads(pl.read_parquet_metadata(out)["grouper.scheme"])["path"], err

    path, err = scheme_used()
    assert Path(path).parent == config.parent / "mini" and f"(from {config})" in err
    monkeypatch.setenv("GROUPER_SCHEME", str(MINI))        # the environment beats the config file
    path, err = scheme_used()
    assert Path(path).parent == MINI and "(from GROUPER_SCHEME)" in err
    monkeypatch.setenv("GROUPER_SCHEME", str(tmp_path / "nowhere"))
    path, err = scheme_used("--scheme", str(MINI))          # the command line beats both
    assert Path(path).parent == MINI and "(from " not in err


def test_settle_policy_from_environment_or_a_usage_error(tmp_path, monkeypatch, capsys):
    WEIGHTS.write_csv(tmp_path / "w.csv")
    args = ["settle", str(_grouped_csv(tmp_path)), "--weights", str(tmp_path / "w.csv"), "-o", str(tmp_path / "out"), "-q"]
    assert main(args) == 2
    assert "GROUPER_POLICY" in capsys.readouterr().err
    monkeypatch.setenv("GROUPER_POLICY", str(POLICIES / "zhejiang-points.toml"))
    assert main(args) == 0
    assert json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))["method"] == "points"


def test_a_broken_config_file_is_a_usage_error(cases_csv, tmp_path, monkeypatch, capsys):
    config = tmp_path / "c.toml"
    config.write_text('shceme = "x"\n', encoding="utf-8")
    monkeypatch.setenv("GROUPER_CONFIG", str(config))
    assert main(["group", str(cases_csv), "-o", str(tmp_path / "r.csv")]) == 2
    assert "unknown setting(s) shceme" in capsys.readouterr().err


# --- terminal tables at 80 columns --------------------------------------------------------------

def _console(width: int):
    from grouper.console import GrouperConsole

    return GrouperConsole(file=io.StringIO(), width=width, highlight=False, soft_wrap=True)


def test_wide_tables_never_cut_money_or_headers_at_80_columns():
    from rich.table import Table

    table = Table(title="Pools")
    for column in ("Pool", "Budget", "Distributable", "Paid by points", "预算点值", "结算点值", "hospitals"):
        table.add_column(column, justify="right")
    table.add_row("employee", "780,000,000.00", "740,359,085.72", "740,359,085.72", "4,268.0229", "4,457.0681", "40")
    for width in (80, 200):
        console = _console(width)
        console.print(table)
        text = console.file.getvalue()
        assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
        for value in ("780,000,000.00", "740,359,085.72", "Paid by points", "hospitals", "4,457.0681"):
            assert value in text, (width, value)


def test_settle_summary_at_80_columns(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "80")
    WEIGHTS.write_csv(tmp_path / "w.csv")
    assert main(["settle", str(_grouped_csv(tmp_path)), "--policy", str(POLICIES / "zhejiang-points.toml"),
                 "--weights", str(tmp_path / "w.csv"), "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "…" not in err and "Distributable" in err and "780,000,000.00" in err


def test_long_headers_break_after_underscores_before_a_table_turns_into_records():
    from rich.table import Table

    columns = ("hospital", "cases", "grouping_rate", "drg_count", "cmi", "cost_index", "time_index",
               "low_risk_mortality")
    table = Table(title="Hospitals by CMI")
    for name in columns:
        table.add_column(name, justify="right")
    table.add_row("H003", "3,341", "1.000", "33", "2.624", "1.404", "1.034", "0.0018")
    console = _console(80)
    console.print(table)
    text = console.file.getvalue()
    assert "…" not in text and "┃ hospital ┃" in text and "low_risk_" in text and "mortality" in text
    narrow = _console(40)
    narrow.print(table)
    records = narrow.file.getvalue()
    assert "low_risk_mortality: 0.0018" in records and "…" not in records
    assert max(len(line.rstrip()) for line in records.splitlines()) <= 40


# --- progress -------------------------------------------------------------------------------------

def _write_cases(path: Path, n: int) -> None:
    rows = "\n".join(f"{i},1,40,,,,5,1,K35.800,47.0100" for i in range(1, n + 1))
    path.write_text("id,sex,age,age_days,weight,dept,los,discharge,dx,proc\n" + rows + "\n", encoding="utf-8")


def test_expected_rows_of_csv_from_its_size_and_of_excel_from_its_dimension(tmp_path):
    from grouper.cli import _expected_rows

    big = tmp_path / "big.csv"
    _write_cases(big, 120_000)   # larger than the 1 MiB sample: estimated from the size
    rows, estimated = _expected_rows(big)
    assert estimated and abs(rows - 120_000) < 3_600   # within 3%
    small = tmp_path / "small.csv"
    _write_cases(small, 321)
    assert _expected_rows(small) == (321, True)
    write_results(pl.read_csv(small, infer_schema=False), tmp_path / "s.xlsx")
    assert _expected_rows(tmp_path / "s.xlsx") == (321, True)
    assert _expected_rows(tmp_path / "s.xlsx", "all") == (321, True)


def test_a_file_of_one_batch_still_shows_intermediate_progress(tmp_path, monkeypatch):
    """A CSV gets a total (a percentage), and an input smaller than one batch moves the bar in steps."""
    import contextlib

    import grouper.console

    seen = {}

    class Bar:
        def __init__(self):
            self.steps = []

        def advance(self, n=1):
            self.steps.append(n)

        def describe(self, text):
            pass

        def finish(self):
            seen["finished"] = True

    @contextlib.contextmanager
    def recording(total, description, *, enabled, estimated=False):
        seen.update(total=total, estimated=estimated, bar=Bar())
        yield seen["bar"]

    monkeypatch.setattr(grouper.console, "progress", recording)
    source = tmp_path / "cases.csv"
    _write_cases(source, 50_000)
    assert main(["group", str(source), "-o", str(tmp_path / "r.parquet"), "--scheme", str(MINI)]) == 0
    assert seen["estimated"] and abs(seen["total"] - 50_000) < 500
    assert len(seen["bar"].steps) >= 5 and sum(seen["bar"].steps) == 50_000 and seen["finished"]


def test_progress_counts_have_thousands_separators_and_a_percentage():
    from rich.progress import Progress

    from grouper.console import _CountColumn, _PercentColumn

    with Progress(console=_console(100)) as bar:
        task = bar.add_task("x", total=200_000, estimated=True)
        bar.advance(task, 12_345)
        state = bar.tasks[0]
        assert _CountColumn().render(state).plain == "12,345/~200,000"
        assert _PercentColumn().render(state).plain == "  6%"


def test_synth_says_1_year_not_1_years(tmp_path, capsys):
    assert main(["synth", "history", "-o", str(tmp_path / "h.parquet"), "--cases", "200", "--hospitals", "1",
                 "--years", "1"]) == 0
    err = capsys.readouterr().err
    assert "1 hospital," in err and "1 year to" in err and "years" not in err


# --- names, weights and Chinese headers -------------------------------------------------------------

def test_group_names_and_weights_beside_the_code(tmp_path):
    cases_csv, out = tmp_path / "cases.csv", tmp_path / "r.parquet"
    cases_csv.write_text("id,sex,age,los,discharge,dx,proc\n1,2,83,8,1,K80.100x001,51.2200\n2,,40,5,1,K35.800,\n",
                         encoding="utf-8")
    assert main(["group", str(cases_csv), "-o", str(out), "--names", "-q"]) == 0   # the demo pack: names, weights
    frame = pl.read_parquet(out)
    assert frame.columns[:7] == ["id", "status", "mdc", "adrg", "drg", "drg_name", "rw"]
    grouped = frame.filter(pl.col("drg").is_not_null()).row(0, named=True)
    assert grouped["drg_name"] and "胆囊切除" in grouped["drg_name"] and grouped["rw"] > 0
    assert frame.filter(pl.col("drg").is_null())[["drg_name", "rw"]].null_count().row(0) == (1, 1)
    weights = tmp_path / "w.csv"
    write_results(pl.DataFrame({"drg": [grouped["drg"]], "weight": [2.5]}), weights)
    assert main(["group", str(cases_csv), "-o", str(out), "--weights", str(weights), "-q"]) == 0
    frame = pl.read_parquet(out)
    assert "drg_name" not in frame.columns and frame["rw"].to_list() == [2.5, None]


def test_chinese_headers_for_results_and_quality_report(cases_csv, tmp_path):
    out, report = tmp_path / "r.csv", tmp_path / "q.csv"
    assert main(["group", str(cases_csv), "-o", str(out), "--report", str(report), "--names", "--headers", "zh",
                 "-q", "--scheme", str(MINI)]) == 0
    header = out.read_text(encoding="utf-8-sig").splitlines()[0].split(",")
    assert header[:7] == ["清单流水号", "分组状态", "主要诊断大类(MDC)", "核心疾病诊断相关组(ADRG)",
                          "疾病诊断相关分组(DRG)", "DRG名称", "原因"]
    assert "问题说明" in report.read_text(encoding="utf-8-sig").splitlines()[0]
    assert main(["group", str(cases_csv), "-o", str(out), "-q", "--scheme", str(MINI)]) == 0
    assert out.read_text(encoding="utf-8-sig").startswith("id,status,mdc,adrg,drg,reason")


def test_an_excel_input_says_it_is_being_read_and_has_a_total(tmp_path, monkeypatch):
    import contextlib

    import grouper.console

    seen = {"texts": []}

    class Bar:
        def advance(self, n=1):
            pass

        def describe(self, text):
            seen["texts"].append(text)

        def finish(self):
            pass

    @contextlib.contextmanager
    def recording(total, description, *, enabled, estimated=False):
        seen.update(total=total, first=description)
        yield Bar()

    monkeypatch.setattr(grouper.console, "progress", recording)
    source = tmp_path / "cases.csv"
    _write_cases(source, 1_234)
    write_results(pl.read_csv(source, infer_schema=False), tmp_path / "cases.xlsx")
    assert main(["group", str(tmp_path / "cases.xlsx"), "-o", str(tmp_path / "r.xlsx"), "--scheme", str(MINI)]) == 0
    assert seen["total"] == 1_234 and seen["first"].startswith("reading cases.xlsx")
    assert seen["texts"][0].startswith("grouping with") and seen["texts"][-1] == "writing r.xlsx"
