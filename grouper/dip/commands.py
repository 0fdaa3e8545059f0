"""The `grouper` subcommands on DIP packs (cli.py dispatches here when the pack is a DIP pack)."""
from __future__ import annotations

import json

EXIT_OK, EXIT_SCHEME = 0, 1


def check_command(pack, strict: bool) -> int:
    from ..console import print_diagnostics, stderr_console
    from .ast import LEVELS
    from .scheme import check_dip_scheme, dip_scheme_path

    console = stderr_console()
    scheme, rows, found = check_dip_scheme(pack)
    print_diagnostics(found, console)
    errors = sum(d.severity == "error" for d in found)
    warnings = len(found) - errors
    counts = ", ".join(f"{len(rows.get(level, ())):,} {level}" for level in LEVELS)
    summary = f"DIP catalogue: {counts} group(s); " if scheme is not None and rows else ""
    console.print(f"{dip_scheme_path(pack)}: {summary}{errors} error(s), {warnings} warning(s)")
    return EXIT_SCHEME if errors or (strict and warnings) else EXIT_OK


def group_command(args, reading) -> int:
    import polars as pl

    from ..console import stderr_console
    from . import group_dip_file, load_dip_scheme
    from .console import render_dip_summary

    from ..errors import UsageError

    unsupported = [flag for flag, given in (("--report", args.report), ("--trace", args.trace),
                                            ("--trace-status", args.trace_status)) if given]
    if unsupported:
        raise UsageError(f"{', '.join(unsupported)}: not available for a DIP pack (use `grouper explain --scheme PACK` "
                         "for one case)")
    console = stderr_console()
    scheme = load_dip_scheme(args.scheme)
    batches, unused = [], []
    rows = group_dip_file(args.input, args.output, scheme, batch_size=args.batch_size, **reading,
                          threads=args.threads, carry=getattr(args, "carry", False), on_unused=unused.extend,
                          on_batch=lambda r: batches.append(r.select("status", "dip_level")))
    if not args.quiet:
        from ..console import render_unused_columns

        render_dip_summary(pl.concat(batches), console)
        render_unused_columns(unused, console)
        console.print(f"{rows:,} cases → {args.output}")
    return EXIT_OK


def explain_command(args, case, scenarios) -> int:
    from ..console import stdout_console

    from . import dip_what_if, explain_dip, load_dip_scheme
    from .console import render_dip_explanation, render_dip_what_if
    from .reference import explain_dip_json

    scheme = load_dip_scheme(args.scheme)
    case = _with_cost(args, case) if scheme.plan.cost_step else case
    if args.json:
        print(json.dumps(explain_dip_json(scheme, case, scenarios), ensure_ascii=False, indent=2))
        return EXIT_OK
    decision = explain_dip(scheme, case)
    whatifs = dip_what_if(scheme, case, scenarios) if scenarios else []
    console = stdout_console()
    render_dip_explanation(str(case["id"][0]), decision, console)
    if whatifs:
        render_dip_what_if(whatifs, console)
    return EXIT_OK


def _with_cost(args, case):
    """The case with its `cost` column (the cost step's input) when it comes from a file: the shared
    case reader of `explain` reads only the grouping fields."""
    if not getattr(args, "cases", None) or "cost" in case.columns:
        return case
    import polars as pl

    from .. import io

    from ..options import reading_arguments

    costs = io.read_cases(args.cases, settlement=True, **reading_arguments(args)).filter(pl.col("id") == args.id)
    return case.with_columns(costs["cost"].head(1).alias("cost")) if costs.height else case


def import_command(args) -> int:
    from ..console import stderr_console
    from .importer import import_dip

    console = stderr_console()
    path, dropped = import_dip(args.table_dir, args.output, procedures=args.procedures, name=args.name or "DIP",
                               version=args.scheme_version or "imported")
    for line, code, reason in dropped.iter_rows():
        console.print(f"{args.table_dir}:{line}: dropped {code or '(no code)'}: {reason}", style="yellow", markup=False)
    console.print(f"wrote {path} ({dropped.height} row(s) dropped, listed in {path.parent / 'dropped.csv'}; "
                  f"check it with: grouper check {args.output})")
    return EXIT_OK


def add_calibrate_dip(kinds) -> None:
    """`grouper calibrate dip HISTORY -o PACK ...` (kinds: the `calibrate` command's subparsers)."""
    d = kinds.add_parser("dip", help="build a DIP catalogue (core and comprehensive groups, scores) from a cost history")
    d.add_argument("history", help="cases with costs: .parquet (from `grouper synth history`), .csv or .xlsx")
    d.add_argument("-o", "--output", required=True, help="DIP pack folder to write")
    d.add_argument("--procedures", required=True,
                   help="procedure table: code, treatment (保守治疗/诊断性操作/治疗性操作/相关手术), qualifying (1/0)")
    d.add_argument("--min-cases", type=int, default=15, help="cases a combination needs to be a core group (default 15)")
    d.add_argument("--scale", type=int, default=1000, choices=[100, 1000], help="score scale (default 1000)")
    d.add_argument("--year-weights", default="",
                   help="weights of the discharge years, oldest to latest, e.g. 1:2:7 (default: every case once)")
    d.add_argument("--years", help="discharge years to use, e.g. 2022:2024 (default: all)")
    d.add_argument("--dx-length", type=int, default=5, help="characters of the diagnosis in the core key (default 5, 亚目)")
    d.add_argument("--comprehensive-length", type=int, default=3,
                   help="characters of the diagnosis in comprehensive groups (default 3, 类目)")
    d.add_argument("--auxiliary", help="auxiliary subtype table (辅助目录) to put in the pack")
    d.add_argument("--auxiliary-lists", help="the code lists its subtypes name (list, code[, category, weight])")
    d.add_argument("--calibrate-auxiliary", action="store_true",
                   help="set each subtype's factor from the history (cost ÷ group mean over its cases)")
    d.add_argument("--auxiliary-min-cases", type=int, default=30,
                   help="cases a subtype needs for a calibrated factor (default 30; else the table's factor)")
    d.add_argument("--name", default="DIP", help="scheme name")
    d.add_argument("--version", dest="scheme_version", default="calibrated", help="scheme version")
    d.add_argument("--encoding", help="CSV encoding of the history")
    d.add_argument("-q", "--quiet", action="store_true", help="no summary")
    d.set_defaults(run=calibrate_command)


def calibrate_command(args) -> int:
    from ..console import stderr_console
    from ..errors import UsageError
    from ..outputs import check_outputs
    from .calibrate import CalibrationParams, calibrate_dip, read_history

    check_outputs([("history", args.history), ("--procedures", args.procedures), ("--auxiliary", args.auxiliary),
                   ("--auxiliary-lists", args.auxiliary_lists)], folders=[("-o", args.output, "DIP pack")])
    try:
        weights = tuple(float(w) for w in args.year_weights.split(":")) if args.year_weights else ()
    except ValueError:
        raise UsageError(f"--year-weights looks like 1:2:7, not {args.year_weights!r}") from None
    years = None
    if args.years:
        try:
            first, last = (int(y) for y in args.years.split(":"))
        except ValueError:
            raise UsageError(f"--years looks like 2022:2024, not {args.years!r}") from None
        years = (first, last)
    for option, value in (("--min-cases", args.min_cases), ("--dx-length", args.dx_length),
                          ("--comprehensive-length", args.comprehensive_length),
                          ("--auxiliary-min-cases", args.auxiliary_min_cases)):
        if value < 1:
            raise UsageError(f"{option} must be at least 1, not {value}")
    params = CalibrationParams(min_cases=args.min_cases, scale=args.scale, dx_length=args.dx_length,
                               comprehensive_length=args.comprehensive_length, year_weights=weights, years=years,
                               name=args.name, version=args.scheme_version, auxiliary=args.auxiliary,
                               auxiliary_lists=args.auxiliary_lists, calibrate_auxiliary=args.calibrate_auxiliary,
                               auxiliary_min_cases=args.auxiliary_min_cases)
    catalogue, summary = calibrate_dip(read_history(args.history, encoding=args.encoding), args.procedures,
                                       args.output, params)
    if not args.quiet:
        console = stderr_console()
        console.print(f"{summary['cases']:,} cases, {summary['grouped']:,} grouped: {summary['core_groups']:,} core "
                      f"groups ({summary['core_share']:.1%} of grouped cases), {summary['comprehensive_groups']:,} "
                      f"comprehensive groups; overall mean {summary['overall_mean_fen'] / 100:,.2f} yuan → {args.output}")
    return EXIT_OK
