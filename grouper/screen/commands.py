"""`grouper screen`: the parser and the command (the CLI registers it; the work is in grouper.screen.run)."""
from __future__ import annotations

from pathlib import Path


def add_screen_parser(sub) -> None:
    s = sub.add_parser("screen", help="fund supervision screens (医保智能监管): flagged cases, ranked units, money at stake")
    s.add_argument("grouped", help="a grouped file (`grouper group --carry`) or raw cases (grouped here with --scheme)")
    s.add_argument("--screens", metavar="FILE", help="screens file (.toml); default: the shipped tables/screens/default.toml")
    s.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="folder for flags, unscreened, providers, money, hospitals, departments, doctors, scores, summary.json")
    s.add_argument("--cases", help="the case file that was grouped (row for row): its doctor, phone and address columns "
                                   "when GROUPED has none")
    s.add_argument("--scheme", help="scheme for raw cases (default: the shipped demo scheme)")
    s.add_argument("--weights", help="weights table (drg, weight) for the alternative group's payment; default: the "
                                     "year's own mean cost per DRG")
    s.add_argument("--policy", help="settlement policy (.toml, with --weights): what a case was paid is its settled "
                                    "payment (default: fund_paid)")
    s.add_argument("--key", metavar="FILE", help="key for hashing personal fields (the file's bytes, at least 16); "
                                                 "default: a new random key written to DIR/screen.key")
    s.add_argument("--format", choices=["parquet", "csv"], default="parquet",
                   help="flags and unscreened as .parquet (default) or .csv")
    s.add_argument("--encoding", help="CSV encoding of the inputs")
    s.add_argument("-q", "--quiet", action="store_true", help="no summary")
    s.set_defaults(run=cmd_screen)


def cmd_screen(args) -> int:
    from ..console import stderr_console
    from ..errors import UsageError
    from ..outputs import atomic_output, check_outputs
    from ..scheme import pack_inputs
    from .privacy import KEY_FILE, new_key, read_key, write_key
    from .run import load_cases, read_weights, screen, write_screening
    from .screens import load_screens

    inputs = [("GROUPED", args.grouped), ("--screens", args.screens), ("--cases", args.cases),
              ("--weights", args.weights), ("--policy", args.policy), ("--key", args.key)]
    check_outputs([*inputs, *pack_inputs("--scheme", args.scheme)], folders=[("-o", args.output, "screening")])
    if args.policy and not args.weights:
        raise UsageError("--policy needs --weights (the DRG weights the policy pays by)")
    screens = load_screens(args.screens)   # a bad screens file stops here, before any data is read
    key = read_key(args.key) if args.key else new_key()
    console = stderr_console()
    cases = load_cases(args.grouped, cases=args.cases, scheme=args.scheme, encoding=args.encoding)
    weights = read_weights(args.weights) if args.weights else None
    payment = None
    if args.policy:
        from ..grouped import GROUPED_SCHEMA
        from ..payment.api import settle_cases

        payment = settle_cases(cases.select(list(GROUPED_SCHEMA)), args.policy, args.weights).cases["payment"]
    result = screen(cases, screens, key=key, weights=weights, payment=payment, console=console)
    with atomic_output(args.output, directory=True, kind="screening") as folder:
        write_screening(result, folder, case_format=args.format)
        if not args.key:
            write_key(key, folder)
    if not args.quiet:
        from .console import render_screening

        render_screening(result, console)
        note = f" (hashing key: {Path(args.output) / KEY_FILE})" if not args.key else ""
        console.print(f"screens → {args.output}/{note}", markup=False)
    return 0
