"""Rich output of the versions wing (crosswalk table, by-date summary)."""
from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from ..console import stderr_console

__all__ = ["render_crosswalk", "render_schedule_summary", "stderr_console"]


def _num(value, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def render_crosswalk(table: pl.DataFrame, before, after, console: Console | None, *, top: int = 15) -> None:
    """The largest source groups and where their cases land (to stdout unless a console is given)."""
    if console is None:
        from ..console import stdout_console

        console = stdout_console()
    a, b = before.ast.header, after.ast.header
    sources = (table.group_by("from_group").agg(pl.col("from_cases").first())
               .sort(["from_cases", "from_group"], descending=[True, False]).head(top)["from_group"].to_list())
    out = Table(title=f"{a.name} {a.version} → {b.name} {b.version}: {int(table['cases'].sum()):,} cases, "
                      f"{table['from_group'].n_unique():,} source groups (largest {len(sources)})")
    for column, justify in (("from", "left"), ("cases", "right"), ("to (share, cases)", "left"), ("weight change", "right")):
        out.add_column(column, justify=justify)
    for source in sources:
        rows = table.filter(pl.col("from_group") == source)
        landing = ", ".join(f"{r['to_group']} {r['share']:.0%} ({r['cases']})" for r in rows.head(4).iter_rows(named=True))
        if rows.height > 4:
            landing += f", … {rows.height - 4} more"
        known = rows.filter(pl.col("weight_change").is_not_null())
        change = (known["weight_change"] * known["cases"]).sum() / known["cases"].sum() if known.height else None
        out.add_row(source, f"{rows['from_cases'][0]:,}", landing, _num(change))
    console.print(out)


def render_schedule_summary(schedule, counts: list[pl.DataFrame], rows: int, output, console: Console) -> None:
    total = (pl.concat(counts).group_by("scheme", "scheme_version", "status").agg(pl.col("len").sum())
             if counts else pl.DataFrame())
    out = Table(title=f"grouped by discharge date: {schedule.describe()}")
    for column in ("scheme", "status", "cases"):
        out.add_column(column, justify="right" if column == "cases" else "left")
    for r in total.sort(["scheme", "scheme_version", "status"], nulls_last=True).iter_rows(named=True):
        name = f"{r['scheme']} {r['scheme_version']}" if r["scheme"] is not None else "(no scheme in force)"
        out.add_row(name, r["status"], f"{r['len']:,}")
    console.print(out)
    console.print(f"{rows:,} cases → {output}")
