"""CHS-DRG 2.0 conformance: the imported pack must reproduce the reference (OpenDRG's 2.0 encoding)
exactly on its golden set — status (qy included), MDC, ADRG and DRG — with both kernels, in memory
and streaming."""
import polars as pl
import pytest

from grouper import api
from grouper.engine.kernel import get_kernel
from grouper.pipeline import group_frame

from test_conformance import diff_against_golden, readable


def test_golden_set_in_memory(chs20_scheme, golden20_cases, chs20_tables):
    results = group_frame(chs20_scheme.plan, golden20_cases)
    assert results["id"].to_list() == golden20_cases["id"].to_list()
    diff = diff_against_golden(results, chs20_tables)
    assert diff.height == 0, readable(diff, chs20_tables)
    # the golden set's own distribution (README §4 of the 2.0 pack)
    counts = dict(results.group_by("status").len().iter_rows())
    assert counts == {"grouped": 17_753, "qy": 1_435, "no_adrg": 610, "invalid": 202}


def test_golden_set_streaming(chs20_scheme, chs20_tables):
    batches = list(api.group_batches(chs20_tables / "golden" / "cases.csv", chs20_scheme, batch_size=4_001))
    assert len(batches) == 5
    diff = diff_against_golden(pl.concat(batches), chs20_tables)
    assert diff.height == 0, readable(diff, chs20_tables)


def test_reference_kernel_agrees(chs20_scheme, golden20_cases, chs20_tables):
    """The pure-Python kernel alone reaches 100 % too (a third of the set keeps this fast)."""
    sample = golden20_cases.gather(list(range(0, golden20_cases.height, 3)))
    reference = group_frame(chs20_scheme.plan, sample, kernel=get_kernel("python"))
    diff = diff_against_golden(reference, chs20_tables).filter(pl.col("id").is_in(sample["id"].implode()))
    assert diff.height == 0, readable(diff, chs20_tables)
    try:
        compiled = get_kernel("cython")
    except ImportError:
        pytest.skip("Cython kernel not built")
    assert group_frame(chs20_scheme.plan, sample, kernel=compiled).equals(reference)


def test_threads_do_not_change_results(chs20_scheme, golden20_cases, monkeypatch):
    from grouper.engine import run

    monkeypatch.setattr(run, "MIN_ROWS_PER_THREAD", 1000)
    one = group_frame(chs20_scheme.plan, golden20_cases, threads=1)
    assert group_frame(chs20_scheme.plan, golden20_cases, threads=3).equals(one)


def test_imported_pack_checks_clean(chs20_pack):
    from grouper.scheme import check_scheme

    scheme, found = check_scheme(chs20_pack)
    assert [d for d in found if d.severity == "error"] == []
    assert len(scheme.mdcs) == 26
    assert sum(len(m.adrgs) for m in scheme.mdcs) == 409
    assert sum(len(a.drgs) for m in scheme.mdcs for a in m.adrgs) == 634
    # QY rules: 20 `or_pproc` + late_pdx inside MDCs; sex_mismatch (M, N) and neonate_outside before them
    assert sum(len(m.qys) for m in scheme.mdcs) == 21
    from grouper.lang import ast

    assert [(q.code, q.mdc) for q in scheme.of_type(ast.QyDef)] == [
        ("PQY", "MDCP"), ("MQY", "MDCM"), ("MQY", "MDCM")]


def test_every_2_0_behaviour_is_in_the_scheme_text(chs20_pack):
    """A reader of scheme.grp sees the QY rules, the input checks and how values are read."""
    text = (chs20_pack / "scheme.grp").read_text(encoding="utf-8")
    for line in ('read sex "1" as male, "2" as female', "read empty age, age_days, weight as 0",
                 "read empty dx as none", "invalid dx_missing", "validate malformed_age = warning",
                 'qy MQY "M_歧义组" mdc MDCM when pdx in mdc_dx[mdc = "MDCN"]', "qy BQY",
                 'any dx in prefix "P07."', "adrg ZZ1 \"多发性重要创伤无手术\" when not pproc in OR"):
        assert line in text, line


def test_qy_status_reports_the_code_and_mdc(chs20_scheme, golden20_cases):
    results = group_frame(chs20_scheme.plan, golden20_cases)
    qy = results.filter(pl.col("status") == "qy")
    assert qy["adrg"].null_count() == qy.height
    assert set(qy["drg"].unique()) == {f"{c}QY" for c in "BCDEFGHIJKLMNOPQRUVZ"}
    # the MDC is "MDC" + the code's letter: MQY from MDCN's rule is reported under MDCM
    assert qy.filter(pl.col("mdc") != pl.lit("MDC") + pl.col("drg").str.slice(0, 1)).height == 0


def test_1_1_cases_under_2_0(chs20_scheme, golden_cases):
    """The 1.1 golden cases group under 2.0 without error; 2.0 never leaves a case ungroupable."""
    results = group_frame(chs20_scheme.plan, golden_cases)
    assert results.height == golden_cases.height
    assert "ungroupable" not in set(results["status"])


def _all_steps(steps):
    for step in steps:
        yield step
        yield from _all_steps(step.children)


def test_explanations_agree_with_batch(chs20_scheme, golden20_cases):
    """explain on 2.0: one case of every qy code, every status and every eighth DRG; each path agrees
    with the batch result, and a qy case names the qy rule that fired."""
    from grouper.explain import explain_case, trace_text

    batch = group_frame(chs20_scheme.plan, golden20_cases)
    firsts = batch.with_row_index().group_by("status", "drg").agg(pl.col("index").first()).sort("index")
    picks = [i for i, (status, drg) in enumerate(zip(firsts["status"], firsts["drg"]))
             if status != "grouped" or i % 8 == 0]
    for i in firsts["index"].gather(picks).to_list():
        e = explain_case(chs20_scheme, golden20_cases[i:i + 1])
        b = batch.row(i, named=True)
        assert (e.status, e.mdc, e.adrg, e.drg, e.reason) == (b["status"], b["mdc"], b["adrg"], b["drg"], b["reason"])
        for step in _all_steps(e.steps):
            if step.why is not None:
                assert step.why.holds == step.matched, (e.id, step.code)
        if e.status == "qy":
            fired = [s for s in _all_steps(e.steps) if s.level == "qy" and s.matched]
            assert [s.code for s in fired] == [e.drg] and fired[0].source
            assert trace_text(e).endswith(f"qy:{e.drg}")


def test_validation_on_the_golden_set(chs20_scheme, golden20_cases):
    """Validation reports what was written: no implausible-age warning for an empty age_days read as 0;
    unreadable ages are warnings (the reference groups them), unaccepted sex spellings errors."""
    results, problems = group_frame(chs20_scheme.plan, golden20_cases, problems=True)
    counts = dict(problems.group_by("reason").agg(pl.col("row").n_unique()).iter_rows())
    assert counts.get("implausible_age_days", 0) < 100
    assert counts["malformed_age"] == 22                 # "x" and "1岁": grouped as NaN ages
    invalid = dict(results.filter(pl.col("status") == "invalid").group_by("reason").len().iter_rows())
    assert invalid == {"sex_missing": 34, "malformed_sex": 38, "dx_missing": 130}


def test_adrg_gate_only_skips_work(chs20_scheme, golden20_cases, golden_cases):
    """The MDC-level ADRG gate is an optimisation: without it every result is the same (no_adrg
    MDCs included), with both kernels, on the 2.0 golden cases and the 1.1 ones."""
    import dataclasses

    plan = chs20_scheme.plan
    mdca = plan.mdc_codes.index("MDCA")
    # MDCA (entered by every case) has a gate on each of its ADRGs, so it can be skipped
    assert plan.adrg_gate_mask is not None and not (plan.adrg_gate_free >> mdca) & 1
    assert (plan.adrg_gate_mask[1:] >> mdca & 1).sum() > 0
    without = dataclasses.replace(plan, adrg_gate_mask=None, adrg_gate_class=None, adrg_gate_other=None,
                                  adrg_gate_rows=None, mdc_entry_exact=0)
    for cases in (golden20_cases, golden_cases):
        assert group_frame(plan, cases).equals(group_frame(without, cases))
    sample = golden20_cases.gather(list(range(0, golden20_cases.height, 7)))
    assert group_frame(plan, sample, kernel=get_kernel("python")).equals(
        group_frame(without, sample, kernel=get_kernel("python")))


@pytest.mark.parametrize("part", ["adrg_gate", "mdc_entry_exact", "mdc_level_only"])
def test_adrg_and_entry_gates_only_skip_work(chs20_scheme, golden20_cases, golden_cases, part):
    """The ADRG-level gate (per item of the case in its role, the ADRGs, top-level qy rules and MDC
    entries whose gate it passes) and the exact MDC entries (taken from pdx_mdc_mask) are optimisations of the compiled kernel: with
    each alone, and with the MDC-level gate alone, every result is the same as with all of them."""
    import dataclasses

    plan = chs20_scheme.plan
    mdcb, mdcy = plan.mdc_codes.index("MDCB"), plan.mdc_codes.index("MDCY")
    assert (plan.mdc_entry_exact >> mdcb) & 1 and plan.mdc_entry_exact & 1   # MDCA: `true`, exact too
    assert not (plan.mdc_entry_exact >> mdcy) & 1                            # `any dx in ...`: gated instead
    assert plan.adrg_gate_class is not None and len(plan.adrg_gate_rows) > 100
    # nearly every ADRG, top-level qy rule and MDC entry has a gate: at most a handful are always tested
    assert sum(bin(int(w)).count("1") for w in plan.adrg_gate_rows[0, :-1]) < len(plan.adrg_codes) // 10
    no_adrg_gate = dict(adrg_gate_class=None, adrg_gate_other=None, adrg_gate_rows=None)
    variant = dataclasses.replace(plan, **{"adrg_gate": {"mdc_entry_exact": 0},
                                           "mdc_entry_exact": no_adrg_gate,
                                           "mdc_level_only": {**no_adrg_gate, "mdc_entry_exact": 0}}[part])
    for cases in (golden20_cases, golden_cases):
        assert group_frame(plan, cases).equals(group_frame(variant, cases))
