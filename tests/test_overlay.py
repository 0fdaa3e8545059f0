"""Regional variants as overlays: `extends` a base pack and change it at every level."""
import shutil
from pathlib import Path

import polars as pl
import pytest

from grouper.explain import explain_case, trace_text
from grouper.pipeline import group_frame
from grouper.errors import SchemeError
from grouper.io import cases_from_frame
from grouper.lang.parse import parse_file, parse_text
from grouper.lang.printer import scheme_text
from grouper.scheme import check_scheme, load_scheme

PACKS = Path(__file__).parent / "fixtures" / "packs"


def cases(*rows):
    cols = ["id", "sex", "age", "los", "dx", "proc"]
    return cases_from_frame(pl.DataFrame([dict(zip(cols, r)) for r in rows], schema={c: pl.String for c in cols}))


@pytest.fixture
def packs(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(PACKS / "mini", tmp_path / "mini")
    shutil.copytree(PACKS / "mini-regional", tmp_path / "mini-regional")
    return tmp_path


def test_overlay_refines_drgs_and_keeps_the_rest():
    national, regional = load_scheme(PACKS / "mini"), load_scheme(PACKS / "mini-regional")
    assert (regional.plan.name, regional.plan.version) == ("mini 地方版", "2")
    assert regional.plan.adrg_codes == national.plan.adrg_codes            # the ADRG layer is the base's
    assert [d for d in regional.plan.drg_codes if d.startswith("GD")] == ["GD11", "GD12", "GD16"]
    batch = cases(("mcc", "1", "40", "20", "K35.800|J18.900", "47.0100"),
                  ("long", "1", "40", "20", "K35.800", "47.0100"),
                  ("short", "1", "40", "3", "K35.800", "47.0100"),
                  ("gall", "1", "50", "14", "K80.100x001", "51.2300"))
    assert group_frame(national.plan, batch)["drg"].to_list() == ["GD11", "GD15", "GD15", "HC12"]
    regional_results = group_frame(regional.plan, batch)
    assert regional_results["drg"].to_list() == ["GD11", "GD12", "GD16", "HC12"]
    # the overlay's own tables (weights) are read from its folder, the base's from the base pack
    assert regional.plan.drg_weights[regional.plan.drg_codes.index("GD12")] == 1.2
    assert group_frame(regional.plan, cases(("x", "1", "40", "70", "K35.800", "")))["warnings"].to_list() == [["long_stay"]]


def test_explain_points_into_both_files():
    e = explain_case(load_scheme(PACKS / "mini-regional"), cases(("long", "1", "40", "20", "K35.800", "47.0100")))
    gd1 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GD1")
    assert gd1.source.startswith(str(PACKS / "mini-regional" / ".." / "mini" / "scheme.grp") + ":24 ")
    assert gd1.source.endswith("(changed at " + str(PACKS / "mini-regional" / "scheme.grp") + ":8)")   # the refine line
    assert gd1.children[-1].code == "GD12" and gd1.children[-1].source.endswith("mini-regional/scheme.grp:10")


def test_overlay_round_trips_through_the_printer():
    overlay = parse_file(PACKS / "mini-regional" / "scheme.grp")
    assert overlay.header.extends == "../mini"
    assert parse_text(scheme_text(overlay)) == overlay


def test_unknown_adrg_and_duplicate_table_are_reported_in_the_overlay(packs):
    path = packs / "mini-regional" / "scheme.grp"
    path.write_text(path.read_text(encoding="utf-8").replace("refine adrg GD1", "refine adrg GX9")
                    + 'table codes = "weights.csv"\n', encoding="utf-8")
    scheme, found = check_scheme(packs / "mini-regional")
    errors = [(d.code, Path(d.span.file).parent.name, d.span.line) for d in found if d.severity == "error"]
    assert ("unknown-adrg", "mini-regional", 8) in errors
    assert ("duplicate-name", "mini-regional", 15) in errors
    assert all(d.source_line for d in found if d.span)


def test_refinement_is_checked_like_any_drg_list(packs):
    path = packs / "mini-regional" / "scheme.grp"
    path.write_text(path.read_text(encoding="utf-8").replace('  drg GD16 "appendectomy, other"\n', ""),
                    encoding="utf-8")
    _, found = check_scheme(packs / "mini-regional")
    assert [d.code for d in found if d.severity == "error"] == []
    assert "no-default-drg" in [d.code for d in found if d.severity == "warning"]


def test_missing_base_and_cycles(packs):
    path = packs / "mini-regional" / "scheme.grp"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('extends "../mini"', 'extends "../nowhere"'), encoding="utf-8")
    with pytest.raises(SchemeError) as info:
        load_scheme(packs / "mini-regional")
    assert [(d.code, d.span.line) for d in info.value.diagnostics] == [("missing-base", 2)]
    path.write_text(text.replace('extends "../mini"', 'extends "."'), encoding="utf-8")
    _, found = check_scheme(packs / "mini-regional")
    assert [d.code for d in found] == ["cycle"]


def test_a_changed_base_invalidates_the_overlay_cache(packs):
    before = load_scheme(packs / "mini-regional")
    cc = packs / "mini" / "cc.csv"
    cc.write_text(cc.read_text(encoding="utf-8").replace("J18.900,MCC,T1", "J18.900,CC,T1"), encoding="utf-8")
    after = load_scheme(packs / "mini-regional")
    row = cases(("mcc", "1", "40", "3", "K35.800|J18.900", "47.0100"))
    assert group_frame(before.plan, row)["drg"].item() == "GD11"
    assert group_frame(after.plan, row)["drg"].item() == "GD16"


# ---- operations at every level, on the mini pack -------------------------------------------------
HEADER = 'scheme "region" version "1" extends "../mini"\n'
APPENDIX = ("1", "40", "5", "K35.800", "47.0100")           # sex, age, los, dx, proc → MDCG GD1 GD15
GALL = ("1", "50", "14", "K80.100x001", "51.2300")           # → MDCG HC1 HC12


@pytest.fixture
def region(tmp_path, monkeypatch):
    """write(text, **files) → the path of an overlay of the mini pack holding `text` and `files`."""
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(PACKS / "mini", tmp_path / "mini")

    def write(text: str, **files: str) -> Path:
        folder = tmp_path / "region"
        folder.mkdir(exist_ok=True)
        (folder / "scheme.grp").write_text(HEADER + text, encoding="utf-8")
        for name, content in files.items():
            (folder / name.replace("_patch_csv", ".patch.csv").replace("_csv", ".csv")).write_text(content, encoding="utf-8")
        return folder
    return write


def grouped(pack, *rows):
    plan = load_scheme(pack).plan
    batch = cases(*((f"c{i}", *r[:2], r[2], *r[3:]) for i, r in enumerate(rows)))
    return [tuple(r) for r in group_frame(plan, batch).select("status", "mdc", "adrg", "drg").iter_rows()]


def test_replace_an_adrg_condition_and_explain_names_the_overlay_line(region):
    pack = region("# the gall ADRG takes any gall diagnosis with a gall procedure anywhere\n"
                  'replace adrg HC1 when any dx in codes[group = "gall"] and any proc in codes[group = "gall"]\n')
    assert grouped(pack, GALL) == [("grouped", "MDCG", "HC1", "HC12")]
    # the tag rule (2 or 1 & 3) no longer decides: 51.2200 alone has tag 3
    assert grouped(pack, ("1", "50", "14", "K80.100x001", "51.2200")) == [("grouped", "MDCG", "HC1", "HC12")]
    e = explain_case(load_scheme(pack), cases(("x", "1", "50", "14", "K80.100x001", "51.2200")))
    hc1 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "HC1")
    assert hc1.rule.startswith("any dx in codes[group = \"gall\"]")
    assert hc1.source.endswith(f"(changed at {pack / 'scheme.grp'}:3)")


def test_add_remove_move_and_rename_adrgs_and_drgs(region):
    pack = region('add adrg GA1 "added first" when pproc in {"51.2200"} { drg GA19 } first in MDCG\n'
                  'add adrg GE1 "after GD1" when pdx in codes[group = "gall"] { drg GE19 } after GD1\n'
                  'remove adrg GZ1\n'
                  'move adrg HC1 before GD1\n'
                  'rename adrg ES1 to ES2 "renumbered"\n'
                  'remove drg GD13\n'
                  'rename drg GD15 to GD16 "appendectomy, other"\n'
                  'add drg GD12 "long stay" when los >= 13 after GD11\n'
                  'replace drg HC12 when los >= 10\n')
    plan = load_scheme(pack).plan
    assert plan.adrg_codes == ["ZZ1", "GA1", "HC1", "GD1", "GE1", "ES2"]
    assert plan.drg_codes == ["ZZ19", "GA19", "HC12", "HC15", "GD11", "GD12", "GD16", "GE19", "ES19"]
    assert plan.adrg_names[-1] == "renumbered"
    assert grouped(pack, APPENDIX, (*APPENDIX[:2], "20", *APPENDIX[3:]), (*GALL[:2], "11", *GALL[3:])) == [
        ("grouped", "MDCG", "GD1", "GD16"), ("grouped", "MDCG", "GD1", "GD12"), ("grouped", "MDCG", "HC1", "HC12")]


def test_change_mdc_entry_and_order_and_add_and_remove_mdcs(region):
    pack = region('replace mdc MDCE "respiratory (regional)" when pdx in codes[group = "lung"]\n'
                  'move mdc MDCE first\n'
                  'add mdc MDCX "added" when pdx in {"X00.000"} { adrg XX1 when true { drg XX19 } } after MDCE\n'
                  'remove mdc MDCZ\n')
    plan = load_scheme(pack).plan
    assert plan.mdc_codes == ["MDCE", "MDCX", "MDCG"]
    assert plan.mdc_names[0] == "respiratory (regional)"
    # age_days is no longer required to enter MDCE
    assert grouped(pack, ("1", "10", "3", "J18.900", ""), ("1", "10", "3", "X00.000", "")) == [
        ("grouped", "MDCE", "ES1", "ES19"), ("grouped", "MDCX", "XX1", "XX19")]


def test_patch_and_replace_tables(region):
    pack = region('patch table cc with "cc.patch.csv"\npatch table codes with "codes.patch.csv"\n',
                  cc_patch_csv="op,code,level,exclusion_table\n-,J18.900,MCC,T1\n+,J18.900,CC,T1\n+,S06.000,MCC,T9\n",
                  codes_patch_csv="op,code,kind,site,tag,group\n+,K35.900,dx,,,appendix\n")
    assert grouped(pack, ("1", "40", "5", "K35.800|J18.900", "47.0100"), ("1", "40", "5", "K35.800|S06.000", "47.0100"),
                   ("1", "40", "5", "K35.900", "47.0100")) == [
        ("grouped", "MDCG", "GD1", "GD13"), ("grouped", "MDCG", "GD1", "GD11"), ("grouped", "MDCG", "GD1", "GD15")]
    e = explain_case(load_scheme(pack), cases(("x", "1", "40", "5", "K35.800|S06.000", "47.0100")))
    gd11 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GD1").children[0]
    assert gd11.why.children[0].detail.endswith(f"(table cc patched at {pack / 'scheme.grp'}:2)")
    replaced = region('replace table cc = "cc2.csv"\n', cc2_csv="code,level,exclusion_table\nS06.000,CC,T9\n")
    assert grouped(replaced, ("1", "40", "5", "K35.800|J18.900", "47.0100"), ("1", "40", "5", "K35.800|S06.000", "47.0100")) == [
        ("grouped", "MDCG", "GD1", "GD15"), ("grouped", "MDCG", "GD1", "GD13")]


def test_bad_patches_are_errors_at_the_patch_line(region):
    pack = region('patch table cc with "cc.patch.csv"\npatch table cce with "cce.patch.csv"\n',
                  cc_patch_csv="op,code,level,exclusion_table\n-,J18.900,CC,T1\n*,A,B,C\n",
                  cce_patch_csv="op,pdx\n+,J18.900\n")
    _, found = check_scheme(pack)
    errors = [(d.code, d.span.line, d.message) for d in found if d.severity == "error"]
    assert errors[0][:2] == ("bad-patch", 2) and "line 2: this `-` row is not in the table" in errors[0][2]
    assert errors[1][:2] == ("bad-patch", 2) and "line 3: op '*'" in errors[1][2]
    assert errors[2][:2] == ("bad-patch", 3) and "has columns op, pdx" in errors[2][2]


def test_redefining_a_define_or_set_changes_every_base_rule_using_it(region):
    # mcc is used by GD11 directly and by GD13 through cc_or_mcc: both follow the new definition
    pack = region('replace define mcc = any secondary dx in {"S27.000"}\nreplace set OR = {"51.2300"}\n')
    rows = [("1", "40", "5", "K35.800|J18.900", "47.0100"), ("1", "40", "5", "K35.800|S27.000", "47.0100"),
            ("1", "40", "5", "K80.100x001", "")]
    assert grouped(pack, *rows) == [("grouped", "MDCG", "GD1", "GD15"), ("grouped", "MDCG", "GD1", "GD11"),
                                    ("grouped", "MDCG", "GZ1", "GZ19")]
    e = explain_case(load_scheme(pack), cases(("x", "1", "40", "5", "K35.800|S27.000", "47.0100")))
    gd1 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GD1")
    assert gd1.children[0].why.detail == f"defined at {pack / 'scheme.grp'}:2"
    e = explain_case(load_scheme(pack), cases(("x", "1", "40", "5", "K80.100x001", "")))
    gz1 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GZ1")
    assert gz1.why.children[0].detail.endswith(f"(set OR replaced at {pack / 'scheme.grp'}:3)")


@pytest.mark.parametrize("line, code", [
    ("refine adrg XX1 { drg XX19 }", "unknown-adrg"),
    ("replace adrg XX1 when true", "unknown-adrg"),
    ("replace mdc MDCX when true", "unknown-mdc"),
    ("replace drg XX19 when true", "unknown-drg"),
    ("remove adrg XX1", "unknown-adrg"),
    ("remove drg XX19", "unknown-drg"),
    ("remove mdc MDCX", "unknown-mdc"),
    ("move adrg XX1 after GD1", "unknown-adrg"),
    ("move adrg GD1 after XX1", "unknown-adrg"),
    ("move mdc MDCG before MDCX", "unknown-mdc"),
    ("rename drg XX19 to XX18", "unknown-drg"),
    ("add adrg XX1 when true { drg XX19 } last in MDCX", "unknown-mdc"),
    ("add adrg XX1 when true { drg XX19 } last", "bad-position"),
    ("add drg GD12 after GD19", "unknown-drg"),
    ("replace set NOPE = {}", "unknown-set"),
    ("replace define nope = true", "unknown-define"),
    ('replace table nope = "x.csv"', "unknown-table"),
    ('patch table nope with "x.csv"', "unknown-table"),
    ("replace adrg GD1", "bad-overlay"),
])
def test_an_unknown_target_is_an_error_at_the_overlay_line(region, line, code):
    _, found = check_scheme(region("# line 2\n" + line + "\n"))
    errors = [(d.code, Path(d.span.file).parent.name, d.span.line) for d in found if d.severity == "error"]
    assert errors == [(code, "region", 3)], [d.render() for d in found]
    assert all(d.source_line for d in found if d.span)


# ---- settings ------------------------------------------------------------------------------------
def test_adrg_without_drg_settings(region):
    # GD1's DRGs now cover only stays of 3 days or more; HC1 also takes the appendix case
    body = ('refine adrg GD1 { drg GD11 when mcc  drg GD15 when los >= 3 }\n'
            'add adrg HC2 when pdx in codes[group = "appendix"] { drg HC29 } after HC1\n')
    short = (*APPENDIX[:2], "1", *APPENDIX[3:])
    assert grouped(region(body), short, APPENDIX) == [("grouped", "MDCG", "HC2", "HC29"), ("grouped", "MDCG", "GD1", "GD15")]
    pack = region("setting adrg_without_drg = no_drg\n" + body)
    assert grouped(pack, short, APPENDIX) == [("no_drg", "MDCG", "GD1", None), ("grouped", "MDCG", "GD1", "GD15")]
    e = explain_case(load_scheme(pack), cases(("x", *short[:2], short[2], *short[3:])))
    assert (e.status, e.mdc, e.adrg, e.drg) == ("no_drg", "MDCG", "GD1", None)
    gd1 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GD1")
    setting = gd1.children[-1]
    assert (setting.level, setting.rule, setting.source) == ("setting", "setting adrg_without_drg = no_drg",
                                                             f"{pack / 'scheme.grp'}:2")
    assert trace_text(e) == "MDCG>GD1>-"


def test_second_attempt_with_later_procedures(region):
    # the principal procedure is unknown; the appendix procedure comes third
    row = ("1", "40", "5", "K35.800", "99.9999|88.8888|47.0100")
    assert grouped(region(""), row) == [("no_adrg", "MDCG", None, None)]
    pack = region("setting second_attempt = later_procedures\n")
    assert grouped(pack, row) == [("grouped", "MDCG", "GD1", "GD15")]
    e = explain_case(load_scheme(pack), cases(("x", *row)))
    assert (e.status, e.drg) == ("grouped", "GD15")
    assert [(s.level, s.code, s.matched) for s in e.steps if s.level in ("setting", "attempt")] == [
        ("setting", "second_attempt", True), ("attempt", "2", False), ("attempt", "3", True)]
    assert trace_text(e) == "MDCG>- || proc 2 88.8888: MDCG>- || proc 3 47.0100: MDCG>GD1>GD15"


def test_check_of_an_overlay_summarises_the_base_in_one_line(chs_pack, tmp_path, capsys):
    from grouper.cli import main

    overlay = tmp_path / "region"
    overlay.mkdir()
    (overlay / "scheme.grp").write_text(
        f'scheme "region" version "1" extends "{chs_pack}"\n'
        "# a region's own dead rule: a DRG after an unconditional one\n"
        'refine adrg GZ1 {\n  drg GZ11 "with MCC" when mcc\n  drg GZ19 "all"\n  drg GZ15 "never"\n}\n', encoding="utf-8")
    assert main(["check", str(overlay)]) == 0
    err = capsys.readouterr().err
    own = [line for line in err.splitlines() if "warning[" in line]
    assert len(own) == 1 and "region/scheme.grp:6" in own[0] and "DRG GZ15 can never match: DRG GZ19" in own[0]
    assert f"base {chs_pack}: 0 error(s), 21 warning(s) of its own (out-of-mdc-code 17, unknown-code 4)" in err
    assert main(["check", "--strict", str(overlay)]) == 1     # a dead rule is an error under --strict


def test_the_readme_worked_example_on_the_national_pack(chs_pack, tmp_path):
    readme = (Path(__file__).parents[1] / "docs" / "scheme-language.md").read_text(encoding="utf-8")
    text = readme[readme.index('scheme "某市 DRG"'):]
    text = text[:text.index("```")].replace('extends "../chs-drg-1.1"', f'extends "{chs_pack}"')
    region = tmp_path / "region"
    region.mkdir()
    (region / "scheme.grp").write_text(text, encoding="utf-8")
    (region / "cc.patch.csv").write_text("op,code,level,exclusion_table\n-,J96.000,MCC,109\n+,J96.000,CC,109\n")
    (region / "mdc_dx.patch.csv").write_text("op,mdc,code,site\n-,MDCR,Z51.000x008,\n")
    scheme = load_scheme(region)
    assert [d.code for d in scheme.diagnostics if Path(d.span.file).parent == region] == ["no-default-drg"]
    e_adrgs = [a for a in scheme.plan.adrg_codes if a.startswith("E")]
    assert e_adrgs[:1] == ["EB9"] and e_adrgs.index("ES3") == e_adrgs.index("ES2") - 1 and "ES16" in scheme.plan.drg_codes
    batch = cases(("radio0", "1", "60", "0", "Z51.000x003", "92.2000"), ("radio8", "1", "60", "8", "Z51.000x003", "92.2000"),
                  ("removed", "1", "60", "8", "Z51.000x008", "92.2000"),
                  ("vent", "1", "60", "8", "A15.000x001|Z99.000", ""), ("cc", "1", "60", "8", "A15.000x001|J96.000", ""))
    results = group_frame(scheme.plan, batch).select("status", "adrg", "drg").rows()
    assert results[:2] == [("no_drg", "RC1", None), ("grouped", "RC1", "RC14")]
    assert results[2] == ("ungroupable", None, None)                     # Z51.000x008 left MDCR's list
    assert results[3:] == [("grouped", "ES1", "ES11"), ("grouped", "ES1", "ES16")]   # Z99.000 is an MCC, J96.000 a CC
