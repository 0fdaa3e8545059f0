"""Overlay operations on qy rules (歧义组): add, replace, remove, move and rename, top level and
inside an MDC, each checked at the overlay's line and shown by explain."""
import shutil
from pathlib import Path

import polars as pl
import pytest

from grouper.explain import explain_case
from grouper.io import cases_from_frame
from grouper.lang.parse import parse_text
from grouper.lang.printer import scheme_text
from grouper.pipeline import group_frame
from grouper.scheme import check_scheme, load_scheme

PACKS = Path(__file__).parent / "fixtures" / "packs"
HEADER = 'scheme "region" version "1" extends "../base"\n'
# the mini pack with a top-level qy rule before MDCG and one inside MDCG after GD1
QYS = ('qy GQY "digestive ambiguous" mdc MDCG when pdx in {"K35.800"} and sex = female\n',
       '    qy GQY "digestive, late" when pproc in {"51.2300"}\n')
APPENDIX = ("1", "40", "5", "K35.800", "47.0100")           # → MDCG GD1 GD15
GALL = ("1", "50", "14", "K80.100x001", "51.2300")           # → MDCG HC1 HC12 (GQY inside after GD1 in the base)


@pytest.fixture
def region(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(PACKS / "mini", tmp_path / "base")
    scheme = tmp_path / "base" / "scheme.grp"
    text = scheme.read_text(encoding="utf-8")
    text = text.replace('mdc MDCG "digestive"', QYS[0] + 'mdc MDCG "digestive"', 1)
    text = text.replace('  adrg HC1 "gall"', QYS[1] + '  adrg HC1 "gall"', 1)
    scheme.write_text(text, encoding="utf-8")

    def write(body: str) -> Path:
        folder = tmp_path / "region"
        folder.mkdir(exist_ok=True)
        (folder / "scheme.grp").write_text(HEADER + body, encoding="utf-8")
        return folder
    return write, tmp_path / "base"


def grouped(pack, *rows):
    cols = ["id", "sex", "age", "los", "dx", "proc"]
    frame = pl.DataFrame([dict(zip(cols, (f"c{i}", *r))) for i, r in enumerate(rows)], schema={c: pl.String for c in cols})
    return [tuple(r) for r in group_frame(load_scheme(pack).plan, cases_from_frame(frame))
            .select("status", "mdc", "drg").iter_rows()]


def qy_layout(pack) -> list[str]:
    scheme = load_scheme(pack).ast
    top = [f"{st.code}@top" if not hasattr(st, "items") else st.code for st in scheme.statements
           if type(st).__name__ in ("QyDef", "MdcDef")]
    inner = [f"{i.code}" for m in scheme.mdcs for i in m.items]
    return top + ["|"] + inner


def test_the_base_has_its_qy_rules(region):
    _, base = region
    assert grouped(base, APPENDIX, ("2", *APPENDIX[1:]), GALL) == [
        ("grouped", "MDCG", "GD15"), ("qy", "MDCG", "GQY"), ("qy", "MDCG", "GQY")]


def test_replace_qy_rules_top_level_and_inside(region):
    write, _ = region
    pack = write('replace qy GQY "never" mdc MDCG when age > 200\n'
                 'replace qy GQY in MDCG "late gall" when pproc in {"51.2300"} and los > 20\n')
    assert grouped(pack, ("2", *APPENDIX[1:]), GALL, (*GALL[:2], "21", *GALL[3:])) == [
        ("grouped", "MDCG", "GD15"), ("grouped", "MDCG", "HC12"), ("qy", "MDCG", "GQY")]
    inner = next(i for m in load_scheme(pack).ast.mdcs for i in m.items if i.code == "GQY")
    assert inner.name == "late gall" and inner.changes[0].line == 3


def test_remove_move_rename_and_add_qy_rules(region):
    write, _ = region
    pack = write('remove qy GQY\n'
                 'move qy GQY in MDCG first in MDCG\n'
                 'rename qy GQY in MDCG to GQZ "renamed"\n'
                 'add qy XQY "before everything" when pdx in {"X00.000"} first\n'
                 'add qy HQY when los > 30 after HC1\n')
    layout = qy_layout(pack)
    assert layout[0] == "XQY@top" and "GQY@top" not in layout
    inner = layout[layout.index("|") + 1:]
    assert inner[inner.index("GQZ") + 1] == "GD1" and inner[inner.index("HC1") + 1] == "HQY"
    # the top-level rule is gone, the inner one renamed; HQY comes after HC1, so a gall case still groups
    assert grouped(pack, ("2", *APPENDIX[1:]), GALL, (*GALL[:2], "31", GALL[3], ""), (*GALL[:4], ""),
                   ("1", "40", "5", "X00.000", "")) == [
        ("grouped", "MDCG", "GD15"), ("qy", "MDCG", "GQZ"), ("qy", "MDCG", "HQY"), ("grouped", "MDCG", "GZ19"),
        ("qy", None, "XQY")]


def test_qy_operations_round_trip_through_the_printer():
    text = (HEADER + 'replace qy GQY in MDCG "x" when pproc in OR\n'
            'replace qy MQY "m" mdc MDCM when true\n'
            'remove qy GQY in MDCG\nmove qy MQY first in MDCG\nrename qy GQY to GQZ "n"\n'
            'add qy XQY "new" when pdx in {"A"} after GD1\n')
    printed = scheme_text(parse_text(text))
    assert scheme_text(parse_text(printed)) == printed
    assert "move qy MQY first in MDCG" in printed and 'replace qy GQY in MDCG "x" when pproc in OR' in printed


def test_explain_names_the_overlay_line_of_a_changed_qy_rule(region):
    write, _ = region
    pack = write('# a comment\nreplace qy GQY in MDCG "late gall" when pproc in {"51.2300"}\n')
    row = pl.DataFrame([dict(zip(["id", "sex", "age", "los", "dx", "proc"], ("x", *GALL)))])
    e = explain_case(load_scheme(pack), cases_from_frame(row.cast(pl.String)))
    qy = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GQY")
    assert qy.matched and qy.source.endswith(f"(changed at {pack / 'scheme.grp'}:3)")


@pytest.mark.parametrize("line, code", [
    ("remove qy NOQY", "unknown-qy"),
    ("remove qy GQY in MDCE", "unknown-qy"),
    ("remove qy GQY in MDCX", "unknown-mdc"),
    ("move qy GQY in MDCG after XX1", "unknown-anchor"),
    ("move qy GQY first in MDCX", "unknown-mdc"),
    ("move qy GQY after GQY", "bad-position"),
    ("move qy GQY first in MDCE", "bad-position"),          # a top-level rule reporting an MDC cannot move in
    ("rename qy NOQY to XQY", "unknown-qy"),
    ('replace qy NOQY "x" when true', "unknown-qy"),
    ("replace qy GQY in MDCG mdc MDCG when true", "bad-overlay"),
    ("add qy XQY when true after XX1", "unknown-anchor"),
    ("add qy XQY when true last in MDCX", "unknown-mdc"),
    ("add qy XQY mdc MDCG when true last in MDCG", "bad-position"),
    ("add qy GD1 when true first", "duplicate-group"),
    ("remove adrg GQY", "unknown-adrg"),                     # an ADRG operation never touches a qy rule
])
def test_a_bad_qy_operation_is_an_error_at_the_overlay_line(region, line, code):
    write, _ = region
    _, found = check_scheme(write("# line 2\n" + line + "\n"))
    errors = [(d.code, Path(d.span.file).parent.name, d.span.line) for d in found if d.severity == "error"]
    assert errors == [(code, "region", 3)], [d.render() for d in found]


def test_two_rules_of_one_code_at_one_place_cannot_be_told_apart(region):
    write, _ = region
    _, found = check_scheme(write('add qy GQY "second" when los > 90 last in MDCG\nremove qy GQY in MDCG\n'))
    assert [(d.code, d.span.line) for d in found if d.severity == "error"] == [("ambiguous-qy", 3)]
