"""`grouper explain`: decision paths agree with the batch result; what-if scenarios."""
import json
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.explain import (Change, apply_changes, explain_case, parse_change, removal_scenarios, trace_text,
                                    what_if)
from grouper.pipeline import group_frame
from grouper.io import cases_from_frame
from grouper.scheme import load_scheme

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"


def case(dx, proc="", sex="1", age="40", **extra):
    fields = {"id": "c1", "sex": sex, "age": age, "dx": dx, "proc": proc, **extra}
    return cases_from_frame(pl.DataFrame([fields], schema={k: pl.String for k in fields}))


@pytest.fixture(scope="module")
def mini():
    return load_scheme(MINI)


def walk(check):
    yield check
    for child in check.children:
        yield from walk(child)


def all_steps(steps):
    for step in steps:
        yield step
        yield from all_steps(step.children)


def test_golden_sample_explanations_agree_with_batch(chs_scheme, golden_cases):
    batch = group_frame(chs_scheme.plan, golden_cases)
    # one case of every DRG and every non-grouped status, plus a spread of others
    picks = set(batch.group_by("drg", "status").agg(pl.col("id").first())["id"].to_list())
    picks |= set(golden_cases["id"].gather(range(0, golden_cases.height, 500)).to_list())
    rows = golden_cases.with_row_index().filter(pl.col("id").is_in(sorted(picks)))
    for row in rows.iter_rows(named=True):
        i = row["index"]
        e = explain_case(chs_scheme, golden_cases[i:i + 1])
        b = batch.row(i, named=True)
        assert (e.status, e.mdc, e.adrg, e.drg, e.reason) == (b["status"], b["mdc"], b["adrg"], b["drg"], b["reason"])
        for step in all_steps(e.steps):
            if step.why is not None:
                assert step.why.holds == step.matched, (e.id, step.code)
                assert not any("disagrees" in c.detail for c in walk(step.why))
        if e.status == "grouped":
            assert trace_text(e).split(" | ")[-1] == f"{e.mdc}>{e.adrg}>{e.drg}"
        if e.status == "no_adrg":
            entered = [s.code for s in e.steps if s.level == "mdc" and s.matched]
            assert entered[-1] == e.mdc


def test_explains_cc_exclusion(mini):
    # J18.900 is an MCC of exclusion table T1; with J18.900 as principal it is excluded.
    e = explain_case(mini, case("J18.900|J18.900", age="5", age_days="2000"))
    assert (e.status, e.drg) == ("grouped", "ES19")
    e = explain_case(mini, case("K35.800|J18.900", "47.0100"))
    assert e.drg == "GD11"
    gd1 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GD1")
    mcc = gd1.children[0].why
    assert mcc.holds and "matched: J18.900" in "".join(c.detail for c in walk(mcc))


def test_excluded_secondary_is_named(chs_scheme):
    # A pdx with an exclusion table, and a secondary MCC of the same table (found in the pack data).
    cc = pl.read_csv(Path(chs_scheme.path).parent / "cc.csv", infer_schema=False)
    cce = pl.read_csv(Path(chs_scheme.path).parent / "cc_exclusion.csv", infer_schema=False)
    pair = cce.join(cc.filter(pl.col("level") == "MCC"), on="exclusion_table").filter(pl.col("pdx") != pl.col("code"))
    pdx, mcc, table = pair.row(0)[0], pair.row(0)[2], pair.row(0)[1]
    e = explain_case(chs_scheme, case(f"{pdx}|{mcc}"))
    details = [c.detail for s in all_steps(e.steps) if s.why for c in walk(s.why)]
    assert any("excluded because" in d and mcc in d and f"table {table}" in d for d in details) or e.status != "grouped"


def test_invalid_and_malformed(mini):
    e = explain_case(mini, case("K35.800", sex=None))
    assert (e.status, e.reason) == ("invalid", "sex_missing")
    assert [s.code for s in e.steps if s.matched] == ["sex_missing"]
    e = explain_case(mini, case("K35.800", age="forty"))
    assert (e.status, e.reason) == ("invalid", "malformed_age")
    assert trace_text(e) == "invalid:malformed_age"


def test_not_equal_filter_treats_empty_cells_as_empty(mini):
    e = explain_case(mini, case("K35.800"))
    mdcz = e.steps[[s.code for s in e.steps].index("MDCZ")]
    assert "K35.800 is not in TRAUMA" in mdcz.why.children[0].detail


def test_what_if(mini):
    c = case("K35.800|J18.900", "47.0100")
    rows = what_if(mini, c, removal_scenarios(c) + [[parse_change("+dx:K80.100x001"), parse_change("-dx:J18.900")]])
    assert [(r.changes, r.drg, r.changed) for r in rows] == [
        ("(as recorded)", "GD11", False), ("-dx:J18.900", "GD15", True), ("-proc:47.0100", "GZ19", True),
        ("+dx:K80.100x001, -dx:J18.900", "GD13", True)]


def test_what_if_never_touches_the_principal_diagnosis(mini):
    c = case("K35.800|J18.900", "47.0100")
    assert [s[0].code for s in removal_scenarios(c)] == ["J18.900", "47.0100"]
    with pytest.raises(ValueError, match="not a secondary diagnosis"):
        apply_changes(c, [Change("remove", "dx", "K35.800")])
    with pytest.raises(ValueError):
        parse_change("dx:K35.800")


def test_cli_explain_json(tmp_path, capsys):
    src = tmp_path / "cases.csv"
    src.write_text("id,sex,age,dx,proc\nA,1,40,K35.800|J18.900,47.0100\n", encoding="utf-8")
    assert main(["explain", "--scheme", str(MINI), "--cases", str(src), "--id", "A", "--json", "--try", "each"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["status"], out["mdc"], out["adrg"], out["drg"]) == ("grouped", "MDCG", "GD1", "GD11")
    assert out["steps"][-1]["code"] == "MDCG" and out["steps"][-1]["source"].endswith("scheme.grp:23")
    assert [w["drg"] for w in out["what_if"]] == ["GD11", "GD15", "GZ19"]


def test_cli_explain_tree_and_errors(capsys):
    assert main(["explain", "--scheme", str(MINI), "--dx", "K35.800", "--proc", "47.0100", "--sex", "2", "--age", "30"]) == 0
    out = capsys.readouterr().out
    assert "GD15" in out and "✓ adrg GD1" in out and "scheme.grp:24" in out
    assert main(["explain", "--scheme", str(MINI)]) == 2   # no case: a usage error
    assert main(["explain", "--scheme", str(MINI), "--dx", "K35.800", "--try=-dx:X"]) == 2   # a --try that cannot apply


def test_what_if_shows_weights_of_the_demo_scheme():
    from grouper.io import read_cases

    demo = load_scheme(None)
    cases = read_cases(Path(__file__).parents[1] / "tables" / "demo" / "discharges.csv")
    row = cases.filter(pl.col("id") == "G02")
    rows = what_if(demo, row, removal_scenarios(row))
    assert [(r.drg, r.weight) for r in rows] == [("GD13", 1.32), ("GD15", 1.1), ("GZ13", 0.84)]
    assert explain_case(demo, row).weight == 1.32


def test_explain_applies_the_same_validation_as_the_batch(tmp_path):
    import shutil

    pack = tmp_path / "mini"
    shutil.copytree(MINI, pack)
    text = (pack / "scheme.grp").read_text(encoding="utf-8")
    (pack / "scheme.grp").write_text(text.replace('scheme "mini" version "1"',
                                                  'scheme "mini" version "1"\nvalidate duplicate_dx = error'), encoding="utf-8")
    scheme = load_scheme(pack, cache=False)
    row = case("K35.800|J18.900|J18.900", "47.0100")
    e = explain_case(scheme, row)
    b = group_frame(scheme.plan, row).row(0, named=True)
    assert (e.status, e.reason) == (b["status"], b["reason"]) == ("invalid", "duplicate_dx")
    assert e.steps[0].matched and "J18.900" in e.steps[0].name
    assert [p["reason"] for p in e.problems] == ["duplicate_dx"]


def test_trace_column_only_for_chosen_rows(tmp_path):
    out = tmp_path / "r.parquet"
    demo = Path(__file__).parents[1] / "tables" / "demo" / "discharges.csv"
    assert main(["group", str(demo), "-o", str(out), "-q", "--trace", "G02", "--trace-status", "no_adrg"]) == 0
    res = pl.read_parquet(out)
    traced = res.filter(pl.col("trace").is_not_null())
    assert set(traced["id"]) == {"G02"} | set(res.filter(pl.col("status") == "no_adrg")["id"])
    assert traced.filter(pl.col("id") == "G02")["trace"].item() == "MDCA>- | MDCG>GD1>GD13"
    for r in traced.filter(pl.col("status") == "no_adrg").iter_rows(named=True):
        assert r["trace"].split(" | ")[-1] == f"{r['mdc']}>-"
    # without --trace there is no trace column at all
    assert main(["group", str(demo), "-o", str(out), "-q"]) == 0
    assert "trace" not in pl.read_parquet(out).columns
