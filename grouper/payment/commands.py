"""The payment wing's commands: argument parsers and thin command functions (the CLI calls these)."""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from types import MappingProxyType

from ..errors import InputError, UsageError

EXIT_OK = 0

# settle(cases, policy, scheme, *, policy2=None) -> a Settlement, or with policy2 a Comparison
SettleBySource = Callable[..., object]


def add_payment_parsers(sub, *, anomaly_planter: Callable[..., object] | None = None) -> None:
    """`grouper synth history` and `grouper metrics`. `anomaly_planter(scheme, seed=)` gives the
    `transform` of `--plant-anomalies` (the supervision screens' planter); the face that builds the
    parser passes it, so this wing does not import the screen wing."""
    from ..options import at_least, number_at_least

    s = sub.add_parser("synth", help="synthetic data (seeded; documented as synthetic)")
    kinds = s.add_subparsers(dest="kind", required=True)
    h = kinds.add_parser("history", help="a synthetic cost history: cases with settlement fields")
    h.add_argument("--scheme", help="scheme pack folder or .grp file (default: the shipped demo scheme)")
    h.add_argument("--hospitals", type=int, default=40, help="number of hospitals (default 40)")
    h.add_argument("--years", type=int, default=3, help="discharge years, ending with --end-year (default 3)")
    h.add_argument("--end-year", type=int, default=2024, help="last discharge year (default 2024)")
    h.add_argument("--cases", type=int, default=300_000, help="number of cases over all years (default 300,000)")
    h.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    h.add_argument("--source", help="case file whose code combinations are resampled (default: build cases "
                                    "from the pack's tables)")
    h.add_argument("-o", "--output", required=True, help=".parquet (types kept) or .csv (money in yuan)")
    h.add_argument("--plant-anomalies", action="store_true",
                   help="add doctor, phone and address columns and plant labelled anomalies for the supervision screens "
                        "(column `planted`; see docs/screens.md)")
    h.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    h.set_defaults(run=partial(cmd_synth_history, anomaly_planter=anomaly_planter))

    m = sub.add_parser("metrics", help="hospital indicators: CMI, cost and time indices, low-risk mortality ...")
    m.add_argument("grouped", nargs="+", help="grouped file(s) or raw case files (grouped here with --scheme)")
    m.add_argument("--weights", help="weights table (drg, weight[, mean, los_mean, risk]); default: the scheme's")
    m.add_argument("--scheme", help="scheme for raw case files and default weights (default: the demo scheme)")
    m.add_argument("-o", "--output", required=True, help="metrics: .csv, .parquet or .xlsx")
    m.add_argument("--benchmark", choices=["data", "weights"], default="data",
                   help="per-DRG means for the cost/time indices: from the data given (default) or the weights table")
    m.add_argument("--no-dept", action="store_true", help="hospital rows only")
    m.add_argument("--min-cost", type=number_at_least(0), default=5.0, help="exclude cases under this cost, yuan (default 5)")
    m.add_argument("--max-los", type=at_least(0), default=60, help="exclude stays longer than this (default 60; 0: none)")
    m.add_argument("--encoding", help="CSV encoding of the inputs")
    m.add_argument("-q", "--quiet", action="store_true", help="no summary")
    m.set_defaults(run=cmd_metrics)


def add_calibrate_weights(kinds) -> None:
    """`grouper calibrate weights HISTORY -o WEIGHTS ...` (kinds: the `calibrate` command's subparsers)."""
    from ..options import at_least, number_at_least

    w = kinds.add_parser("weights", help="one row per DRG: n, mean, median, CV, trimmed n, RW, points, stable")
    w.add_argument("history", nargs="+", help="grouped file(s) (`grouper group --carry`) or raw case files "
                                              "(grouped here with --scheme)")
    w.add_argument("--scheme", help="scheme for raw case files (default: the shipped demo scheme)")
    w.add_argument("-o", "--output", required=True, help="weights table: .csv (what `weights = TABLE` reads), "
                                                         ".parquet or .xlsx")
    w.add_argument("--report", metavar="DIR", help="also write the homogeneity report (RIV, CV, merge/split "
                                                   "candidates) as CSV files in this folder")
    w.add_argument("--trim", choices=["iqr", "percentile", "logsd", "none"], default="iqr",
                   help="outlier trimming per DRG (default iqr)")
    w.add_argument("--iqr", default="0.5,1.5", metavar="LOW,HIGH",
                   help="IQR fence multipliers: keep Q1-LOW*IQR .. Q3+HIGH*IQR (default 0.5,1.5)")
    w.add_argument("--percentiles", default="2.5,97.5", metavar="LOW,HIGH", help="kept percentile range (default 2.5,97.5)")
    w.add_argument("--sd", type=number_at_least(0, exclusive=True), default=3.0, help="logsd: keep |ln cost - mean| <= K*SD (default 3)")
    w.add_argument("--year-weights", metavar="W", help="e.g. 1:2:7 (the most recent years, oldest first) or "
                                                       "2022=1,2023=2,2024=7 (default: every year 1)")
    w.add_argument("--min-cases", type=at_least(1), default=5, help="fewer kept cases: the ADRG's pooled mean (default 5)")
    w.add_argument("--max-cv", type=number_at_least(0), default=1.0, help="stable when CV <= this (default 1)")
    w.add_argument("--min-cost", type=number_at_least(0), default=5.0, help="exclude cases under this cost, yuan (default 5)")
    w.add_argument("--min-los", type=at_least(0), help="exclude stays shorter than this (default: none)")
    w.add_argument("--max-los", type=at_least(0), default=60, help="exclude stays longer than this (default 60; 0: none)")
    w.add_argument("--by-insurance", action="store_true",
                   help="weights per insurance type: one output file per type (weights-employee.csv, ...)")
    w.add_argument("--scale", type=number_at_least(0, exclusive=True), default=100.0, help="points = RW x scale (default 100)")
    w.add_argument("--decimals", type=at_least(0), default=4, help="decimals of weight and points (default 4)")
    w.add_argument("--encoding", help="CSV encoding of the inputs")
    w.add_argument("-q", "--quiet", action="store_true", help="no summary")
    w.set_defaults(run=cmd_calibrate_weights)


def _pair(text: str, option: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(f"{option} expects LOW,HIGH, got {text!r}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise UsageError(f"{option} expects two finite numbers LOW,HIGH, got {text!r}")
    return low, high


def _refuse(args, inputs, files, folders=()) -> None:
    """Before reading anything: the output paths against the inputs and the --scheme pack
    (grouper.outputs.check_outputs)."""
    from ..outputs import check_outputs
    from ..scheme import pack_inputs

    check_outputs([*inputs, *pack_inputs("--scheme", args.scheme)], files, folders)


def cmd_synth_history(args, anomaly_planter: Callable[..., object] | None = None) -> int:
    from ..console import counted, progress, stderr_console
    from ..scheme import load_scheme
    from .history import write_history

    if args.hospitals < 1 or args.years < 1 or args.cases < 0:
        raise UsageError("synth history needs --hospitals and --years of at least 1 and --cases of 0 or more")
    _refuse(args, [("--source", args.source)], [("-o", args.output)])
    if Path(args.output).suffix.lower() not in (".parquet", ".csv"):
        raise InputError(f"cannot write {args.output}: use .parquet or .csv")
    console = stderr_console()
    scheme = load_scheme(args.scheme)
    show = not args.quiet and console.is_terminal
    transform = None
    if getattr(args, "plant_anomalies", False):
        if anomaly_planter is None:
            raise UsageError("--plant-anomalies is not available here (no anomaly planter was given)")
        transform = anomaly_planter(scheme, seed=args.seed)
    with progress(args.cases, "synthetic history", enabled=show) as bar:
        rows = write_history(args.output, scheme, hospitals=args.hospitals, years=args.years, cases=args.cases,
                             seed=args.seed, end_year=args.end_year, source=args.source, on_chunk=bar.advance,
                             transform=transform)
    if not args.quiet:
        console.print(f"{counted(rows, 'synthetic case')} ({counted(args.hospitals, 'hospital')}, "
                      f"{counted(args.years, 'year')} to {args.end_year}, seed {args.seed}) → {args.output}")
    return EXIT_OK


def _weight_options(args):
    """WeightOptions from the command line; a bad option value is a usage error (exit 2)."""
    from .weights import WeightOptions, parse_year_weights

    iqr_low, iqr_high = _pair(args.iqr, "--iqr")
    pct_low, pct_high = _pair(args.percentiles, "--percentiles")
    try:
        return WeightOptions(
            trim=args.trim, iqr_low=iqr_low, iqr_high=iqr_high, pct_low=pct_low, pct_high=pct_high, sd_k=args.sd,
            year_weights=parse_year_weights(args.year_weights) if args.year_weights else None,
            min_cases=args.min_cases, max_cv=args.max_cv, min_cost=round(args.min_cost * 100), min_los=args.min_los,
            max_los=args.max_los or None, by_insurance=args.by_insurance, scale=args.scale, decimals=args.decimals)
    except InputError as exc:
        raise UsageError(str(exc)) from None


def _insurance_path(path: Path, insurance: str | None) -> Path:
    return path.with_name(f"{path.stem}-{insurance or 'unknown'}{path.suffix}")


def cmd_calibrate_weights(args) -> int:
    from .. import io
    from ..console import stage, stderr_console
    from ..outputs import atomic_output
    from .api import calibrate_weights, homogeneity, load_grouped
    from .console import render_calibration
    from .weights import NEEDED, prepare

    output = Path(args.output)
    _refuse(args, [("HISTORY", path) for path in args.history], [("-o", args.output)],
            [("--report", args.report, "homogeneity report")])
    io.output_format(output)
    options = _weight_options(args)
    console = stderr_console()
    with stage(f"reading {', '.join(Path(p).name for p in args.history)}", enabled=not args.quiet):
        grouped = load_grouped(args.history, args.scheme, encoding=args.encoding, fields=list(NEEDED),
                               required={"cost": "weights are calibrated from each case's cost"})
        prepared = prepare(grouped, options)  # computed once for the weights and the report
    calibration = calibrate_weights(prepared)
    del grouped  # bounded memory: the prepared rows are all that is needed from here
    report = None
    if args.report or not args.quiet:
        report = homogeneity(prepared if not options.by_insurance else
                             load_grouped(args.history, args.scheme, encoding=args.encoding, fields=list(NEEDED)),
                             options)
    written = []
    if options.by_insurance:  # the file names are known now: checked like -o before anything is written
        parts = calibration.weights.group_by("insurance", maintain_order=True)
        _refuse(args, [("HISTORY", path) for path in args.history],
                [(f"-o ({insurance or 'unknown'})", _insurance_path(output, insurance)) for (insurance,), _ in parts],
                [("--report", args.report, "homogeneity report")])
        for (insurance,), part in calibration.weights.group_by("insurance", maintain_order=True):
            path = _insurance_path(output, insurance)
            io.write_results(part.drop("insurance"), path)
            written.append(str(path))
    else:
        io.write_results(calibration.weights, output)
        written.append(str(output))
    if args.report:
        with atomic_output(args.report, directory=True, kind="homogeneity report") as folder:
            for name in ("summary", "riv", "drgs", "merges", "splits"):
                io.write_results(getattr(report, name), folder / f"{name}.csv")
        written.append(f"{Path(args.report)}/")   # `--report rep/` is shown as rep/, not rep//
    if not args.quiet:
        render_calibration(calibration, report, console)
        console.print(f"weights → {', '.join(written)}")
    return EXIT_OK


def cmd_metrics(args) -> int:
    import polars as pl

    from .. import io
    from ..console import counted, stage, stderr_console
    from .settle import checked_weights, read_weights
    from .api import hospital_metrics, load_grouped, scheme_weights
    from .console import render_metrics
    from .metrics import NEEDED

    _refuse(args, [*(("GROUPED", path) for path in args.grouped), ("--weights", args.weights)], [("-o", args.output)])
    io.output_format(args.output)
    console = stderr_console()
    if args.weights:
        weights = checked_weights(read_weights(args.weights), f"--weights {args.weights}")
    else:
        weights = scheme_weights(args.scheme)
    with stage(f"reading {', '.join(Path(p).name for p in args.grouped)}", enabled=not args.quiet):
        grouped = load_grouped(args.grouped, args.scheme, encoding=args.encoding, fields=list(NEEDED))
    metrics = hospital_metrics(grouped, weights, benchmark=args.benchmark, by_dept=not args.no_dept,
                               min_cost=round(args.min_cost * 100), max_los=args.max_los or None)
    from .metrics import rounded

    io.write_results(rounded(metrics), args.output)
    if not args.quiet:
        render_metrics(metrics, console)
        console.print(f"{counted(metrics.filter(pl.col('dept').is_null()).height, 'hospital')} → {args.output}")
    return EXIT_OK


# `grouper settle` (its parser lives in grouper/cli.py)
def run_settle(args, base_sources: Mapping[str, SettleBySource] = MappingProxyType({})) -> int:
    """`grouper settle`. `base_sources` maps a policy's `policy.method` (as written, e.g. "dip") to
    the function that settles under it with base points from elsewhere than a weights table; the
    face that runs the command chooses them (grouper/cli.py gives DIP's), so this wing imports no
    other wing to dispatch."""
    from ..console import stage
    from ..outputs import check_outputs
    from ..scheme import pack_inputs

    check_outputs([("CASES", args.cases), ("--policy", args.policy), ("--weights", args.weights),
                   ("--compare", args.compare), ("--weights2", args.weights2), *pack_inputs("--scheme", args.scheme)],
                  folders=[("-o", args.output, "settlement")])
    from ..console import stage

    with stage(f"settling {Path(args.cases).name}", enabled=not args.quiet):
        settlement, comparison, out = _settle(args, base_sources)
    if not args.quiet:
        from .console import render_settlement

        render_settlement(settlement, comparison, out)
    warnings = [*settlement.warnings, *(comparison.change.warnings if comparison is not None else ())]
    return EXIT_WARNINGS if getattr(args, "strict", False) and warnings else 0


def _settle(args, base_sources: Mapping[str, SettleBySource]):
    """Settle and write the folder: (settlement, comparison or None, the folder)."""
    from ..errors import UsageError
    from ..outputs import atomic_output
    from .settle_files import load_cases, write_comparison, write_settlement
    from .policy import load_policy
    from .api import compare_policies, settle_cases

    policy = load_policy(args.policy)
    policy2 = load_policy(args.compare) if args.compare else None
    out = Path(args.output)
    comparison = None
    settle_by_source = base_sources.get(policy["policy"]["method"])
    if settle_by_source is not None:  # e.g. DIP: base points from the pack's scores (grouper/dip/settle.py)
        result = settle_by_source(args.cases, policy, args.scheme, policy2=policy2)
        comparison, settlement = (None, result) if policy2 is None else (result, result.base)
    elif args.weights is None:
        raise UsageError("--weights is required (a DRG weights table) unless the policy has method = \"dip\"")
    elif policy2 is None:
        settlement = settle_cases(load_cases(args.cases, args.scheme), policy, args.weights)
    else:
        cases = load_cases(args.cases, args.scheme)  # the scheme is loaded only if the cases are raw
        comparison = compare_policies(cases, policy, policy2, args.weights, args.weights2)
        settlement = comparison.base
    with atomic_output(out, directory=True, kind="settlement") as folder:  # the folder appears whole or not at all
        if comparison is None:
            write_settlement(settlement, folder, case_format=args.format)
        else:
            write_comparison(comparison, folder, case_format=args.format, weights2=args.weights2)
    return settlement, comparison, out


EXIT_WARNINGS = 4  # --strict: the settlement was written, and it has warnings (see summary.json "warnings")
