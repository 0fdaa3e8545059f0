"""`grouper import chs-drg`: every table row lands in the pack or is reported (issue 7, defect 5),
and table shapes the importer does not know are refused."""
import csv
import shutil

import pytest

from grouper.cli import main
from grouper.importers.chs_drg import ImportError_, UnusedRowsError, import_chs_drg


def _copy(tables, tmp_path):
    target = tmp_path / "tables"
    shutil.copytree(tables, target, ignore=shutil.ignore_patterns("golden"))
    for path in target.iterdir():
        path.chmod(0o644)
    return target


def _edit(path, keep=lambda row: True, change=lambda row: row):
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        header, rows = reader.fieldnames, [change(dict(r)) for r in reader if keep(r)]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def test_removed_mdc_rows_are_reported(chs_tables, tmp_path):
    tables = _copy(chs_tables, tmp_path)
    _edit(tables / "mdc.csv", keep=lambda r: r["mdc"] not in ("MDCC", "MDCW"))
    with pytest.raises(UnusedRowsError) as caught:
        import_chs_drg(tables, tmp_path / "pack")
    problems = caught.value.problems
    assert any("ADRG CB1" in p and "MDC MDCC" in p for p in problems)
    assert any("ADRG WB1" in p and "MDC MDCW" in p for p in problems)
    assert any(p.startswith("mdc_dx.csv") and "MDCC" in p for p in problems)
    assert not (tmp_path / "pack").exists()  # nothing written


def test_adrg_with_unknown_mdc_is_reported(chs_tables, tmp_path):
    tables = _copy(chs_tables, tmp_path)
    _edit(tables / "adrg.csv", change=lambda r: {**r, "mdc": "MDCQQ"} if r["adrg"] == "BR1" else r)
    with pytest.raises(UnusedRowsError) as caught:
        import_chs_drg(tables, tmp_path / "pack")
    assert any("ADRG BR1" in p and "MDCQQ" in p for p in caught.value.problems)
    assert any(p.startswith("drg.csv: DRG BR1") for p in caught.value.problems)


def test_drg_with_unknown_adrg_is_reported(chs_tables, tmp_path):
    tables = _copy(chs_tables, tmp_path)
    with (tables / "drg.csv").open("a", encoding="utf-8") as fh:
        fh.write("XX9,1,XX99,不存在的病组,none\n")
    with pytest.raises(UnusedRowsError) as caught:
        import_chs_drg(tables, tmp_path / "pack")
    assert caught.value.problems == ["drg.csv: DRG XX99 belongs to ADRG XX9, which adrg.csv does not list"]


def test_list_rows_no_rule_reads_are_reported(chs_tables, tmp_path):
    tables = _copy(chs_tables, tmp_path)
    with (tables / "adrg_proc.csv").open("a", encoding="utf-8") as fh:
        fh.write("BR1,proc9,01.0000,\n")  # BR1 is a pdx rule: it reads no procedure list
    with pytest.raises(UnusedRowsError, match="list 'proc9' of ADRG BR1, whose rule does not use this list"):
        import_chs_drg(tables, tmp_path / "pack")


def test_allow_unused_imports_and_reports(chs_tables, tmp_path):
    tables = _copy(chs_tables, tmp_path)
    _edit(tables / "mdc.csv", keep=lambda r: r["mdc"] != "MDCC")
    unused: list[str] = []
    path = import_chs_drg(tables, tmp_path / "pack", allow_unused=True, unused=unused)
    assert path.is_file() and "mdc MDCC" not in path.read_text(encoding="utf-8")
    assert any("MDCC" in p for p in unused)


def test_cli_reports_unused_rows_without_traceback(chs_tables, tmp_path, capsys):
    tables = _copy(chs_tables, tmp_path)
    _edit(tables / "mdc.csv", keep=lambda r: r["mdc"] != "MDCC")
    assert main(["import", "chs-drg", str(tables), "-o", str(tmp_path / "pack")]) == 3
    err = capsys.readouterr().err
    assert "would not be used" in err and "Traceback" not in err
    assert main(["import", "chs-drg", str(tables), "-o", str(tmp_path / "pack"), "--allow-unused"]) == 0
    assert "warning: unused table rows" in capsys.readouterr().err


def test_the_national_table_sets_import_without_unused_rows(chs_tables, chs20_tables, tmp_path):
    for tables in (chs_tables, chs20_tables):
        unused: list[str] = []
        import_chs_drg(tables, tmp_path / tables.name, unused=unused)
        assert unused == []


def test_unknown_qy_rule_is_refused(chs20_tables, tmp_path):
    tables = _copy(chs20_tables, tmp_path)
    _edit(tables / "mdc.csv", change=lambda r: {**r, "qy": "or_pproc;weekend"} if r["mdc"] == "MDCB" else r)
    with pytest.raises(ImportError_, match="MDCB has an unknown QY rule 'weekend'"):
        import_chs_drg(tables, tmp_path / "pack")


def test_qy_position_inside_an_adrg_is_refused(chs20_tables, tmp_path):
    tables = _copy(chs20_tables, tmp_path)  # JA1 has rule rows 1-3 in MDCJ: a QY check after row 2 splits it
    _edit(tables / "mdc.csv", change=lambda r: {**r, "qy_position": "2"} if r["mdc"] == "MDCJ" else r)
    with pytest.raises(ImportError_, match="MDCJ places its QY check at row 2"):
        import_chs_drg(tables, tmp_path / "pack")


def test_2_0_version_is_detected(chs20_pack):
    assert 'scheme "CHS-DRG" version "2.0"' in (chs20_pack / "scheme.grp").read_text(encoding="utf-8")
