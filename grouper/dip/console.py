"""Terminal output of the DIP wing (the wing's only Rich user besides grouper/console.py)."""
from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .reference import LEVEL_NAMES, Decision


def _gap(fen: int | None) -> str:
    return "unknown" if fen is None else f"{fen / 100:,.2f}"


def render_dip_explanation(case_id: str, d: Decision, console: Console) -> None:
    """The grouping order step by step (docs/dip.md): the case's key; every candidate row of its
    category per level (✓/✗ and why; class, `+` terms, matched procedures, cost gap); the
    tie-break winner of each tie-break level; the comprehensive candidate; the precedence between
    the candidates and what decided."""
    title = Text(f"case {case_id}: ", style="bold")
    title.append(d.status, style="bold green" if d.status == "grouped" else "bold red")
    if d.row is not None:
        title.append(f"  病种 {d.row.code} {d.row.name}  ({d.row.level})  score {d.row.score:g}")
        if d.aux is not None:
            title.append(f"  辅助 {d.aux.code} × {d.aux.factor:g}")
    if d.reason:
        title.append(f"  reason {d.reason}")
    tree = Tree(title)
    if d.category is not None:
        cost = "" if d.case_cost is None else f"; cost {_gap(d.case_cost)} yuan"
        tree.add(Text(f"key: diagnosis category {d.category} × qualifying procedures "
                      f"{'+'.join(d.qualifying) or '(none)'}; treatment type {d.treatment}{cost}"))
    for step, (level, found) in enumerate(d.candidates.items(), start=1):
        node = tree.add(Text(f"{step}. {level} ({LEVEL_NAMES[level]}) candidates: {sum(c.matches for c in found)} "
                             f"of {len(found)} row(s) of {d.category} match", style="bold"))
        for c in found:
            won = d.row is not None and c.row is d.row
            mark = "★" if won else ("✓" if c.matches else "✗")
            line = Text(f"{mark} {c.row.code} {c.row.name}  [{c.row.procs or '保守'}]",
                        style="bold green" if won else ("green" if c.matches else "red"))
            detail = c.why + (f"; class {level} {c.kind}, + terms {c.plus}, matched {len(c.matched)}, "
                              f"cost gap {_gap(c.gap)}" if c.matches else "")
            line.append(f"  — {detail}  ({c.row.span})", style="dim")
            node.add(line)
    if d.status != "invalid":
        comp = next((c for _, c in d.contenders if c.row.level == "comprehensive"), None)
        tree.add(Text(f"3. comprehensive ({LEVEL_NAMES['comprehensive']}) candidate: "
                      + (f"{comp.row.code} {comp.row.name} (key {d.comp_category} × {d.treatment}, {comp.row.span})"
                         if comp else f"none (no listed key of the diagnosis has a {d.treatment} row)"), style="bold"))
    for level, (lead, why) in d.leads.items():
        tree.add(Text(f"5. tie-breaks within {level}: {lead.row.code} — {why}", style="bold"))
    if d.contenders:
        node = tree.add(Text("6. precedence between the candidates (class position, best first)", style="bold"))
        for position, c in sorted(d.contenders, key=lambda pc: pc[0]):
            won = d.row is not None and c.row is d.row
            node.add(Text(f"{'★' if won else '·'} {position + 1}. {c.row.level} {c.kind}: {c.row.code}",
                          style="bold green" if won else None))
    if d.decided_by:
        tree.add(Text(f"chosen by: {d.decided_by}", style="bold"))
    if d.aux_verdicts:
        node = tree.add(Text("auxiliary subtypes (辅助目录): the highest factor that holds wins", style="bold"))
        for s, holds in d.aux_verdicts:
            won = d.aux is s
            node.add(Text(f"{'★' if won else ('✓' if holds else '✗')} {s.code} {s.name}  factor {s.factor:g}  ({s.span})",
                          style="bold green" if won else ("green" if holds else "red")))
    console.print(tree)


def render_dip_what_if(rows, console: Console) -> None:
    table = Table(title="What if")
    for column in ("change", "status", "病种", "level", "score", "辅助", ""):
        table.add_column(column)
    for r in rows:
        aux = f"{r.aux} × {r.aux_factor:g}" if r.aux else ""
        table.add_row(r.changes, r.status, r.dip or "", r.dip_level or "", "" if r.score is None else f"{r.score:g}",
                      aux, "changed" if r.changed else "", style="bold" if r.changed else None)
    console.print(table)


def render_dip_summary(results: pl.DataFrame, console: Console, *, top: int = 10) -> None:
    total = results.height
    table = Table(title=f"{total:,} cases")
    for column in ("status", "level", "cases", "%"):
        table.add_column(column)
    counts = results.group_by("status", "dip_level").len().sort("len", descending=True)
    for status, level, n in counts.iter_rows():
        table.add_row(status, level or "", f"{n:,}", f"{100 * n / max(total, 1):.1f}")
    console.print(table)
