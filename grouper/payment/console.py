"""Short Rich summaries of the payment commands (on stderr, like `grouper group`'s)."""
from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table

from ..console import stderr_console
from ..fields import fen_text
from .settle import CASE_TYPES


def _number(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def render_calibration(calibration, report, console: Console, *, top: int = 8) -> None:
    weights = calibration.weights
    kept = int(weights["n_kept"].sum()) if weights.height else 0
    overview = Table(title="Calibration")
    overview.add_column("")
    overview.add_column("", justify="right")
    overview.add_row("input cases", _number(calibration.cases))
    for reason, cases in calibration.excluded.iter_rows():
        overview.add_row(f"excluded: {reason}", _number(cases))
    overview.add_row("trimmed", _number(int(weights["n_trimmed"].sum()) if weights.height else 0))
    overview.add_row("kept", _number(kept))
    overview.add_row("DRGs", _number(weights.height))
    for basis in ("adrg", "thin"):
        count = weights.filter(pl.col("basis") == basis).height
        if count:
            overview.add_row(f"DRGs with basis {basis}", _number(count))
    overview.add_row("unstable DRGs", _number(weights.filter(~pl.col("stable")).height))
    for scope, mean in calibration.overall_mean.items():
        overview.add_row(f"overall trimmed mean ({scope}), 元", _number(mean, 2))
    if report is not None:
        for metric, value in report.summary.iter_rows():
            if metric in ("riv", "riv_untrimmed", "share_cases_cv_over_1"):
                overview.add_row(metric.replace("_", " "), _number(value))
    console.print(overview)
    heaviest = weights.sort("weight", descending=True, nulls_last=True).head(top)
    table = Table(title=f"Highest weights (top {top})")
    for name in ("drg", "weight", "n_kept", "trimmed_mean", "cv", "basis"):
        table.add_column(name, justify="left" if name in ("drg", "basis") else "right")
    for row in heaviest.select("drg", "weight", "n_kept", "trimmed_mean", "cv", "basis").iter_rows():
        table.add_row(row[0], _number(row[1]), _number(row[2]), _number(row[3], 2), _number(row[4], 3), row[5])
    console.print(table)


def render_metrics(metrics: pl.DataFrame, console: Console, *, top: int = 10) -> None:
    hospitals = metrics.filter(pl.col("dept").is_null()).sort("cmi", descending=True, nulls_last=True)
    table = Table(title=f"Hospitals by CMI (top {min(top, hospitals.height)} of {hospitals.height})")
    columns = ("hospital", "cases", "grouping_rate", "drg_count", "cmi", "cost_index", "time_index",
               "low_risk_mortality")
    for name in columns:
        table.add_column(name, justify="left" if name == "hospital" else "right")
    for row in hospitals.select(columns).head(top).iter_rows():
        table.add_row(str(row[0]), _number(row[1]), _number(row[2], 3), _number(row[3]), _number(row[4], 3),
                      _number(row[5], 3), _number(row[6], 3), _number(row[7], 4))
    console.print(table)


# `grouper settle`'s summary
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
    from .settle_checks import REASONS

    table = Table(title=f"Checks: budget, paid, undistributed ({checks.excluded_share:.1%} of cases excluded)")
    for column in ("Pool", "Budget", "Paid from it", "Paid outside", "Undistributed", "Why"):
        table.add_column(column, justify="left" if column in ("Pool", "Why") else "right", overflow="fold")
    for p in checks.pools:
        undistributed = p["undistributed"]
        why = "; ".join(f"{_yuan(v)}: {REASONS[k].split(' (')[0]}" for k, v in undistributed.items()) or "—"
        table.add_row(p["pool"], _yuan(p["budget"]), _yuan(p["paid"]), _yuan(p["paid_outside"]),
                      _yuan(sum(undistributed.values())) if p["budget"] is not None else "—", why)
    return table
