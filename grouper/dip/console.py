"""Terminal output of the DIP wing (the wing's only Rich user besides grouper/console.py)."""
from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from .reference import LEVEL_NAMES, Decision


def render_dip_explanation(case_id: str, d: Decision, console: Console) -> None:
    """The case's key, every candidate row of its category per level (✓/✗ and why), the winner
    and the tie-break that chose it; then the comprehensive fallback when it was reached."""
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
        tree.add(Text(f"key: diagnosis category {d.category} × qualifying procedures "
                      f"{'+'.join(d.qualifying) or '(none)'}; treatment type {d.treatment}"))
    for level, found in d.candidates.items():
        node = tree.add(Text(f"{level} ({LEVEL_NAMES[level]}): {len(found)} row(s) of {d.category}",
                             style="bold"))
        for c in found:
            won = d.row is not None and c.row is d.row
            mark = "★" if won else ("✓" if c.matches else "✗")
            line = Text(f"{mark} {c.row.code} {c.row.name}  [{c.row.procs or '保守'}]",
                        style="bold green" if won else ("green" if c.matches else "red"))
            detail = c.why + (f"; + terms {c.plus}, matched {len(c.matched)}, treatment rank {c.rank}" if c.matches else "")
            line.append(f"  — {detail}  ({c.row.span})", style="dim")
            node.add(line)
    if d.status != "invalid" and (d.row is None or d.row.level == "comprehensive"):
        where = d.comp_category or "(no listed prefix)"
        tree.add(Text(f"comprehensive ({LEVEL_NAMES['comprehensive']}): category {where} × {d.treatment}",
                      style="bold"))
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
