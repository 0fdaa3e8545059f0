"""The `grouper` subcommands on DIP packs (cli.py dispatches here when the pack is a DIP pack)."""
from __future__ import annotations

import dataclasses
import json

from ..console import print_diagnostics, stderr_console
from .ast import LEVELS

EXIT_OK, EXIT_SCHEME = 0, 1


def check_command(pack, strict: bool) -> int:
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


def group_command(args, columns) -> int:
    import polars as pl

    from . import group_dip_file, load_dip_scheme
    from .console import render_dip_summary

    console = stderr_console()
    scheme = load_dip_scheme(args.scheme)
    batches = []
    rows = group_dip_file(args.input, args.output, scheme, batch_size=args.batch_size, columns=columns,
                          encoding=args.encoding, threads=args.threads,
                          on_batch=lambda r: batches.append(r.select("status", "dip_level")))
    if not args.quiet:
        render_dip_summary(pl.concat(batches), console)
        console.print(f"{rows:,} cases → {args.output}")
    return EXIT_OK


def explain_command(args, case, scenarios) -> int:
    from rich.console import Console

    from . import dip_what_if, explain_dip, load_dip_scheme
    from .console import render_dip_explanation, render_dip_what_if

    scheme = load_dip_scheme(args.scheme)
    decision = explain_dip(scheme, case)
    whatifs = dip_what_if(scheme, case, scenarios) if scenarios else []
    case_id = str(case["id"][0])
    if args.json:
        out = {"id": case_id, "status": decision.status, "dip": decision.code,
               "dip_level": decision.row.level if decision.row else None,
               "score": decision.row.score if decision.row else None, "treatment": decision.treatment,
               "reason": decision.reason, "category": decision.category, "qualifying": list(decision.qualifying),
               "decided_by": decision.decided_by,
               "candidates": {level: [{"dip": c.row.code, "procs": c.row.procs, "matches": c.matches,
                                       "plus": c.plus, "matched": list(c.matched), "rank": c.rank, "why": c.why,
                                       "source": str(c.row.span)} for c in found]
                              for level, found in decision.candidates.items()}}
        if whatifs:
            out["what_if"] = [dataclasses.asdict(w) for w in whatifs]
        print(json.dumps(out, ensure_ascii=False, indent=2))
        return EXIT_OK
    console = Console(highlight=False, soft_wrap=False)
    render_dip_explanation(case_id, decision, console)
    if whatifs:
        render_dip_what_if(whatifs, console)
    return EXIT_OK


def import_command(args) -> int:
    from .importer import import_dip

    console = stderr_console()
    path, dropped = import_dip(args.table_dir, args.output, procedures=args.procedures, name=args.name or "DIP",
                               version=args.scheme_version or "imported")
    for line, code, reason in dropped.iter_rows():
        console.print(f"{args.table_dir}:{line}: dropped {code or '(no code)'}: {reason}", style="yellow", markup=False)
    console.print(f"wrote {path} ({dropped.height} row(s) dropped, listed in {path.parent / 'dropped.csv'}; "
                  f"check it with: grouper check {args.output})")
    return EXIT_OK
