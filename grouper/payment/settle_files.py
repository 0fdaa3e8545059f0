"""Cases in, settlement tables out.

Input: a grouped file (results columns + carried settlement fields), or raw cases that are
grouped first. Output: a folder with `cases.parquet` (or .csv), `hospitals.csv`, `drgs.csv`,
`pools.csv` and `summary.json`. Parquet keeps money as Int64 fen; CSV writes it as yuan with
exactly two decimals (`1234.50`), the form the case reader parses back to the same fen.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..fields import money_fen, yuan_text

# Money columns (Int64 fen) of each output table.
MONEY = {
    "cases": ("cost", "standard", "payment", "surplus"),
    "hospitals": ("drg_payment", "ffs_payment", "payment", "drg_cost", "cost", "drg_surplus", "sharing_adjustment",
                  "final_payment", "surplus_after_sharing", "prepaid", "due"),
    "groups": ("mean_cost", "payment", "cost", "surplus"),
    "pools": ("budget", "reserve", "fee_for_service_inside", "distributable", "paid_by_points"),
}


def write_table(frame: pl.DataFrame, path: Path, money: tuple[str, ...]) -> None:
    if path.suffix.lower() in (".parquet", ".pq"):
        # LZ4: a third faster to write than Polars' default zstd for 10^7 cases (the file is about
        # 1.5× larger); every Parquet reader reads it
        frame.write_parquet(path, compression="lz4")
        return
    frame = frame.with_columns([yuan_text(pl.col(c)).alias(c) for c in money if c in frame.columns])
    from ..writers import write_results   # the one table writer (CSV encoding, list columns joined with |)

    write_results(frame, path)


def _settlement_folder(folder: str | Path) -> Path:
    """`folder`, created if needed (refused when it is a file)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder: settle writes a folder of tables")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def write_settlement(settlement, folder: str | Path, *, case_format: str = "parquet", extra: dict | None = None) -> Path:
    """Write the four tables and summary.json into `folder` (created if needed)."""
    folder = _settlement_folder(folder)
    write_table(settlement.cases, folder / f"cases.{case_format}", MONEY["cases"])
    write_table(settlement.hospitals, folder / "hospitals.csv", MONEY["hospitals"])
    write_table(settlement.groups, folder / "drgs.csv", MONEY["groups"])   # per group: DRG, or 病种 (column dip)
    write_table(settlement.pools, folder / "pools.csv", MONEY["pools"])
    policy = settlement.policy
    summary = {"policy": policy.name, "method": policy.values["policy"]["method"],  # points, rate or dip
               "payment": policy.method,  # how money is computed: points (a shared budget) or rate
               "policy_files": [str(p) for p in policy.files],
               "cases": settlement.cases.height, "pools": settlement.pools.to_dicts(),
               "checks": None if settlement.checks is None else settlement.checks.as_dict(),
               "warnings": list(settlement.warnings), **(extra or {})}
    (folder / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return folder


COMPARE_MONEY = tuple(f"{m}_{s}" for m in ("payment", "surplus") for s in ("before", "after", "change"))


def write_comparison(comparison, folder: str | Path, *, case_format: str = "parquet", weights2=None) -> Path:
    """The base settlement in `folder`, the changed one in `folder/change`, and the change per hospital and DRG.

    The two settlements are written at once, the changed one in a second thread (Polars' writers
    release the GIL: two 10^7-row case tables keep both cores busy); each file is what it would be alone."""
    from concurrent.futures import ThreadPoolExecutor

    folder = _settlement_folder(folder)   # checked before `change/` is made inside it
    change = comparison.change.policy
    with ThreadPoolExecutor(max_workers=1) as second:
        changed = second.submit(write_settlement, comparison.change, folder / "change", case_format=case_format)
        write_settlement(comparison.base, folder, case_format=case_format,
                         extra={"compare": {"policy": change.name, "policy_files": [str(p) for p in change.files],
                                            "weights": None if weights2 is None else str(weights2)}})
        changed.result()
    write_table(comparison.hospitals, folder / "compare_hospitals.csv", COMPARE_MONEY)
    write_table(comparison.groups, folder / "compare_drgs.csv", COMPARE_MONEY)  # per group: DRG, or 病种 (column dip)
    return folder


def read_table(path: Path, money: tuple[str, ...]) -> pl.DataFrame:
    """Read a table written by `write_table` back (CSV money → fen)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(path)
    from ..io import _as_utf8   # a CSV output may be written in UTF-8 (with or without BOM) or GBK

    text = _as_utf8(path.read_bytes(), None, path)
    frame = pl.read_csv(text, infer_schema_length=10_000, schema_overrides={c: pl.String for c in money})
    return frame.with_columns([money_fen(pl.col(c), pl.String).alias(c) for c in money if c in frame.columns])


# The columns of a grouped file that settlement reads.
SETTLE_COLUMNS = ("id", "status", "adrg", "drg", "los", "discharge", "hospital", "hospital_level", "insurance", "cost",
                  "admission_date", "discharge_date", "patient_id", "special_review")


def _column_names(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return list(pl.read_parquet_schema(path))
        if suffix in (".csv", ".txt", ".tsv"):
            from .. import io

            first = io._first_line(path)
            text = first.decode("utf-8-sig", errors="replace") if first.startswith(b"\xef\xbb\xbf") else first.decode("gb18030", errors="replace")
            return [name.strip().strip('"') for name in text.strip().split(io._csv_separator(path, first))]
        if suffix in (".xlsx", ".xls"):  # the header row only, as text (no type guessing, no warnings)
            return list(pl.read_excel(path, infer_schema_length=0, read_options={"n_rows": 0}).columns)
    except Exception as exc:  # fastexcel raises its own exception hierarchy
        raise InputError(f"cannot read {path}: {exc}") from None
    return []


def load_cases(path: str | Path, scheme=None) -> pl.DataFrame:
    """The settle engine's input: a grouped file (read with `grouper.grouped.read_grouped`, only the
    columns settlement needs), or raw cases, grouped first with `scheme` carrying the settlement fields."""
    from ..grouped import read_grouped

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    names = set(_column_names(path))
    if {"status", "drg"} <= names or path.suffix.lower() not in (".parquet", ".pq", ".csv", ".txt", ".tsv", ".xlsx", ".xls"):
        missing = [c for c in ("hospital", "cost") if names and c not in names]
        if missing:
            raise InputError(f"{path} has no {' or '.join(missing)} column: settlement needs the settlement fields "
                             "(group with `grouper group INPUT -o GROUPED --carry`)")
        return read_grouped(path, columns=SETTLE_COLUMNS)
    from ._common import group_cases

    return group_cases(path, scheme, carry=True).select(SETTLE_COLUMNS)
