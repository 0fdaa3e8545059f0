"""Overlays replace `read` statements; a rejected value is shown with its count; a re-import does
not silently overwrite an edited pack (issue 17, item 2)."""
from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.errors import SchemeError
from grouper.io import cases_from_frame
from grouper.lang.parse import parse_text
from grouper.lang.printer import scheme_text
from grouper.pipeline import group_frame
from grouper.scheme import check_scheme, load_scheme
from grouper.validate import quality_report
from regional_variants import write_tiny_table_set

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
READS = 'read sex "1" as male, "2" as female\nread empty age, los as 0\n'
LOCAL = 'scheme "mini 本院" version "1" extends "../base"\n\n'


def cases(*rows):
    cols = ["id", "sex", "age", "los", "dx", "proc"]
    return cases_from_frame(pl.DataFrame([dict(zip(cols, r)) for r in rows], schema={c: pl.String for c in cols}))


SEXES = cases(("1", "男", "40", "5", "K35.800|J18.900", "47.0100"), ("2", "女", "30", "3", "K35.800", ""),
              ("3", "1", "40", "5", "K35.800", "47.0100"), ("4", "男", "", "", "K35.800", ""))


@pytest.fixture
def packs(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    base = Path(shutil.copytree(MINI, tmp_path / "base"))
    text = (base / "scheme.grp").read_text(encoding="utf-8")
    (base / "scheme.grp").write_text(text.replace('table codes = "codes.csv"', READS + 'table codes = "codes.csv"'),
                                     encoding="utf-8")
    (tmp_path / "local").mkdir()
    return tmp_path


def overlay(packs: Path, body: str) -> Path:
    (packs / "local" / "scheme.grp").write_text(LOCAL + body, encoding="utf-8")
    return packs / "local"


def test_replace_read_sex_accepts_what_the_base_rejected(packs):
    base = load_scheme(packs / "base")
    before, problems = group_frame(base.plan, SEXES, problems=True)
    assert before["reason"].to_list() == ["malformed_sex", "malformed_sex", None, "malformed_sex"]
    local = load_scheme(overlay(packs, 'replace read sex "1" as male, "2" as female, "男" as male, "女" as female\n'))
    after = group_frame(local.plan, SEXES)
    assert "invalid" not in after["status"].to_list() and after["reason"].null_count() == 4
    assert after["drg"][0] == "GD11" and after["drg"][2] == before["drg"][2]


def test_replace_read_empty_takes_only_the_fields_it_names(packs):
    local = load_scheme(overlay(packs, "replace read empty age as 1\n"))
    texts = [scheme_text(local.ast).count(line) for line in ("read empty age as 1", "read empty los as 0")]
    assert texts == [1, 1]
    assert "read empty age, los" not in scheme_text(local.ast)


def test_replace_read_round_trips_through_the_printer():
    text = LOCAL + 'replace read sex "1" as male, "男" as male\n\nreplace read empty age, los as 0\n\nreplace read empty dx as none\n'
    scheme = parse_text(text, "local.grp")
    printed = scheme_text(scheme)
    assert 'replace read sex "1" as male, "男" as male' in printed
    assert "replace read empty age, los as 0" in printed and "replace read empty dx as none" in printed
    assert scheme_text(parse_text(printed, "again.grp")) == printed


def test_replace_read_of_a_field_the_base_does_not_state_is_an_error(packs):
    with pytest.raises(SchemeError) as raised:
        load_scheme(overlay(packs, "replace read empty dx as none\n"))
    diagnostic = raised.value.diagnostics[0]
    assert diagnostic.code == "unknown-read" and "read empty dx as none" in diagnostic.hint
    assert diagnostic.span.line == 3


def test_a_plain_read_in_an_overlay_points_to_replace(packs):
    _, found = check_scheme(overlay(packs, 'read sex "男" as male\n'))
    duplicate = [d for d in found if d.code == "duplicate-name"]
    assert duplicate and "replace read sex" in duplicate[0].hint


def test_the_quality_report_shows_each_rejected_value_with_its_count(packs, tmp_path, capsys):
    base = load_scheme(packs / "base")
    _, problems = group_frame(base.plan, SEXES, problems=True)
    report = quality_report(base.plan, SEXES, problems)
    values = report.filter(pl.col("scope") == "value").select("reason", "value", "cases").rows()
    assert values == [("malformed_sex", "男", 2), ("malformed_sex", "女", 1)]
    path = tmp_path / "cases.csv"
    SEXES.with_columns(pl.col("dx").list.join("|"), pl.col("proc").list.join("|")).drop(
        "age_days", "weight", "dept", "discharge").write_csv(path)
    assert main(["group", str(path), "-o", str(tmp_path / "r.csv"), "--scheme", str(packs / "base")]) == 0
    assert "rejected values, malformed_sex (value cases): '男' 2, '女' 1" in capsys.readouterr().err


def test_reimporting_refuses_an_existing_pack_unless_forced(tmp_path, capsys):
    tables = write_tiny_table_set(tmp_path / "tables")
    pack = tmp_path / "pack"
    assert main(["import", "chs-drg", str(tables), "-o", str(pack)]) == 0
    scheme = pack / "scheme.grp"
    edited = scheme.read_text(encoding="utf-8") + '\nwarn long_stay "本院: 住院超60天" when los > 60\n'
    scheme.write_text(edited, encoding="utf-8")
    capsys.readouterr()
    assert main(["import", "chs-drg", str(tables), "-o", str(pack)]) == 2
    assert "--force" in capsys.readouterr().err
    assert scheme.read_text(encoding="utf-8") == edited          # the edit is still there
    assert main(["import", "chs-drg", str(tables), "-o", str(pack), "--force"]) == 0
    assert scheme.read_text(encoding="utf-8") != edited
    (tmp_path / "empty").mkdir()
    assert main(["import", "chs-drg", str(tables), "-o", str(tmp_path / "empty")]) == 0   # an empty folder is fine
