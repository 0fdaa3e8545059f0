"""The grouping pipeline: one straight line per batch, orchestrated here and nowhere else.

    read + canonicalise   grouper.io            file or frame → canonical case frames, in batches
    code maps             grouper.validate      convert_codes (the scheme's `map` tables)
    encode                grouper.engine.encode encode_cases → kernel arrays (Batch)
    validate              grouper.validate      check_cases → problems; block → errors skip the kernel
    kernel                grouper.engine.run    run_kernel → status, mdc, adrg, drg, reason arrays
    results frame         grouper.engine.results results_frame (+ rule_problems with problems=True)

Each stage is a function of its own module and knows nothing of the others' order; imports
point down only (pipeline → validate → engine).
"""
from __future__ import annotations

import functools
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from . import io
from .engine import ir
from .engine.encode import Batch, code_table, encode_cases, read_lists
from .engine.results import results_frame, rule_problems
from .engine.run import run_kernel
from .fields import carry_fields, typed_problem_rows
from .overlap import ahead
from .validate import ORDER, block, check_cases, convert_codes, prepare_checks

DEFAULT_BATCH_SIZE = 1_000_000
# Batches read ahead of the one being grouped (and, in grouper.api.group_file, results waiting to
# be written): one is enough to keep both cores busy.
READ_AHEAD = 1


def overlapping(threads: int | None) -> bool:
    """Whether the stages run in threads of their own (read ahead, write behind): with more than one
    thread (None: all cores); with one, everything runs in line, on one core."""
    return (threads or os.cpu_count() or 1) > 1


@dataclass
class Prepared:
    """A batch after code maps, encoding and validation: ready for the kernel."""

    cases: pl.DataFrame      # the canonical cases, codes converted
    batch: Batch             # kernel arrays; rows with an error-level problem are skipped
    problems: pl.DataFrame   # every validation problem (see grouper.validate)


@dataclass
class Encoded:
    """A batch after code maps and encoding: what validation and the kernel start from."""

    cases: pl.DataFrame      # the canonical cases, codes converted
    unmapped: pl.DataFrame   # problems of the code maps (see grouper.validate.convert_codes)
    batch: Batch             # kernel arrays


def encode(plan: ir.Plan, cases: pl.DataFrame, *, kernel=None, reader: io.ReadAhead | None = None) -> Encoded:
    """Code maps → encode one canonical case frame (`reader`: what its reader did of the encoding,
    see read_ahead; its code lists only while the code maps and `read empty` leave them as read).
    It needs nothing from other batches, so when stages overlap it runs in the reading thread
    (grouped_batches), beside the grouping of the batch before (the compiled interning and parsing
    release the GIL)."""
    converted, unmapped = convert_codes(plan, read_lists(plan, cases))
    if reader is not None and converted is not cases:   # lists changed (they change nothing else): interned again
        reader = replace(reader, lists={})
    return Encoded(converted, unmapped, encode_cases(plan, converted, kernel=kernel, ahead=reader))


def read_ahead(plan: ir.Plan) -> io.ReadAhead:
    """What the reader does of the encoding while it canonicalises, for this plan (grouper.io.ReadAhead):
    intern the code lists in the plan's code table and parse the number fields (sex too unless the
    scheme reads its own spellings; the department is looked up by name when encoding)."""
    fields = tuple(name for name in ir.FIELDS if name != "dept" and (name != "sex" or plan.sex_spellings is None))
    return io.ReadAhead(functools.partial(code_table, plan), fields)   # the table built when first needed


def prepare(plan: ir.Plan, cases: pl.DataFrame, *, threads: int | None = None, kernel=None,
            encoded: Encoded | None = None, details: bool = True) -> Prepared:
    """Code maps → encode → validate one canonical case frame (`encoded`: the first two, done already;
    `details=False`: the problems' `detail` left null where validation writes it, see check_cases)."""
    encoded = encoded if encoded is not None else encode(plan, cases, kernel=kernel)
    cases, unmapped, batch = encoded.cases, encoded.unmapped, encoded.batch
    problems = check_cases(plan, cases, batch, threads=threads, kernel=kernel, details=details)
    if unmapped.height:
        problems = (pl.concat([problems, unmapped])
                    .with_columns(pl.col("reason").replace_strict(ORDER, default=len(ORDER), return_dtype=pl.UInt32)
                                  .alias("order"))
                    .sort(["row", "order"], maintain_order=True).drop("order"))
    return Prepared(cases, block(plan, batch, problems), problems)


def group_frame(plan: ir.Plan, cases: pl.DataFrame, *, threads: int | None = None, kernel=None,
                problems: bool = False,
                encoded: Encoded | None = None) -> pl.DataFrame | tuple[pl.DataFrame, pl.DataFrame]:
    """Validate and group a canonical case frame; one result row per input row, same order.

    Returns the results (id, status, mdc, adrg, drg, reason, warnings); with `problems=True`,
    (results, problems): every validation problem (see grouper.validate), the scheme's `invalid`
    rules that fired included, with the case's `id` and `dept`:
    row, id, dept, reason, level, detail.
    """
    # without `problems` no detail is shown: blocking and the warnings read only which problems a row has
    ready = prepare(plan, cases, threads=threads, kernel=kernel, encoded=encoded, details=problems)
    out = run_kernel(plan, ready.batch, threads=threads, kernel=kernel)
    results = results_frame(plan, ready.cases, ready.batch, out, ready.problems)
    if not problems:
        return results
    found = pl.concat([ready.problems, rule_problems(plan, out)]).sort("row", maintain_order=True)
    ids = results["id"].cast(pl.String)
    cases = ready.cases
    dept = cases["dept"].cast(pl.String) if "dept" in cases.columns else pl.Series([None] * cases.height, dtype=pl.String)
    found = found.select("row", ids.gather(found["row"]).alias("id"), dept.gather(found["row"]).alias("dept"),
                         "reason", "level", "detail")
    return results, found


def case_batches(source: pl.DataFrame | str | Path, *, batch_size: int = DEFAULT_BATCH_SIZE,
                 columns: Mapping[str, str] | None = None, encoding: str | None = None,
                 settlement: bool = False, sheet: str | int | None = None,
                 skip_rows: int = 0, on_unused=None, reader: io.ReadAhead | None = None) -> Iterator[pl.DataFrame]:
    """Read + canonicalise: the canonical case frames of a file (streamed) or of a frame, in order
    (with `settlement`, plus the raw settlement columns; `on_unused(headers)`: see grouper.io;
    `reader`: see read_ahead, for a file)."""
    if isinstance(source, pl.DataFrame):
        frame = io.cases_from_frame(source, columns=columns, settlement=settlement, on_unused=on_unused)
        for start in range(0, max(frame.height, 1), batch_size):
            yield frame.slice(start, batch_size)
    else:
        yield from io.iter_case_batches(source, batch_size=batch_size, encoding=encoding, columns=columns,
                                        settlement=settlement, sheet=sheet, skip_rows=skip_rows,
                                        on_unused=on_unused, ahead=reader)


@dataclass
class Grouped:
    """One grouped batch: its canonical cases, results, and problems (None unless asked for;
    problem `row`s count from the start of the input)."""

    cases: pl.DataFrame
    results: pl.DataFrame
    problems: pl.DataFrame | None


def grouped_batches(source: pl.DataFrame | str | Path, plan: ir.Plan, *, batch_size: int = DEFAULT_BATCH_SIZE,
                    columns: Mapping[str, str] | None = None, encoding: str | None = None,
                    threads: int | None = None, problems: bool = False, carry: bool = False,
                    sheet: str | int | None = None, skip_rows: int = 0, on_unused=None) -> Iterator[Grouped]:
    """The whole line, batch by batch: read → code maps → encode → validate → kernel → results
    (→ with `carry`, the typed settlement fields after the results: grouper.fields). With more than
    one thread the next batch is read, canonicalised and encoded in a thread of its own meanwhile
    (grouper.overlap): two batches are in flight; the results are the same either way."""
    done = 0
    reader = read_ahead(plan) if not isinstance(source, pl.DataFrame) else None
    batches = case_batches(source, batch_size=batch_size, columns=columns, encoding=encoding, settlement=carry,
                           sheet=sheet, skip_rows=skip_rows, on_unused=on_unused, reader=reader)
    if overlapping(threads) and not isinstance(source, pl.DataFrame):   # (a frame is canonicalised whole)
        # the next batch is read while this one is grouped, and encoded by whichever thread is free first
        batches = ahead(_encodings(plan, batches, reader), READ_AHEAD, then=lambda batch: batch.run(wait=False))
    else:
        batches = _encodings(plan, batches, reader)
    with closing(batches):   # an error here, or a caller that stops early, stops the reading thread now
        if isinstance(batches, ahead):
            _prepare(plan)   # while the first batch is read
        for batch in batches:
            cases, encoded = batch.cases, batch.run(wait=True)
            if problems:
                results, found = group_frame(plan, cases, threads=threads, problems=True, encoded=encoded)
            else:
                results, found = group_frame(plan, cases, threads=threads, encoded=encoded), None
            if carry:
                results, extra = carry_fields(plan, cases, results)
                if problems and extra.height:
                    found = pl.concat([found, typed_problem_rows(extra, results, cases)]) \
                        .sort("row", maintain_order=True)
            if found is not None:
                found = found.with_columns((pl.col("row").cast(pl.UInt64) + done).alias("row"))
            done += cases.height
            yield Grouped(cases, results, found)


def _prepare(plan: ir.Plan) -> None:
    """What the first batch's stages would build before they could start, built while it is read
    (issue 20: ~0.03 CPU-s that otherwise lengthened the serial start): the code table the encoder
    interns with, what the checks keep on the plan, and NumPy's masked arrays, which Polars loads the
    first time it makes a Series from a NumPy array (numpy.ma: ~0.01 s)."""
    import numpy.ma  # noqa: F401

    code_table(plan)
    prepare_checks(plan)


def _encodings(plan: ir.Plan, batches: Iterator[pl.DataFrame], reader: io.ReadAhead | None) -> Iterator["_Encoding"]:
    """Each canonical batch, to be encoded (_Encoding) with what its reader did of it (`reader`, the
    ReadAhead `batches` were read with); closing it closes `batches` (its open file)."""
    with closing(batches):
        for cases in batches:
            yield _Encoding(plan, cases, reader.take() if reader is not None else None)


class _Encoding:
    """One canonical batch and its encoding (`encode`), done once, by the first thread to ask: with
    overlapping stages the reading thread asks right after handing the batch over (`wait=False`:
    it reads on if the grouping thread, idle and waiting for the batch, has begun encoding it
    already), so the encoding runs where a core is free: beside the grouping when reading is the
    quicker stage (Parquet), in the grouping thread when reading is the slower one (a wide CSV)."""

    def __init__(self, plan: ir.Plan, cases: pl.DataFrame, reader: io.ReadAhead | None = None):
        self.plan, self.cases, self._reader = plan, cases, reader
        self._lock = threading.Lock()
        self._encoded: Encoded | None = None
        self._error: BaseException | None = None

    def run(self, *, wait: bool) -> Encoded | None:
        """The encoded batch (None with `wait=False` when another thread is encoding it); an error
        of the encoding is raised where `wait=True` asks (the grouping thread), never in the reader."""
        if not self._lock.acquire(blocking=wait):
            return None
        try:
            if self._encoded is None and self._error is None:
                try:
                    self._encoded = encode(self.plan, self.cases, reader=self._reader)
                    self._reader = None
                except BaseException as exc:  # noqa: BLE001 - raised in the grouping thread
                    self._error = exc
        finally:
            self._lock.release()
        if wait and self._error is not None:
            raise self._error
        return self._encoded
