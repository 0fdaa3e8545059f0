"""The Python API: load a scheme, group cases (a frame or a file), stream large files."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from pathlib import Path

import polars as pl

from . import io
from .overlap import behind
from .pipeline import DEFAULT_BATCH_SIZE, READ_AHEAD, grouped_batches, overlapping
from .scheme import LoadedScheme, load_scheme
from .writers import parquet_row_group_rows


class _InLine:
    """`behind`'s interface, consuming each item at once in the caller's thread (one thread)."""

    def __init__(self, consume: Callable) -> None:
        self.put = consume


def _in_flight(batch_size: int, threads: int | None) -> int:
    """The batch size that keeps the memory of `batch_size` when batches overlap (two in flight)."""
    return max(1, batch_size // 2) if overlapping(threads) else batch_size


def _scheme(scheme: LoadedScheme | str | Path | None) -> LoadedScheme:
    return scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme)


def _plan(scheme: LoadedScheme | str | Path | None):
    return _scheme(scheme).plan


def group(cases: pl.DataFrame | str | Path, scheme: LoadedScheme | str | Path | None = None, *,
          columns: Mapping[str, str] | None = None, encoding: str | None = None,
          threads: int | None = None, problems: bool = False, carry: bool = False,
          sheet: str | int | None = None, skip_rows: int = 0) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Group every case; returns id, status, mdc, adrg, drg, reason, warnings — one row per input row, in order.

    `cases` is a file path (CSV/Parquet/Excel) or a frame in either input shape; `scheme` is a
    pack folder, a .grp file, a loaded scheme, or None for the shipped demo scheme. A file is read
    as `grouper group` reads it: `encoding`, `columns`, `sheet` and `skip_rows` as in
    grouper.io.read_cases. With
    `problems=True`, returns (results, problems): every validation problem, one per row
    (row, id, dept, reason, level, detail; see grouper.validate). With `carry=True` the results
    are a *grouped frame*: the settlement fields and the grouping fields payment needs follow the
    result columns, typed (money in fen; see grouper.fields).
    """
    # A file is read and grouped batch by batch: only the results (a few bytes a case) are held whole,
    # never the whole input with its intermediate frames (10 M cases: 2.4 GiB peak, not 5.5).
    results, found = [], []
    for g in grouped_batches(cases, _plan(scheme), columns=columns, encoding=encoding, threads=threads,
                             problems=problems, carry=carry, sheet=sheet, skip_rows=skip_rows):
        results.append(g.results)
        found.append(g.problems)
    results = pl.concat(results, rechunk=True)
    return (results, pl.concat(found)) if problems else results


def group_batches(path: str | Path, scheme: LoadedScheme | str | Path | None = None, *,
                  batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
                  encoding: str | None = None, threads: int | None = None, problems: bool = False,
                  sheet: str | int | None = None,
                  skip_rows: int = 0) -> Iterator[pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]]:
    """Stream a case file in batches of `batch_size` rows; yields result frames in input order
    (with `problems=True`: (results, problems) pairs; problem `row`s are 0-based file positions).
    Reading options as for `group`."""
    plan = _plan(scheme)
    for g in grouped_batches(path, plan, batch_size=batch_size, columns=columns, encoding=encoding,
                             threads=threads, problems=problems, sheet=sheet, skip_rows=skip_rows):
        yield (g.results, g.problems) if problems else g.results


def group_file(input_path: str | Path, output_path: str | Path, scheme: LoadedScheme | str | Path | None = None, *,
               batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
               encoding: str | None = None, threads: int | None = None,
               on_batch: Callable[[pl.DataFrame], None] | None = None, report=None, trace=None,
               carry: bool = False, sheet: str | int | None = None, skip_rows: int = 0,
               on_stage: Callable[[str], None] | None = None, names: bool = False,
               weights: pl.DataFrame | None = None) -> int:
    """Group a file into an output file (format from its extension) in bounded memory; returns the row count.

    With more than one thread (`threads`, None: all cores) reading, grouping and writing overlap,
    in batches of half `batch_size` (two in flight; `on_batch` sees each); the file is the same
    byte for byte at any `threads` and `batch_size` (a Parquet output's row groups follow the
    input's size: grouper.writers.parquet_row_group_rows).

    `carry=True` writes a *grouped file*: the results followed by the settlement fields (see
    grouper.fields; CSV/Excel write money as yuan with two decimals, Parquet as Int64 fen),
    which `grouper.grouped.read_grouped` reads back with the same types.

    `report` (a `grouper.validate.QualityReport`) accumulates the validation problems batch by batch,
    the rejected values and the input columns that fed nothing.
    `trace` (a `grouper.explain.TraceRequest`) adds a `trace` column: the rules that held,
    for the chosen rows only. `sheet` picks Excel input sheets, `skip_rows` skips title lines above
    the header (see grouper.io.read_cases).
    `on_stage("writing")` is called when the output is being finished (an Excel sheet is written
    only then; `output_path` may be a temporary file, so the caller names what it writes).
    `names=True` adds the group's name and weight beside its code (`drg_name`, `rw`), `weights`
    (drg, weight) the weight from a weights table (see grouper.engine.results.with_group_labels).
    The output file appears whole or not at all; a Parquet output records the scheme (name,
    version, pack path, content hash) in its metadata under `grouper.scheme`.
    """
    import json

    loaded = _scheme(scheme)
    plan = loaded.plan
    rows = 0
    metadata = {"grouper.scheme": json.dumps(loaded.describe(), ensure_ascii=False)}
    expected, _ = io.expected_rows(Path(input_path), sheet, skip_rows)
    with io.ResultSink(output_path, metadata=metadata, row_group_rows=parquet_row_group_rows(expected)) as sink, \
            (behind(sink.write, READ_AHEAD) if overlapping(threads) else nullcontext(_InLine(sink.write))) as writer:
        # With more than one thread, a batch is written while the next one is grouped and the one after
        # it read (grouper.overlap), in batches of half batch_size: the two in flight hold what one did.
        for g in grouped_batches(input_path, plan, batch_size=_in_flight(batch_size, threads), columns=columns,
                                 encoding=encoding,
                                 threads=threads, problems=report is not None, carry=carry, sheet=sheet,
                                 skip_rows=skip_rows, on_unused=report.note_unused if report is not None else None):
            results = g.results
            if names or weights is not None:
                from .engine.results import with_group_labels

                results = with_group_labels(plan, results, names=names, weights=weights)
            if trace is not None:
                from .explain import attach_trace

                results = attach_trace(loaded, g.cases, results, trace)
            if carry and sink.suffix in (".csv", ".xlsx"):
                from .fields import for_text_output

                writer.put(for_text_output(results))
            else:
                writer.put(results)
            rows += results.height
            if report is not None:
                report.add(g.cases, g.problems)
            if on_batch is not None:
                on_batch(results)
        if on_stage is not None:
            on_stage("writing")
    return rows


def group_arrow(batches, scheme=None, *, columns: Mapping[str, str] | None = None, carry: bool = False,
                threads: int | None = None, keep_input: bool = True, prefix: str = ""):
    """Group an iterator of `pyarrow.RecordBatch` (either input shape, raw or typed fields); yields
    one result batch per input batch, same rows, same order. The scheme (DRG or DIP pack, a loaded
    scheme, or None for the demo) is loaded once, so any engine that hands over Arrow batches (Spark's
    `mapInArrow`, DuckDB, Arrow Flight) calls this once per worker.

    Every batch goes through the same reader as a file (`grouper.io.cases_from_frame`): the same
    column names (Chinese and national field names, `columns=` mapping), the same statuses and
    reasons for bad values. With `keep_input` (default) a result batch is the input's columns
    followed by the result columns (`prefix` + status, mdc, adrg, drg, reason, warnings; DIP: dip,
    dip_level, ...), else the results alone (with id). With `carry`, the typed settlement fields
    follow the results (the grouped-file columns, unprefixed: money in fen) and replace the raw
    input columns of the same names.
    A result column whose name is already an input column is refused (ValueError): pass a `prefix`.
    Batches are independent: an input without an id column gets ids numbered within each batch,
    so give one when batches come from many places.
    """
    runner = arrow_grouper(scheme, columns=columns, carry=carry, threads=threads, keep_input=keep_input,
                           prefix=prefix)
    for batch in batches:
        yield runner(batch)


def arrow_grouper(scheme=None, *, columns: Mapping[str, str] | None = None, carry: bool = False,
                  threads: int | None = None, keep_input: bool = True, prefix: str = ""):
    """The function behind `group_arrow`: RecordBatch → result RecordBatch, the scheme loaded once.
    Its `.schema(input_schema)` gives the output schema without grouping anything."""
    import pyarrow as pa

    loaded = _any_scheme(scheme)

    def results(frame: pl.DataFrame) -> pl.DataFrame:
        if _is_dip(loaded):
            from .dip.run import group_dip_frame
            from .dip.settle import dip_grouped

            out = []
            for cases in _canonical_batches(frame, columns, carry):
                grouped = group_dip_frame(loaded.plan, cases, threads=threads)
                out.append(dip_grouped(grouped, cases) if carry else grouped)
        else:
            out = [g.results for g in grouped_batches(frame, loaded.plan, batch_size=max(frame.height, 1),
                                                      columns=columns, threads=threads, carry=carry)]
        return pl.concat(out, rechunk=True)

    def combine(frame: pl.DataFrame, found: pl.DataFrame) -> pl.DataFrame:
        from .fields import CARRIED_COLUMNS

        carried = [c for c in found.columns if carry and c in CARRIED_COLUMNS]
        found = found.rename({c: prefix + c for c in found.columns if c != "id" and c not in carried})
        if not keep_input:
            return found
        # the carried settlement fields are the input's own, typed: they replace the raw columns
        frame = frame.drop([c for c in carried if c in frame.columns])
        found = found.drop("id")
        clash = sorted(set(found.columns) & set(frame.columns))
        if clash:
            raise ValueError(f"result columns {clash} are already input columns: pass prefix= (e.g. 'grouper_')")
        return pl.concat([frame, found], how="horizontal")

    def run(batch: pa.RecordBatch) -> pa.RecordBatch:
        frame = pl.from_arrow(pa.Table.from_batches([batch]))
        table = combine(frame, results(frame)).to_arrow()
        return table.combine_chunks().to_batches()[0] if table.num_rows else \
            pa.RecordBatch.from_pylist([], schema=table.schema)

    def output_schema(schema: pa.Schema) -> pa.Schema:
        frame = pl.from_arrow(schema.empty_table())
        return combine(frame, results(frame)).to_arrow().schema

    run.schema = output_schema
    return run


def _any_scheme(scheme):
    """A loaded DRG or DIP scheme from a loaded one, a pack path, or None (the DRG demo)."""
    if scheme is not None and not isinstance(scheme, (str, Path)):
        return scheme
    from .dip import is_dip_pack, load_dip_scheme

    return load_dip_scheme(scheme) if scheme is not None and is_dip_pack(scheme) else _scheme(scheme)


def _is_dip(loaded) -> bool:
    from .dip import LoadedDip

    return isinstance(loaded, LoadedDip)


def _canonical_batches(frame: pl.DataFrame, columns, settlement: bool):
    from .pipeline import case_batches

    return case_batches(frame, batch_size=max(frame.height, 1), columns=columns, settlement=settlement)
