"""Reading grouped files: the output of `grouper group --carry` (or `grouper.group(..., carry=True)`).

A grouped file holds the result columns ``id, status, mdc, adrg, drg, reason, warnings`` followed by
the carried fields (grouper.fields.CARRIED_COLUMNS). Parquet keeps the types (money Int64
fen, dates Date); CSV and Excel hold text (money as yuan with two decimals), which this reader parses
back with the very rules used on input, so a CSV round trip gives the same fen exactly.

`read_grouped(path)` is the one way payment, settlement and DIP code reads such a file.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import polars as pl

from . import io
from .errors import InputError
from .fields import CARRIED_COLUMNS, CARRIED_SCHEMA, RESULT_COLUMNS, typed_fields

RESULT_SCHEMA = {"id": pl.String, "status": pl.String, "mdc": pl.String, "adrg": pl.String, "drg": pl.String,
                 "reason": pl.String, "warnings": pl.List(pl.String)}
GROUPED_SCHEMA = {**RESULT_SCHEMA, **CARRIED_SCHEMA}


def read_grouped(paths: str | Path | Sequence[str | Path], *, columns: Iterable[str] | None = None,
                 encoding: str | None = None) -> pl.DataFrame:
    """A grouped file (or several, concatenated in order) as a frame of GROUPED_SCHEMA types.

    `columns` selects a subset (Parquet reads only those). A carried column the file lacks comes
    back null (``special_review`` false), so older grouped files stay readable. Raises InputError when
    a file is not a grouped file (no ``status``/``drg`` column).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    wanted = list(columns) if columns is not None else list(GROUPED_SCHEMA)
    unknown = [c for c in wanted if c not in GROUPED_SCHEMA]
    if unknown:
        raise InputError(f"unknown grouped-file column(s) {unknown}; known: {', '.join(GROUPED_SCHEMA)}")
    frames = [_read_one(Path(p), wanted, encoding) for p in paths]
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema={c: GROUPED_SCHEMA[c] for c in wanted})


def _read_one(path: Path, wanted: list[str], encoding: str | None) -> pl.DataFrame:
    kind = path.suffix.lower()
    if not path.is_file():
        raise InputError(f"grouped file not found: {path}")
    if kind in (".parquet", ".pq"):
        try:
            present = list(pl.read_parquet_schema(path))
            raw = pl.read_parquet(path, columns=[c for c in wanted if c in present])
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    else:
        raw = io._read_raw(path, encoding=encoding, sheet=None)
        present = raw.columns
        raw = raw.select([c for c in wanted if c in present])
    if not {"status", "drg"} <= set(present):
        raise InputError(f"{path} is not a grouped file (no status/drg column): group it first with "
                         "`grouper group INPUT -o GROUPED --carry`")
    return _typed(raw, wanted)


def _typed(raw: pl.DataFrame, wanted: list[str]) -> pl.DataFrame:
    carried = [c for c in wanted if c in CARRIED_COLUMNS]
    exprs = []
    for name in wanted:
        if name in carried:
            continue
        if name not in raw.columns:
            exprs.append(pl.lit(None, dtype=RESULT_SCHEMA[name]).alias(name))
        elif name == "warnings":
            column = pl.col(name)
            if raw.schema[name] == pl.String:  # CSV/Excel: |-joined
                column = pl.when(column.is_null() | (column == "")).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(
                    column.str.split("|"))
            exprs.append(column.cast(pl.List(pl.String)).alias(name))
        else:
            exprs.append(pl.col(name).cast(pl.String).alias(name))
    results = raw.select(exprs)
    if not carried:
        return results.select(wanted)
    # Columns already of their type (Parquet written by grouper) are taken as they are: parsing
    # 10 M values that are already typed would cost seconds for nothing.
    ready = [c for c in carried if c in raw.columns and raw.schema[c] == CARRIED_SCHEMA[c]]
    to_parse = [c for c in carried if c not in ready]
    # at least one column keeps the frame's height when every field to parse is absent
    present = [c for c in to_parse if c in raw.columns] or [pl.first()]
    typed = typed_fields(raw.select(present), integer_money="fen").select(to_parse)
    as_is = raw.select(pl.col(c).fill_null(False) if c == "special_review" else pl.col(c) for c in ready)
    return pl.concat([results, typed, as_is], how="horizontal").select(wanted)


def is_grouped_file(path: str | Path, *, encoding: str | None = None) -> bool:
    """Whether `path` holds grouping results (``status`` and ``drg`` columns) rather than raw cases."""
    path = Path(path)
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            columns = list(pl.read_parquet_schema(path))
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    elif path.suffix.lower() in (".csv", ".tsv", ".txt"):
        io._require_file(path)
        header = io._as_utf8(io._first_line(path), encoding, path).decode("utf-8").lstrip("\ufeff")
        columns = [c.strip().strip('"') for c in header.replace("\t", ",").split(",")]
    else:
        columns = io._read_raw(path, encoding=encoding, sheet=None).columns
    return {"status", "drg"} <= set(columns)
