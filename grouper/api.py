"""The Python API: load a scheme, group cases (a frame or a file), stream large files."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import polars as pl

from . import io
from .engine.run import group_frame
from .scheme import LoadedScheme, load_scheme

DEFAULT_BATCH_SIZE = 1_000_000


def _scheme(scheme: LoadedScheme | str | Path | None) -> LoadedScheme:
    return scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme)


def _plan(scheme: LoadedScheme | str | Path | None):
    return _scheme(scheme).plan


def group(cases: pl.DataFrame | str | Path, scheme: LoadedScheme | str | Path | None = None, *,
          columns: Mapping[str, str] | None = None, encoding: str | None = None,
          threads: int | None = None, problems: bool = False,
          carry: bool = False) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Group every case; returns id, status, mdc, adrg, drg, reason, warnings — one row per input row, in order.

    `cases` is a file path (CSV/Parquet/Excel) or a frame in either input shape; `scheme` is a
    pack folder, a .grp file, a loaded scheme, or None for the shipped demo scheme. With
    `problems=True`, returns (results, problems): every validation problem, one per row
    (row, id, dept, reason, level, detail; see grouper.validate). With `carry=True` the results
    are a *grouped frame*: the settlement fields and the grouping fields payment needs follow the
    result columns, typed (money in fen; see grouper.payment.fields).
    """
    plan = _plan(scheme)
    if isinstance(cases, pl.DataFrame):
        frame = io.cases_from_frame(cases, columns=columns, settlement=carry)
        batches = (frame.slice(start, DEFAULT_BATCH_SIZE) for start in range(0, max(frame.height, 1), DEFAULT_BATCH_SIZE))
    else:
        # Read and group a file batch by batch: only the results (a few bytes a case) are held whole,
        # never the whole input with its intermediate frames (10 M cases: 2.4 GiB peak, not 5.5).
        batches = io.iter_case_batches(cases, batch_size=DEFAULT_BATCH_SIZE, encoding=encoding, columns=columns,
                                       settlement=carry)
    results, found = [], []
    for _, r, f in _group_each(plan, batches, threads=threads, problems=problems, carry=carry):
        results.append(r)
        if problems:
            found.append(f)
    results = pl.concat(results, rechunk=True)
    return (results, pl.concat(found)) if problems else results


def _group_each(plan, batches, *, threads, problems: bool,
                carry: bool) -> Iterator[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]]:
    """(cases, results, problems or None) per batch; problem rows count from the start of the input.
    With `carry`, results carry the typed settlement fields (grouper.payment.fields.carry_fields)."""
    done = 0
    for cases in batches:
        if problems:
            results, found = group_frame(plan, cases, threads=threads, problems=True)
        else:
            results, found = group_frame(plan, cases, threads=threads), None
        if carry:
            from .payment.fields import carry_fields, typed_problem_rows

            results, extra = carry_fields(plan, cases, results)
            if problems and extra.height:
                found = pl.concat([found, typed_problem_rows(extra, results, cases)]).sort("row", maintain_order=True)
        if found is not None:
            found = found.with_columns((pl.col("row").cast(pl.UInt64) + done).alias("row"))
        done += cases.height
        yield cases, results, found


def _grouped_batches(path, plan, *, batch_size, columns, encoding, threads, problems: bool,
                     carry: bool = False) -> Iterator[tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame | None]]:
    batches = io.iter_case_batches(path, batch_size=batch_size, encoding=encoding, columns=columns, settlement=carry)
    return _group_each(plan, batches, threads=threads, problems=problems, carry=carry)


def group_batches(path: str | Path, scheme: LoadedScheme | str | Path | None = None, *,
                  batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
                  encoding: str | None = None, threads: int | None = None,
                  problems: bool = False) -> Iterator[pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]]:
    """Stream a case file in batches of `batch_size` rows; yields result frames in input order
    (with `problems=True`: (results, problems) pairs; problem `row`s are 0-based file positions)."""
    plan = _plan(scheme)
    for _, results, found in _grouped_batches(path, plan, batch_size=batch_size, columns=columns, encoding=encoding,
                                              threads=threads, problems=problems):
        yield (results, found) if problems else results


def group_file(input_path: str | Path, output_path: str | Path, scheme: LoadedScheme | str | Path | None = None, *,
               batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
               encoding: str | None = None, threads: int | None = None,
               on_batch: Callable[[pl.DataFrame], None] | None = None, report=None, trace=None,
               carry: bool = False) -> int:
    """Group a file into an output file (format from its extension) in bounded memory; returns the row count.

    `carry=True` writes a *grouped file*: the results followed by the settlement fields (see
    grouper.payment.fields; CSV/Excel write money as yuan with two decimals, Parquet as Int64 fen),
    which `grouper.payment.read_grouped` reads back with the same types.

    `report` (a `grouper.validate.QualityReport`) accumulates the validation problems batch by batch.
    `trace` (a `grouper.engine.explain.TraceRequest`) adds a `trace` column: the rules that held,
    for the chosen rows only.
    """
    loaded = _scheme(scheme)
    plan = loaded.plan
    rows = 0
    with io.ResultSink(output_path) as sink:
        for cases, results, found in _grouped_batches(input_path, plan, batch_size=batch_size, columns=columns,
                                                      encoding=encoding, threads=threads,
                                                      problems=report is not None, carry=carry):
            if trace is not None:
                from .engine.explain import attach_trace

                results = attach_trace(loaded, cases, results, trace)
            if carry and sink.suffix in (".csv", ".xlsx"):
                from .payment.fields import for_text_output

                sink.write(for_text_output(results))
            else:
                sink.write(results)
            rows += results.height
            if report is not None:
                report.add(cases, found)
            if on_batch is not None:
                on_batch(results)
    return rows
