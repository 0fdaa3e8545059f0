"""`grouper settle`: the command's body (the parser lives in grouper/cli.py)."""
from __future__ import annotations

from pathlib import Path

def run_settle(args) -> int:
    from ..outputs import atomic_output, refuse_collisions
    from .files import load_cases, write_comparison, write_settlement
    from .policy import load_policy
    from .run import compare_policies, settle_cases

    refuse_collisions([("CASES", args.cases), ("--policy", args.policy), ("--weights", args.weights),
                       ("--compare", args.compare), ("--weights2", args.weights2)], [("-o", args.output)])
    policy = load_policy(args.policy)
    policy2 = load_policy(args.compare) if args.compare else None
    cases = load_cases(args.cases, args.scheme)  # the scheme is loaded only if the cases are raw
    out = Path(args.output)
    comparison = None
    if policy2 is None:
        settlement = settle_cases(cases, policy, args.weights)
    else:
        comparison = compare_policies(cases, policy, policy2, args.weights, args.weights2)
        settlement = comparison.base
    with atomic_output(out, directory=True) as folder:  # the folder appears whole or not at all
        if comparison is None:
            write_settlement(settlement, folder, case_format=args.format)
        else:
            write_comparison(comparison, folder, case_format=args.format, weights2=args.weights2)
    if not args.quiet:
        from .console import render_settlement

        render_settlement(settlement, comparison, out)
    return 0
