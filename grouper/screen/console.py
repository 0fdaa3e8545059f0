"""The `grouper screen` summary on the terminal (rich)."""
from __future__ import annotations

from rich.table import Table

from ..fields import fen_text


def render_screening(result, console) -> None:
    summary = result.summary
    table = Table(title=f"{summary['screens']}: {summary['cases']:,} cases, {summary['flagged_cases']:,} flagged",
                  title_justify="left")
    for name, justify in (("rule", "left"), ("level", "left"), ("findings", "right"), ("at stake (yuan)", "right")):
        table.add_column(name, justify=justify)
    money = {row["rule"]: row for row in result.money.iter_rows(named=True)}
    for item in summary["rules"]:
        if item["kind"] == "providers":
            table.add_row(item["rule"], item["level"], f"{item['flagged_units']:,} of {item['units']:,} units", "")
        else:
            row = money.get(item["rule"])
            table.add_row(item["rule"], item["level"], f"{item['findings']:,}", fen_text(row["at_stake"]) if row else "0.00")
    console.print(table)
