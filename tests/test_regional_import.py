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
from regional_variants import Reference, build_variant, variant_cases, write_tiny_table_set

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
