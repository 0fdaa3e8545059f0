"""CHS-DRG 3.0 (consultation draft) conformance: the imported pack must reproduce the reference
(OpenDRG's encoding of the 3.0 draft) exactly on its golden set — status (qy included), MDC, ADRG
and DRG — with both kernels, in memory and streaming; and a dated schedule covers 1.1, 2.0 and 3.0."""
import csv

import polars as pl
import pytest

from grouper import api
from grouper.engine.kernel import get_kernel
from grouper.pipeline import group_frame

from conftest import SHARED_ROOT, shared_or_skip
from test_conformance import diff_against_golden, readable

SHARED_30 = SHARED_ROOT / "chs-drg-3.0-draft"


@pytest.fixture(scope="module")
def chs30_tables():
    return shared_or_skip(SHARED_30)


@pytest.fixture(scope="module")
def chs30_pack(chs30_tables, tmp_path_factory):
    from grouper.importers.chs_drg import import_chs_drg

    pack = tmp_path_factory.mktemp("chs30")
    import_chs_drg(chs30_tables, pack)
    return pack


@pytest.fixture(scope="module")
def chs30_scheme(chs30_pack):
    from grouper.scheme import load_scheme

    return load_scheme(chs30_pack)


@pytest.fixture(scope="module")
def golden30_cases(chs30_tables):
    from grouper.io import read_cases

    return read_cases(chs30_tables / "golden" / "cases.csv")


def test_golden_set_in_memory(chs30_scheme, golden30_cases, chs30_tables):
    results = group_frame(chs30_scheme.plan, golden30_cases)
    assert results["id"].to_list() == golden30_cases["id"].to_list()
    diff = diff_against_golden(results, chs30_tables)
    assert diff.height == 0, readable(diff, chs30_tables)
    # the golden set's own distribution (README §4 of the 3.0 pack)
    counts = dict(results.group_by("status").len().iter_rows())
    assert counts == {"grouped": 17_905, "qy": 1_331, "no_adrg": 550, "invalid": 214}


def test_golden_set_streaming(chs30_scheme, chs30_tables):
    batches = list(api.group_batches(chs30_tables / "golden" / "cases.csv", chs30_scheme, batch_size=4_001))
    assert len(batches) == 5
    diff = diff_against_golden(pl.concat(batches), chs30_tables)
    assert diff.height == 0, readable(diff, chs30_tables)


def test_reference_kernel_agrees(chs30_scheme, golden30_cases, chs30_tables):
    """The pure-Python kernel alone reaches 100 % too (a third of the set keeps this fast)."""
    sample = golden30_cases.gather(list(range(0, golden30_cases.height, 3)))
    reference = group_frame(chs30_scheme.plan, sample, kernel=get_kernel("python"))
    diff = diff_against_golden(reference, chs30_tables).filter(pl.col("id").is_in(sample["id"].implode()))
    assert diff.height == 0, readable(diff, chs30_tables)
    try:
        compiled = get_kernel("cython")
    except ImportError:
        pytest.skip("Cython kernel not built")
    assert group_frame(chs30_scheme.plan, sample, kernel=compiled).equals(reference)


def test_imported_pack_is_labelled_3_0_and_checks_clean(chs30_pack, chs30_tables):
    from grouper.scheme import check_scheme

    scheme, found = check_scheme(chs30_pack)
    assert [d for d in found if d.severity == "error"] == []
    assert scheme.header.version == "3.0"           # detected, not labelled 2.0
    assert len(scheme.mdcs) == 26
    assert sum(len(m.adrgs) for m in scheme.mdcs) == 488
    assert sum(len(a.drgs) for m in scheme.mdcs for a in m.adrgs) == 815
    # drg_proc.csv is declared and copied (item 3 of issue 18)
    assert (chs30_pack / "drg_proc.csv").read_bytes() == (chs30_tables / "drg_proc.csv").read_bytes()
    # check's warnings, all in the published tables (documented in docs/importing.md): OF1 part 2's
    # empty principal-diagnosis list (README §6.6: the row never matches) and 6 list codes outside
    # their MDC's list
    warnings = [(d.code, d.message.split(" are ")[0]) for d in found if d.severity == "warning"]
    assert warnings == [("empty-set", 'adrg_dx[adrg = "OF1", part = "2", list = "dx"] selects no codes')] + [
        ("out-of-mdc-code", f"{n} pdx code(s) of ADRG {a}") for n, a in ((2, "BB2"), (1, "DC6"), (1, "DH2"), (1, "IA1"),
                                                                         (1, "IA2"))]


def test_every_3_0_behaviour_is_in_the_scheme_text(chs30_pack):
    text = (chs30_pack / "scheme.grp").read_text(encoding="utf-8")
    for line in ('table drg_proc = "drg_proc.csv"', "define has_cc =", "define cc_or_mcc = mcc or has_cc",
                 'cc[level = "CC", exclusion_table = ""]', "pdx in cc_exclusion",
                 'drg ES4E "', "when mcc and age >= 70", "when has_cc and age >= 70", "when age < 6",
                 'any secondary proc in drg_proc[drg = "MB10", list = "proc"]',
                 'any secondary dx in adrg_dx[adrg = "RN1", part = "3", list = "dx2"]',
                 "weight < 1000"):
        assert line in text, line
    assert "neonate_outside" not in text and "weight > 0" not in text


def test_a_3_0_table_set_refuses_what_it_does_not_know(chs30_tables, tmp_path):
    """An unknown split kind or a malformed age parameter is refused with the row named; nothing written."""
    import shutil

    from grouper.importers.chs_drg import ImportError_, import_chs_drg

    for old, new, message in ((",ES4E,", None, "split 'age_ge:7x'"), (",ES4E,", "los_ge:3", "unknown split 'los_ge:3'")):
        tables = tmp_path / f"t{len(message)}"
        shutil.copytree(chs30_tables, tables, ignore=shutil.ignore_patterns("golden"))
        rows = list(csv.DictReader((tables / "drg.csv").open(encoding="utf-8", newline="")))
        for r in rows:
            if r["drg"] == "ES4G":
                r["split"] = new or "age_ge:7x"
        with (tables / "drg.csv").open("w", encoding="utf-8", newline="") as fh:
            writer = csv.DictWriter(fh, list(rows[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
        with pytest.raises(ImportError_, match="DRG ES4G"):
            import_chs_drg(tables, tmp_path / "pack")
        assert not (tmp_path / "pack").exists()


def test_drg_proc_rows_no_split_reads_are_reported(chs30_tables, tmp_path):
    """drg_proc.csv rows count in the unused-row check: rows of a DRG whose split is not other_proc."""
    import shutil

    from grouper.importers.chs_drg import UnusedRowsError, import_chs_drg

    tables = tmp_path / "tables"
    shutil.copytree(chs30_tables, tables, ignore=shutil.ignore_patterns("golden"))
    with (tables / "drg_proc.csv").open("a", encoding="utf-8") as fh:
        fh.write("ES4G,proc,17.4100\nXX19,proc,17.4100\n")
    with pytest.raises(UnusedRowsError) as err:
        import_chs_drg(tables, tmp_path / "pack")
    assert err.value.problems == [
        "drg_proc.csv: 1 row(s) of list 'proc' of DRG ES4G, whose split does not use this list",
        "drg_proc.csv: 1 row(s) of list 'proc' of DRG XX19, which drg.csv does not list"]


def test_by_date_covers_three_versions(chs_pack, chs20_pack, chs30_pack, chs_tables, tmp_path):
    """A schedule of 1.1, 2.0 and 3.0: each case is grouped by the version in force at discharge."""
    from grouper.io import read_cases
    from grouper.versions import group_by_date, load_schedule

    cases = pl.read_csv(chs_tables / "golden" / "cases.csv", infer_schema=False).head(3000)
    dates = ["2024-06-30", "2025-06-30", "2027-06-30"]
    cases = cases.with_columns(pl.Series("discharge_date", [dates[i % 3] for i in range(cases.height)]))
    history = tmp_path / "history.csv"
    cases.write_csv(history)
    plan = tmp_path / "schemes.csv"
    plan.write_text(f"from,pack\n2019-10-01,{chs_pack}\n2025-01-01,{chs20_pack}\n2027-01-01,{chs30_pack}\n",
                    encoding="utf-8")
    schedule = load_schedule(plan)
    results = pl.concat(list(group_by_date(history, schedule, batch_size=1000)))
    assert results["id"].to_list() == cases["id"].to_list()
    assert results["scheme_version"].to_list() == [("1.1", "2.0", "3.0")[i % 3] for i in range(cases.height)]
    read = read_cases(history)
    for k, period in enumerate(schedule.periods):
        mask = pl.Series([i % 3 == k for i in range(cases.height)])
        want = group_frame(period.scheme.plan, read.filter(mask)).select("id", "status", "mdc", "adrg", "drg")
        assert results.filter(mask).select("id", "status", "mdc", "adrg", "drg").equals(want)
