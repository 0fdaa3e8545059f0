"""Regional table sets: imported as an overlay of the national pack (`import chs-drg --base`), the
result groups exactly like the same tables imported standalone and like an independent reference
interpreter, on two variants derived from the 1.1 tables at test time (tests/regional_variants.py)."""
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from grouper.importers.chs_drg import import_chs_drg
from grouper.importers.regional import import_overlay
from grouper.io import cases_from_frame
from grouper.pipeline import group_frame
from grouper.scheme import check_scheme, load_scheme
from regional_variants import (
    LayoutReference, Reference, build_variant, extra_procedures, layout_cases, variant_cases, write_tiny_table_set,
)

N_CASES = 3000   # per variant; benches/bench_regional.py runs 200,000


@pytest.fixture(scope="module")
def built_variants(chs_tables, chs_pack, tmp_path_factory):
    """name → (name, tables, root): a variant's tables, standalone import and overlay, built on first use."""
    built = {}

    def get(name: str):
        if name not in built:
            root = tmp_path_factory.mktemp(f"variant-{name}")
            tables = build_variant(name, chs_tables, root / "tables")
            import_chs_drg(tables, root / "standalone", name=f"{name} DRG", version="2024")
            import_overlay(tables, chs_pack, root / "overlay", name=f"{name} DRG", version="2024")
            built[name] = name, tables, root
        return built[name]
    return get


@pytest.fixture(scope="module", params=["north", "south"])
def variant(request, built_variants):
    return built_variants(request.param)


@pytest.fixture(scope="module")
def north(built_variants):
    """The north variant alone: the command-line path is the same for every variant."""
    return built_variants("north")


def outcomes(pack: Path, cases: list[dict]) -> list[tuple]:
    frame = cases_from_frame(pl.DataFrame(cases, schema={k: pl.String for k in cases[0]}))
    return group_frame(load_scheme(pack).plan, frame).select("status", "mdc", "adrg", "drg").rows()


def test_overlay_groups_like_the_standalone_import_and_the_reference(variant, chs_tables, chs_pack):
    name, tables, root = variant
    cases = variant_cases(chs_tables, name, N_CASES)
    standalone, overlay = outcomes(root / "standalone", cases), outcomes(root / "overlay", cases)
    reference = Reference(tables)
    expected = [reference.group(c) for c in cases]
    assert overlay == standalone
    mismatches = [(c["id"], got, want) for c, got, want in zip(cases, standalone, expected) if got != want]
    assert mismatches == [], mismatches[:5]
    # the variant really differs from the national scheme on the generated cases, with every outcome
    national = outcomes(chs_pack, cases)
    assert sum(a != b for a, b in zip(national, standalone)) > N_CASES // 10
    statuses = Counter(s for s, *_ in standalone)
    assert statuses["grouped"] > N_CASES // 2 and statuses["no_adrg"] and statuses["invalid"]
    words = [i for i, c in enumerate(cases) if c["sex"] in ("男", "女")]
    assert words and all((standalone[i][0] == "invalid") == (name == "south") for i in words)   # strict sex
    if name == "north":
        assert statuses["no_drg"] > 0
        assert {"RC12", "RC14", "RC16", "RC18", "ES30", "GB10", "AH10", "EB91", "EB95"} <= {d for *_, d in standalone}


def test_a_region_overlay_states_only_differences(variant, chs_pack):
    name, tables, root = variant
    scheme, found = check_scheme(root / "overlay")
    assert scheme is not None and [d for d in found if d.severity == "error"] == []
    text = (root / "overlay" / "scheme.grp").read_text(encoding="utf-8")
    base_lines = {line.strip() for line in (chs_pack / "scheme.grp").read_text(encoding="utf-8").splitlines()}
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    copied = [line for line in lines if line in base_lines and line != "}"]
    assert len(copied) / len(lines) < 0.25, copied           # mostly new content, not national lines
    patches = sorted(p.name for p in (root / "overlay").glob("*.patch.csv"))
    assert "cc.patch.csv" in patches and "or_proc.patch.csv" in patches and "mdc_dx.patch.csv" in patches
    assert not (root / "overlay" / "cc.csv").exists()          # a patch, not a copy of the table
    expected_ops = {"north": ["setting adrg_without_drg = no_drg", "remove adrg EZ1", "move adrg ES2 after ES3",
                              "replace adrg ES2 when any dx in", "add adrg EB9", "move mdc MDCY after MDCZ", "refine adrg RC1",
                              "add drg AH10", "when any proc in {\"39.6500\"} and any proc in {\"96.7201\"}"],
                    "south": ["rename adrg GZ1 to GY1", "move adrg HZ1", "remove mdc MDCY", "replace mdc MDCX when",
                              "replace adrg BB1 when pproc in", "rename drg ES35 to ES36", "add drg BR20",
                              "read sex \"1\" as male, \"2\" as female"]}[name]
    for op in expected_ops:
        assert op in text, op


def test_import_as_overlay_on_the_command_line(north, chs_pack, tmp_path, capsys):
    from grouper.cli import main

    name, tables, root = north
    out = tmp_path / "cli-overlay"
    assert main(["import", "chs-drg", str(tables), "--base", str(chs_pack), "-o", str(out),
                 "--name", f"{name} DRG", "--version", "2024"]) == 0
    assert (out / "scheme.grp").read_text(encoding="utf-8").split("\n", 2)[2] == \
        (root / "overlay" / "scheme.grp").read_text(encoding="utf-8").split("\n", 2)[2]
    assert main(["check", str(out)]) == 0
    assert "base " in capsys.readouterr().err


def test_a_region_of_the_2_0_scheme(chs20_tables, chs20_pack, golden20_cases, tmp_path):
    """The same on a region derived from CHS-DRG 2.0 (QY rules unchanged): LOS bands with no_drg,
    a moved ADRG and a patched CC list; overlay = standalone on the 20,000 golden cases."""
    import csv
    import shutil

    region = tmp_path / "tables"
    shutil.copytree(chs20_tables, region, ignore=shutil.ignore_patterns("golden"))
    with (region / "drg.csv").open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    columns = list(rows[0]) + ["los_min", "los_max"]
    for r in rows:
        if r["adrg"] == "AE1":
            r["los_min"] = "2"
    with (region / "drg.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, columns, lineterminator="\n", restval="")
        writer.writeheader()
        writer.writerows(rows)
    adrg = (region / "adrg.csv").read_text(encoding="utf-8")
    (region / "adrg.csv").write_text(adrg.replace("MDCG,1,GB1,", "MDCG,1,GX1,").replace("MDCG,2,", "MDCG,1,")
                                     .replace("MDCG,1,GX1,", "MDCG,2,GB1,"), encoding="utf-8")
    cc = (region / "cc.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (region / "cc.csv").write_text("".join(cc[:1] + [line.replace(",MCC,", ",CC,") for line in cc[1:200]] + cc[400:]),
                                   encoding="utf-8")
    (region / "settings.csv").write_text("setting,value\nadrg_without_drg,no_drg\n", encoding="utf-8")
    import_chs_drg(region, tmp_path / "standalone", name="r20")
    import_overlay(region, chs20_pack, tmp_path / "overlay", name="r20")
    text = (tmp_path / "overlay" / "scheme.grp").read_text(encoding="utf-8")
    assert "patch table cc" in text and "move adrg" in text and "refine adrg AE1" in text
    columns = ["status", "mdc", "adrg", "drg"]
    overlay = group_frame(load_scheme(tmp_path / "overlay").plan, golden20_cases).select(columns)
    assert overlay.equals(group_frame(load_scheme(tmp_path / "standalone").plan, golden20_cases).select(columns))
    assert overlay["status"].to_list().count("no_drg") > 0


@pytest.fixture
def tiny_region(tmp_path):
    """A hand-written table set imported as a base pack, and its regional variant's tables."""
    base = tmp_path / "base"
    import_chs_drg(write_tiny_table_set(tmp_path / "national"), base, name="tiny")
    return write_tiny_table_set(tmp_path / "region", regional=True), base


def test_a_failed_overlay_import_leaves_no_partial_pack(tiny_region, tmp_path, monkeypatch, capsys):
    """The overlay pack appears whole or not at all: a failure while writing it leaves no folder
    (and an earlier pack as it was), like every other output (grouper.outputs)."""
    from grouper.cli import main
    from grouper.importers import regional

    tables, base = tiny_region
    argv = ["import", "chs-drg", str(tables), "--base", str(base), "-o", str(tmp_path / "overlay")]
    assert main(argv) == 0
    assert "replace drg GB15 when los <= 10" in (tmp_path / "overlay" / "scheme.grp").read_text(encoding="utf-8")
    before = {p.name: p.read_bytes() for p in (tmp_path / "overlay").iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(regional, "scheme_text", disk_full)   # fails after the tables were written
    for out in (tmp_path / "new-overlay", tmp_path / "overlay"):
        assert main([*argv[:-1], str(out), "--force"]) == 3   # --force: replacing the existing overlay
        assert "No space left on device" in capsys.readouterr().err
    assert not (tmp_path / "new-overlay").exists()
    assert {p.name: p.read_bytes() for p in (tmp_path / "overlay").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if ".partial" in p.name or p.name.endswith(".old")] == []


@pytest.mark.parametrize("output, message", [
    ("{base}", "is the input (--base"),
    ("{tables}", "is the input (TABLE_DIR"),
    ("{tmp}", "is a folder holding the input"),
    ("{tables}/mdc.csv", "is a file"),
    ("{tables}/mdc.csv/pack", "cannot write in"),
])
def test_an_overlay_import_refuses_to_overwrite_an_input(tiny_region, tmp_path, output, message, capsys):
    from grouper.cli import main

    tables, base = tiny_region
    inputs = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    before = [p.read_bytes() for p in inputs]
    out = output.format(base=base, tables=tables, tmp=tmp_path)
    assert main(["import", "chs-drg", str(tables), "--base", str(base), "-o", out]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == inputs
    assert [p.read_bytes() for p in inputs] == before


def _qy_region(chs20_tables, folder: Path, *edits: tuple[str, str, str]) -> Path:
    """The 2.0 tables with (file, old, new) text edits, e.g. a changed QY rule list in mdc.csv."""
    import shutil

    shutil.copytree(chs20_tables, folder, ignore=shutil.ignore_patterns("golden"))
    for file, old, new in edits:
        text = (folder / file).read_text(encoding="utf-8")
        assert old in text, (file, old)
        (folder / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


def test_a_region_changing_qy_rules_of_the_2_0_scheme(chs20_tables, chs20_pack, golden20_cases, tmp_path):
    """QY rules added, removed, moved among the ADRGs and renamed are written as qy operations;
    overlay = standalone on the 20,000 golden cases, and the changes move cases."""
    region = _qy_region(chs20_tables, tmp_path / "tables",
                        ("mdc.csv", "1,MDCA,先期分组疾病及相关操作,always,,,,,", "1,MDCA,先期分组疾病及相关操作,always,,,13,or_pproc,"),
                        ("mdc.csv", ",pdx,,,8,or_pproc,\n", ",pdx,,,,,\n"),          # MDCE: no QY check
                        ("mdc.csv", ",pdx,,,19,or_pproc,", ",pdx,,,5,or_pproc,"),      # MDCG: earlier
                        ("mdc.csv", ",pdx,,,0,or_pproc,", ",pdx,,,1,or_pproc,"),       # MDCU: after UR1
                        ("drg_name.csv", "GQY,G_歧义组", "GQY,G_歧义组（本地）"))
    import_chs_drg(region, tmp_path / "standalone", name="r20")
    import_overlay(region, chs20_pack, tmp_path / "overlay", name="r20")
    text = (tmp_path / "overlay" / "scheme.grp").read_text(encoding="utf-8")
    ops = [line for line in text.splitlines() if line.startswith(("add qy", "remove qy", "move qy", "replace qy"))]
    assert ops == ['add qy AQY "A_歧义组" when pproc in OR after AH2', "remove qy EQY in MDCE",
                   "move qy GQY in MDCG after GC2", 'replace qy GQY in MDCG "G_歧义组（本地）" when pproc in OR',
                   "move qy UQY in MDCU after UR1"]
    scheme, found = check_scheme(tmp_path / "overlay")
    assert scheme is not None and [d for d in found if d.severity == "error"] == []
    columns = ["status", "mdc", "adrg", "drg"]
    overlay = group_frame(load_scheme(tmp_path / "overlay").plan, golden20_cases).select(columns)
    assert overlay.equals(group_frame(load_scheme(tmp_path / "standalone").plan, golden20_cases).select(columns))
    national = group_frame(load_scheme(chs20_pack).plan, golden20_cases).select(columns)
    changed = [(a, b) for a, b in zip(national.rows(), overlay.rows()) if a != b]
    assert len(changed) > 1000
    # AQY, last in MDCA (entered by every case), now takes every OR principal procedure no ADRG took
    assert "AQY" in {b[3] for _, b in changed} and "EQY" not in overlay["drg"].to_list()
    assert "EQY" in national["drg"].to_list()


def test_a_qy_change_an_overlay_cannot_name_is_refused(chs20_tables, chs20_pack, tmp_path, capsys):
    """Two top-level MQY rules (from MDCM and MDCN) cannot be told apart by an operation: dropping
    one is refused with the reason, and nothing is written."""
    from grouper.cli import main

    region = _qy_region(chs20_tables, tmp_path / "tables", ("mdc.csv", "sex_mismatch:MQY;or_pproc", "or_pproc"))
    out = tmp_path / "overlay"
    assert main(["import", "chs-drg", str(region), "--base", str(chs20_pack), "-o", str(out), "--allow-unused"]) == 3
    err = capsys.readouterr().err
    assert "ambiguous-group (QY) rules at the top level" in err and "2 qy rules MQY there cannot be told apart" in err
    assert "standalone" in err
    assert not out.exists()


def test_changed_invalid_and_warn_checks_become_check_operations(tmp_path):
    """The checks of a region against its base's: removed, moved, added in place and restated; the
    operations applied to the base give the region's checks in the region's order."""
    from grouper.importers.regional import check_operations
    from grouper.lang import ast
    from grouper.lang.overlay import merge
    from grouper.lang.parse import parse_text
    from grouper.lang.printer import statement_lines

    head = 'scheme "x" version "1"\n'
    tail = 'mdc MDCA when true { adrg A1 when true { drg A19 } }\n'
    base = parse_text(head + 'invalid a "a" when sex is missing\ninvalid b when age is missing\n'
                      'invalid c when los < 0\nwarn w when age > 120\nwarn v when los > 300\n' + tail)
    region = parse_text(head + 'invalid c when los < 0\ninvalid a "a (regional)" when sex is missing\n'
                        'invalid n when weight < 0\nwarn v when los > 300\n' + tail)
    ops = check_operations(base, region)
    assert [statement_lines(op)[0] for op in ops] == [
        "remove invalid b", "move invalid a after c", 'replace invalid a "a (regional)" when sex is missing',
        "add invalid n when weight < 0 after a", "remove warn w"]
    merged, errors = merge(base, ast.Scheme(ast.Header("x", "1", "base"), tuple(ops)))
    assert errors == []
    checks = lambda scheme: [statement_lines(st)[0] for st in scheme.statements  # noqa: E731
                             if isinstance(st, (ast.InvalidDef, ast.WarnDef))]
    assert checks(merged) == checks(region)


def test_no_default_drg_is_not_warned_after_an_unconditional_drg(tmp_path):
    """Regression (issue 18): `check` warned no-default-drg when an earlier DRG of the ADRG has no
    condition (no case can then be left without a DRG; the later DRGs are reported unreachable)."""
    (tmp_path / "scheme.grp").write_text(
        'scheme "x" version "1"\nsetting adrg_without_drg = no_drg\n'
        'mdc MDCA when true {\n  adrg A1 when age >= 18 {\n    drg A11 "young" when age < 6\n    drg A19 "all"\n'
        '    drg A12 "long stay" when los >= 60\n  }\n  adrg A2 when true {\n    drg A21 "short" when los < 5\n  }\n}\n',
        encoding="utf-8")
    scheme, found = check_scheme(tmp_path)
    warned = [(d.code, d.message.split(":")[0]) for d in found if d.code in ("no-default-drg", "unreachable")]
    assert warned == [("unreachable", "DRG A12 can never match"),
                      ("no-default-drg", "the last DRG of ADRG A2 has a condition")]


def test_an_adrg_whose_content_moved_is_not_paired_as_a_rename(tmp_path):
    """Regression (issue 18): a removed and an added ADRG of one MDC whose rules differ only in codes
    were written `rename adrg`, even when the new one has other list contents (the old content moved
    to another ADRG). Only a true renumbering (same lists) is a rename."""
    import csv

    base = tmp_path / "base"
    import_chs_drg(write_tiny_table_set(tmp_path / "national"), base, name="tiny")

    def region(folder, new_code, codes):
        write_tiny_table_set(folder)
        for file, column in (("adrg.csv", "adrg"), ("adrg_dx.csv", "adrg"), ("drg.csv", "adrg")):
            rows = list(csv.DictReader((folder / file).open(encoding="utf-8", newline="")))
            header = list(rows[0]) if rows else None
            out = []
            for r in rows:
                if r[column] == "GB1":
                    r[column] = new_code
                    if "drg" in r:
                        r["drg"] = new_code + r["drg"][3:]
                    if file == "adrg_dx.csv":
                        out += [dict(r, code=c) for c in codes]
                        continue
                out.append(r)
            with (folder / file).open("w", encoding="utf-8", newline="") as fh:
                writer = csv.DictWriter(fh, header, lineterminator="\n")
                writer.writeheader()
                writer.writerows(out)
        return folder

    renumbered = import_overlay(region(tmp_path / "r1", "GC1", ["K35.800"]), base, tmp_path / "o1", name="r1")
    assert "rename adrg GB1 to GC1" in renumbered.read_text(encoding="utf-8")
    moved = import_overlay(region(tmp_path / "r2", "GC1", ["K80.000"]), base, tmp_path / "o2", name="r2")
    text = moved.read_text(encoding="utf-8")
    assert "rename adrg" not in text and "remove adrg GB1" in text and "add adrg GC1" in text
    cases = [{"id": str(i), "sex": "1", "age": "40", "age_days": "", "weight": "", "dept": "", "los": "5",
              "discharge": "", "dx": dx, "proc": ""} for i, dx in enumerate(["K35.800", "K80.000", "K35.800|J18.900"])]
    import_chs_drg(tmp_path / "r2", tmp_path / "s2", name="r2")
    assert outcomes(tmp_path / "o2", cases) == outcomes(tmp_path / "s2", cases)


# ---- the regional layout (../shared/regional-layouts.md): every kind, overlay = standalone = reference
@pytest.fixture(scope="module", params=["beijing", "zhejiang"])
def layout_variant(request, built_variants):
    return built_variants(request.param)


def test_regional_layout_overlay_groups_like_standalone_and_the_reference(layout_variant, chs_tables, chs_pack):
    name, tables, root = layout_variant
    cases = layout_cases(chs_tables, name, N_CASES)
    standalone, overlay = outcomes(root / "standalone", cases), outcomes(root / "overlay", cases)
    reference = LayoutReference(tables)
    expected = [reference.group(c) for c in cases]
    assert overlay == standalone
    mismatches = [(c["id"], got, want) for c, got, want in zip(cases, standalone, expected) if got != want]
    assert mismatches == [], mismatches[:5]
    national = outcomes(chs_pack, cases)
    assert sum(a != b for a, b in zip(national, standalone)) > N_CASES // 50
    statuses = Counter(s for s, *_ in standalone)
    assert statuses["grouped"] > N_CASES // 2 and statuses["no_adrg"] and statuses["invalid"]
    drgs = {d for *_, d in standalone}
    if name == "beijing":
        assert statuses["no_drg"] > 0 and {"RC12", "CD10", "IT20"} <= drgs and drgs & {"RC14", "RC16", "RC18"}
    else:
        assert statuses["no_drg"] == 0 and {"ES20", "BR10", "AH10", "RC12", "RC16"} <= drgs
        spelled = [i for i, c in enumerate(cases) if c["sex"] in ("01", "男", "女", "0")]
        assert spelled and all(standalone[i][0] == "invalid" for i in spelled)     # str_1_2


def test_the_layout_variants_use_every_kind_of_the_note(built_variants):
    """Together the two variants use every setting value, entry, rule and split kind of
    regional-layouts.md §2–§5 (so the test above covers each)."""
    import csv

    from grouper.importers.regional_layout import SCHEME_KEYS, SPLIT_PARAMETERS

    used: dict[str, set] = {"entry": set(), "rule": set(), "split": set(), "setting": set()}
    for name in ("beijing", "zhejiang"):
        _, tables, _ = built_variants(name)
        read = lambda file: list(csv.DictReader((tables / file).open(encoding="utf-8", newline="")))  # noqa: E731
        used["entry"] |= {r["entry"] for r in read("mdc.csv")}
        used["rule"] |= {r["rule"] for r in read("adrg.csv")}
        used["split"] |= {r["split"] for r in read("drg.csv")}
        used["setting"] |= {(r["key"], r["value"]) for r in read("scheme.csv") if r["key"] != "variant"}
    assert {"main_or_proc_plus", "anydx", "pdx_male", "pdx_female", "pdx_multi_trauma"} <= used["entry"]
    assert {"anyproc", "anydx", "secdx", "secdx_pproc", "secdx_anyproc", "anydx_pproc", "pdx_anyproc", "notpdx_pproc",
            "pdx_medical", "pdx_neonate_medical", "pdx_neonate_weight_medical", "pdx_tags"} <= used["rule"]
    assert set(SPLIT_PARAMETERS) == used["split"]
    assert {(k, v) for k, values in SCHEME_KEYS.items() if values for v in values} == used["setting"]


def test_the_layout_settings_become_engine_settings(built_variants):
    text = {name: (built_variants(name)[2] / "standalone" / "scheme.grp").read_text(encoding="utf-8")
            for name in ("beijing", "zhejiang")}
    assert "setting adrg_without_drg = no_drg" in text["beijing"]
    assert 'read sex digits, "男" as other, "女" as other' in text["beijing"]      # int_or_cn
    assert "when not sex in (1, 2, other)" in text["beijing"]
    assert "second_attempt" not in text["beijing"]
    for line in ('read sex "1" as male, "2" as female', "setting second_attempt = later_procedure_alone",
                 "setting ungrouped_mdc = last_entered", 'pproc in OR or pproc in mdc_proc[mdc = "MDCA"]',
                 "when los >= 1 and los < 13", 'when dept = "ICU"', "when age < 18"):
        assert line in text["zhejiang"], line
    assert "adrg_without_drg" not in text["zhejiang"]          # next_adrg is the default


def _case(**fields):
    base = {"id": "x", "sex": "1", "age": "50", "age_days": "", "weight": "", "dept": "", "los": "5",
            "discharge": "", "dx": "", "proc": ""}
    return {**base, **fields}


def test_retry_with_the_later_procedure_alone(built_variants, chs_tables):
    """zhejiang (retry = secondary_procs): the retry groups with each later procedure alone, so a
    `procs_all` split no longer sees the others, and a non-OR principal procedure makes a `_medical`
    rule hold; an ungrouped case reports the last MDC entered over all attempts."""
    name, tables, root = built_variants("zhejiang")
    reference = LayoutReference(tables)
    extra = extra_procedures(chs_tables)
    cases = [
        # AH1 (pproc 39.6500 in its list) with 96.7201 anywhere: AH10 on the first attempt
        _case(id="both", dx="ZZZ.999", proc="39.6500|96.7201"),
        # an unknown principal procedure: the retries try 39.6500 alone (AH1, but not AH10) first
        _case(id="alone", dx="ZZZ.999", proc="99.9999|39.6500|96.7201"),
        # BR1 is pdx_medical: an OR principal procedure stops it; the retry with a later non-OR one groups
        _case(id="medical", dx="I60.000", proc="47.0100|" + extra[0]),
    ]
    got = outcomes(root / "standalone", cases)
    assert got == [reference.group(c) for c in cases]
    assert got[0][3] == "AH10" and got[1][2] == "AH1" and got[1][3] != "AH10"
    assert got[2][2] == "BR1"
    from grouper.explain import explain_case
    from grouper.io import cases_from_frame

    frame = cases_from_frame(pl.DataFrame([cases[1]], schema={k: pl.String for k in cases[1]}))
    explained = explain_case(load_scheme(root / "standalone"), frame)
    attempts = [s for s in explained.steps if s.level == "attempt"]
    assert attempts[0].rule == "procedures 39.6500" and (explained.adrg, explained.drg) == (got[1][2], got[1][3])


def test_ungrouped_cases_report_the_last_mdc_entered(built_variants):
    """ungrouped_mdc = last_entered: a case entering MDCA only through a retry's extra procedure
    (main_or_proc_plus) and no ADRG there is no_adrg MDCA, not the first attempt's ungroupable."""
    name, tables, root = built_variants("zhejiang")
    reference = LayoutReference(tables)
    extra = reference.mdc_proc["MDCA"]
    code = sorted(extra)[0]
    cases = [_case(id="u", dx="ZZZ.999", proc=f"99.9999|{code}"), _case(id="n", dx="ZZZ.999", proc="99.9999|88.8888")]
    got = outcomes(root / "standalone", cases)
    assert got == [reference.group(c) for c in cases]
    assert got == [("no_adrg", "MDCA", None, None), ("ungroupable", None, None, None)]


def test_int_or_cn_words_enter_neither_sex_mdc(built_variants):
    """sex_check = int_or_cn (regional-layouts.md §2.1): 男/女 pass the check but enter neither MDCM
    nor MDCN (`read sex digits, "男" as other, "女" as other`); digits are numbers ("01" is male);
    other words (M, male) fail the check."""
    name, tables, root = built_variants("beijing")
    reference = LayoutReference(tables)
    cases = [_case(id=f"{sex}-{dx}", sex=sex, dx=dx) for sex in ("男", "女", "01", "1", "2", "M", "male", "0", "9")
             for dx in ("N40.x00", "N80.000")]          # a male-MDC and a female-MDC principal diagnosis
    got = outcomes(root / "standalone", cases)
    assert got == [reference.group(c) for c in cases]
    by_sex = dict(zip((c["sex"] for c in cases[::2]), got[::2]))
    assert by_sex["男"][0] != "invalid" and by_sex["男"][1] != "MDCM" and by_sex["01"][1] == "MDCM"
    assert by_sex["M"][0] == by_sex["0"][0] == "invalid"


def _layout_tables(built_variants, folder: Path, edits: dict[str, tuple[str, str]]) -> Path:
    """A copy of the beijing tables with text edits (file → (old, new))."""
    import shutil

    _, tables, _ = built_variants("beijing")
    shutil.copytree(tables, folder)
    for file, (old, new) in edits.items():
        text = (folder / file).read_text(encoding="utf-8") if (folder / file).exists() else ""
        assert old in text, (file, old)
        (folder / file).write_text(text.replace(old, new, 1), encoding="utf-8")
    return folder


@pytest.mark.parametrize("file, old, new, message", [
    ("mdc.csv", ",MDCY,HIV感染疾病及相关操作,pdx,", ",MDCY,HIV感染疾病及相关操作,k,", "mdc.csv: MDC MDCY has an unknown entry rule 'k'"),
    ("adrg.csv", ",AH1,有创呼吸机支持≥96小时或ECMO或全人工心脏移植术,pproc,", ",AH1,有创呼吸机支持≥96小时或ECMO或全人工心脏移植术,k,",
     "adrg.csv: ADRG AH1 part 2 (MDCA seq 10) has an unknown rule kind 'k'"),
    ("drg.csv", ",CD10,除眼眶外的外眼手术，≤17岁,age_le,", ",CD10,除眼眶外的外眼手术，≤17岁,k,", "drg.csv: DRG CD10 has an unknown split 'k'"),
    ("drg.csv", ",CD10,除眼眶外的外眼手术，≤17岁,age_le,17,", ",CD10,除眼眶外的外眼手术，≤17岁,age_le,17岁,",
     "DRG CD10 (split age_le) needs a whole number in age, not '17岁'"),
    ("drg.csv", ",los,,1,2,", ",los,,,,", "DRG RC18 (split los) has neither los_min nor los_max"),
    ("scheme.csv", "retry,none\n", "", "scheme.csv: missing key(s) retry"),
    ("scheme.csv", "retry,none\n", "retry,none\nretry,none\n", "key 'retry' is given twice"),
    ("scheme.csv", "retry,none\n", "retries,none\n", "unknown key 'retries'"),
    ("scheme.csv", "retry,none\n", "retry,always\n", "retry = 'always' is not one of none, secondary_procs"),
    ("scheme.csv", "layout,regional\n", "layout,national\n", "layout = 'national' is not one of regional"),
])
def test_regional_layout_refuses_what_it_does_not_know(built_variants, tmp_path, capsys, file, old, new, message):
    from grouper.cli import main

    tables = _layout_tables(built_variants, tmp_path / "tables", {file: (old, new)})
    out = tmp_path / "pack"
    assert main(["import", "chs-drg", str(tables), "-o", str(out)]) == 3     # the importer's exit code for bad tables
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_regional_layout_reports_every_unused_row(built_variants, tmp_path):
    """Rows and cells nothing reads are refused (each named), or with --allow-unused imported and
    listed: mdc_proc rows of an MDC with another entry, a list a rule does not read, a tag outside
    pdx_tags, a parameter cell of a kind that does not read it, a reachable value that disagrees."""
    from grouper.importers.chs_drg import UnusedRowsError

    tables = _layout_tables(built_variants, tmp_path / "tables", {
        "mdc_proc.csv": ("mdc,code\n", "mdc,code\nMDCB,96.7201\n"),
        "adrg_dx.csv": ("adrg,list,code,part\n", "adrg,list,code,part\nRB1,dx1,C91.000,\n"),
        "adrg_proc.csv": ("adrg,list,code,tag,part\n", "adrg,list,code,tag,part\nRB1,proc,99.2501,2,\n"),
        "drg.csv": (",CD19,除眼眶外的外眼手术,none,,,,,", ",CD19,除眼眶外的外眼手术,none,,3,,,"),
    })
    text = (tables / "drg.csv").read_text(encoding="utf-8")
    (tables / "drg.csv").write_text(text.replace(",BR17,颅内出血性疾患，长住院,los,,30,,,,0", ",BR17,颅内出血性疾患，长住院,los,,30,,,,1"),
                                    encoding="utf-8")
    with pytest.raises(UnusedRowsError) as err:
        import_chs_drg(tables, tmp_path / "pack")
    assert sorted(err.value.problems) == sorted([
        "drg.csv: DRG BR17 has reachable = '1', but the split order makes it 0",
        "drg.csv: DRG CD19 has los_min = '3', which its split 'none' does not read",
        "adrg_dx.csv: list 'dx1' of ADRG RB1, whose rule does not use this list",
        "mdc_proc.csv: 1 row(s) of MDC MDCB, whose entry 'pdx' does not read it (only main_or_proc_plus does)",
        "adrg_proc.csv: 1 row(s) of ADRG RB1 have a tag, which its rule 'anydx_pproc' does not read",
    ])
    assert not (tmp_path / "pack").exists()
    unused: list[str] = []
    import_chs_drg(tables, tmp_path / "pack", allow_unused=True, unused=unused)
    assert len(unused) == 5 and (tmp_path / "pack" / "scheme.grp").is_file()


def test_an_empty_list_a_rule_reads_is_a_warning(built_variants, tmp_path, capsys):
    from grouper.cli import main

    _, tables, _ = built_variants("zhejiang")
    assert main(["import", "chs-drg", str(tables), "-o", str(tmp_path / "pack")]) == 0
    assert "warning: adrg_dx.csv: list 'dx' of ADRG OR1 has no rows: read as an empty list" in capsys.readouterr().err
