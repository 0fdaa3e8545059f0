"""CLI of the versions wing: `grouper crosswalk` and `grouper group --by-date` (thin: parse, call, print)."""
from __future__ import annotations

from ..options import add_reading_arguments, at_least, reading_arguments


def add_versions_parsers(sub) -> None:
    x = sub.add_parser("crosswalk", help="group the same cases under two schemes: where each source DRG's cases land")
    x.add_argument("cases", help="cases file (.csv/.parquet/.xlsx), as for `grouper group`")
    x.add_argument("--from", dest="from_pack", required=True, help="the scheme the cases come from (pack or .grp)")
    x.add_argument("--to", dest="to_pack", required=True, help="the scheme they go to (pack or .grp)")
    x.add_argument("-o", "--output", help="write the whole crosswalk table (.csv, .parquet or .xlsx)")
    x.add_argument("--top", type=int, default=15, help="source groups shown on the terminal (most cases first); default 15")
    add_reading_arguments(x)
    x.add_argument("--batch-size", type=int, default=1_000_000, help="rows per batch; default 1,000,000")
    x.set_defaults(run=cmd_crosswalk)

    m = sub.add_parser("migration", help="what switching scheme version costs (测算): a year of cases grouped under both "
                                         "versions, weights calibrated for each, settled under one policy, compared")
    m.add_argument("cases", help="one year of raw cases with the settlement fields (hospital, cost, ...), as for "
                                 "`grouper group`")
    m.add_argument("--from", dest="from_pack", required=True, help="the version in force (pack or .grp)")
    m.add_argument("--to", dest="to_pack", required=True, help="the version to switch to (pack or .grp)")
    m.add_argument("--policy", required=True, help="the settlement policy (.toml) both versions are settled under")
    m.add_argument("-o", "--output", required=True, help="folder to write (the layout of `grouper settle --compare`)")
    m.add_argument("--format", choices=["parquet", "csv"], default="parquet", help="per-case tables; default parquet")
    m.add_argument("--year-weights", help="weight calibration: year weights, e.g. 1:2:7 (default: every year 1)")
    m.add_argument("--min-cases", type=at_least(1), default=5, help="weight calibration: fewest kept cases for a DRG's own "
                                                            "weight (else its ADRG's); default 5")
    m.add_argument("--encoding", help="CSV encoding of the cases")
    m.add_argument("--top", type=at_least(0), default=10, help="hospitals shown on the terminal (largest losses and gains); default 10")
    m.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    m.set_defaults(run=cmd_migration)


def cmd_crosswalk(args) -> int:
    from .. import io
    from ..errors import UsageError
    from ..outputs import check_outputs
    from ..scheme import load_scheme, pack_inputs
    from .console import render_crosswalk, stderr_console
    from .crosswalk import crosswalk

    if args.top < 0 or args.batch_size < 1:
        raise UsageError("--top must be >= 0 and --batch-size >= 1")
    if args.output:
        check_outputs([("cases", args.cases), *pack_inputs("--from", args.from_pack), *pack_inputs("--to", args.to_pack)],
                      [("-o", args.output)])
        io.output_format(args.output)
    before, after = load_scheme(args.from_pack), load_scheme(args.to_pack)
    table = crosswalk(args.cases, before, after, batch_size=args.batch_size, **reading_arguments(args))
    if args.output:
        io.write_results(table, args.output)
    render_crosswalk(table, before, after, stderr_console() if args.output else None, top=args.top)
    return 0


def group_by_date_command(args, reading) -> int:
    """`grouper group INPUT -o OUTPUT --by-date SCHEDULE`: each case with the scheme in force at its discharge date."""
    from ..errors import UsageError
    from ..outputs import check_outputs
    from ..scheme import pack_inputs
    from .console import render_schedule_summary, stderr_console
    from .dated import group_file_by_date, load_schedule

    refused = [flag for flag, given in (("--scheme", args.scheme), ("--report", args.report), ("--trace", args.trace),
                                        ("--trace-status", args.trace_status)) if given]
    if refused:   # never silently ignored
        raise UsageError(f"{', '.join(refused)}: not available with --by-date (the schedule names the schemes; "
                         "group each period with --scheme PACK for a quality report or traces)")
    schedule = load_schedule(args.by_date)
    # the packs the schedule names are inputs too (known only now, before anything is written)
    check_outputs([("--by-date", args.by_date), *(pair for period in schedule.periods
                                                  for pair in pack_inputs(f"--by-date pack {period.pack}", period.pack))],
                  [("-o", args.output)])
    counts, unused = [], []
    rows = group_file_by_date(args.input, args.output, schedule, batch_size=args.batch_size, **reading,
                              threads=args.threads, carry=args.carry, on_unused=unused.extend,
                              on_batch=lambda r: counts.append(r.group_by("scheme", "scheme_version", "status").len()))
    if not args.quiet:
        from ..console import render_unused_columns

        render_schedule_summary(schedule, counts, rows, args.output, stderr_console())
        render_unused_columns(unused, stderr_console())
    return 0


def cmd_migration(args) -> int:
    from ..errors import UsageError
    from ..outputs import atomic_output, check_outputs
    from ..payment.weights import WeightOptions, parse_year_weights
    from ..scheme import pack_inputs
    from ..payment.policy import load_policy
    from .console import render_migration, stderr_console
    from .migration import migration_impact, write_migration

    check_outputs([("cases", args.cases), *pack_inputs("--from", args.from_pack), *pack_inputs("--to", args.to_pack),
                   ("--policy", args.policy)], folders=[("-o", args.output, "migration impact")])
    if args.top < 0:
        raise UsageError("--top must be >= 0")
    policy = load_policy(args.policy)
    if policy.is_dip:
        raise UsageError("migration compares DRG scheme versions: use a DRG policy (method points or rate), not DIP")
    options = WeightOptions(min_cases=args.min_cases,
                            year_weights=parse_year_weights(args.year_weights) if args.year_weights else None)
    migration = migration_impact(args.cases, args.from_pack, args.to_pack, policy, weight_options=options,
                                 encoding=args.encoding)
    with atomic_output(args.output, directory=True, kind="migration impact") as folder:   # the folder appears whole or not at all
        write_migration(migration, folder, case_format=args.format)
    if not args.quiet:
        render_migration(migration, args.output, stderr_console(), top=args.top)
    return 0
