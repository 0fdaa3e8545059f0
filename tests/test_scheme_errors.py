"""Scheme and table mistakes are diagnostics at file:line with a caret, never tracebacks (issue 7,
defects 7, 8 and 10)."""
import shutil
from pathlib import Path

import pytest

from grouper.cli import main
from grouper.scheme import check_scheme, load_scheme

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
DEMO = Path(__file__).resolve().parents[1] / "tables" / "demo"


def copy(pack: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(pack, tmp_path / pack.name))


def test_missing_table_file_used_by_a_set_is_a_diagnostic(tmp_path, capsys):
    pack = copy(DEMO, tmp_path)
    (pack / "or_proc.csv").unlink()          # `set OR = or_proc`, and the dictionary check reads it
    assert main(["check", str(pack)]) == 1
    err = capsys.readouterr().err
    assert f"{pack / 'scheme.grp'}:29:1: error[missing-table-file]: table file 'or_proc.csv' not found" in err
    assert "^^^^" in err


def test_a_gbk_scheme_names_the_first_bad_byte(tmp_path, capsys):
    pack = copy(MINI, tmp_path)
    text = (pack / "scheme.grp").read_text(encoding="utf-8").replace('"trauma"', '"创伤"')
    (pack / "scheme.grp").write_bytes(text.encode("gbk"))
    assert main(["check", str(pack)]) == 1
    err = capsys.readouterr().err
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "创伤" in row)
    assert f"scheme.grp:{line}:" in err and "error[encoding]" in err and "GB18030" in err


def test_a_scheme_saved_with_a_bom_reads(tmp_path):
    pack = copy(MINI, tmp_path)
    (pack / "scheme.grp").write_bytes(b"\xef\xbb\xbf" + (pack / "scheme.grp").read_bytes())
    assert load_scheme(pack).plan.drg_codes == load_scheme(MINI).plan.drg_codes


def test_a_ragged_table_is_reported_at_its_own_line(tmp_path):
    pack = copy(MINI, tmp_path)
    with (pack / "cc.csv").open("a") as table:
        table.write("X99.999,MCC,T1,surplus\n")
    _, found = check_scheme(pack)
    [d] = [d for d in found if d.severity == "error"]
    assert d.code == "unreadable-table" and d.span.line == 5  # the `table cc` line of scheme.grp
    assert f"{pack / 'cc.csv'}:4: 4 fields, the header has 3" in d.message
    assert "truncate_ragged_lines" not in d.render()  # no advice about Polars' own options


def test_a_weight_that_is_not_a_number_is_an_error(tmp_path):
    pack = copy(DEMO, tmp_path)
    weights = (pack / "drg_weights.csv").read_text(encoding="utf-8").splitlines()
    drg = weights[3].split(",")[0]
    weights[3] = f"{drg},1,5"[: len(drg) + 1] + "一点五"
    (pack / "drg_weights.csv").write_text("\n".join(weights) + "\n", encoding="utf-8")
    _, found = check_scheme(pack)
    [d] = [d for d in found if d.severity == "error"]
    assert d.code == "bad-value" and f"line 4: {drg} '一点五'" in d.message


@pytest.mark.parametrize("bad", ["--batch-size=0", "--threads=0", "--threads=-1"])
def test_counts_below_one_are_usage_errors(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["group", str(DEMO / "discharges.csv"), "-o", str(tmp_path / "r.csv"), bad])
    assert stop.value.code == 2
    assert "must be 1 or more" in capsys.readouterr().err
