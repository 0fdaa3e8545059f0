"""Short Rich summaries of the payment commands (on stderr, like `grouper group`'s)."""
from __future__ import annotations

import polars as pl
from rich.console import Console
from rich.table import Table


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
