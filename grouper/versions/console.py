"""Rich output of the versions wing (crosswalk table, by-date summary)."""
from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from ..console import stderr_console

__all__ = ["render_crosswalk", "render_migration", "render_schedule_summary", "stderr_console"]


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


def render_migration(migration, output, console: Console, *, top: int = 10) -> None:
    """Key figures of a version switch and the hospitals losing and gaining most."""
    from ..fields import fen_text

    s = migration.summary()
    cmi = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    console.print(f"{s['from']} → {s['to']}: {s['cases']:,} cases (grouped {s['grouped_from']:,} → {s['grouped_to']:,}); "
                  f"CMI {cmi(s['cmi_from'])} → {cmi(s['cmi_to'])}; payment {fen_text(s['payment_from'])} → "
                  f"{fen_text(s['payment_to'])} yuan; hospitals: {s['winners']} win, {s['losers']} lose, "
                  f"{s['unchanged']} unchanged", markup=False, highlight=False)
    h = migration.hospitals.sort(["payment_change", "hospital"])
    shown = pl.concat([h.head(top), h.tail(top)]).unique("hospital", maintain_order=True) if top else h.clear()
    out = Table(title=f"largest losses and gains per hospital (after sharing); all in {output}/compare_hospitals.csv")
    for column in ("hospital", "cases", "payment change (yuan)", "CMI", "CMI change", "outcome"):
        out.add_column(column, justify="left" if column in ("hospital", "outcome") else "right")
    for r in shown.iter_rows(named=True):
        out.add_row(str(r["hospital"]), f"{r['cases'] or 0:,}", fen_text(int(r["payment_change"] or 0)),
                    f"{_num(r['cmi_before'])} → {_num(r['cmi_after'])}", _num(r["cmi_change"]), r["outcome"])
    console.print(out)
