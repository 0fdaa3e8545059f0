"""Every command over a corpus of bad inputs (files, schemes, tables, options, cache contents).

For each line of CASES: no traceback, the documented exit code (docs/reliability.md), no output
left behind by a failed run, and no file outside the named output created, changed or deleted
(the corpus and the output folder are hashed before and after); for grouping, exactly one output
row per input record.

To cover a new command or a new kind of bad input, add a line to CASES (and, if it needs one, a
file to `corpus` below). Placeholders in a command line: {c} the corpus folder, {o} a fresh
output folder, {mini} the mini pack, {demo} the demo pack, {dip} the DIP demo pack, {policies}
the shipped policies.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
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
POLICIES = DEMO.parent / "policies"
# ok, scheme or policy error, usage error, input error (130/143: tests/test_outputs.py); never 70 (a bug)
DOCUMENTED_EXIT_CODES = {0, 1, 2, 3}

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
BAD_WEIGHTS = ("NaN", "inf", "1e308", "0", "-1")  # the first DRG's weight in a copy of weights.csv
SETTLE = "settle {{c}}/grouped.parquet --policy {policy} --weights {{c}}/weights.csv -o {out} -q"
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
    Case("group with a DIP pack, the title skipped",
         "group {c}/title.csv -o {o}/r.csv --scheme {dip} -q --skip-rows 1", 0, records=3),
    Case("group with a DIP pack, one sheet", "group {c}/two_sheets.xlsx -o {o}/r.csv --scheme {dip} -q --sheet 二月", 0,
         records=1),
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
    Case("--column without =", "group {c}/good.csv -o {o}/r.csv --scheme {mini} --column dx", 2),
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
    *[Case(f"{command} with {what}", argv, code, output=("{o}/r.csv" if command == "group" else None))
      for what, pack, code in [
          ("a GBK scheme", "{c}/gbk_scheme", 1), ("a syntax error", "{c}/syntax_scheme", 1),
          ("a missing table file", "{c}/missing_table", 1), ("a ragged table", "{c}/ragged_table", 1),
          ("a table without its key column", "{c}/no_key", 1), ("an empty table", "{c}/empty_table", 1),
          ("a GBK table", "{c}/gbk_table", 1), ("a non-numeric weight", "{c}/bad_weight", 1),
          ("a missing base", "{c}/missing_base", 1),
          ("a table path leaving the pack", "{c}/table_outside", 1),
          ("an absolute table path", "{c}/table_absolute", 1),
          ("a table linked out of the pack", "{c}/table_linked_out", 1),
          ("a define nested 300 deep", "{c}/deep_define", 1),
          ("a condition in 300 parentheses", "{c}/deep_parens", 1),
          ("no scheme", "{c}/no_scheme", 3), ("a missing pack", "{c}/nowhere", 3),
      ]
      for command, argv in [
          ("check", f"check {pack}"),
          ("group", f"group {{c}}/good.csv -o {{o}}/r.csv --scheme {pack} -q"),
          ("explain", f"explain --scheme {pack} --dx K35.800"),
      ]],
    Case("check a scheme saved with a BOM", "check {c}/bom_scheme", 0, output=None),
    Case("check a GBK DIP scheme", "check {c}/gbk_dip", 1, output=None),
    Case("group with a GBK DIP scheme", "group {c}/good.csv -o {o}/r.csv --scheme {c}/gbk_dip -q", 1),
    Case("check a DIP pack reading a table outside it", "check {c}/dip_outside", 1, output=None),
    Case("group with a DIP pack reading a table outside it", "group {c}/good.csv -o {o}/r.csv --scheme {c}/dip_outside -q",
         1),
    Case("group with a corrupt plan cache", "group {c}/good.csv -o {o}/r.csv --scheme {c}/cached -q", 0, records=3),
    Case("check with a corrupt plan cache", "check {c}/cached", 0, output=None),
    Case("group with a FIFO in the plan cache", "group {c}/good.csv -o {o}/r.csv --scheme {c}/fifo_cached -q", 0,
         records=3),
    Case("group into the scheme pack", "group {c}/good.csv -o {c}/cached/drg_weights.csv --scheme {c}/cached -q", 2,
         output=None),
    Case("group into a missing folder", "group {c}/good.csv -o {o}/missing/r.csv --scheme {mini} -q", 2,
         output="{o}/missing"),
    # ---- grouping by discharge date --------------------------------------------------------------
    Case("--by-date", "group {c}/dated.csv -o {o}/r.csv --by-date {c}/schedule.csv -q", 0, records=3),
    Case("--by-date, blank first date, batches of 1",
         "group {c}/dated.csv -o {o}/r.csv --by-date {c}/schedule.csv -q --batch-size 1", 0, records=3),
    Case("--by-date --carry", "group {c}/dated.csv -o {o}/r.csv --by-date {c}/schedule.csv -q --carry", 0, records=3),
    Case("--by-date --skip-rows", "group {c}/dated_title.csv -o {o}/r.csv --by-date {c}/schedule.csv -q --skip-rows 1",
         0, records=3),
    Case("--by-date without dates", "group {c}/good.csv -o {o}/r.csv --by-date {c}/schedule.csv -q", 3),
    *[Case(f"--by-date {option}", f"group {{c}}/dated.csv -o {{o}}/r.csv --by-date {{c}}/schedule.csv -q {option}", 2)
      for option in ("--scheme {mini}", "--report {o}/q.csv", "--trace 1", "--trace-status invalid")],
    Case("--by-date onto its schedule", "group {c}/dated.csv -o {c}/schedule.csv --by-date {c}/schedule.csv -q", 2,
         output=None),
    Case("--by-date into a scheduled pack",
         "group {c}/dated.csv -o {c}/mini_copy/r.csv --by-date {c}/schedule.csv -q", 2, output=None),
    # ---- explain ---------------------------------------------------------------------------------
    Case("explain without a case", "explain --scheme {mini}", 2, output=None),
    Case("explain --cases without --id", "explain --scheme {mini} --cases {c}/good.csv", 2, output=None),
    Case("explain an unknown id", "explain --scheme {mini} --cases {c}/good.csv --id 99", 3, output=None),
    Case("explain a duplicated id", "explain --scheme {mini} --cases {c}/dup.csv --id 1", 0, output=None),
    Case("explain from a malformed file", "explain --scheme {mini} --cases {c}/malformed.csv --id 2", 0, output=None),
    Case("explain a bad --try", "explain --scheme {mini} --dx K35.800 --try=bogus", 2, output=None),
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
    # ---- import dip --------------------------------------------------------------------------------
    Case("import dip", "import dip {c}/published.csv -o {o}/pack", 0, output="{o}/pack"),
    Case("import dip into a folder of other files", "import dip {c}/published.csv -o {c}/keep", 2, output=None),
    Case("import dip into a missing folder", "import dip {c}/published.csv -o {o}/missing/pack", 2,
         output="{o}/missing"),
    Case("import dip onto its catalogue", "import dip {c}/published.csv -o {c}/published.csv", 2, output=None),
    Case("import dip of a missing catalogue", "import dip {c}/nope.csv -o {o}/pack", 3, output="{o}/pack"),
    # ---- settle ----------------------------------------------------------------------------------
    Case("settle", SETTLE.format(policy="{policies}/zhejiang-points.toml", out="{o}/settled"), 0, output="{o}/settled"),
    Case("settle over its own earlier output", SETTLE.format(policy="{policies}/zhejiang-points.toml",
                                                             out="{o}/settled_before"), 0, output="{o}/settled_before"),
    Case("settle with a missing policy", SETTLE.format(policy="{c}/nope.toml", out="{o}/settled"), 3,
         output="{o}/settled"),
    *[Case(f"settle with {what}", SETTLE.format(policy=f"{{c}}/{policy}", out="{o}/settled"), 1, output="{o}/settled")
      for what, policy in [("a broken policy", "broken.toml"), ("a GBK policy", "policies/gbk.toml"),
                           ("a budget of 1e300", "policies/budget_1e300.toml"),
                           ("a budget of 1e17", "policies/budget_1e17.toml"),
                           ("a readmission window of 10^20 days", "policies/readmission_huge.toml")]],
    Case("settle with a missing weights table", SETTLE.format(policy="{policies}/zhejiang-points.toml",
                                                              out="{o}/settled").replace("weights.csv", "nope.csv"),
         3, output="{o}/settled"),
    *[Case(f"settle with a weight of {value}", SETTLE.format(policy="{policies}/zhejiang-points.toml", out="{o}/settled")
           .replace("weights.csv", f"weights_{value}.csv"), 3, output="{o}/settled") for value in ("NaN", "inf", "1e308")],
    Case("settle into a folder of other files", SETTLE.format(policy="{policies}/zhejiang-points.toml", out="{c}/keep"),
         2, output=None),
    Case("settle into a missing folder", SETTLE.format(policy="{policies}/zhejiang-points.toml",
                                                       out="{o}/missing/settled"), 2, output="{o}/missing"),
    Case("settle onto its cases", SETTLE.format(policy="{policies}/zhejiang-points.toml", out="{c}/grouped.parquet"),
         2, output=None),
    Case("settle into its scheme pack", SETTLE.format(policy="{policies}/zhejiang-points.toml", out="{c}/mini_copy")
         + " --scheme {c}/mini_copy", 2, output=None),
    Case("settle into a folder holding its policy", SETTLE.format(policy="{c}/policies/gbk.toml", out="{c}/policies"),
         2, output=None),
    Case("settle a DIP policy", "settle {dip}/discharges.csv --policy {policies}/dip-example.toml --scheme {dip} "
         "-o {o}/settled -q", 0, output="{o}/settled"),
    Case("settle a DIP policy into its pack", "settle {c}/dip_copy/discharges.csv --policy {policies}/dip-example.toml "
         "--scheme {c}/dip_copy -o {c}/dip_copy -q", 2, output=None),
    # ---- report ----------------------------------------------------------------------------------
    Case("report", "report {c}/settled -o {o}/r.html", 0, output="{o}/r.html"),
    Case("report of a corrupt summary.json", "report {c}/settled_corrupt -o {o}/r.html", 3, output="{o}/r.html"),
    Case("report of a settlement with a damaged table", "report {c}/settled_damaged -o {o}/r.html", 3,
         output="{o}/r.html"),
    Case("report of a missing folder", "report {c}/nowhere -o {o}/r.html", 3, output="{o}/r.html"),
    Case("report onto its summary.json", "report {c}/settled -o {c}/settled/summary.json", 2, output=None),
    Case("report into a missing folder", "report {c}/settled -o {o}/missing/r.html", 2, output="{o}/missing"),
    # ---- calibrate and metrics -------------------------------------------------------------------
    Case("calibrate weights", "calibrate weights {c}/grouped.parquet -o {o}/w.csv -q", 0, output="{o}/w.csv"),
    Case("calibrate weights of a missing file", "calibrate weights {c}/missing.parquet -o {o}/w.csv -q", 3,
         output="{o}/w.csv"),
    Case("calibrate weights of a corrupt file", "calibrate weights {c}/corrupt.parquet -o {o}/w.csv -q", 3,
         output="{o}/w.csv"),
    Case("calibrate weights onto its history", "calibrate weights {c}/grouped.parquet -o {c}/grouped.parquet -q", 2,
         output=None),
    Case("calibrate weights into a missing folder", "calibrate weights {c}/grouped.parquet -o {o}/missing/w.csv -q", 2,
         output="{o}/missing"),
    Case("calibrate weights --report into a folder of other files",
         "calibrate weights {c}/grouped.parquet -o {o}/w.csv --report {c}/keep -q", 2, output="{o}/w.csv"),
    Case("calibrate dip without its procedure table",
         "calibrate dip {dip}/discharges.csv --procedures {c}/nope.csv -o {o}/pack -q", 3, output="{o}/pack"),
    Case("calibrate dip into a folder of other files",
         "calibrate dip {dip}/discharges.csv --procedures {dip}/proc_types.csv -o {c}/keep -q", 2, output=None),
    Case("metrics", "metrics {c}/grouped.parquet -o {o}/m.csv -q", 0, output="{o}/m.csv"),
    Case("metrics onto its input", "metrics {c}/grouped.parquet -o {c}/grouped.parquet -q", 2, output=None),
    Case("metrics onto its weights", "metrics {c}/grouped.parquet --weights {c}/weights.csv -o {c}/weights.csv -q", 2,
         output=None),
    Case("metrics with a missing weights table", "metrics {c}/grouped.parquet --weights {c}/nope.csv -o {o}/m.csv -q",
         3, output="{o}/m.csv"),
    Case("migration into a folder of other files", "migration {c}/hist.parquet --from {demo} --to {demo} "
         "--policy {policies}/zhejiang-points.toml -o {c}/keep -q", 2, output=None),
    Case("migration into its --to pack", "migration {c}/hist.parquet --from {demo} --to {c}/mini_copy "
         "--policy {policies}/zhejiang-points.toml -o {c}/mini_copy/impact -q", 2, output=None),
    Case("synth history of no hospitals", "synth history --hospitals 0 --cases 10 -o {o}/h.parquet -q", 2,
         output="{o}/h.parquet"),
    Case("calibrate weights --decimals -1", "calibrate weights {c}/grouped.parquet -o {o}/w.csv --decimals -1 -q", 2,
         output="{o}/w.csv"),
    Case("calibrate dip --dx-length 0", "calibrate dip {dip}/discharges.csv --procedures {dip}/proc_types.csv "
         "-o {o}/pack --dx-length 0 -q", 2, output="{o}/pack"),
    Case("synth history into a missing folder", "synth history --cases 10 -o {o}/missing/h.parquet -q", 2,
         output="{o}/missing"),
    # ---- weights tables, policy and screens files, scales: refused alike by every command --------
    *[Case(f"{command} with a weight of {value}", argv.format(w=f"{{c}}/weights_{value}.csv"), 3, output=output)
      for value in BAD_WEIGHTS
      for command, argv, output in [
          ("metrics", "metrics {{c}}/grouped.parquet --weights {w} -o {{o}}/m.csv -q", "{o}/m.csv"),
          ("group --weights", "group {{c}}/good.csv -o {{o}}/r.csv --scheme {{mini}} -q --weights {w}", "{o}/r.csv"),
          ("screen --weights", "screen {{c}}/grouped.parquet --weights {w} -o {{o}}/scr -q", "{o}/scr"),
          ("serve --weights", "serve --weights {w}", None),
      ]],
    Case("calibrate weights of a history without costs", "calibrate weights {c}/grouped_nocost.parquet -o {o}/w.csv -q",
         3, output="{o}/w.csv"),
    *[Case(f"calibrate weights {option}", f"calibrate weights {{c}}/grouped.parquet -o {{o}}/w.csv -q {option}", 2,
           output="{o}/w.csv")
      for option in ("--scale=0", "--scale=-1", "--scale=nan", "--scale=inf", "--min-cost=nan", "--min-cost=-1",
                     "--sd=0", "--max-cv=nan", "--iqr=nan,1", "--max-los=-1", "--min-cases=0")],
    *[Case(f"metrics {option}", f"metrics {{c}}/grouped.parquet -o {{o}}/m.csv -q {option}", 2, output="{o}/m.csv")
      for option in ("--min-cost=nan", "--min-cost=-1", "--max-los=-1")],
    Case("migration --min-cases 0", "migration {c}/hist.parquet --from {demo} --to {demo} "
         "--policy {policies}/zhejiang-points.toml -o {o}/impact -q --min-cases 0", 2, output="{o}/impact"),
    *[Case(f"serve {option}", f"serve {option}", 2, output=None)
      for option in ("--timeout=nan", "--timeout=0", "--point-value=0", "--point-value=-1", "--warn-at=inf")],
    *[Case(f"{command} with a missing policy", argv, 3, output=output) for command, argv, output in [
        ("serve", "serve --policy {c}/nope.toml", None),
        ("serve (a folder as the policy)", "serve --policy {c}/keep", None),
        ("migration", "migration {c}/hist.parquet --from {demo} --to {demo} --policy {c}/nope.toml -o {o}/impact -q",
         "{o}/impact"),
        ("screen", "screen {c}/grouped.parquet --weights {c}/weights.csv --policy {c}/nope.toml -o {o}/scr -q",
         "{o}/scr"),
        ("settle --compare", SETTLE.format(policy="{policies}/zhejiang-points.toml", out="{o}/settled")
         + " --compare {c}/nope.toml", "{o}/settled"),
    ]],
    Case("screen with a missing screens file", "screen {c}/grouped.parquet --screens {c}/nope.toml -o {o}/scr -q", 3,
         output="{o}/scr"),
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
    write(c / "broken.toml", "[policy\nname = ")
    shutil.copy(FIXTURES / "dip" / "published.csv", c / "published.csv")
    (c / "keep").mkdir()
    write(c / "keep" / "notes.txt", "a file no grouper command wrote")
    # a year of grouped cases, its weights, policies, a settlement folder (and damaged copies)
    run = lambda *argv: main([str(a) for a in argv])  # noqa: E731
    assert run("synth", "history", "--hospitals", 3, "--years", 1, "--cases", 400, "-o", c / "hist.parquet", "-q") == 0
    assert run("group", c / "hist.parquet", "-o", c / "grouped.parquet", "--carry", "-q") == 0
    assert run("calibrate", "weights", c / "grouped.parquet", "-o", c / "weights.csv", "-q") == 0
    header, first, *rest = (c / "weights.csv").read_text(encoding="utf-8-sig").splitlines()
    column = header.split(",").index("weight")
    for value in BAD_WEIGHTS:  # the first DRG's weight damaged: every command refuses, naming the line
        fields = first.split(",")
        fields[column] = value
        write(c / f"weights_{value}.csv", "\n".join([header, ",".join(fields), *rest]) + "\n")
    pl.read_parquet(c / "grouped.parquet").drop("cost").write_parquet(c / "grouped_nocost.parquet")
    policies = Path(shutil.copytree(POLICIES, c / "policies"))
    zhejiang = (policies / "zhejiang-points.toml").read_text(encoding="utf-8")
    (policies / "gbk.toml").write_bytes(zhejiang.encode("gbk", errors="replace"))  # as a Windows editor saves it
    for name, old, new in [("budget_1e300", "employee = 780_000_000.00", "employee = 1e300"),
                           ("budget_1e17", "employee = 780_000_000.00", "employee = 1e17"),
                           ("readmission_huge", "days = 15\n", "days = 99999999999999999999\n")]:
        assert old in zhejiang
        write(policies / f"{name}.toml", zhejiang.replace(old, new, 1))
    assert run("settle", c / "grouped.parquet", "--policy", POLICIES / "zhejiang-points.toml", "--weights",
               c / "weights.csv", "-o", c / "settled", "-q") == 0
    for name, damage in [("settled_corrupt", lambda f: write(f / "summary.json", '{"policy": "x", "pools": [')),
                         ("settled_damaged", lambda f: write(f / "hospitals.csv", "x,y\n1,2\n"))]:
        damage(Path(shutil.copytree(c / "settled", c / name)))
    # grouping by date: a schedule naming a copy of the mini pack; the first case has no discharge date
    shutil.copytree(MINI, c / "mini_copy")
    write(c / "schedule.csv", "from,pack\n2019-01-01,mini_copy\n")
    dated = "id,sex,age,los,dx,proc,discharge_date\n1,1,40,5,K35.800,47.0100,\n2,2,30,3,K35.800,,2025-03-01\n" \
            "3,1,40,5,K35.800|J18.900,47.0100,2025-03-02\n"
    write(c / "dated.csv", dated)
    write(c / "dated_title.csv", "2025年出院病人\n" + dated)
    shutil.copytree(DIP_DEMO, c / "dip_copy")
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
    # tables outside the pack: a readable table there, which must not be read
    shutil.copy(MINI / "cc.csv", c / "secret.csv")
    broken_pack(c, "table_outside", lambda p: write(p / "scheme.grp", grp.replace('"cc.csv"', '"../secret.csv"')))
    broken_pack(c, "table_absolute", lambda p: write(p / "scheme.grp", grp.replace('"cc.csv"', f'"{c / "secret.csv"}"')))
    broken_pack(c, "table_linked_out", lambda p: ((p / "cc.csv").unlink(), (p / "cc.csv").symlink_to(c / "secret.csv")))
    chain = "\n".join(["define d0 = los >= 1", *(f"define d{i} = d{i - 1} and los >= 1" for i in range(1, 300))])
    broken_pack(c, "deep_define", lambda p: write(p / "scheme.grp", grp + "\n" + chain + "\n"))
    broken_pack(c, "deep_parens", lambda p: write(p / "scheme.grp", grp + "\ndefine deep = " + "(" * 300 + "los >= 1"
                                                  + ")" * 300 + "\n"))
    (c / "no_scheme").mkdir()
    dip = Path(shutil.copytree(DIP_DEMO, c / "gbk_dip"))
    dip_text = (dip / "scheme.dip").read_text(encoding="utf-8")
    (dip / "scheme.dip").write_bytes((dip_text + "\n# 注释\n").encode("gbk"))
    outside = Path(shutil.copytree(DIP_DEMO, c / "dip_outside"))
    shutil.copy(DIP_DEMO / "catalogue.csv", c / "dip_catalogue.csv")
    (outside / "scheme.dip").write_text(dip_text.replace('"catalogue.csv"', '"../dip_catalogue.csv"'), encoding="utf-8")
    # a plan cache entry for this pack holding garbage (the cache folder is set per test below)
    broken_pack(c, "cached", lambda p: None)
    broken_pack(c, "fifo_cached", lambda p: None)
    return c


def snapshot(*folders: Path, leave_out: Path | None = None) -> dict[str, str]:
    """Every path under the folders (not following links) → a hash of its content ("folder" for a
    folder), except `leave_out` and what lies under it."""
    found = {}
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            if leave_out is not None and (path == leave_out or leave_out in path.parents):
                continue
            if path.is_symlink():
                found[str(path)] = "link to " + os.readlink(path)
            elif path.is_dir():
                found[str(path)] = "folder"
            else:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


class Hung(BaseException):
    """Raised by an alarm in a command that blocks (a BaseException: no `except Exception` swallows it)."""


def _no_hang(signum, frame):
    raise Hung("the command hung")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_command_over_bad_input(case: Case, corpus: Path, tmp_path: Path, monkeypatch, capsys):
    from grouper.plancache import ENTRY_SUFFIX
    from grouper.scheme import cache_dir, pack_fingerprint, scheme_path

    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    if "{c}/cached" in case.argv:  # garbage where the plan cache would look
        cache_dir().mkdir(parents=True)
        (cache_dir() / f"{pack_fingerprint(scheme_path(corpus / 'cached'))}{ENTRY_SUFFIX}").write_bytes(b"\x80\x09junk")
    if "{c}/fifo_cached" in case.argv:  # a FIFO where the plan cache would look: opening it would block
        cache_dir().mkdir(parents=True)
        os.mkfifo(cache_dir() / f"{pack_fingerprint(scheme_path(corpus / 'fifo_cached'))}{ENTRY_SUFFIX}")
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(corpus / "good.csv", out / "input.csv")
    if "{o}/settled_before" in case.argv:  # an earlier settlement in the output folder: replaced
        shutil.copytree(corpus / "settled", out / "settled_before")
    fill = {"c": corpus, "o": out, "mini": MINI, "demo": DEMO, "dip": DIP_DEMO, "policies": POLICIES}
    argv = case.argv.format(**fill).split()
    output = Path(case.output.format(**fill)) if case.output else None
    before = snapshot(corpus, out, leave_out=output)
    previous = signal.signal(signal.SIGALRM, _no_hang)
    signal.alarm(60)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    assert code in DOCUMENTED_EXIT_CODES, captured.err
    assert code == case.exit, captured.err
    assert snapshot(corpus, out, leave_out=output) == before  # nothing outside the named output touched
    if output is not None and code != 0:
        assert not output.exists(), f"a failed run left {output}"
    if case.records is not None and code == 0:
        results = pl.read_parquet(output) if output.suffix == ".parquet" else (
            pl.read_excel(output) if output.suffix == ".xlsx" else pl.read_csv(output, infer_schema=False))
        assert results.height == case.records


# ---- what some of the lines above only show by their exit code ------------------------------------

@pytest.mark.parametrize("pack", ["table_outside", "table_absolute", "table_linked_out"])
def test_a_table_outside_its_pack_is_not_read_unless_allowed(pack, corpus, monkeypatch, capsys):
    """Scheme table paths leaving the pack ("/etc/passwd", "../../secret.csv", a link) were read and
    their content shown in diagnostics (issue 17): a located error now, and the file is never opened;
    GROUPER_ALLOW_TABLES_OUTSIDE_PACK=1 allows it."""
    import polars

    opened = []
    read_csv = polars.read_csv
    monkeypatch.setattr(polars, "read_csv", lambda source, *a, **k: (opened.append(Path(source).resolve()),
                                                                     read_csv(source, *a, **k))[1])
    assert main(["check", str(corpus / pack)]) == 1
    err = capsys.readouterr().err
    assert f"{corpus / pack / 'scheme.grp'}:5:1: error[table-outside-pack]" in err and "GROUPER_ALLOW" in err
    assert (corpus / "secret.csv").resolve() not in opened
    monkeypatch.setenv("GROUPER_ALLOW_TABLES_OUTSIDE_PACK", "1")
    assert main(["check", str(corpus / pack)]) == 0
    assert (corpus / "secret.csv").resolve() in opened


@pytest.mark.parametrize("pack, where", [("deep_define", "error[too-deep]: define d"),
                                         ("deep_parens", "error[too-deep]: this condition is nested too deeply")])
def test_deep_nesting_is_a_located_diagnostic(pack, where, corpus, capsys):
    """A define nested 300 deep raised RecursionError in `check` (issue 17)."""
    assert main(["check", str(corpus / pack)]) == 1
    err = capsys.readouterr().err
    assert f"{corpus / pack / 'scheme.grp'}:" in err and where in err and "^" in err
    assert err.count("error[too-deep]") == 1   # where the limit is crossed, not at every define after it


def test_group_by_date_carries_and_keeps_a_case_without_a_date(corpus, tmp_path):
    """--by-date ignored --carry, and with --batch-size 1 a blank first discharge date refused the
    whole run (issue 16): the case is invalid (no_scheme_in_force), the others are grouped and carried."""
    out = tmp_path / "r.csv"
    argv = ["group", str(corpus / "dated.csv"), "-o", str(out), "--by-date", str(corpus / "schedule.csv"), "-q",
            "--carry", "--batch-size", "1"]
    assert main(argv) == 0
    results = pl.read_csv(out, infer_schema=False)
    assert results["reason"].to_list()[0] == "no_scheme_in_force" and results["status"].to_list()[0] == "invalid"
    assert results["scheme"].to_list()[1:] == ["mini", "mini"] and results["status"].to_list()[1:] != ["invalid"] * 2
    assert results["discharge_date"].to_list() == [None, "2025-03-01", "2025-03-02"]
