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
    by_type.add_column("Case type", overflow="fold")
    by_type.add_column("Cases", justify="right", overflow="fold")
    by_type.add_column("Payment (yuan)", justify="right", overflow="fold")
    paid = dict(cases.group_by("case_type").agg(pl.col("payment").sum()).iter_rows())
    for t in CASE_TYPES:
        if types.get(t):
            by_type.add_row(t, f"{types[t]:,}", _yuan(int(paid.get(t) or 0)))
    console.print(by_type)
    pools = Table(title="Pools")
    for column in ("Pool", "Budget", "Distributable", "Paid by points", "预算点值", "结算点值"):
        pools.add_column(column, justify="right" if column != "Pool" else "left", overflow="fold")
    for row in settlement.pools.iter_rows(named=True):
        pools.add_row(row["pool"], _yuan(row["budget"]), _yuan(row["distributable"]), _yuan(row["paid_by_points"]),
                      "—" if row["budget_point_value"] is None else f"{row['budget_point_value']:.6f}",
                      "—" if row["settlement_point_value"] is None else f"{row['settlement_point_value']:.6f}")
    console.print(pools)
    if settlement.checks is not None:
        console.print(checks_table(settlement.checks))
    for warning in settlement.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    if comparison is not None:
        worst = comparison.hospitals.filter(pl.col("payment_change") < 0).head(5)
        table = Table(title=f"Change under {comparison.change.policy.name}: hospitals losing most")
        for column in ("Hospital", "Payment before", "after", "change"):
            table.add_column(column, justify="right" if column != "Hospital" else "left", overflow="fold")
        for row in worst.iter_rows(named=True):
            table.add_row(str(row["hospital"]), _yuan(row["payment_before"]), _yuan(row["payment_after"]), _yuan(row["payment_change"]))
        console.print(table)
    console.print(f"{cases.height:,} cases settled → {folder}")


def checks_table(checks) -> Table:
    """Budget, paid and undistributed (with why) per pool: Σ paid + Σ undistributed = budget."""
    from .checks import REASONS

    table = Table(title=f"Checks: budget, paid, undistributed ({checks.excluded_share:.1%} of cases excluded)")
    for column in ("Pool", "Budget", "Paid from it", "Paid outside", "Undistributed", "Why"):
        table.add_column(column, justify="left" if column in ("Pool", "Why") else "right", overflow="fold")
    for p in checks.pools:
        undistributed = p["undistributed"]
        why = "; ".join(f"{_yuan(v)}: {REASONS[k].split(' (')[0]}" for k, v in undistributed.items()) or "—"
        table.add_row(p["pool"], _yuan(p["budget"]), _yuan(p["paid"]), _yuan(p["paid_outside"]),
                      _yuan(sum(undistributed.values())) if p["budget"] is not None else "—", why)
    return table
