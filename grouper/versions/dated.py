"""Version-aware grouping: each case grouped with the scheme in force at its discharge date.

A *schedule* is a CSV file with one row per scheme and the columns `from` (the first discharge date
the scheme applies to, YYYY-MM-DD) and `pack` (a pack folder or .grp file, relative to the
schedule); a scheme applies from its date until the next row's date:

    from,pack
    2019-10-01,packs/chs-drg-1.1
    2025-01-01,packs/chs-drg-2.0

Every result row says which scheme grouped it (`scheme`, `scheme_version`). A case whose
discharge date is missing, unreadable or before the first `from` is `invalid` with reason
`no_scheme_in_force` (never dropped, never grouped with a guessed scheme).
"""
from __future__ import annotations

import csv
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..fields import parse_date
from ..pipeline import DEFAULT_BATCH_SIZE, case_batches, group_frame
from ..scheme import LoadedScheme, load_scheme

NO_SCHEME = "no_scheme_in_force"
RESULT_SCHEMA = {"id": pl.String, "status": pl.String, "mdc": pl.String, "adrg": pl.String, "drg": pl.String,
                 "reason": pl.String, "warnings": pl.List(pl.String), "_row": pl.UInt32, "scheme": pl.String,
                 "scheme_version": pl.String}


@dataclass(frozen=True)
class Period:
    start: date
    pack: Path
    scheme: LoadedScheme

    @property
    def name(self) -> str:
        return self.scheme.ast.header.name

    @property
    def version(self) -> str:
        return self.scheme.ast.header.version


@dataclass(frozen=True)
class Schedule:
    """Schemes by discharge date, in date order."""

    periods: tuple[Period, ...]

    def describe(self) -> str:
        return "; ".join(f"{p.name} {p.version} from {p.start}" for p in self.periods)


def load_schedule(path: str | Path) -> Schedule:
    """Read a schedule CSV (columns `from`, `pack`) and load every scheme it names."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise InputError(f"cannot read the schedule {path}: {exc.strerror or exc}") from None
    if not rows or not {"from", "pack"} <= set(rows[0]):
        raise InputError(f"{path}: a schedule needs the columns from,pack and at least one row")
    periods = []
    for line, row in enumerate(rows, start=2):
        try:
            start = date.fromisoformat((row["from"] or "").strip())
        except ValueError:
            raise InputError(f"{path}:{line}: {row['from']!r} is not a date (write YYYY-MM-DD)") from None
        pack = (path.parent / (row["pack"] or "").strip())
        periods.append(Period(start, pack, load_scheme(pack)))
    starts = [p.start for p in periods]
    if len(set(starts)) != len(starts):
        raise InputError(f"{path}: two schemes start on the same date")
    return Schedule(tuple(sorted(periods, key=lambda p: p.start)))


def _group_dated(schedule: Schedule, cases: pl.DataFrame, threads: int | None, carry: bool = False) -> pl.DataFrame:
    """One canonical batch (with the raw settlement columns) → results with scheme and version
    (with `carry`, followed by the typed settlement fields, each period's with its own scheme's levels)."""
    from ..fields import CARRIED_COLUMNS, carry_fields, typed_fields

    dates = cases.select(parse_date(pl.col("discharge_date"), cases.schema["discharge_date"]).alias("d"))["d"]
    row = pl.int_range(0, cases.height, dtype=pl.UInt32, eager=True).alias("_row")
    parts = []
    for k, period in enumerate(schedule.periods):
        in_force = dates >= period.start
        if k + 1 < len(schedule.periods):
            in_force &= dates < schedule.periods[k + 1].start
        in_force = in_force.fill_null(False)
        if not in_force.any():
            continue
        these = cases.filter(in_force)
        results = group_frame(period.scheme.plan, these, threads=threads)
        if carry:
            results, _ = carry_fields(period.scheme.plan, these, results)
        parts.append(results.with_columns(row.filter(in_force),
                                          pl.lit(period.name).alias("scheme"), pl.lit(period.version).alias("scheme_version")))
    first = schedule.periods[0].start
    outside = (dates.is_null() | (dates < first)).fill_null(True)
    if outside.any():
        n = int(outside.sum())
        ids = cases["id"].filter(outside) if "id" in cases.columns else (row.filter(outside) + 1).cast(pl.String)
        unscheduled = pl.DataFrame({
            "id": ids.cast(pl.String), "status": ["invalid"] * n, "mdc": [None] * n, "adrg": [None] * n,
            "drg": [None] * n, "reason": [NO_SCHEME] * n, "warnings": [[]] * n, "_row": row.filter(outside),
            "scheme": [None] * n, "scheme_version": [None] * n,
        }, schema=RESULT_SCHEMA)
        if carry:
            unscheduled = pl.concat([unscheduled, typed_fields(cases.filter(outside)).select(CARRIED_COLUMNS)],
                                    how="horizontal")
        parts.append(unscheduled)
    order = [*RESULT_SCHEMA, *(CARRIED_COLUMNS if carry else ())]
    return pl.concat([p.cast(RESULT_SCHEMA).select(order) for p in parts]).sort("_row").drop("_row")


def group_by_date(source: pl.DataFrame | str | Path, schedule: Schedule, *, batch_size: int = DEFAULT_BATCH_SIZE,
                  columns: Mapping[str, str] | None = None, encoding: str | None = None,
                  threads: int | None = None, carry: bool = False, sheet: str | int | None = None,
                  skip_rows: int = 0, on_unused=None) -> Iterator[pl.DataFrame]:
    """Result batches (input order, one row per case) of a file or frame grouped by discharge date:
    id, status, mdc, adrg, drg, reason, warnings, scheme, scheme_version (with `carry`, then the
    settlement fields, as `grouper group --carry` writes them). `sheet` and `skip_rows` read the
    input as grouper.io.read_cases does. A case without a discharge date is `invalid`
    (no_scheme_in_force); when no case of the whole input has one, the input is refused."""
    dated = rows = 0
    for cases in case_batches(source, batch_size=batch_size, columns=columns, encoding=encoding, settlement=True,
                              sheet=sheet, skip_rows=skip_rows, on_unused=on_unused):
        rows += cases.height
        dated += cases.height - cases["discharge_date"].null_count()
        yield _group_dated(schedule, cases, threads, carry)
    if rows and not dated:  # raised after the last batch: the caller's output is not kept
        raise InputError("grouping by date needs the discharge date of the cases (a 出院日期 / discharge_date column); "
                         "no case has one")


def group_file_by_date(input_path: str | Path, output_path: str | Path, schedule: Schedule, *,
                       batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
                       encoding: str | None = None, threads: int | None = None, on_batch=None, carry: bool = False,
                       sheet: str | int | None = None, skip_rows: int = 0, on_unused=None) -> int:
    """Stream a file grouped by discharge date into an output file (written atomically); row count."""
    from .. import io
    from ..fields import for_text_output

    rows = 0
    with io.ResultSink(output_path) as sink:
        for results in group_by_date(input_path, schedule, batch_size=batch_size, columns=columns,
                                     encoding=encoding, threads=threads, carry=carry, sheet=sheet,
                                     skip_rows=skip_rows, on_unused=on_unused):
            sink.write(for_text_output(results) if carry and sink.suffix in (".csv", ".xlsx") else results)
            rows += results.height
            if on_batch is not None:
                on_batch(results)
    return rows
