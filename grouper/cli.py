"""The `grouper` command. Exit codes: 0 ok, 1 scheme errors, 2 usage, 3 input/data errors, 70 internal error
(a bug), 130 interrupted, 143 terminated."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import (EXIT_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_OK, EXIT_SCHEME,  # noqa: F401
                     EXIT_TERMINATED, EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    from .version import __version__
    from .engine.kernel import kernel_description
    from .options import add_reading_arguments, at_least

    parser = argparse.ArgumentParser(prog="grouper", description="CHS-DRG and DIP grouper driven by scheme packs, with payment and settlement.")
    parser.add_argument("--version", action="version", version=f"grouper {__version__} ({kernel_description()})")
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("group", help="group a file of discharge records")
    g.add_argument("input", help="cases: .csv/.tsv/.txt (UTF-8 or GBK/GB18030), .parquet or .xlsx")
    g.add_argument("-o", "--output", required=True, help="results: .csv, .parquet or .xlsx")
    g.add_argument("--scheme", help="scheme pack folder, .grp file, or DIP pack (scheme.dip) (default: the shipped demo scheme)")
    add_reading_arguments(g)
    g.add_argument("--batch-size", type=at_least(1), default=1_000_000, help="rows per batch (memory bound); default 1,000,000 (with more than one thread, "
                        "batches of half that, two in flight)")
    g.add_argument("--threads", type=at_least(1),
                   help="threads (default: all cores): the kernel's; with more than one, reading and writing "
                        "overlap grouping")
    g.add_argument("--report", metavar="FILE",
                   help="write the quality report (validation problems by reason and by department): .csv, .parquet or .xlsx")
    g.add_argument("--trace", action="append", metavar="ID",
                   help="add a `trace` column (the rules that held) for the case with this id (repeatable)")
    g.add_argument("--trace-status", action="append", metavar="STATUS",
                   choices=["grouped", "qy", "no_drg", "no_adrg", "ungroupable", "invalid"],
                   help="trace every case ending with this status, e.g. no_adrg (repeatable)")
    g.add_argument("--by-date", metavar="SCHEDULE",
                   help="group each case with the scheme in force at its discharge date: a CSV with columns "
                        "from,pack (instead of --scheme); results get scheme and scheme_version columns")
    g.add_argument("--carry", action="store_true",
                   help="write a grouped file: the settlement fields (hospital, level, insurance, cost, dates, ...) "
                        "after the results, input for calibrate/metrics/settle")
    g.add_argument("--names", action="store_true",
                   help="add the group's name and weight beside its code: drg_name (the pack's DRG names) and rw "
                        "(the pack's weights, when it has them)")
    g.add_argument("--weights", metavar="FILE",
                   help="add the group's weight (rw) from this weights table (drg, weight), e.g. from "
                        "`grouper calibrate weights`")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")

    c = sub.add_parser("check", help="check a scheme pack and print its diagnostics")
    c.add_argument("pack", nargs="?", help="pack folder or .grp file (default: the demo scheme)")
    c.add_argument("--strict", action="store_true", help="exit non-zero on warnings too")

    e = sub.add_parser("explain", help="why a case lands in its group: every rule tried, and what-if changes")
    e.add_argument("--scheme", help="scheme pack folder or .grp file (default: the shipped demo scheme)")
    e.add_argument("--cases", help="file to pick the case from (with --id)")
    e.add_argument("--id", help="id of the case in --cases")
    add_reading_arguments(e, what="--cases")
    e.add_argument("--dx", help="diagnoses, principal first, |-separated (instead of --cases)")
    e.add_argument("--proc", default="", help="procedures, principal first, |-separated")
    for name in ("sex", "age", "age-days", "weight", "dept", "los", "discharge"):
        e.add_argument(f"--{name}", help=f"the case's {name.replace('-', '_')}")
    e.add_argument("--json", action="store_true", help="print one JSON object (result fields and steps) to stdout")
    e.add_argument("--try", dest="tries", action="append", metavar="CHANGES",
                   help="what-if scenario: comma-separated +dx:CODE, -dx:CODE, +proc:CODE, -proc:CODE (repeatable); "
                        "`--try each` drops each recorded secondary diagnosis and procedure in turn")

    i = sub.add_parser("import", help="turn an official table set into a scheme pack")
    i.add_argument("format", choices=["chs-drg", "dip"],
                   help="chs-drg: official appendix tables (a folder); dip: a published DIP catalogue (.csv/.xlsx)")
    i.add_argument("table_dir", help="the table folder (chs-drg) or the catalogue file (dip)")
    i.add_argument("-o", "--output", required=True, help="pack folder to write")
    i.add_argument("--name", help="scheme name (default: CHS-DRG / DIP)")
    i.add_argument("--version", dest="scheme_version",
                   help="scheme version (default: chs-drg 2.0 for the 2.0 layout, else 1.1; dip: imported)")
    i.add_argument("--procedures", help="dip: procedure table (code, type[, qualifying], as the 医保 2.0 dictionary; 介入治疗 counts as 相关手术) giving treatment types")
    i.add_argument("--allow-unused", action="store_true",
                   help="chs-drg: import even when some table rows would not be used (each is reported as a warning)")
    i.add_argument("--with-maps", action="store_true",
                   help="convert codes through dx_map.csv / proc_map.csv before grouping (the reference does not)")
    i.add_argument("--force", action="store_true",
                   help="replace an existing pack folder at -o, edits included (without it, an existing non-empty "
                        "folder is refused: put local changes in an overlay that `extends` the pack instead)")
    i.add_argument("--base", metavar="PACK",
                   help="chs-drg: write an overlay of this pack holding only the differences (a regional table set)")
    st = sub.add_parser("settle", help="settle grouped (or raw) cases under a regional payment policy")
    st.add_argument("cases", help="a grouped file (.parquet/.csv/.xlsx with status, drg and the settlement fields) or raw cases")
    st.add_argument("--policy", help="policy file (.toml), e.g. tables/policies/zhejiang-points.toml "
                                    "(default: GROUPER_POLICY, else `policy` in the config file)")
    st.add_argument("--weights", help="weights table (drg, weight[, mean]; CSV, Parquet or Excel); not with a DIP policy (scores come from the pack)")
    st.add_argument("--scheme", help="scheme pack for raw cases (default: the shipped demo scheme); the DIP pack for a DIP policy")
    st.add_argument("-o", "--output", required=True, help="folder for cases.parquet (or cases.csv), hospitals.csv, drgs.csv, pools.csv, summary.json")
    st.add_argument("--compare", metavar="POLICY2", help="also settle under this policy and write the change per hospital and DRG")
    st.add_argument("--weights2", help="weights table for the --compare side (default: --weights)")
    st.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="per-case table format (default parquet)")
    st.add_argument("-q", "--quiet", action="store_true", help="no summary")
    st.add_argument("--strict", action="store_true",
                    help="exit 4 when the settlement has warnings (the outputs are written all the same)")

    r = sub.add_parser("report", help="write a self-contained HTML report of a settlement folder")
    r.add_argument("settlement", help="a folder written by `grouper settle`")
    r.add_argument("-o", "--output", required=True, help="the .html file to write")
    r.add_argument("--screens", metavar="DIR", help="a folder written by `grouper screen`: adds the supervision section")

    from .payment.commands import add_calibrate_weights, add_payment_parsers
    from .versions.commands import add_versions_parsers

    add_payment_parsers(sub, anomaly_planter=_anomaly_planter)
    from .screen.commands import add_screen_parser

    add_screen_parser(sub)
    add_versions_parsers(sub)
    from .serve.commands import add_serve_parser

    add_serve_parser(sub)
    cal = sub.add_parser("calibrate", help="build weights or a DIP catalogue from a cost history")
    calibrate_kinds = cal.add_subparsers(dest="kind", required=True)   # each wing adds its kind
    from .dip.commands import add_calibrate_dip

    add_calibrate_weights(calibrate_kinds)
    add_calibrate_dip(calibrate_kinds)
    for path in TABLE_COMMANDS:
        _add_output_options(_subparser(sub, path), headers=path in HEADER_COMMANDS)
    return parser


# The commands that write tables (CSV/Excel/Parquet), all through grouper.writers.
TABLE_COMMANDS = (("group",), ("settle",), ("metrics",), ("crosswalk",), ("calibrate", "weights"),
                  ("synth", "history"))
# Those whose tables are for people only (nothing reads them back), so their headers may be Chinese.
HEADER_COMMANDS = (("group",), ("crosswalk",))


def _subparser(sub, path: tuple[str, ...]) -> argparse.ArgumentParser:
    parser = sub.choices[path[0]]
    for name in path[1:]:
        nested = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = nested.choices[name]
    return parser


def _add_output_options(parser: argparse.ArgumentParser, *, headers: bool) -> None:
    from .writers import DEFAULT_ENCODING, OUTPUT_ENCODINGS

    parser.add_argument("--output-encoding", metavar="ENCODING", type=_output_encoding,
                        help=f"encoding of CSV outputs: {', '.join(OUTPUT_ENCODINGS)} (default {DEFAULT_ENCODING}: "
                             "UTF-8 with a byte-order mark, which Excel on Chinese Windows opens correctly)")
    if headers:
        parser.add_argument("--headers", choices=["en", "zh"], default=None,
                            help="column headers: en = field names (default), zh = the Chinese names of the "
                                 "结算清单 and of the results (for people; grouper reads back field names)")


def _output_encoding(text: str) -> str:
    from .errors import UsageError
    from .writers import output_encoding

    try:
        return output_encoding(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _anomaly_planter(scheme, *, seed: int):
    """`grouper synth history --plant-anomalies`: the supervision screens' planter, chosen here so
    that the payment wing does not import the screen wing."""
    from .screen.plant import planter

    return planter(scheme, seed=seed)


def cmd_settle(args) -> int:
    from .payment.commands import run_settle

    return run_settle(args, base_sources={"dip": _settle_dip})


def _settle_dip(cases, policy, scheme, *, policy2=None):
    """A `method = "dip"` policy: base points from the DIP pack's scores (DipScores, the settle
    engine's base source for DIP), chosen here so that the payment wing does not import DIP."""
    from .dip.settle import settle_dip

    return settle_dip(cases, policy, scheme, policy2=policy2)


def cmd_report(args) -> int:
    from .console import stage, stderr_console
    from .errors import GrouperError, InputError
    from .outputs import check_outputs
    from .report.html import write_report

    folder = Path(args.settlement)
    read = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else [folder]
    if args.screens is not None:
        screens = Path(args.screens)
        read += sorted(p for p in screens.rglob("*") if p.is_file()) if screens.is_dir() else [screens]
    check_outputs([("SETTLEMENT", p) for p in read], [("-o", args.output)])
    try:
        with stage(f"writing the report of {args.settlement}"):
            written = write_report(args.settlement, args.output, screens=args.screens)
    except (GrouperError, OSError):
        raise
    except Exception as exc:  # noqa: BLE001 - the folder's files do not hold what `grouper settle` writes
        raise InputError(f"{folder} does not hold a settlement as `grouper settle` writes it "
                         f"({type(exc).__name__}: {exc}); write it again with `grouper settle ... -o {folder}`") from None
    stderr_console().print(f"report of {args.settlement} → {written} ({written.stat().st_size:,} bytes)", markup=False)
    return EXIT_OK


def cmd_group(args) -> int:
    from .dip import is_dip_pack
    from .errors import UsageError
    from .options import reading_arguments

    _refuse_group_outputs(args)
    if (args.names or args.weights) and (args.by_date or is_dip_pack(args.scheme)):
        raise UsageError("--names and --weights label DRG results; they do not apply to --by-date or a DIP pack")
    if args.by_date or is_dip_pack(args.scheme):
        _started()
    if args.by_date:
        from .versions.commands import group_by_date_command

        return group_by_date_command(args, reading_arguments(args))
    if is_dip_pack(args.scheme):
        from .dip.commands import group_command

        return group_command(args, reading_arguments(args))
    return _group_with_scheme(args)


def _refuse_group_outputs(args) -> None:
    """Before reading anything: outputs that would destroy an input or each other, outputs that
    cannot be written, output formats that are not known."""
    from . import io
    from .outputs import check_outputs
    from .scheme import pack_inputs

    check_outputs([("input", args.input), ("--by-date", args.by_date), ("--weights", args.weights),
                   *pack_inputs("--scheme", args.scheme)],
                  [("-o", args.output), ("--report", args.report)])
    for path in (args.output, args.report):
        if path:
            io.output_format(path)


def _group_with_scheme(args) -> int:
    """`grouper group` with a DRG scheme: notes and the scheme line, the outputs, then the summary.
    With -q and nothing to say, the terminal output (rich) is never loaded: it is start-up time."""
    import time

    from . import io
    from .scheme import load_scheme
    from .validate import QualityReport
    from .writers import excel_cost_note

    started = time.monotonic()
    console = None
    if not args.quiet:
        from .console import stderr_console

        console = stderr_console()
    scheme = load_scheme(args.scheme)
    _started()
    _print_notes(io.input_notes(args.input, sheet=args.sheet))
    if io.output_format(args.output) == ".xlsx":
        _print_notes(filter(None, [excel_cost_note(io.expected_rows(Path(args.input), args.sheet, args.skip_rows)[0])]))
    if console is not None:
        from .console import scheme_line

        console.print(scheme_line(scheme.describe()), markup=False)
    report = QualityReport(scheme.plan) if args.report or not args.quiet else None
    rows, batches, summary = _write_group_outputs(args, scheme, report, console)
    if args.trace:
        from .console import trace_notes

        _print_notes(trace_notes(args.trace, batches.traced))
    if console is not None:
        _render_group_summary(args, rows, batches, summary, report, time.monotonic() - started, console)
    return EXIT_OK


def _print_notes(notes) -> None:
    """Each note on stderr, `note: ...` (the console is loaded only when there is one)."""
    console = None
    for note in notes:
        if console is None:
            from .console import stderr_console

            console = stderr_console()
        console.print(f"note: {note}", style="yellow", markup=False)


class _GroupProgress:
    """Follows grouping batch by batch: moves the progress bar (if any), names the output stage on
    it, and keeps each batch's status counts (when there is a summary to print) and the ids of the
    cases it traced."""

    def __init__(self, bar, output, grouping: str) -> None:
        self.bar, self.output, self.grouping = bar, output, grouping
        self.counts: list = []
        self.traced: list[str] = []
        self.batches = 0

    def on_batch(self, results) -> None:
        import polars as pl

        if self.bar is not None:   # no bar with -q: no summary to count for
            from .console import summary_counts

            self.counts.append(summary_counts(results))
        if self.bar is not None:
            if not self.batches:
                self.bar.describe(self.grouping)   # the input is being read: say so no longer
            self.bar.advance(results.height)
        self.batches += 1
        if "trace" in results.columns:
            self.traced.extend(results.filter(pl.col("trace").is_not_null())["id"].cast(pl.String).to_list())

    def on_stage(self, text: str) -> None:
        if self.bar is None:
            return
        from .console import output_stage_text

        self.bar.describe(output_stage_text(text, self.output, sum(int(c["len"].sum()) for c in self.counts)))


def _write_group_outputs(args, scheme, report, console):
    """Group the input into the results file and the quality report: (rows, the _GroupProgress, the
    report frame or None). Both appear together, whole, or not at all (Ctrl-C and SIGTERM included).
    `console`: None with -q (no bar, no summary counts)."""
    from contextlib import nullcontext

    from . import api, io
    from .options import reading_arguments
    from .outputs import atomic_outputs

    show = console is not None and console.is_terminal
    expected, estimated = io.expected_rows(Path(args.input), args.sheet, args.skip_rows)
    grouping = f"grouping with {scheme.plan.name} {scheme.plan.version}"
    first = grouping
    if Path(args.input).suffix.lower() in (".xlsx", ".xls"):   # read whole before the first batch
        first = f"reading {Path(args.input).name} (an Excel file is read whole first)"
    if console is not None:
        from .console import progress

        bar_context = progress(expected, first, enabled=show, estimated=estimated)
    else:
        bar_context = nullcontext(None)
    with atomic_outputs(args.output, args.report) as (output, report_path):
        with bar_context as bar:
            batches = _GroupProgress(bar, args.output, grouping)
            rows = api.group_file(args.input, output, scheme,
                                  batch_size=_progress_batch_size(args.batch_size, expected,
                                                                  steps=5 if io.ramps(args.input) else 10),
                                  **reading_arguments(args), threads=args.threads,
                                  on_batch=batches.on_batch, report=report, trace=_trace_request(args),
                                  carry=args.carry, on_stage=batches.on_stage, names=args.names,
                                  weights=_weights_table(args.weights))
            if bar is not None:
                bar.finish()
        summary = report.frame() if report is not None else None
        if report_path:
            io.write_results(summary, report_path)
    return rows, batches, summary


def _weights_table(path):
    """A weights table (drg, weight) for `group --weights`, read and checked as every command reads one."""
    if path is None:
        return None
    from .payment.settle import checked_weights, read_weights

    return checked_weights(read_weights(path), f"--weights {path}")


def _render_group_summary(args, rows: int, batches: _GroupProgress, summary, report, seconds: float,
                          console) -> None:
    import polars as pl

    from .console import (render_done, render_quality_report, render_rejected_values, render_summary,
                          render_unreadable_lines, render_unused_columns)
    from .engine.kernel import kernel_description

    render_summary(pl.concat(batches.counts), console)
    render_quality_report(summary, console)
    render_rejected_values(summary, console)
    render_unreadable_lines(summary, report.unreadable_lines, console)
    render_unused_columns(report.unused_columns, console)
    render_done(rows, args.output, args.report, seconds, console, kernel=kernel_description())


def _trace_request(args):
    if not (args.trace or args.trace_status):
        return None
    from .explain import TraceRequest

    return TraceRequest(frozenset(args.trace or ()), frozenset(args.trace_status or ()))


def _progress_batch_size(batch_size: int, rows: int | None, *, steps: int = 10) -> int:
    """A smaller batch for an input that would be one batch or a few, so that the bar moves (about
    `steps` steps) and reading, grouping and writing overlap (grouper.overlap); never above
    `batch_size`, never below 10,000 rows (batches cost a little each). A Parquet input takes five:
    its batches start and end smaller (grouper.io.ramped_sizes), so there are about ten all the same."""
    if rows is None or rows >= steps * batch_size:
        return batch_size
    return max(10_000, min(batch_size, -(-rows // steps)))


def cmd_check(args) -> int:
    from .console import print_diagnostics, stderr_console
    from .scheme import check_scheme, scheme_path, split_base_diagnostics

    from .dip import is_dip_pack

    if is_dip_pack(args.pack):
        from .dip.commands import check_command

        return check_command(args.pack, args.strict)
    console = stderr_console()
    scheme, found = check_scheme(args.pack)
    own, base_summary = split_base_diagnostics(args.pack, found) if scheme is not None else (found, None)
    print_diagnostics(own, console)      # an overlay's base: one summary line
    if base_summary:
        console.print(base_summary)
    errors = sum(d.severity == "error" for d in found)
    warnings = len(found) - errors
    where = scheme_path(args.pack)
    if scheme is not None:
        adrgs = [a for m in scheme.mdcs for a in m.adrgs]
        console.print(f"{where}: {len(scheme.mdcs)} MDCs, {len(adrgs)} ADRGs, {sum(len(a.drgs) for a in adrgs)} DRGs; "
                      f"{errors} error(s), {warnings} warning(s)")
    else:
        console.print(f"{where}: {errors} error(s)")
    if errors or (args.strict and warnings):
        return EXIT_SCHEME
    return EXIT_OK


def _explain_case(args):
    import polars as pl

    from . import io
    from .errors import InputError, UsageError
    from .options import reading_arguments

    if args.cases:
        if args.id is None:
            raise UsageError("--cases needs --id to pick the case")
        cases = io.read_cases(args.cases, **reading_arguments(args))
        rows = cases.with_row_index("_row", offset=1).filter(pl.col("id") == args.id)
        if rows.height == 0:
            raise InputError(f"no case with id {args.id!r} in {args.cases}")
        if rows.height > 1:
            from .console import stderr_console

            stderr_console().print(f"note: id {args.id!r} occurs {rows.height} times in {args.cases} (records "
                                   f"{', '.join(map(str, rows['_row'].head(10)))}); explaining the first", style="yellow",
                                   markup=False)
        return rows.head(1).drop("_row")
    given = [flag for flag, value in (("--skip-rows", args.skip_rows), ("--sheet", args.sheet),
                                      ("--column", args.column), ("--encoding", args.encoding)) if value]
    if given:
        raise UsageError(f"{', '.join(given)}: options for reading --cases FILE, which is not given")
    if args.dx is None:
        raise UsageError("give a case with --dx/--proc/--sex/--age ..., or pick one with --cases FILE --id ID")
    fields = {"id": args.id or "case", "sex": args.sex, "age": args.age, "age_days": args.age_days,
              "weight": args.weight, "dept": args.dept, "los": args.los, "discharge": args.discharge,
              "dx": args.dx, "proc": args.proc}
    return io.cases_from_frame(pl.DataFrame([fields], schema={k: pl.String for k in fields}))


def cmd_explain(args) -> int:
    import dataclasses
    import json

    from .console import render_explanation, render_what_if
    from .explain import explain_case, parse_change, removal_scenarios, what_if
    from .scheme import load_scheme

    case = _explain_case(args)
    scenarios = []
    for text in args.tries or ():
        if text.strip() == "each":
            scenarios += removal_scenarios(case)
        else:
            try:
                scenarios.append([parse_change(part) for part in text.split(",") if part.strip()])
            except ValueError as exc:
                raise argparse.ArgumentTypeError(str(exc)) from None
    from .dip import is_dip_pack

    if is_dip_pack(args.scheme):
        from .dip.commands import explain_command

        try:
            return explain_command(args, case, scenarios)
        except ValueError as exc:  # removing a code the case does not have
            raise argparse.ArgumentTypeError(str(exc)) from None
    scheme = load_scheme(args.scheme)
    explanation = explain_case(scheme, case)
    try:
        whatifs = what_if(scheme, case, scenarios) if scenarios else []
    except ValueError as exc:  # removing a code the case does not have
        raise argparse.ArgumentTypeError(str(exc)) from None
    if args.json:
        out = explanation.to_dict()
        if whatifs:
            out["what_if"] = [dataclasses.asdict(w) for w in whatifs]
        print(json.dumps(out, ensure_ascii=False, indent=2))
    else:
        from .console import stdout_console

        console = stdout_console()
        render_explanation(explanation, console)
        if whatifs:
            render_what_if(whatifs, console)
    return EXIT_OK


def cmd_import(args) -> int:
    from .console import stderr_console
    from .importers.chs_drg import import_chs_drg
    from .outputs import check_outputs
    from .scheme import pack_inputs

    # Before reading anything: the pack folder is replaced whole, so it must hold no input.
    kind = "DIP pack" if args.format == "dip" else "DRG pack"
    check_outputs([("TABLE_DIR", args.table_dir), *pack_inputs("--base", args.base), ("--procedures", args.procedures)],
                  folders=[("-o", args.output, kind)])
    _refuse_existing_pack(args.output, args.force)   # its own earlier pack: replaced only with --force (edits)
    if args.format == "dip":
        from .dip.commands import import_command

        return import_command(args)
    unused: list[str] = []
    warnings: list[str] = []
    if args.base:
        from .importers.regional import import_overlay

        path = import_overlay(args.table_dir, args.base, args.output, name=args.name or "CHS-DRG",
                              version=args.scheme_version, with_maps=args.with_maps, allow_unused=args.allow_unused,
                              unused=unused, warnings=warnings)
    else:
        path = import_chs_drg(args.table_dir, args.output, name=args.name or "CHS-DRG", version=args.scheme_version,
                              with_maps=args.with_maps, allow_unused=args.allow_unused, unused=unused,
                              warnings=warnings)
    console = stderr_console()
    for problem in unused:
        console.print(f"warning: unused table rows: {problem}", style="yellow", markup=False)
    for problem in warnings:
        console.print(f"warning: {problem}", style="yellow", markup=False)
    console.print(f"wrote {path} (check it with: grouper check {args.output})")
    return EXIT_OK


def _refuse_existing_pack(output: str, force: bool) -> None:
    """Importing replaces the pack folder whole: a re-import would silently drop the user's edits to
    it, so an existing non-empty folder needs --force."""
    from .errors import UsageError

    path = Path(output)
    if force or not path.is_dir() or not any(path.iterdir()):
        return
    raise UsageError(f"-o {output} exists: importing replaces the whole folder, and any edit made to it would be lost. "
                     "Import into a new folder, or pass --force to replace it; local changes belong in an overlay "
                     "(a scheme.grp that `extends` the pack, e.g. `replace read sex ...`), which a re-import leaves alone")


def main(argv: list[str] | None = None) -> int:
    from .errors import InputError, SchemeError, UsageError
    from .outputs import Terminated, os_error_in, os_error_text, raise_on_termination

    _size_polars_pool(sys.argv[1:] if argv is None else argv)
    _quiet_blas()
    args = _parser().parse_args(argv)
    import warnings

    from .errors import DemoSchemeWarning
    from .writers import output_options

    raise_on_termination()  # SIGTERM unwinds like Ctrl-C, so partial outputs are removed
    try:
        commands = {"group": cmd_group, "check": cmd_check, "import": cmd_import, "explain": cmd_explain,
                    "settle": cmd_settle, "report": cmd_report}
        _apply_user_defaults(args)
        with warnings.catch_warnings(), \
                output_options(encoding=getattr(args, "output_encoding", None), headers=getattr(args, "headers", None)):
            warnings.simplefilter("once", DemoSchemeWarning)
            warnings.showwarning = _show_warning
            if args.command != "group":   # (group: once its plan is loaded)
                _started()
            if args.command not in commands:  # the wings' commands (synth, calibrate, metrics): set_defaults(run=...)
                return args.run(args)
            return commands[args.command](args)
    except SchemeError as exc:
        from .console import print_diagnostics, stderr_console

        print_diagnostics(exc.diagnostics, stderr_console())
        return EXIT_SCHEME
    except (UsageError, argparse.ArgumentTypeError) as exc:
        return _error(exc, EXIT_USAGE)
    except (InputError, *_import_errors()) as exc:
        return _error(exc, EXIT_INPUT)
    except KeyboardInterrupt:
        return _error("interrupted; no partial output was left", EXIT_INTERRUPTED)
    except Terminated:
        return _error("terminated (SIGTERM); no partial output was left", EXIT_TERMINATED)
    except Exception as exc:  # noqa: BLE001 - never a traceback: a file system error, or a bug said plainly
        error = os_error_in(exc)
        if error is not None:  # a full disk, a missing or unreadable file, also when a writer wraps it
            return _error(os_error_text(error), EXIT_INPUT)
        if os.environ.get("GROUPER_TRACEBACK"):
            raise
        return _error(f"internal error (a bug in grouper, please report it): {type(exc).__name__}: {exc}; "
                      "set GROUPER_TRACEBACK=1 to see where", EXIT_INTERNAL)


def _size_polars_pool(argv: list[str]) -> None:
    """`grouper group --threads N`: Polars (reading, canonicalising, writing) uses N threads too, as the
    kernel does, unless POLARS_MAX_THREADS says otherwise. Polars reads that variable once, when it is
    first imported, so this runs before the parser is built (some wings' parsers import it)."""
    if not argv or argv[0] != "group" or "polars" in sys.modules or os.environ.get("POLARS_MAX_THREADS"):
        return
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--threads", type=int)
    try:
        threads = pre.parse_known_args(argv[1:])[0].threads
    except SystemExit:   # a bad value: the real parser says so
        return
    if threads is not None and threads >= 1:
        os.environ["POLARS_MAX_THREADS"] = str(threads)


# The environment variables OpenBLAS (NumPy's linear algebra) takes its thread count from, in its order.
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS")


def _quiet_blas() -> None:
    """OpenBLAS on one thread, unless told otherwise: grouper does no linear algebra, and the threads
    OpenBLAS starts when NumPy is imported (one per core) cost 0.05–0.1 CPU-s of every command's
    start-up. Like Polars' pool, it is sized once, when NumPy is first imported: hence here."""
    if "numpy" in sys.modules or any(os.environ.get(name) for name in _BLAS_THREAD_VARIABLES):
        return
    os.environ["OPENBLAS_NUM_THREADS"] = "1"


def _import_errors() -> tuple[type, ...]:
    """The importer's error class, once the importer is loaded (only then can one be raised): not
    imported for the other commands, whose start-up it would slow."""
    importer = sys.modules.get("grouper.importers.chs_drg")
    return (importer.ImportError_,) if importer is not None else ()


def _apply_user_defaults(args) -> None:
    """Fill an omitted scheme (`--scheme`, `check PACK`) and policy (`--policy`) from GROUPER_SCHEME /
    GROUPER_POLICY or the config file (grouper.config); say on stderr where they came from."""
    from .config import user_default
    from .errors import UsageError

    notes = []
    for attribute, setting in (("scheme", "scheme"), ("pack", "scheme"), ("policy", "policy")):
        if getattr(args, attribute, "absent") is None:
            found = user_default(setting)
            if found.value is not None:
                setattr(args, attribute, found.value)
                notes.append(f"{setting}: {found.value} (from {found.source})")
    if args.command == "settle" and args.policy is None:
        raise UsageError("settle needs a policy: --policy FILE.toml, or set GROUPER_POLICY or `policy = ...` in the "
                         "config file (see docs/commands.md)")
    if notes:
        from .console import stderr_console

        for note in notes:
            stderr_console().print(f"note: {note}", style="yellow", markup=False)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings on stderr as one line, `warning: ...` (the demo-scheme notice is the one we expect)."""
    from .console import stderr_console

    stderr_console().print(f"warning: {message}", style="bold yellow", markup=False)


def _error(message, code: int) -> int:
    from .console import stderr_console

    stderr_console().print(f"error: {message}", style="bold red", markup=False)
    return code


def run() -> None:
    """The `grouper` process (`python -m grouper`, the `grouper` script): `main()` with the cyclic
    garbage collector held during start-up, and an exit that skips tearing the interpreter down.

    Start-up (imports, the argument parser, the plan) allocates only what lives to the end, so the
    collections the allocations trigger (~0.025 CPU-s, 1–2 full ones) free nothing: the collector is
    held until `_started()`, which moves everything alive then out of its sight (`gc.freeze`) and
    turns it back on, for the batches. Once `main()` has returned every output is written and closed,
    and the interpreter's teardown (module by module, with more full collections: ~0.05 s with Polars,
    NumPy and pyarrow loaded) frees memory the process is about to give back anyway: the exit
    handlers run, the standard streams are flushed, and the process ends there. With another Python
    thread still running, or under a profiler or tracer (`python -m cProfile -m grouper ...` writes its
    figures after the run), it ends the ordinary way."""
    import atexit
    import gc
    import threading

    global _gc_held
    gc.disable()
    _gc_held = True
    try:
        code = main()
    finally:
        _started()
    if threading.active_count() > 1 or not isinstance(code, int) or _watched():   # (a profiler writes at the end)
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):   # a closed pipe: the ordinary exit reports it as it always did
        sys.exit(code)
    os._exit(code)


def _watched() -> bool:
    """Whether a profiler, tracer or debugger watches the process: by sys.setprofile/settrace, or, from
    Python 3.12, by sys.monitoring (where cProfile and pdb register, leaving sys.getprofile() None)."""
    if sys.getprofile() is not None or sys.gettrace() is not None:
        return True
    return sys.version_info >= (3, 12) and any(
        sys.monitoring.get_tool(tool) for tool in (sys.monitoring.PROFILER_ID, sys.monitoring.DEBUGGER_ID))


_gc_held = False   # run() holds the collector during start-up


def _started() -> None:
    """Start-up is over (see run()): the objects made so far are set aside for good, the collector
    runs again for the rest. Nothing in-process callers of `main()` see."""
    global _gc_held
    if _gc_held:
        import gc

        _gc_held = False
        gc.freeze()
        gc.enable()


if __name__ == "__main__":
    run()
