"""A malformed CSV line is one `invalid` row (reason malformed_line, with its line number), in its
place; every other line is grouped as if the bad one were not there (issue 7, defect 2)."""
from pathlib import Path

import polars as pl
import pytest

import grouper
from grouper.cli import main
from grouper.io import READ_PROBLEM, read_cases

MINI = Path(__file__).parent / "fixtures" / "packs" / "mini"
HEADER = "id,sex,age,los,dx,proc\n"
GOOD = "{i},1,40,5,K35.800|J18.900,47.0100\n"
BAD = {
    "too many fields": "{i},1,40,5,K35.800,47.0100,surplus\n",
    "an empty surplus field": "{i},1,40,5,K35.800,47.0100,\n",
    "an unbalanced quote": "{i},1,\"40,5,K35.800,47.0100\n",
}


def make_file(tmp_path: Path, bad_at: dict[int, str], rows: int = 40, encoding: str = "utf-8") -> Path:
    """`rows` records; those in `bad_at` (position → kind) malformed; a blank line after record 10."""
    lines = [HEADER]
    for i in range(1, rows + 1):
        lines.append((BAD[bad_at[i]] if i in bad_at else GOOD).format(i=i))
        if i == 10:
            lines.append("\n")
    path = tmp_path / "cases.csv"
    path.write_bytes("".join(lines).encode(encoding))
    return path


def line_of(record: int) -> int:
    return record + 1 + (record > 10)  # header, and the blank line after record 10


BAD_AT = {3: "too many fields", 17: "an unbalanced quote", 18: "too many fields", 40: "an empty surplus field"}


@pytest.mark.parametrize("batch_size", [1, 4, 16, 1_000])
@pytest.mark.parametrize("encoding", ["utf-8", "gbk"])  # streamed by Polars / read whole
def test_each_malformed_line_is_one_invalid_row_in_its_place(tmp_path, batch_size, encoding):
    path = make_file(tmp_path, BAD_AT, encoding=encoding)
    batches = list(grouper.group_batches(path, MINI, batch_size=batch_size, problems=True))
    results = pl.concat([r for r, _ in batches])
    problems = pl.concat([p for _, p in batches])
    assert results["id"].to_list() == [str(i) for i in range(1, 41)]
    bad = results.filter(pl.col("status") == "invalid")
    assert bad["id"].to_list() == [str(i) for i in sorted(BAD_AT)]
    assert set(bad["reason"]) == {"malformed_line"}
    good = results.filter(pl.col("status") != "invalid")
    assert set(good["drg"]) == {"GD11"}
    # the line number, and nothing else reported for a line read against the wrong columns
    found = problems.filter(pl.col("reason") == "malformed_line")
    assert found["id"].to_list() == bad["id"].to_list()
    assert problems.filter(pl.col("id").is_in(bad["id"].implode()))["reason"].unique().to_list() == ["malformed_line"]
    details = found["detail"].to_list()
    assert details[0] == f"line {line_of(3)}: 7 fields, the header has 6"
    assert details[1] == f"line {line_of(17)}: a quote opened and never closed"
    assert details[3] == f"line {line_of(40)}: 7 fields, the header has 6"


def test_clean_files_do_not_carry_the_problem_column(tmp_path):
    assert READ_PROBLEM not in read_cases(make_file(tmp_path, {})).columns


def test_quoted_fields_over_several_lines_are_still_one_record(tmp_path):
    path = tmp_path / "cases.csv"
    path.write_text(HEADER + '1,1,40,5,"K35.800|\nJ18.900",47.0100\n2,1,40,5,K35.800,47.0100,x\n3,1,40,5,K35.800,\n')
    cases = read_cases(path)
    assert cases["dx"].to_list()[0] == ["K35.800", "\nJ18.900"]
    assert cases[READ_PROBLEM].to_list() == [None, "line 4: 7 fields, the header has 6", None]


def test_cli_groups_every_line_and_names_the_bad_ones(tmp_path, capsys):
    path = make_file(tmp_path, BAD_AT)
    out = tmp_path / "r.csv"
    assert main(["group", str(path), "-o", str(out), "--scheme", str(MINI), "--batch-size", "8"]) == 0
    results = pl.read_csv(out, infer_schema=False)
    assert results.height == 40
    assert results.filter(pl.col("reason") == "malformed_line")["id"].to_list() == [str(i) for i in sorted(BAD_AT)]
    err = capsys.readouterr().err
    assert f"line {line_of(3)}: 7 fields" in err and "malformed_line" in err


def test_a_scheme_cannot_lower_malformed_line(tmp_path):
    pack = tmp_path / "pack.grp"
    pack.write_text((MINI / "scheme.grp").read_text() + "\nvalidate malformed_line = warning\n")
    with pytest.raises(grouper.SchemeError, match="always an error"):
        grouper.load_scheme(pack)


def test_dip_and_carried_fields_honour_malformed_lines(tmp_path):
    """The DIP wing makes the line invalid too, and a grouped file carries none of its values
    (they may sit in the wrong columns) but its id."""
    path = tmp_path / "cases.csv"
    path.write_text("id,sex,age,los,dx,proc,cost\n1,1,40,5,K35.800,47.0100,100.00\n"
                    "2,1,40,5,K35.800,47.0100,200.00,surplus\n", encoding="utf-8")
    dip = Path(__file__).resolve().parents[1] / "tables" / "dip-demo"
    out = tmp_path / "dip.csv"
    assert main(["group", str(path), "-o", str(out), "--scheme", str(dip), "-q", "--carry"]) == 0
    results = pl.read_csv(out, infer_schema=False)
    assert results.select("id", "status", "reason").row(1) == ("2", "invalid", "malformed_line")
    assert results["cost"].to_list() == ["100.00", None]
    out = tmp_path / "drg.parquet"
    assert main(["group", str(path), "-o", str(out), "--scheme", str(MINI), "-q", "--carry"]) == 0
    results = pl.read_parquet(out)
    assert results.select("id", "status", "reason").row(1) == ("2", "invalid", "malformed_line")
    assert results.row(1, named=True)["cost"] is None and results.row(1, named=True)["age"] is None
