"""The language additions CHS-DRG 2.0 needs: qy rules (status qy), `read` lines (sex spellings,
empty numbers, empty lists), `prefix` sets (also for codes the scheme never lists) and `count`."""
from pathlib import Path

import polars as pl
import pytest

from grouper.explain import explain_case, trace_text
from grouper.pipeline import group_frame
from grouper.errors import SchemeError
from grouper.lang.check import check
from grouper.lang.parse import parse_text
from grouper.lang.printer import scheme_text
from grouper.scheme import load_scheme
from test_run import frame, kernel

PACK = Path(__file__).parent / "fixtures" / "packs" / "mini-qy"


@pytest.fixture(scope="module")
def scheme():
    return load_scheme(PACK)


CASES = [
    # id, sex, age, age_days, weight, dept, los, discharge, dx, proc → status, mdc, adrg, drg
    (("ok", "1", "40", "", "", "", "", "", "K35.300", "47.0900"), ("grouped", "MDCG", "GD1", "GD19")),
    # empty age reads as 0, empty age_days as 0: a newborn; K35.300 is not perinatal → PQY before MDCP
    (("newborn-out", "2", "", "", "", "", "", "", "K35.300", ""), ("qy", "MDCP", None, "PQY")),
    # age "x" is unreadable: a warning, and it stays missing (comparisons false): no PQY, grouped by pdx
    (("age-x", "2", "x", "", "", "", "", "", "K35.300", "47.0900"), ("grouped", "MDCG", "GD1", "GD19")),
    # a P07 code the scheme never lists still matches `prefix "P07."`: enters MDCP
    (("p07-unknown", "1", "0", "3", "", "", "", "", "K35.300|P07.999x042", ""), ("grouped", "MDCP", "PR1", "PR19")),
    (("late", "1", "0", "40", "", "", "", "", "P22.000", ""), ("qy", "MDCP", None, "PQY")),
    # a male diagnosis on a female patient: top-level MQY before MDCM
    (("sex-mismatch", "2", "50", "", "", "", "", "", "N40.000", ""), ("qy", "MDCM", None, "MQY")),
    # in MDCM: MA1 is tried first, then the qy rule among the ADRGs
    (("ma1", "1", "50", "", "", "", "", "", "N40.000", "60.2100"), ("grouped", "MDCM", "MA1", "MA19")),
    (("mqy", "1", "50", "", "", "", "", "", "N40.000", "47.0900"), ("qy", "MDCM", None, "MQY")),
    (("mr1", "1", "50", "", "", "", "", "", "N40.000", ""), ("grouped", "MDCM", "MR1", "MR19")),
    # `read sex "1" as male, "2" as female`: 男 and 01 are not accepted spellings → malformed_sex
    (("sex-word", "男", "50", "", "", "", "", "", "K35.300", ""), ("invalid", None, None, None)),
    (("sex-01", "01", "50", "", "", "", "", "", "K35.300", ""), ("invalid", None, None, None)),
    (("sex-empty", "", "50", "", "", "", "", "", "K35.300", ""), ("invalid", None, None, None)),
    # `read empty dx as none` + `count dx = 0`: an empty field is invalid, a stray "|" is not
    (("dx-empty", "1", "50", "", "", "", "", "", "", ""), ("invalid", None, None, None)),
    (("dx-bar", "1", "50", "", "", "", "", "", "|K35.300", ""), ("ungroupable", None, None, None)),
]


@pytest.mark.parametrize("kname", ["python", "cython"])
def test_2_0_constructs_group_as_written(scheme, kname):
    cases = frame([c for c, _ in CASES])
    results = group_frame(scheme.plan, cases, kernel=kernel(kname))
    got = list(zip(results["id"], results.select("status", "mdc", "adrg", "drg").iter_rows()))
    assert got == [(c[0], want) for c, want in CASES]
    reasons = dict(zip(results["id"], results["reason"]))
    assert reasons["sex-word"] == "malformed_sex" and reasons["sex-01"] == "malformed_sex"
    assert reasons["sex-empty"] == "sex_missing" and reasons["dx-empty"] == "dx_missing"
    assert "malformed_age" in dict(zip(results["id"], results["warnings"]))["age-x"]


def test_read_empty_numbers_does_not_invent_warnings(scheme):
    """An empty age_days read as 0 is not an implausible age in days of an adult."""
    _, problems = group_frame(scheme.plan, frame([CASES[0][0]]), problems=True)
    assert problems.height == 0


def test_explain_names_the_qy_rule_that_fired(scheme):
    for case_id, code, where in (("sex-mismatch", "MQY", "top"), ("mqy", "MQY", "MDCM"), ("newborn-out", "PQY", "top")):
        row = frame([c for c, _ in CASES if c[0] == case_id])
        explanation = explain_case(scheme, row)
        assert (explanation.status, explanation.drg) == ("qy", code)
        fired = [s for s in explanation.steps if s.level == "qy" and s.matched]
        if where == "MDCM":
            mdc = next(s for s in explanation.steps if s.code == "MDCM")
            fired = [s for s in mdc.children if s.level == "qy" and s.matched]
        assert [s.code for s in fired] == [code]
        assert fired[0].why.holds and fired[0].source.endswith(".grp:" + str(fired[0].source.split(":")[-1]))
    assert trace_text(explain_case(scheme, frame([CASES[7][0]]))) == "MDCM>qy:MQY"


def test_round_trip_and_text(scheme):
    text = (PACK / "scheme.grp").read_text(encoding="utf-8")
    ast = parse_text(text)
    assert parse_text(scheme_text(ast)) == ast


@pytest.mark.parametrize("snippet, code", [
    ('qy XQY mdc MDCX when true', "unknown-mdc"),
    ('read sex "1" as male, "1" as female', "bad-read"),
    ('read sex " 1" as male', "bad-read"),
    ('read empty sex as 0', "bad-read"),
    ('read empty age as 0\nread empty age as 1', "duplicate-name"),
    ('qy GD19 when true', "duplicate-group"),
    ('define x = count distinct site of dx in prefix "P" >= 2', "labels-need-table"),
    ('set p = prefix ""', "bad-value"),
    ('read sex digits, "01" as female', "bad-read"),          # digits already read "01" as 1
    ('invalid x when sex = other', "bad-value"),             # no spelling is read as other
])
def test_check_reports_misuse(snippet, code):
    text = f'scheme "t" version "1"\n{snippet}\nmdc MDCG when true {{ adrg GD1 when true {{ drg GD19 }} }}\n'
    assert code in {d.code for d in check(parse_text(text), None)}


def test_read_sex_only_for_sex():
    with pytest.raises(SchemeError, match="only for sex"):
        parse_text('scheme "t" version "1"\nread age "1" as male\n')


def test_compiled_kernel_rejects_inconsistent_qy_arrays(scheme):
    import dataclasses

    import numpy as np

    from grouper.engine.run import run_kernel
    from grouper.pipeline import prepare

    cy = kernel("cython")
    batch = prepare(scheme.plan, frame([CASES[0][0]])).batch
    bad = dataclasses.replace(scheme.plan, qy_mdc=np.full_like(scheme.plan.qy_mdc, 99))
    with pytest.raises(ValueError, match="qy_mdc"):
        run_kernel(bad, batch, kernel=cy)
    args = (*scheme.plan.kernel_args(), *batch.kernel_args(), np.empty(1, np.uint8), *(np.empty(1, np.int32) for _ in range(4)))
    with pytest.raises(ValueError, match="give all or none"):
        cy.group_cases(*args, qy_cond=scheme.plan.qy_cond)


DIGITS_AND_WORDS = """scheme "t" version "1"
read sex digits, "男" as other, "女" as other
invalid sex_invalid when not sex in (1, 2, other)
mdc MDCM when pdx in {"N40.000"} and sex = male { adrg MR1 when true { drg MR19 } }
mdc MDCG when true { adrg GD1 when true { drg GD19 } }
"""


@pytest.mark.parametrize("kname", ["python", "cython"])
def test_read_sex_digits_and_words_read_as_other(tmp_path, kname):
    """`read sex digits, "男" as other, ...` (CHS-DRG 1.1's reference: sex compared as an integer, 男/女
    accepted as text): a string of digits is its number ("01" is male), 男/女 are accepted but equal
    neither male nor female, anything else — a sign, "M", "male" — is malformed_sex."""
    pack = tmp_path / "scheme.grp"
    pack.write_text(DIGITS_AND_WORDS, encoding="utf-8")
    plan = load_scheme(pack).plan
    assert (plan.sex_digits, plan.sex_spellings) == (True, {"男": -1, "女": -1})
    sexes = ["1", "01", " 1 ", "男", "女", "2", "0", "M", "male", "-1", "+1", "1.0", "99999999999", ""]
    results = group_frame(plan, frame([(f"c{i}", s, "50", "", "", "", "", "", "N40.000", "") for i, s in enumerate(sexes)]),
                          kernel=kernel(kname))
    got = dict(zip(sexes, zip(results["status"], results["mdc"], results["reason"])))
    assert got["1"] == got["01"] == got[" 1 "] == ("grouped", "MDCM", None)
    assert got["男"] == got["女"] == ("grouped", "MDCG", None)      # accepted, neither male nor female
    assert got["2"] == ("grouped", "MDCG", None)
    assert got["0"] == ("invalid", None, "sex_invalid")
    for unreadable in ("M", "male", "-1", "+1", "1.0", "99999999999"):
        assert got[unreadable] == ("invalid", None, "malformed_sex"), unreadable
    assert got[""][0] == "invalid"


def test_read_sex_digits_round_trip_and_check():
    ast = parse_text(DIGITS_AND_WORDS)
    text = scheme_text(ast)
    assert 'read sex digits, "男" as other, "女" as other' in text and "not sex in (1, 2, other)" in text
    assert parse_text(text) == ast
    assert [d for d in check(ast, None) if d.level == "error"] == []
    with pytest.raises(SchemeError, match="written once, first"):
        parse_text('scheme "t" version "1"\nread sex "男" as other, digits\n')
