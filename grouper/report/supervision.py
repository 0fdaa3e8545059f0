"""The report's supervision section (医保智能监管): a folder written by `grouper screen`, as HTML.

Key figures, the rules that were skipped and why, money at stake per rule, the highest-ranked
hospitals, departments and doctors, the providers above their control limits and the doctors' scores.
Everything comes from the folder's small tables (never the per-case flags), so the section's size does
not grow with the number of cases.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..fields import fen_text
from ..payment.settle_files import read_table

TOP = 20
MONEY = ("paid", "alternative", "at_stake", "fund_paid")


def supervision_section(folder: str | Path, table) -> str:
    """The section's HTML; `table(frame, money_columns, id)` draws a sortable table (the report's own)."""
    folder = Path(folder)
    if not (folder / "summary.json").is_file() or not (folder / "money.csv").is_file():
        raise InputError(f"{folder} is not a screens folder (no summary.json and money.csv): write one with "
                         f"`grouper screen GROUPED -o {folder}`")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    kpis = [("cases screened", f"{summary['cases']:,}"), ("findings", f"{summary['findings']:,}"),
            ("flagged cases", f"{summary['flagged_cases']:,}"), ("flagged units", f"{summary['flagged_units']:,}"),
            ("money at stake (yuan)", fen_text(summary["at_stake_fen"]))]
    parts = [f"<h2>Supervision (医保智能监管): {html.escape(summary['screens'])}</h2>",
             '<div class="kpi">' + "".join(f"<div>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in kpis) + "</div>",
             *[f'<p class="warning">Warning: {html.escape(w)}</p>' for w in summary.get("warnings", [])],
             "<h3>Money at stake per rule (paid against the alternative)</h3>",
             table(read_table(folder / "money.csv", MONEY), MONEY, "screen-money")]
    for name, heading in (("hospitals", "Hospitals"), ("departments", "Departments (科室)"), ("doctors", "Doctors (医师)")):
        path = folder / f"{name}.csv"
        if path.is_file():
            frame = read_table(path, MONEY).head(TOP)
            parts += [f"<h3>{heading}: the {min(TOP, frame.height)} highest ranked</h3>", table(frame, MONEY, f"screen-{name}")]
    providers = folder / "providers.csv"
    if providers.is_file():
        flagged = pl.read_csv(providers, infer_schema_length=10_000).filter(pl.col("flagged"))
        parts += ["<h3>Units above their peers' control limit</h3>",
                  table(flagged.drop("flagged"), (), "screen-providers")]
    scores = folder / "scores.csv"
    if scores.is_file():
        frame = pl.read_csv(scores, infer_schema_length=10_000, schema_overrides={"status": pl.String}).head(TOP * 2)
        parts += ["<h3>Doctor scores (医保支付资格 记分)</h3>", table(frame, (), "screen-scores")]
    return "\n".join(parts)
