"""`grouper settle`: the command's body (the parser lives in grouper/cli.py)."""
from __future__ import annotations

from pathlib import Path


def run_settle(args) -> int:
    from ..errors import InputError
    from ..outputs import check_outputs
    from ..scheme import pack_inputs

    check_outputs([("CASES", args.cases), ("--policy", args.policy), ("--weights", args.weights),
                   ("--compare", args.compare), ("--weights2", args.weights2), *pack_inputs("--scheme", args.scheme)],
                  folders=[("-o", args.output, "settlement")])
    for option, path in (("--policy", args.policy), ("--compare", args.compare)):
        if path is not None and not Path(path).is_file():   # a path naming nothing: exit 3, like any missing file
            raise InputError(f"{option} {path}: no such policy file")
    from ..console import stage

    with stage(f"settling {Path(args.cases).name}", enabled=not args.quiet):
        settlement, comparison, out = _settle(args)
    if not args.quiet:
        from .console import render_settlement

        render_settlement(settlement, comparison, out)
    warnings = [*settlement.warnings, *(comparison.change.warnings if comparison is not None else ())]
    return EXIT_WARNINGS if getattr(args, "strict", False) and warnings else 0


def _settle(args):
    """Settle and write the folder: (settlement, comparison or None, the folder)."""
    from ..errors import UsageError
    from ..outputs import atomic_output
    from .files import load_cases, write_comparison, write_settlement
    from .policy import load_policy
    from .run import compare_policies, settle_cases

    policy = load_policy(args.policy)
    policy2 = load_policy(args.compare) if args.compare else None
    out = Path(args.output)
    comparison = None
    if policy.is_dip:  # base points from the DIP pack's scores (grouper/dip/settle.py)
        from ..dip.settle import settle_dip

        result = settle_dip(args.cases, policy, args.scheme, policy2=policy2)
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
