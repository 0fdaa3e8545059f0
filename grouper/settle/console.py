"""Terminal summary of a settlement (Rich, on stderr)."""
from __future__ import annotations

import polars as pl
from rich.table import Table

from ..console import stderr_console
from ..fields import fen_text
from .engine import CASE_TYPES


def _yuan(fen) -> str:
    return "—" if fen is None else fen_text(fen)


def render_settlement(settlement, comparison, folder) -> None:
    console = stderr_console()
    cases = settlement.cases
    types = dict(cases.group_by("case_type").len().iter_rows())
    by_type = Table(title=f"{settlement.policy.name}: cases by type")
    by_type.add_column("Case type")
    by_type.add_column("Cases", justify="right")
    by_type.add_column("Payment (yuan)", justify="right")
    paid = dict(cases.group_by("case_type").agg(pl.col("payment").sum()).iter_rows())
    for t in CASE_TYPES:
        if types.get(t):
            by_type.add_row(t, f"{types[t]:,}", _yuan(int(paid.get(t) or 0)))
    console.print(by_type)
    pools = Table(title="Pools")
    for column in ("Pool", "Budget", "Distributable", "Paid by points", "预算点值", "结算点值"):
        pools.add_column(column, justify="right" if column != "Pool" else "left")
    for row in settlement.pools.iter_rows(named=True):
        pools.add_row(row["pool"], _yuan(row["budget"]), _yuan(row["distributable"]), _yuan(row["paid_by_points"]),
                      "—" if row["budget_point_value"] is None else f"{row['budget_point_value']:.4f}",
                      "—" if row["settlement_point_value"] is None else f"{row['settlement_point_value']:.4f}")
    console.print(pools)
    for warning in settlement.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if comparison is not None:
        worst = comparison.hospitals.head(5)
        table = Table(title=f"Change under {comparison.change.policy.name}: hospitals losing most")
        for column in ("Hospital", "Payment before", "after", "change"):
            table.add_column(column, justify="right" if column != "Hospital" else "left")
        for row in worst.iter_rows(named=True):
            table.add_row(str(row["hospital"]), _yuan(row["payment_base"]), _yuan(row["payment_change"]), _yuan(row["payment_delta"]))
        console.print(table)
    console.print(f"{cases.height:,} cases settled → {folder}")
