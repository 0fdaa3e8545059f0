"""The payment wing's commands: argument parsers and thin command functions (the CLI calls these)."""
from __future__ import annotations


from ..console import progress, stderr_console

EXIT_OK = 0


def add_payment_parsers(sub) -> None:
    s = sub.add_parser("synth", help="synthetic data (seeded; documented as synthetic)")
    kinds = s.add_subparsers(dest="kind", required=True)
    h = kinds.add_parser("history", help="a synthetic cost history: grouped-able cases with settlement fields")
    h.add_argument("--scheme", help="scheme pack folder or .grp file (default: the shipped demo scheme)")
    h.add_argument("--hospitals", type=int, default=40, help="number of hospitals (default 40)")
    h.add_argument("--years", type=int, default=3, help="discharge years, ending with --end-year (default 3)")
    h.add_argument("--end-year", type=int, default=2024, help="last discharge year (default 2024)")
    h.add_argument("--cases", type=int, default=300_000, help="number of cases over all years (default 300,000)")
    h.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    h.add_argument("--source", help="case file whose code combinations are resampled (default: build cases "
                                    "from the pack's tables)")
    h.add_argument("-o", "--output", required=True, help=".parquet (types kept) or .csv (money in yuan)")
    h.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no summary")
    h.set_defaults(run=cmd_synth_history)


def cmd_synth_history(args) -> int:
    from ..scheme import load_scheme
    from .history import write_history

    console = stderr_console()
    scheme = load_scheme(args.scheme)
    show = not args.quiet and console.is_terminal
    with progress(args.cases, "synthetic history", enabled=show) as bar:
        rows = write_history(args.output, scheme, hospitals=args.hospitals, years=args.years, cases=args.cases,
                             seed=args.seed, end_year=args.end_year, source=args.source, on_chunk=bar.advance)
    if not args.quiet:
        console.print(f"{rows:,} synthetic cases ({args.hospitals} hospitals, {args.years} years to "
                      f"{args.end_year}, seed {args.seed}) → {args.output}")
    return EXIT_OK


