"""Parser, printer and semantic checks."""
from pathlib import Path

import pytest

from grouper.errors import SchemeError
from grouper.lang import ast
from grouper.lang.check import check
from grouper.lang.parse import grammar, parse_file, parse_text
from grouper.lang.printer import scheme_text
from grouper.lang.tables import TableStore
from grouper.scheme import check_scheme

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
HEAD = 'scheme "t" version "1"\n'


def syntax_error(text: str) -> "Diagnostic":  # noqa: F821
    with pytest.raises(SchemeError) as info:
        parse_text(text, "broken.grp")
    (diag,) = info.value.diagnostics
    return diag


def checked(text: str, tables: dict[str, str] | None = None, tmp_path: Path | None = None):
    """Diagnostics of a scheme text; `tables` are CSV files written beside it."""
    for name, content in (tables or {}).items():
        (tmp_path / name).write_text(content, encoding="utf-8")
    path = tmp_path / "scheme.grp"
    path.write_text(text, encoding="utf-8")
    scheme, found = check_scheme(path)
    return found


def codes_of(found, severity="error"):
    return [(d.code, d.span.line if d.span else None) for d in found if d.severity == severity]


# ---- parsing -------------------------------------------------------------------------------
def test_parse_every_construct():
    scheme = parse_file(MINI / "scheme.grp")
    assert scheme.header == ast.Header("mini", "1")
    kinds = {type(s).__name__ for s in scheme.statements}
    assert kinds == {"TableDef", "SetDef", "DefineDef", "InvalidDef", "MdcDef"}
    gd1 = scheme.mdcs[1].adrgs[0]
    assert gd1.code == "GD1" and [d.code for d in gd1.drgs] == ["GD11", "GD13", "GD15"]
    assert gd1.drgs[0].cond == ast.DefineRef("mcc")
    assert gd1.span.line == 24 and gd1.span.column == 3
    hc1 = scheme.mdcs[1].adrgs[1].cond
    assert hc1.expr == ast.TagAny((ast.Tag("2"), ast.TagAll((ast.Tag("1"), ast.Tag("3")))))


def test_printer_round_trip_mini():
    scheme = parse_file(MINI / "scheme.grp")
    assert parse_text(scheme_text(scheme)) == scheme


def test_printer_round_trip_imported_national_scheme(chs_pack):
    scheme = parse_file(chs_pack / "scheme.grp")
    text = scheme_text(scheme)
    assert parse_text(text) == scheme
    assert scheme_text(parse_text(text)) == text


def test_every_grammar_rule_has_an_ast_class_or_builder():
    from grouper.lang.parse import _Builder

    rules = {r.origin.name for r in grammar().rules}
    aliases = {r.alias for r in grammar().rules if r.alias}
    named = {str(n) for n in rules | aliases if not str(n).startswith(("_", "__"))} - {"start"}
    missing = sorted(n for n in named if not hasattr(_Builder, n) and n not in {"cond", "or_cond", "and_cond",
                                                                                 "not_cond", "atom", "set_expr",
                                                                                 "value", "tag_or", "tag_and",
                                                                                 "tag_atom", "statement", "position",
                                                                                 "read_def"})
    assert missing == []


def test_syntax_error_points_at_line_and_column_with_caret():
    diag = syntax_error(HEAD + 'mdc MDCA when pproc in OR {\n  adrg AA1 when pdx in X pproc in Y { drg AA19 }\n}\n')
    assert (diag.code, diag.span.line, diag.span.column) == ("syntax", 3, 26)
    text = diag.render()
    assert text.splitlines()[0].startswith("broken.grp:3:26: error[syntax]")
    assert "  adrg AA1 when pdx in X pproc in Y { drg AA19 }" in text
    caret_line = text.splitlines()[2]
    assert caret_line.index("^") == 4 + 25 and caret_line.count("^") == len("pproc")
    assert "hint:" in text


def test_broken_fixture_file():
    path = Path(__file__).parent / "fixtures" / "broken.grp"
    with pytest.raises(SchemeError) as info:
        parse_file(path)
    diag = info.value.diagnostics[0]
    assert (diag.span.line, diag.span.column) == (6, 38)
    assert diag.source_line.strip().startswith("adrg GD1")


@pytest.mark.parametrize("text, line, column", [
    ("mdc MDCA when pdx in X {\n", 2, 24),                   # unclosed block: reported after the last token
    ('mdc MDCA when pdx in X { adrg A1 when age >> 3 { drg A19 } }\n', 2, 44),
    ('table t = codes.csv\n', 2, 11),                        # unquoted file name
    ('mdc MDCA when pdx in X { adrg A1 when pdx in "A" { drg A19 } }\n', 2, 46),
    ('mdc MDCA when pdx in X { adrg A1 when sex = 1 { drg A19 } } @\n', 2, 61),
])
def test_syntax_errors(text, line, column):
    diag = syntax_error(HEAD + text)
    assert (diag.span.line, diag.span.column) == (line, column)


def test_cjk_caret_alignment():
    diag = syntax_error(HEAD + 'mdc MDCA "先期分组" when when\n')
    caret_line = diag.render().splitlines()[2]
    # "mdc MDCA " (9) + quote + 4 CJK chars (2 cells each) + quote + " when " → column of 2nd when
    assert caret_line.index("^") == 4 + 9 + 1 + 8 + 1 + 6


# ---- semantic checks -----------------------------------------------------------------------
TABLES = {"t.csv": "code,adrg,site\nA01.000,X1,头\nA02.000,X1,胸\nA03.000,X2,\n"}


def test_mini_pack_is_clean():
    scheme = parse_file(MINI / "scheme.grp")
    assert check(scheme, TableStore(MINI, scheme.tables)) == []


def test_unknown_table_and_column(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\n'
                    'mdc M when pdx in nope[adrg = "X1"] or pdx in t[wrong = "1"] { adrg X1 when true { drg X19 } }\n',
                    TABLES, tmp_path)
    diags = [d for d in found if d.severity == "error"]
    assert [(d.code, d.span.line, d.span.column) for d in diags] == [
        ("unknown-table", 3, 19), ("unknown-column", 3, 49)]
    assert "columns are code, adrg, site" in diags[1].hint


def test_missing_table_file(tmp_path):
    found = checked(HEAD + 'table t = "absent.csv"\nmdc M when pdx in t { adrg X1 when true { drg X19 } }\n', {}, tmp_path)
    assert codes_of(found) == [("missing-table-file", 2)]


def test_duplicate_group_code(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\nmdc M when pdx in t {\n adrg X1 when pdx in t[adrg = "X1"] { drg X19 }\n'
                    ' adrg X2 when pdx in t[adrg = "X2"] { drg X19 }\n}\n', TABLES, tmp_path)
    assert codes_of(found) == [("duplicate-group", 5)]


def test_unreachable_rules(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\nmdc M when pdx in t {\n'
                    ' adrg X1 when pdx in t { drg X19 }\n'
                    ' adrg X2 when pdx in t[adrg = "X2"] and age > 3 { drg X29 }\n'   # subset of X1's set
                    ' adrg X3 when true { drg X39 when age > 1 drg X35 drg X33 }\n'  # after an unconditional DRG
                    '}\n', TABLES, tmp_path)
    # dead rules are warnings (official tables carry them) that name the rule tried first
    assert codes_of(found) == []
    assert codes_of(found, "warning") == [("unreachable", 5), ("unreachable", 6)]
    x2, x33 = [d for d in found if d.code == "unreachable"]
    assert "ADRG X2 can never match: ADRG X1 (" in x2.message and ":4)" in x2.message
    assert "DRG X33 can never match: DRG X35 (" in x33.message


def test_a_conditional_last_drg_warns_with_the_outcome(tmp_path):
    body = 'mdc M when true { adrg X1 when true { drg X11 when age > 3 } }\n'
    (warning,) = [d for d in checked(HEAD + body, TABLES, tmp_path) if d.code == "no-default-drg"]
    assert warning.severity == "warning" and "next ADRG" in warning.message
    (warning,) = [d for d in checked(HEAD + "setting adrg_without_drg = no_drg\n" + body, TABLES, tmp_path)
                  if d.code == "no-default-drg"]
    assert "status no_drg" in warning.message


def test_an_empty_list_is_reported_as_empty_not_as_shadowed(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\nmdc M when pdx in t {\n'
                    ' adrg X1 when pdx in t { drg X19 }\n'
                    ' adrg X2 when pdx in t[adrg = "nothing"] { drg X29 }\n}\n', TABLES, tmp_path)
    assert codes_of(found, "warning") == [("empty-set", 5)]


def test_a_dead_drg_is_named_with_the_rule_that_shadows_it(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\nmdc M when pdx in t {\n'
                    ' adrg X1 when pdx in t { drg X11 when los > 3 drg X19 drg X15 }\n}\n', TABLES, tmp_path)
    (dead,) = [d for d in found if d.code == "unreachable"]
    assert dead.severity == "warning" and "DRG X15 can never match: DRG X19" in dead.message


def test_narrower_earlier_rule_is_fine(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\nmdc M when pdx in t {\n'
                    ' adrg X1 when pdx in t[adrg = "X1"] and age > 3 { drg X19 }\n'
                    ' adrg X2 when pdx in t { drg X29 }\n}\n', TABLES, tmp_path)
    assert codes_of(found) == []


def test_codes_absent_from_dictionary_warn(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\ntable d = "d.csv"\ndictionary dx = d\n'
                    'mdc M when pdx in t or pdx in {"B99.000"} { adrg X1 when true { drg X19 } }\n',
                    {**TABLES, "d.csv": "code,name\nA01.000,a\nA02.000,b\n"}, tmp_path)
    assert codes_of(found) == []
    warnings = [d for d in found if d.code == "unknown-code"]
    assert [(d.span.line, d.span.column) for d in warnings] == [(5, 19), (5, 31)]
    assert "A03.000" in warnings[0].message and "B99.000" in warnings[1].message


@pytest.mark.parametrize("body, code", [
    ('mdc M when nope { adrg X1 when true { drg X19 } }', "unknown-define"),
    ('define a = b\ndefine b = a\nmdc M when a { adrg X1 when true { drg X19 } }', "cycle"),
    ('mdc M when true { adrg X1 when true { } }', "empty-adrg"),
    ('mdc M when dept = 3 { adrg X1 when true { drg X19 } }', "bad-value"),
    ('mdc M when sex = 3 { adrg X1 when true { drg X19 } }', "bad-value"),
    ('mdc M when age = "3" { adrg X1 when true { drg X19 } }', "bad-value"),
    ('mdc M when age in 9..3 { adrg X1 when true { drg X19 } }', "empty-range"),
    ('mdc M when count distinct site of dx in {"A"} >= 2 { adrg X1 when true { drg X19 } }', "labels-need-table"),
    ('mdc M when count distinct nope of dx in t >= 2 { adrg X1 when true { drg X19 } }', "unknown-column"),
    ('set t = {"A"}\nmdc M when true { adrg X1 when true { drg X19 } }', "duplicate-name"),
    ('mdc M when any proc in t unless t.site = t.site(pdx) { adrg X1 when true { drg X19 } }', "bad-unless"),
    ('mdc M when pdx in s { adrg X1 when true { drg X19 } }', "unknown-set"),
    ('setting nope = 1\nmdc M when true { adrg X1 when true { drg X19 } }', "unknown-setting"),
    ('setting second_attempt = always\nmdc M when true { adrg X1 when true { drg X19 } }', "bad-value"),
    ('setting second_attempt = off\nsetting second_attempt = off\nmdc M when true { adrg X1 when true { drg X19 } }',
     "duplicate-name"),
    ('mdc M when true { adrg X1 when true { drg X19 } }\nremove adrg X1', "overlay-only"),
])
def test_semantic_errors(body, code, tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\n' + body + "\n", TABLES, tmp_path)
    errors = [d for d in found if d.severity == "error"]
    assert [d.code for d in errors] == [code], [d.render() for d in found]
    assert errors[0].span is not None and errors[0].span.line >= 3


def test_adrg_codes_outside_the_mdc_entry_warn(tmp_path):
    found = checked(HEAD + 'table t = "t.csv"\n'
                    'mdc M when pdx in t[adrg = "X1"] {\n'
                    ' adrg X1 when pdx in t { drg X19 }\n}\n', TABLES, tmp_path)
    assert codes_of(found) == []
    (warning,) = [d for d in found if d.code == "out-of-mdc-code"]
    assert warning.span.line == 4 and "A03.000" in warning.message
