"""The Python API: load a scheme, group cases (a frame or a file), stream large files."""
from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import polars as pl

from . import io
from .engine.run import group_frame
from .scheme import LoadedScheme, load_scheme

DEFAULT_BATCH_SIZE = 1_000_000


def _plan(scheme: LoadedScheme | str | Path | None):
    if isinstance(scheme, LoadedScheme):
        return scheme.plan
    return load_scheme(scheme).plan


def group(cases: pl.DataFrame | str | Path, scheme: LoadedScheme | str | Path | None = None, *,
          columns: Mapping[str, str] | None = None, encoding: str | None = None,
          threads: int | None = None) -> pl.DataFrame:
    """Group every case; returns id, status, mdc, adrg, drg, reason — one row per input row, in order.

    `cases` is a file path (CSV/Parquet/Excel) or a frame in either input shape; `scheme` is a
    pack folder, a .grp file, a loaded scheme, or None for the shipped demo scheme.
    """
    plan = _plan(scheme)
    if isinstance(cases, pl.DataFrame):
        frame = io.cases_from_frame(cases, columns=columns)
    else:
        frame = io.read_cases(cases, encoding=encoding, columns=columns)
    return group_frame(plan, frame, threads=threads)


def group_batches(path: str | Path, scheme: LoadedScheme | str | Path | None = None, *,
                  batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
                  encoding: str | None = None, threads: int | None = None) -> Iterator[pl.DataFrame]:
    """Stream a case file in batches of `batch_size` rows; yields result frames in input order."""
    plan = _plan(scheme)
    for batch in io.iter_case_batches(path, batch_size=batch_size, encoding=encoding, columns=columns):
        yield group_frame(plan, batch, threads=threads)


def group_file(input_path: str | Path, output_path: str | Path, scheme: LoadedScheme | str | Path | None = None, *,
               batch_size: int = DEFAULT_BATCH_SIZE, columns: Mapping[str, str] | None = None,
               encoding: str | None = None, threads: int | None = None,
               on_batch: Callable[[pl.DataFrame], None] | None = None) -> int:
    """Group a file into an output file (format from its extension) in bounded memory; returns the row count."""
    rows = 0
    with io.ResultSink(output_path) as sink:
        for results in group_batches(input_path, scheme, batch_size=batch_size, columns=columns,
                                     encoding=encoding, threads=threads):
            sink.write(results)
            rows += results.height
            if on_batch is not None:
                on_batch(results)
    return rows
