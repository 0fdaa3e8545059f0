"""Every command over a corpus of bad inputs (files, schemes, tables, options, cache contents).

For each line of CASES: no traceback, the documented exit code (README, Reliability), and no
output left behind by a failed run; for grouping, exactly one output row per input record.

To cover a new command or a new kind of bad input, add a line to CASES (and, if it needs one, a
file to `corpus` below). Placeholders in a command line: {c} the corpus folder, {o} a fresh
output folder, {mini} the mini pack, {demo} the demo pack, {dip} the DIP demo pack.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from regional_variants import write_tiny_table_set

FIXTURES = Path(__file__).parent / "fixtures"
MINI = FIXTURES / "packs" / "mini"
DEMO = Path(__file__).resolve().parents[1] / "tables" / "demo"
DIP_DEMO = DEMO.parent / "dip-demo"
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3}  # ok, scheme error, usage error, input error (130/143: tests/test_outputs.py)

HEADER = "id,sex,age,los,dx,proc\n"
GOOD = "1,1,40,5,K35.800|J18.900,47.0100\n2,2,30,3,K35.800,\n3,,40,5,K35.800,47.0100\n"


@dataclass(frozen=True)
class Case:
    name: str
    argv: str                       # split on spaces after formatting
    exit: int                       # the documented exit code
    records: int | None = None      # grouping: input records; with exit 0 the output has exactly this many rows
    output: str | None = "{o}/r.csv"  # must not exist after a non-zero exit (None: the command writes nothing)


G = "group {c}/{file} -o {o}/r.csv --scheme {mini} -q"
CASES = [
    # ---- grouping: input files -----------------------------------------------------------------
    Case("group a good file", G.format(c="{c}", o="{o}", mini="{mini}", file="good.csv"), 0, records=3),
    *[Case(f"group {what}", G.format(c="{c}", o="{o}", mini="{mini}", file=file), code, records=records)
      for what, file, code, records in [
          ("an empty file", "empty.csv", 3, None),
          ("a header-only file", "header_only.csv", 0, 0),
          ("a file without a diagnosis column", "no_dx.csv", 3, None),
          ("random bytes", "binary.csv", 3, None),
          ("a GBK file", "gbk.csv", 0, 3),
          ("a UTF-16 file", "utf16.csv", 0, 3),
          ("a file with a title row", "title.csv", 3, None),
          ("malformed lines", "malformed.csv", 0, 5),
          ("malformed lines in GBK", "malformed_gbk.csv", 0, 5),
          ("blank and separator-only lines", "blank_lines.csv", 0, 3),
          ("unreadable values", "bad_values.csv", 0, 4),
          ("CRLF line ends", "crlf.csv", 0, 3),
          ("a wide export with a blank principal procedure", "wide.csv", 0, 2),
          ("a missing file", "missing.csv", 3, None),
          ("a folder named .csv", "folder.csv", 3, None),
          ("an unknown extension", "cases.json", 3, None),
          ("a corrupt Parquet file", "corrupt.parquet", 3, None),
          ("a corrupt Excel file", "corrupt.xlsx", 3, None),
          ("a two-sheet workbook (first sheet)", "two_sheets.xlsx", 0, 2),
          ("a wide export spelled 其它, _N, （N）", "wide_spellings.csv", 0, 2),
          ("a wide export with a code column of an unknown spelling", "wide_unknown.csv", 3, None),
      ]],
    Case("group an unknown code column, mapped", "group {c}/wide_unknown.csv -o {o}/r.csv --scheme {mini} -q "
         "--column other_dx=附加诊断编码", 0, records=2),
    Case("group an unknown code column, ignored", "group {c}/wide_unknown.csv -o {o}/r.csv --scheme {mini} -q "
         "--column ignore=附加诊断编码1,附加诊断编码2", 0, records=2),
    Case("import onto an existing pack", "import chs-drg {c}/tiny_tables -o {c}/tiny_base", 2, output=None),
    Case("group every sheet", "group {c}/two_sheets.xlsx -o {o}/r.csv --scheme {mini} -q --sheet all", 0, records=3),
    Case("group an unknown sheet", "group {c}/two_sheets.xlsx -o {o}/r.csv --scheme {mini} -q --sheet nope", 3),
    Case("group with the title skipped", "group {c}/title.csv -o {o}/r.csv --scheme {mini} -q --skip-rows 1", 0,
         records=3),
    Case("group to Parquet", "group {c}/malformed.csv -o {o}/r.parquet --scheme {mini} -q --batch-size 2", 0,
         records=5, output="{o}/r.parquet"),
    Case("group malformed lines with a DIP pack", "group {c}/malformed.csv -o {o}/r.csv --scheme {dip} -q", 0,
         records=5),
    Case("group to Excel", "group {c}/good.csv -o {o}/r.xlsx --scheme {mini} -q", 0, records=3, output="{o}/r.xlsx"),
    # ---- grouping: options -----------------------------------------------------------------------
    Case("--batch-size 0", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --batch-size 0", 2),
    Case("--threads 0", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --threads 0", 2),
    Case("--threads -2", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --threads -2", 2),
    Case("--skip-rows -1", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --skip-rows -1", 2),
    Case("--output-encoding latin-9", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --output-encoding latin-9", 2),
    Case("group to a GBK CSV", "group {c}/gbk.csv -o {o}/r.csv --scheme {mini} -q --output-encoding gbk", 0, records=3),
    Case("group with names and Chinese headers", "group {c}/good.csv -o {o}/r.csv --scheme {mini} -q --names --headers zh",
         0, records=3),
    Case("group --weights a missing file", "group {c}/good.csv -o {o}/r.csv --scheme {mini} -q --weights {c}/nowhere.csv",
         3),
    Case("group --weights without a weight column", "group {c}/good.csv -o {o}/r.csv --scheme {mini} -q "
         "--weights {c}/good.csv", 3),
    Case("group --names with a DIP pack", "group {c}/good.csv -o {o}/r.csv --scheme {dip} -q --names", 2),
    Case("settle without a policy", "settle {c}/good.csv -o {o}/s -q", 2, output="{o}/s"),
    Case("--column without =", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --column dx", 3),
    Case("--column of an unknown field", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --column foo=dx", 3),
    Case("--column to a missing header", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --column dx=nope", 3),
    Case("--encoding unknown", "group {c}/gbk.csv -o {o}/r.csv --scheme {mini} --encoding nope", 3),
    Case("--encoding wrong", "group {c}/gbk.csv -o {o}/r.csv --scheme {mini} --encoding utf-8", 3),
    Case("--trace-status unknown", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --trace-status nope", 2),
    Case("--trace of an unknown id", "group {c}/good.csv -o {o}/r.csv --scheme {mini} -q --trace 99", 0, records=3),
    Case("-o onto the input", "group {o}/input.csv -o {o}/input.csv --scheme {mini}", 2, output=None),
    Case("--report onto -o", "group {c}/good.csv -o {o}/r.csv --report {o}/r.csv --scheme {mini}", 2),
    Case("--report onto the input", "group {o}/input.csv -o {o}/r.csv --report {o}/input.csv --scheme {mini}", 2),
    Case("-o onto a folder", "group {c}/good.csv -o {c}/folder.csv --scheme {mini}", 2, output=None),
    Case("-o with an unknown extension", "group {c}/good.csv -o {o}/r.json --scheme {mini}", 3, output="{o}/r.json"),
    Case("--report with an unknown extension", "group {c}/good.csv -o {o}/r.csv --report {o}/q.txt --scheme {mini}", 3),
    # ---- schemes and tables ----------------------------------------------------------------------
    *[Case(f"{command} with {what}", argv, 1, output=("{o}/r.csv" if command == "group" else None))
      for what, pack in [
          ("a GBK scheme", "{c}/gbk_scheme"), ("a syntax error", "{c}/syntax_scheme"),
          ("a missing table file", "{c}/missing_table"), ("a ragged table", "{c}/ragged_table"),
          ("a table without its key column", "{c}/no_key"), ("an empty table", "{c}/empty_table"),
          ("a GBK table", "{c}/gbk_table"), ("a non-numeric weight", "{c}/bad_weight"),
          ("a missing base", "{c}/missing_base"), ("no scheme", "{c}/no_scheme"), ("a missing pack", "{c}/nowhere"),
      ]
      for command, argv in [
          ("check", f"check {pack}"),
          ("group", f"group {{c}}/good.csv -o {{o}}/r.csv --scheme {pack} -q"),
          ("explain", f"explain --scheme {pack} --dx K35.800"),
      ]],
    Case("check a scheme saved with a BOM", "check {c}/bom_scheme", 0, output=None),
    Case("check a GBK DIP scheme", "check {c}/gbk_dip", 1, output=None),
    Case("group with a GBK DIP scheme", "group {c}/good.csv -o {o}/r.csv --scheme {c}/gbk_dip -q", 1),
    Case("group with a corrupt plan cache", "group {c}/good.csv -o {o}/r.csv --scheme {c}/cached -q", 0, records=3),
    Case("check with a corrupt plan cache", "check {c}/cached", 0, output=None),
    # ---- explain ---------------------------------------------------------------------------------
    Case("explain without a case", "explain --scheme {mini}", 3, output=None),
    Case("explain --cases without --id", "explain --scheme {mini} --cases {c}/good.csv", 3, output=None),
    Case("explain an unknown id", "explain --scheme {mini} --cases {c}/good.csv --id 99", 3, output=None),
    Case("explain a duplicated id", "explain --scheme {mini} --cases {c}/dup.csv --id 1", 0, output=None),
    Case("explain from a malformed file", "explain --scheme {mini} --cases {c}/malformed.csv --id 2", 0, output=None),
    Case("explain a bad --try", "explain --scheme {mini} --dx K35.800 --try=bogus", 3, output=None),
    Case("explain a bad age", "explain --scheme {mini} --dx K35.800 --age abc", 0, output=None),
    # explain reads --cases exactly as group reads its input (one reader: issue 17)
    Case("explain from a file with a title row", "explain --scheme {mini} --cases {c}/title.csv --id 2", 3, output=None),
    Case("explain with the title skipped", "explain --scheme {mini} --cases {c}/title.csv --id 2 --skip-rows 1", 0,
         output=None),
    Case("explain from the second sheet", "explain --scheme {mini} --cases {c}/two_sheets.xlsx --id 3 --sheet 二月", 0,
         output=None),
    Case("explain from every sheet", "explain --scheme {mini} --cases {c}/two_sheets.xlsx --id 3 --sheet all", 0,
         output=None),
    Case("explain from a GBK file with --column", "explain --scheme {mini} --cases {c}/renamed.csv --id 2 "
         "--column dx=出院诊断 --encoding gbk", 0, output=None),
    Case("explain --skip-rows without --cases", "explain --scheme {mini} --dx K35.800 --skip-rows 1", 2, output=None),
    Case("group with a DIP pack, the title skipped",
         "group {c}/title.csv -o {o}/r.csv --scheme {dip} -q --skip-rows 1", 0, records=3),
    Case("group a sheet with a DIP pack", "group {c}/two_sheets.xlsx -o {o}/r.csv --scheme {dip} -q --sheet all", 0,
         records=3),
    Case("crosswalk with the title skipped", "crosswalk {c}/title.csv --from {mini} --to {mini} --skip-rows 1", 0,
         output=None),
    # ---- import ----------------------------------------------------------------------------------
    Case("import from an empty folder", "import chs-drg {c}/empty_folder -o {o}/pack", 3, output="{o}/pack"),
    Case("import from a missing folder", "import chs-drg {c}/nowhere -o {o}/pack", 3, output="{o}/pack"),
    Case("import from a file", "import chs-drg {c}/good.csv -o {o}/pack", 3, output="{o}/pack"),
    Case("import onto its tables", "import chs-drg {c}/tiny_tables -o {c}/tiny_tables", 2, output=None),
    Case("import into a folder holding its tables", "import chs-drg {c}/tiny_tables -o {c}", 2, output=None),
    Case("import as an overlay", "import chs-drg {c}/tiny_region --base {c}/tiny_base -o {o}/pack", 0,
         output="{o}/pack"),
    Case("import as an overlay onto its base", "import chs-drg {c}/tiny_region --base {c}/tiny_base -o {c}/tiny_base",
         2, output=None),
    Case("import as an overlay onto a file", "import chs-drg {c}/tiny_region --base {c}/tiny_base -o {c}/good.csv",
         2, output=None),
    Case("import as an overlay of a broken base", "import chs-drg {c}/tiny_region --base {c}/syntax_scheme -o {o}/pack",
         1, output="{o}/pack"),
    # ---- settle ----------------------------------------------------------------------------------
    Case("settle with a missing policy", "settle {c}/good.csv --policy {c}/nope.toml --weights {c}/weights.csv "
         "-o {o}/settled --scheme {mini} -q", 1, output="{o}/settled"),
    Case("settle with a broken policy", "settle {c}/good.csv --policy {c}/broken.toml --weights {c}/weights.csv "
         "-o {o}/settled --scheme {mini} -q", 1, output="{o}/settled"),
    # ---- crosswalk -------------------------------------------------------------------------------
    Case("crosswalk with a broken pack", "crosswalk {c}/good.csv --from {mini} --to {c}/syntax_scheme -o {o}/x.csv",
         1, output="{o}/x.csv"),
    Case("crosswalk a missing file", "crosswalk {c}/missing.csv --from {mini} --to {mini} -o {o}/x.csv", 3,
         output="{o}/x.csv"),
]


def write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.write_bytes(text.encode(encoding))


def broken_pack(root: Path, name: str, change) -> None:
    pack = root / name
    shutil.copytree(MINI, pack)
    change(pack)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    c = tmp_path_factory.mktemp("corpus")
    write(c / "good.csv", HEADER + GOOD)
    write(c / "empty.csv", "")
    write(c / "header_only.csv", HEADER)
    write(c / "no_dx.csv", "id,sex,age\n1,1,40\n")
    (c / "binary.csv").write_bytes(bytes(range(256)) * 8)
    write(c / "gbk.csv", "病案号,性别,年龄,住院天数,诊断编码,手术编码\n" + GOOD, "gbk")
    write(c / "utf16.csv", HEADER + GOOD, "utf-16")
    write(c / "title.csv", "2026年1月出院病人清单\n" + HEADER + GOOD)
    malformed = HEADER + GOOD + '4,1,40,5,K35.800,47.0100,surplus\n5,1,"40,5,K35.800,\n'
    write(c / "malformed.csv", malformed)
    write(c / "malformed_gbk.csv", malformed.replace("surplus", "多余"), "gbk")
    write(c / "blank_lines.csv", HEADER + "\n,,,,,\n" + GOOD + "\n\n")
    write(c / "bad_values.csv", HEADER + GOOD + "4,x,abc,-1,,\n")
    write(c / "crlf.csv", (HEADER + GOOD).replace("\n", "\r\n"))
    write(c / "wide.csv", "病案号,性别,年龄,主要诊断编码,其他诊断编码1,主要手术操作编码,其他手术操作编码1\n"
                          "1,1,40,K35.800,,,47.0100\n2,1,40,K35.800,J18.900,47.0100,\n")
    write(c / "dup.csv", HEADER + "1,1,40,5,K35.800,47.0100\n1,2,30,5,K35.800,\n")
    write(c / "wide_spellings.csv", "病案号,性别,年龄,主要诊断编码,其它诊断编码_1,其它诊断编码（2）,主要手术及操作编码,"
                                    "其他手术及操作编码1\n1,1,40,K35.800,J18.900,,47.0100,\n2,1,40,K35.800,,J18.900,,\n")
    write(c / "wide_unknown.csv", "病案号,性别,年龄,主要诊断编码,附加诊断编码1,附加诊断编码2,主要手术操作编码\n"
                                  "1,1,40,K35.800,J18.900,,47.0100\n2,1,40,K35.800,,J18.900,\n")
    write(c / "renamed.csv", "id,sex,age,los,出院诊断,proc\n" + GOOD, "gbk")
    (c / "folder.csv").mkdir()
    write(c / "cases.json", "{}")
    (c / "corrupt.parquet").write_bytes(b"PAR1" + bytes(100))
    (c / "corrupt.xlsx").write_bytes(b"PK\x03\x04" + bytes(100))
    import xlsxwriter

    with xlsxwriter.Workbook(c / "two_sheets.xlsx") as book:
        frame = pl.read_csv((HEADER + GOOD).encode(), infer_schema=False)
        frame.head(2).write_excel(book, worksheet="一月")
        frame.tail(1).write_excel(book, worksheet="二月")
    (c / "empty_folder").mkdir()
    from grouper.importers.chs_drg import import_chs_drg

    import_chs_drg(write_tiny_table_set(c / "tiny_tables"), c / "tiny_base")
    write_tiny_table_set(c / "tiny_region", regional=True)
    write(c / "weights.csv", "drg,weight\nGD11,1.5\n")
    write(c / "broken.toml", "[policy\nname = ")
    # schemes and tables
    grp = (MINI / "scheme.grp").read_text(encoding="utf-8")
    broken_pack(c, "gbk_scheme", lambda p: (p / "scheme.grp").write_bytes(
        grp.replace('"trauma"', '"创伤"').encode("gbk")))
    broken_pack(c, "bom_scheme", lambda p: (p / "scheme.grp").write_bytes(b"\xef\xbb\xbf" + grp.encode()))
    broken_pack(c, "syntax_scheme", lambda p: write(p / "scheme.grp", grp.replace("when true", "when tru e")))
    broken_pack(c, "missing_table", lambda p: (p / "codes.csv").unlink())
    broken_pack(c, "ragged_table", lambda p: write(p / "cc.csv", "code,level,exclusion_table\nJ18.900,MCC,T1,x\n"))
    broken_pack(c, "no_key", lambda p: write(p / "cc.csv", "kode,level,exclusion_table\nJ18.900,MCC,T1\n"))
    broken_pack(c, "empty_table", lambda p: write(p / "cc.csv", ""))
    broken_pack(c, "gbk_table", lambda p: write(p / "cc.csv", "code,level,exclusion_table\nJ18.900,严重,T1\n", "gbk"))
    broken_pack(c, "bad_weight", lambda p: (write(p / "w.csv", "drg,weight\nGD11,abc\n"),
                                            write(p / "scheme.grp", grp.replace('table cc = "cc.csv"',
                                                  'table cc = "cc.csv"\ntable w = "w.csv" key drg\nweights = w'))))
    broken_pack(c, "missing_base", lambda p: write(p / "scheme.grp", 'scheme "x" version "1" extends "../nowhere"\n'))
    (c / "no_scheme").mkdir()
    dip = Path(shutil.copytree(DIP_DEMO, c / "gbk_dip"))
    dip_text = (dip / "scheme.dip").read_text(encoding="utf-8")
    (dip / "scheme.dip").write_bytes((dip_text + "\n# 注释\n").encode("gbk"))
    # a plan cache entry for this pack holding garbage (the cache folder is set per test below)
    broken_pack(c, "cached", lambda p: None)
    return c


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_command_over_bad_input(case: Case, corpus: Path, tmp_path: Path, monkeypatch, capsys):
    from grouper.plancache import ENTRY_SUFFIX
    from grouper.scheme import cache_dir, pack_fingerprint, scheme_path

    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    if "{c}/cached" in case.argv:  # garbage where the plan cache would look
        cache_dir().mkdir(parents=True)
        (cache_dir() / f"{pack_fingerprint(scheme_path(corpus / 'cached'))}{ENTRY_SUFFIX}").write_bytes(b"\x80\x09junk")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(corpus / "good.csv", out / "input.csv")
    before = (out / "input.csv").read_bytes()
    fill = {"c": corpus, "o": out, "mini": MINI, "demo": DEMO, "dip": DIP_DEMO}
    argv = case.argv.format(**fill).split()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert code in DOCUMENTED_EXIT_CODES
    assert code == case.exit, captured.err
    assert (out / "input.csv").read_bytes() == before  # an input is never touched
    output = Path(case.output.format(**fill)) if case.output else None
    if output is not None and code != 0:
        assert not output.exists(), f"a failed run left {output}"
    if case.records is not None and code == 0:
        results = pl.read_parquet(output) if output.suffix == ".parquet" else (
            pl.read_excel(output) if output.suffix == ".xlsx" else pl.read_csv(output, infer_schema=False))
        assert results.height == case.records
    leftovers = [p.name for p in out.rglob("*") if ".partial" in p.name]
    assert leftovers == []
