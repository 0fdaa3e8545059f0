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

# Money columns (Int64 fen) of each output table.
MONEY = {
    "cases": ("cost", "standard", "payment", "surplus"),
    "hospitals": ("drg_payment", "ffs_payment", "payment", "drg_cost", "cost", "drg_surplus", "sharing_adjustment",
                  "final_payment", "surplus_after_sharing", "prepaid", "due"),
    "groups": ("mean_cost", "payment", "cost", "surplus"),
    "pools": ("budget", "reserve", "fee_for_service_inside", "distributable", "paid_by_points"),
}


def yuan_text(column: str) -> pl.Expr:
    """Integer fen → yuan text with exactly two decimals (`-12.05`), null stays null."""
    fen = pl.col(column).cast(pl.Int64)
    magnitude = fen.abs()
    return (pl.when(fen.is_null()).then(None).otherwise(pl.concat_str([
        pl.when(fen < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        (magnitude // 100).cast(pl.String), pl.lit("."), (magnitude % 100).cast(pl.String).str.zfill(2)]))
        .alias(column))


def yuan_to_fen(column: str) -> pl.Expr:
    """Yuan text (two decimals at most; `,` and `¥` tolerated) → integer fen, exactly; bad text → null."""
    text = pl.col(column).cast(pl.String).str.strip_chars().str.replace_all(r"[,¥￥\s]", "")
    parts = text.str.extract_groups(r"^(-?)(\d+)(?:\.(\d{1,2}))?$")
    whole = parts.struct.field("2").cast(pl.Int64, strict=False)
    cents = parts.struct.field("3").fill_null("0").str.pad_end(2, "0").cast(pl.Int64, strict=False)
    sign = pl.when(parts.struct.field("1") == "-").then(-1).otherwise(1)
    return (sign * (whole * 100 + cents)).alias(column)


def write_table(frame: pl.DataFrame, path: Path, money: tuple[str, ...]) -> None:
    if path.suffix.lower() in (".parquet", ".pq"):
        frame.write_parquet(path)
        return
    frame = frame.with_columns([yuan_text(c) for c in money if c in frame.columns])
    frame = frame.with_columns([pl.col(c).list.join("|") for c, t in frame.schema.items() if isinstance(t, pl.List)])
    frame.write_csv(path)


def write_settlement(settlement, folder: str | Path, *, case_format: str = "parquet", extra: dict | None = None) -> Path:
    """Write the four tables and summary.json into `folder` (created if needed)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder: settle writes a folder of tables")
    folder.mkdir(parents=True, exist_ok=True)
    write_table(settlement.cases, folder / f"cases.{case_format}", MONEY["cases"])
    write_table(settlement.hospitals, folder / "hospitals.csv", MONEY["hospitals"])
    write_table(settlement.groups, folder / "drgs.csv", MONEY["groups"])
    write_table(settlement.pools, folder / "pools.csv", MONEY["pools"])
    summary = {"policy": settlement.policy.name, "method": settlement.policy.method,
               "policy_files": [str(p) for p in settlement.policy.files],
               "cases": settlement.cases.height, "pools": settlement.pools.to_dicts(), **(extra or {})}
    (folder / "summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    return folder


def read_table(path: Path, money: tuple[str, ...]) -> pl.DataFrame:
    """Read a table written by `write_table` back (CSV money → fen)."""
    if path.suffix.lower() in (".parquet", ".pq"):
        return pl.read_parquet(path)
    frame = pl.read_csv(path, infer_schema_length=10_000, schema_overrides={c: pl.String for c in money})
    return frame.with_columns([yuan_to_fen(c) for c in money if c in frame.columns])


_SETTLEMENT_FIELDS = ("hospital", "hospital_level", "insurance", "cost", "fund_paid", "admission_date", "discharge_date",
                      "patient_id", "special_review")
_GROUPED_FIELDS = ("id", "status", "adrg", "drg", "los", "discharge")


def _typed(frame: pl.DataFrame) -> pl.DataFrame:
    """Contract types for text columns (CSV): money yuan → fen, dates, level. Already-typed columns are kept."""
    exprs = []
    for name in ("cost", "fund_paid"):
        if name in frame.columns and frame.schema[name] == pl.String:
            exprs.append(yuan_to_fen(name))
    for name in ("admission_date", "discharge_date"):
        if name in frame.columns and frame.schema[name] == pl.String:
            exprs.append(pl.col(name).str.strip_chars().str.replace_all("/", "-").str.to_date("%Y-%m-%d", strict=False))
    if "hospital_level" in frame.columns and frame.schema["hospital_level"] == pl.String:
        level = pl.col("hospital_level").str.strip_chars()
        exprs.append(level.replace({"三级": "3", "二级": "2", "一级": "1"}).cast(pl.Int8, strict=False))
    return frame.with_columns(exprs)


def load_cases(path: str | Path, scheme=None, *, batch_size: int = 1_000_000) -> pl.DataFrame:
    """The settle engine's input frame from a grouped file, or from raw cases grouped with `scheme`.

    Only the columns settlement reads are kept (bounded memory); the file is read in batches.
    A file with `status` and `drg` columns is taken as grouped.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    try:
        lazy = (pl.scan_parquet(path) if suffix in (".parquet", ".pq")
                else pl.scan_csv(path, infer_schema=False) if suffix in (".csv", ".txt", ".tsv") else None)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    if lazy is None:
        raise InputError(f"cannot settle {path}: use a .parquet or .csv file")
    try:
        names = lazy.collect_schema().names()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"cannot read {path}: {exc}") from None
    settlement_columns = [c for c in _SETTLEMENT_FIELDS if c in names]
    if "status" in names and "drg" in names:
        keep = [c for c in (*_GROUPED_FIELDS, *_SETTLEMENT_FIELDS) if c in names]
        batches = [_typed(b) for b in lazy.select(keep).collect_batches(chunk_size=batch_size)]
        return pl.concat(batches, how="vertical_relaxed") if batches else _typed(lazy.select(keep).collect())
    from ..api import group
    from ..io import read_cases

    canonical = read_cases(path)
    results = group(canonical, scheme)
    carried = _typed(lazy.select(settlement_columns).collect())
    return pl.concat([results.select("id", "status", "adrg", "drg"), canonical.select("los", "discharge"), carried],
                     how="horizontal")
