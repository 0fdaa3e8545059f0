"""DIP grouping: the language and its checks, the fallback order and every tie-break (hand-chosen
cases on the mini pack), the batch kernels against the reference interpreter, the CLI."""
import shutil
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from grouper.cli import main
from grouper.dip import _kernel_py, group_dip, load_dip_scheme
from grouper.dip.catalogue import format_procs, parse_procs
from grouper.dip.parse import parse_text
from grouper.dip.reference import Reference, reference_group
from grouper.dip.run import KERNEL, group_dip_frame
from grouper.dip.scheme import check_dip_scheme
from grouper.errors import SchemeError

MINI = Path(__file__).parent / "fixtures" / "dip" / "mini"


@pytest.fixture(scope="module")
def mini():
    return load_dip_scheme(MINI)


def _cases(rows, fields=None) -> pl.DataFrame:
    frame = pl.DataFrame({"id": [str(i) for i in range(len(rows))], "dx": [r[0] for r in rows],
                          "proc": [r[1] for r in rows]},
                         schema={"id": pl.String, "dx": pl.List(pl.String), "proc": pl.List(pl.String)})
    return frame.with_columns(pl.Series(k, v, dtype=pl.String) for k, v in (fields or {}).items())


# ---- procedure expressions -------------------------------------------------------------------
def test_procedure_expressions():
    assert parse_procs("") == ()
    assert parse_procs("51.2300") == ((("51.2300",),),)
    assert parse_procs("a+b/c") == ((("a",), ("b",)), (("c",),))          # + binds tighter than /
    assert parse_procs(" a / b + c ") == ((("a",),), (("b",), ("c",)))
    assert parse_procs("a+(c/d)+e") == ((("a",), ("c", "d"), ("e",)),)    # a bracket holds one term's choices
    for text in ("a+b/c", "a+(c/d)+e", "(a/b)+c", "a/b", "a+(c/d)+e/f"):
        assert format_procs(parse_procs(text)) == text
    for bad in ("a++b", "/a", "a/", "+a", "(a", "a)", "((a))", "a(b)", "()", "a+(b/)"):
        with pytest.raises(ValueError):
            parse_procs(bad)


# ---- grouping rules: fallback order and tie-breaks -------------------------------------------
CASES = [
    # (dx, procs, expected group, why)
    (["K80.100"], ["51.1000", "51.8800"], "K80.1-3", "most + terms: ERCP+取石 beats ERCP alone"),
    (["K63.500"], ["45.2300", "45.4200"], "K63.5-3", "most matched procedures: 45.2300/45.4200 names both"),
    (["K80.100"], ["51.1000", "51.2300"], "K80.1-1", "equal + terms and matches, no cost: file order"),
    (["I21.000"], ["00.6600", "36.0700"], "I21.0-1", "file order: both rows tie on every key"),
    (["K80.100"], [], "K80.1-0", "conservative core row: no procedure"),
    (["K80.100"], ["88.0100"], "K80-C1", "comprehensive 诊断性操作 (a non-qualifying CT) outranks core 保守"),
    (["K35.800"], ["47.0100"], "K35.8-1", "any of: 47.0100/47.0900"),
    (["K35.800"], ["47.0900"], "K35.8-1", "core before primary, though the primary row K35.8-9 matches too"),
    (["J18.900"], [], "J18.9-0", "primary when no core row of the category exists"),
    (["K80.100"], ["51.8800"], "K-C2", "core category, no core row matches → comprehensive (K × 治疗性操作)"),
    (["K80.200"], ["51.2300"], "K80-C3", "no core row: longest comprehensive prefix K80 × 相关手术"),
    (["K80.200"], ["51.8800"], "K-C2", "K80 has no 治疗性操作 row: the next shorter prefix K has"),
    (["K80.200"], ["88.0100"], "K80-C1", "treatment type from a non-qualifying procedure (诊断性操作)"),
    (["K63.500"], ["99.0400"], "K-C0", "a procedure with no treatment type: 保守治疗; K63 has no row, K has"),
    (["I10.x00"], [], "I-C0", "1-character comprehensive category"),
]


@pytest.mark.parametrize("dx,procs,expected,why", CASES, ids=[c[3] for c in CASES])
def test_rules(mini, dx, procs, expected, why):
    assert Reference(mini).decide(dx, procs).code == expected
    assert group_dip_frame(mini.plan, _cases([(dx, procs)]))["dip"][0] == expected


def test_statuses(mini):
    ref = Reference(mini)
    assert (ref.decide(["A01.000"], []).status, ref.decide(["A01.000"], []).reason) == \
        ("ungrouped", "no_comprehensive_category")
    d = ref.decide(["I25.100"], ["36.0700"])     # I is listed, but not for 治疗性操作
    assert (d.status, d.reason, d.treatment) == ("ungrouped", "no_comprehensive_treatment", "治疗性操作")
    assert ref.decide(["Z51.100"], []).reason == "excluded_dx"
    assert ref.decide([], ["51.2300"]).reason == "missing_dx"
    assert ref.decide([""], []).reason == "missing_dx"
    out = group_dip_frame(mini.plan, _cases([(["A01.000"], []), (["Z51.100"], []), ([], []), (["I25.100"], ["36.0700"])]))
    assert out["status"].to_list() == ["ungrouped", "invalid", "invalid", "ungrouped"]
    assert out["reason"].to_list() == ["no_comprehensive_category", "excluded_dx", "missing_dx",
                                       "no_comprehensive_treatment"]


def test_explain_names_the_tie_break(mini):
    d = Reference(mini).decide(["K80.100"], ["51.1000", "51.8800"])
    assert d.decided_by == ("precedence: core 治疗性操作 is class 3 of 12, before comprehensive 治疗性操作 (K-C2, "
                            "class 8); within core: most '+' terms (1 vs 0 for K80.1-4)")
    d = Reference(mini).decide(["K80.100"], ["51.1000", "51.2300"])
    assert [c.matches for c in d.candidates["core"]] == [True, False, False, True, False]
    assert d.candidates["core"][2].why == "missing 51.8800"
    assert d.decided_by.endswith("within core: file order (line 4 before K80.1-4 on line 7)")
    d = Reference(mini).decide(["I21.000"], ["00.6600", "36.0700"])
    assert d.decided_by.endswith("file order (line 12 before I21.0-2 on line 13)")


# ---- batch kernels agree with the reference --------------------------------------------------
def _generated(n: int, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    dxs = ["K80.100", "K80.200", "K80.1", "K63.500", "K35.800", "K35.801", "J18.900", "I21.000", "I10.x00", "K",
           "K8", "A01.000", "Z51.100", "", None, "I25.100", "K63.5", "k80.100"]
    pxs = ["47.0100", "47.0900", "51.2300", "51.2200", "51.1000", "51.8800", "45.2300", "45.4200", "36.0700",
           "00.6600", "88.0100", "99.0400", "12.3400", "", None]
    secondary = ["E11.900", "J96.000", "C78.700", "I50.900", "I50.000", "E11.200", "N18.500", ""]
    dx = [[dxs[i]] + [secondary[j] for j in rng.integers(0, len(secondary), rng.integers(0, 4))]
          for i in rng.integers(0, len(dxs), n)]
    px = [[pxs[j] for j in rng.integers(0, len(pxs), rng.integers(0, 6))] + (["92.2400"] if rng.random() < 0.1 else [])
          for _ in range(n)]
    pick = lambda values: [values[k] for k in rng.integers(0, len(values), n)]  # noqa: E731
    fields = {"age": pick(["0", "1", "40", "64", "65", "80", "", "x"]), "age_days": pick(["", "10", "28", "29", "200"]),
              "los": pick(["1", "3", "4", "10", "30", "45", ""]), "discharge": pick(["1", "5", "5", "9", ""])}
    return _cases(list(zip(dx, px)), fields)


@pytest.mark.parametrize("kernel", ["compiled", "python"])
def test_kernel_agrees_with_reference(mini, kernel):
    cases = _generated(30_000, seed=7)
    expected = reference_group(mini, cases)
    chosen = KERNEL if kernel == "compiled" else _kernel_py
    got = group_dip_frame(mini.plan, cases, kernel=chosen, threads=2 if kernel == "compiled" else 1)
    assert got.equals(expected)
    assert set(got["dip_level"].drop_nulls()) == {"core", "primary", "comprehensive"}
    assert set(got["status"]) == {"grouped", "ungrouped", "invalid"}
    assert set(got["aux"].drop_nulls()) == {"I-B", "III", "IV-B", "T-IV", "T-VA", "N", "E", "C5", "G"}


def test_group_dip_reads_files_and_keeps_row_order(mini, tmp_path):
    src = tmp_path / "cases.csv"
    src.write_text("病案号,主要诊断编码,其他诊断编码1,主要手术操作编码,其他手术操作编码1\n"
                   "A,K80.100,,51.1000,51.8800\nB,K35.800,,,\nC,,,,\n", encoding="utf-8")
    out = group_dip(src, mini)
    assert out.select("id", "status", "dip").rows() == [("A", "grouped", "K80.1-3"), ("B", "grouped", "K35.8-0"),
                                                       ("C", "invalid", None)]


# ---- checks ------------------------------------------------------------------------------------
def _pack(tmp_path, scheme_text=None, catalogue_lines=()):
    pack = tmp_path / "pack"
    shutil.copytree(MINI, pack)
    if scheme_text is not None:
        (pack / "scheme.dip").write_text(scheme_text, encoding="utf-8")
    if catalogue_lines:
        with (pack / "catalogue.csv").open("a", encoding="utf-8") as fh:
            fh.write("".join(line + "\n" for line in catalogue_lines))
    return pack


def test_syntax_error_points_at_the_line(tmp_path):
    text = (MINI / "scheme.dip").read_text(encoding="utf-8").replace("diagnosis length 5", "diagnosis length five")
    with pytest.raises(SchemeError) as exc:
        load_dip_scheme(_pack(tmp_path, text))
    rendered = exc.value.diagnostics[0].render()
    assert "scheme.dip:11:20: error[syntax]: unexpected name 'five'" in rendered
    assert "^^^^" in rendered


def test_catalogue_row_errors_point_at_the_csv_cell(tmp_path):
    pack = _pack(tmp_path, catalogue_lines=["core,BAD-1,坏行,K80.1,51.2300++51.2200,,800",
                                            "core,BAD-2,坏分值,K80.1,51.2200,,abc",
                                            "core,BAD-3,亚目长度,K80,51.2200,,100",
                                            "comprehensive,BAD-4,未知治疗,K80,,手术,100",
                                            "core,K80.1-1,重复编码,K80.1,51.8800,,100"])
    _, _, found = check_dip_scheme(pack)
    by_code = {d.code: d for d in found}
    bad = by_code["bad-procedures"]
    assert (Path(bad.span.file).name, bad.span.line, bad.span.column) == ("catalogue.csv", 22, 21)
    assert "^" in bad.render() and "51.2300++51.2200" in bad.render()
    assert by_code["bad-score"].span.line == 23
    assert by_code["bad-dx-length"].span.line == 24
    assert by_code["unknown-treatment"].span.line == 25
    assert by_code["duplicate-group"].span.line == 26


def test_scheme_errors_and_warnings(tmp_path):
    text = (MINI / "scheme.dip").read_text(encoding="utf-8")
    _, _, found = check_dip_scheme(_pack(tmp_path, text.replace("  core = catalogue[level = \"core\"]\n", "")))
    assert [d.code for d in found] == ["missing-setting"]
    _, _, found = check_dip_scheme(_pack(tmp_path / "2", text.replace("catalogue[level = \"core\"]", "catalog")))
    assert [d.code for d in found] == ["unknown-table"] and found[0].span.line == 15
    _, _, found = check_dip_scheme(_pack(tmp_path / "3", text.replace("level = \"core\"", "lvl = \"core\"")))
    assert [d.code for d in found] == ["unknown-column"]
    pack = _pack(tmp_path / "4", catalogue_lines=["core,K80.1-9,同键,K80.1,51.2300,,900",
                                                  "core,K80.1-8,非手术目录,K80.1,88.0100,,900"])
    _, _, found = check_dip_scheme(pack)
    assert sorted((d.code, d.severity) for d in found) == [("unqualified-code", "warning"), ("unreachable", "warning")]


# ---- CLI ---------------------------------------------------------------------------------------
def test_cli_check_group_explain(tmp_path, capsys):
    assert main(["check", str(MINI)]) == 0
    assert "12 core, 2 primary, 6 comprehensive" in capsys.readouterr().err
    src = tmp_path / "cases.csv"
    src.write_text("id,dx,proc\n1,K80.100,51.1000|51.2300\n2,A01.000,\n", encoding="utf-8")
    out = tmp_path / "r.parquet"
    assert main(["group", str(src), "-o", str(out), "--scheme", str(MINI), "-q"]) == 0
    assert pl.read_parquet(out).select("dip", "status").rows() == [("K80.1-1", "grouped"), (None, "ungrouped")]
    assert main(["group", str(src), "-o", str(tmp_path / "t.csv"), "--scheme", str(MINI), "--trace", "1"]) == 2
    assert main(["explain", "--scheme", str(MINI), "--cases", str(src), "--id", "1", "--try=-proc:51.2300"]) == 0
    text = capsys.readouterr().out
    assert "file order (line 4 before K80.1-4" in text and "changed" in text
    assert main(["explain", "--scheme", str(MINI), "--dx", "K80.100", "--proc", "51.1000|51.8800", "--json"]) == 0
    import json

    data = json.loads(capsys.readouterr().out)
    assert data["dip"] == "K80.1-3" and data["tie_breaks"]["core"]["decided_by"].startswith("most '+' terms")
    broken = _pack(tmp_path, catalogue_lines=["core,BAD-1,坏行,K80.1,/,,800"])
    assert main(["check", str(broken)]) == 1
    assert "catalogue.csv:22" in capsys.readouterr().err


def test_kernels_agree_with_reference_on_a_synthetic_catalogue(tmp_path):
    """A generated 3,000-row catalogue (overlapping rows: every tie-break occurs; bracketed choices,
    chapter ranges, reference costs) and 40,000 cases with costs and repeated procedures."""
    from grouper.dip.synth import synthetic_cases, write_synthetic_pack

    pack = load_dip_scheme(write_synthetic_pack(tmp_path / "synthetic", rows=3_000, seed=3))
    assert pack.diagnostics == []
    cases = synthetic_cases(tmp_path / "synthetic", 40_000, seed=4)
    expected = reference_group(pack, cases)
    assert group_dip_frame(pack.plan, cases, threads=2).equals(expected)
    assert group_dip_frame(pack.plan, cases.head(8_000), kernel=_kernel_py).equals(expected.head(8_000))
    levels = expected["dip_level"].value_counts()
    assert set(levels["dip_level"].drop_nulls()) == {"core", "primary", "comprehensive"}
    assert expected["dip"].str.starts_with("A00-B99").sum() > 0 and expected["dip"].str.starts_with("C00-D48").sum() > 0
    assert any("(" in r.procs for r in pack.rows["core"])
    assert group_dip_frame(pack.plan.with_point_value(Decimal("3.5")), cases.head(8_000)).equals(
        reference_group(pack, cases.head(8_000), point_value="3.5"))


# ---- auxiliary catalogue (辅助目录) ----------------------------------------------------------------
AUX = [
    # (secondary dx, procs, fields, expected subtype, why)
    ([], [], {"los": "5"}, "I-B", "LOS > 3"),
    ([], [], {"los": "3"}, None, "LOS 3: no subtype, factor 1"),
    (["J96.000"], [], {"los": "5"}, "III", "MCC 1.3 beats I-B 1.05"),
    (["J96.000"], [], {"los": "5", "discharge": "5"}, "IV-B", "death with LOS > 3: 1.5"),
    ([], [], {"los": "2", "discharge": "5"}, None, "death with LOS 2: IV-B needs LOS ≥ 4"),
    (["C78.700"], [], {}, "T-IV", "metastasis 1.4 beats CCI ≥ 5 (6 points) 1.25"),
    (["J96.000"], ["92.2400"], {}, "III", "tie at 1.3: III is listed before T-VA"),
    ([], ["92.2400"], {}, "T-VA", "radiotherapy"),
    ([], [], {"age": "0", "age_days": "10"}, "N", "neonate"),
    ([], [], {"age": "0", "age_days": "29"}, None, "29 days is not a neonate"),
    ([], [], {"age": "70"}, "E", "elderly"),
    (["I50.900", "I50.000", "E11.200", "N18.500"], [], {}, "C5", "CCI 1 + 2 + 2 = 5 (CHF counted once)"),
    (["I50.900", "I50.000", "E11.200"], [], {}, None, "CCI 3"),
]


@pytest.mark.parametrize("secondary,procs,fields,expected,why", AUX, ids=[a[4] for a in AUX])
def test_auxiliary_subtypes(mini, secondary, procs, fields, expected, why):
    cases = _cases([(["J18.900", *secondary], procs)], {k: [v] for k, v in fields.items()})
    out = group_dip_frame(mini.plan, cases)
    factors = {s.code: s.factor for s in mini.plan.auxiliary.subtypes}
    assert out.select("dip", "aux", "aux_factor").row(0) == ("J18.9-0", expected, factors.get(expected, 1.0))
    assert reference_group(mini, cases).equals(out)


def test_auxiliary_group_restriction_and_ungrouped(mini):
    cases = _cases([(["K80.100"], []), (["J18.900"], []), (["K80.200"], ["51.8800"]), (["A01.000"], [])],
                   {"los": ["40", "40", "40", "40"]})
    out = group_dip_frame(mini.plan, cases)
    assert out["aux"].to_list() == ["G", "I-B", "G", None]           # K80.1-0 and K-C2 start with K80 / K-C
    assert out["aux_factor"].to_list() == [1.6, 1.05, 1.6, None]
    d = Reference(mini).decide(["K80.100"], [], {"los": 40, "age": None, "age_days": None, "discharge": None})
    assert d.aux.code == "G" and [s.code for s, holds in d.aux_verdicts if holds] == ["I-B", "G"]


def test_auxiliary_errors(tmp_path):
    pack = _pack(tmp_path)
    with (pack / "aux.csv").open("a", encoding="utf-8") as fh:
        fh.write("BAD,未知目录,1.2,,,,,,,,,nolist,,,,\nBAD2,坏系数,x,,,,,,,,,,,,,\n")
    _, _, found = check_dip_scheme(pack)
    assert [(d.code, d.span.line) for d in found] == [("unknown-list", 11), ("bad-value", 12)]


# ---- scores and keys: refused or warned by `check`, with the row ---------------------------------
@pytest.mark.parametrize("score", ["0", "-5", "nan", "NaN", "inf", "-inf", "1e12", "1000001"])
def test_check_refuses_bad_scores(tmp_path, score):
    pack = _pack(tmp_path, catalogue_lines=[f"core,BAD-1,坏分值,K80.1,51.2200+51.8800,,{score}"])
    _, _, found = check_dip_scheme(pack)
    assert [(d.code, d.severity, d.span.line) for d in found] == [("bad-score", "error", 22)]
    assert "BAD-1" in found[0].message and score in found[0].message
    with pytest.raises(SchemeError):
        load_dip_scheme(pack, cache=False)


def test_check_warns_about_keys_no_code_reaches(tmp_path):
    pack = _pack(tmp_path, catalogue_lines=["comprehensive,R-1,传染病,A00-B99,,保守治疗,300",
                                            "comprehensive,R-2,倒序,B99-A00,,保守治疗,300",
                                            "comprehensive,R-3,小写,k80,,相关手术,300",
                                            "comprehensive,R-4,空格,K 8,,相关手术,300",
                                            "core,R-5,小写亚目,k80.1,51.2200+51.8800,,300",
                                            "comprehensive,R-6,半截,A00-B9,,保守治疗,300"])
    _, _, found = check_dip_scheme(pack)
    assert sorted((d.code, d.severity, d.span.line) for d in found) == [
        ("bad-range", "error", 27),
        ("unreachable-key", "warning", 23), ("unreachable-key", "warning", 24), ("unreachable-key", "warning", 25),
        ("unreachable-key", "warning", 26)]
    assert "runs backwards" in next(d.message for d in found if d.span.line == 23)


def test_same_key_rows_are_told_apart_by_the_cost_step(tmp_path):
    text = (MINI / "scheme.dip").read_text(encoding="utf-8").replace("  exclude = excluded\n",
                                                                     "  exclude = excluded\n  point value 10\n")
    pack = _pack(tmp_path, text, catalogue_lines=["core,K80.1-9,同键,K80.1,51.2300,,900"])
    _, _, found = check_dip_scheme(pack)
    assert [(d.code, d.span.line) for d in found] == [("same-key", 22)]
    loaded = load_dip_scheme(pack, cache=False)
    frame = _cases([(["K80.100"], ["51.2300"]), (["K80.100"], ["51.2300"])]).with_columns(
        pl.Series("cost", ["8000", "12000"]))
    assert group_dip_frame(loaded.plan, frame)["dip"].to_list() == ["K80.1-9", "K80.1-1"]   # 9,000 vs 11,500
    assert reference_group(loaded, frame).equals(group_dip_frame(loaded.plan, frame))
