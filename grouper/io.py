"""Read discharge records into the canonical case frame and write results.

The canonical case frame has exactly these columns, in this order:

    id, sex, age, age_days, weight, dept, los, discharge   String (null = missing)
    dx, proc                                               List(String)

Its rows are the input's rows, in the input's order.  Two input shapes are
understood:

* list shape: one diagnosis column and one procedure column holding codes
  separated by ``|`` or ``,`` (or already List columns, e.g. from Parquet);
* wide shape: one column per code, e.g. ``主要诊断编码`` + ``其他诊断编码1..N``,
  ``诊断1..N`` or ``dx1..N`` (and the same for procedures).
"""

from __future__ import annotations

import codecs
import functools
import csv
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path

import polars as pl

# Shared with the rest of the package (a GrouperError); re-exported here as grouper.io.InputError.
from grouper.errors import InputError
from grouper.headers import (DX_FAMILIES, PROC_FAMILIES, SPELLINGS, WideFamily, header_key, known_spelling,
                             looks_like_code_column, split_number)
# The writers live in grouper.writers; re-exported here for existing callers.
from grouper.writers import ResultSink, output_format, write_results  # noqa: F401
from grouper.writers import _as_text  # one rule for numbers as text, reading and writing ("12", not "12.0")

__all__ = [
    "CANONICAL_COLUMNS",
    "InputError",
    "ResultSink",
    "as_case_frame",
    "cases_from_frame",
    "iter_case_batches",
    "output_format",
    "read_cases",
    "write_results",
]

SCALAR_COLUMNS = ("id", "sex", "age", "age_days", "weight", "dept", "los", "discharge")
# A CSV line that cannot be read as a record (more fields than the header, an unbalanced quote)
# still gives one row, in its place: the canonical frame then has this column, e.g.
# "line 17: 12 fields, the header has 10" (null for every other row); validation makes the row
# `invalid` with reason `malformed_line`.
READ_PROBLEM = "read_problem"
_READ_PROBLEM_RAW = "\x00read_problem"  # its name in a raw frame (no header can be called this)
CANONICAL_COLUMNS = (*SCALAR_COLUMNS, "dx", "proc")
# Settlement fields (read only when asked: `settlement=True`), passed on with the input's own
# dtype; grouper.fields parses them (money to fen, dates, levels, insurance type).
SETTLEMENT_COLUMNS = (
    "hospital", "hospital_level", "insurance", "cost", "fund_paid",
    "admission_date", "discharge_date", "patient_id", "special_review",
)

# The spellings of every field, and the wide code column families: one table, grouper.headers.
COLUMN_ALIASES = SPELLINGS
# `columns` (--column) names besides the canonical ones: `other_dx` / `other_proc` name the other
# diagnosis / procedure columns of a wide export whose spelling grouper.headers lacks (a header, or
# the stem of numbered headers: other_dx=附加诊断 takes 附加诊断1..N); `ignore` lists headers
# (comma-separated) that look like code columns but are none.
EXTRA_MAPPINGS = ("other_dx", "other_proc", "ignore")

_CSV_EXTENSIONS = (".csv", ".txt", ".tsv")
_PARQUET_EXTENSIONS = (".parquet", ".pq")
_EXCEL_EXTENSIONS = (".xlsx", ".xls")


# ---------------------------------------------------------------------------
# Public API


def read_cases(
    path: str | Path,
    *,
    encoding: str | None = None,
    columns: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    settlement: bool = False,
    skip_rows: int = 0,
    on_unused: Callable[[tuple[str, ...]], None] | None = None,
) -> pl.DataFrame:
    """Read a CSV/TSV, Parquet or Excel file into the canonical case frame.

    ``encoding`` applies to CSV only; None detects UTF-8 (with or without BOM),
    falling back to GB18030 (a superset of GBK).  ``columns`` maps canonical
    names to input headers and overrides the built-in aliases.  ``sheet`` picks
    an Excel sheet by name or by 1-based number (default: the first sheet), or
    "all" for every sheet in turn (same header on each).

    Completely blank lines in CSV and completely empty rows in Excel are not
    records and are skipped; every other row becomes one case, in order.

    ``skip_rows`` lines (CSV) or rows (Excel) above the header are left out: title rows of
    hospital-system exports.  Without it, an input whose header is not on the first line is an
    InputError that says which line looks like the header.

    ``settlement=True`` appends the SETTLEMENT_COLUMNS, unparsed (the input's dtype; null
    columns for fields the input lacks): see grouper.fields.

    Headers are recognised by the table of grouper.headers; ``columns`` may also name
    ``other_dx``/``other_proc`` (other code columns of an unknown spelling) and ``ignore``. A column
    that looks like a diagnosis or procedure code column but has no known spelling is an
    InputError (never silently left out); ``on_unused(headers)`` is called once with the columns
    that feed nothing.
    """
    path = Path(path)
    raw = _read_raw(path, encoding=encoding, sheet=sheet, skip_rows=skip_rows)
    layout = _file_layout(path, raw.columns, columns, encoding=encoding, sheet=sheet, skip_rows=skip_rows,
                          settlement=settlement, on_unused=on_unused)
    return _canonicalise(raw, layout, row_offset=0, settlement=settlement)


def cases_from_frame(df: pl.DataFrame, *, columns: Mapping[str, str] | None = None,
                     settlement: bool = False,
                     on_unused: Callable[[tuple[str, ...]], None] | None = None) -> pl.DataFrame:
    """Normalise an in-memory frame exactly like ``read_cases`` (all rows kept)."""
    layout = _detect_layout(df.columns, columns, settlement=settlement)
    if on_unused is not None:
        on_unused(layout.unused)
    return _canonicalise(df, layout, row_offset=0, settlement=settlement)


def as_case_frame(df: pl.DataFrame, *, columns: Mapping[str, str] | None = None) -> pl.DataFrame:
    """`df` itself when it is a canonical case frame already (as read_cases gives), else
    cases_from_frame(df): e.g. a row of `pl.read_csv(...)`, with |-separated codes and numbers."""
    list_of_text = pl.List(pl.String)
    canonical = (tuple(df.columns[:len(CANONICAL_COLUMNS)]) == CANONICAL_COLUMNS and columns is None
                 and all(df.schema[name] == pl.String for name in SCALAR_COLUMNS)
                 and df.schema["dx"] == list_of_text and df.schema["proc"] == list_of_text)
    return df if canonical else cases_from_frame(df, columns=columns)


def iter_case_batches(
    path: str | Path,
    *,
    batch_size: int = 1_000_000,
    encoding: str | None = None,
    columns: Mapping[str, str] | None = None,
    settlement: bool = False,
    sheet: str | int | None = None,
    skip_rows: int = 0,
    on_unused: Callable[[tuple[str, ...]], None] | None = None,
    ahead: ReadAhead | None = None,
) -> Iterator[pl.DataFrame]:
    """Yield the canonical case frame of ``path`` in consecutive batches (``sheet``: see read_cases;
    ``ahead``: work for the encoding done on the way, see ReadAhead).

    Concatenating the batches gives ``read_cases(path)``: same rows, same order,
    and generated ids are global row numbers.  Parquet, UTF-8 and GB (GBK, GB18030) CSV are
    streamed; other encodings and Excel are read whole, then sliced.  An input
    without rows yields one empty frame, so consumers always see the schema.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    path = Path(path)
    kind = _file_kind(path)
    _require_file(path)

    text_codec = "utf-8-sig"   # CSV: how the tolerant reader decodes the file (see below)
    if kind == "parquet":
        frames = pl.scan_parquet(path)
        drop_blank = False
    elif kind == "csv" and _is_utf8_csv(path, encoding):
        separator = _csv_separator(path, _first_line(path, skip_rows))
        frames = pl.scan_csv(path, infer_schema=False, separator=separator, skip_lines=skip_rows)
        drop_blank = True
    elif kind == "csv" and (gb_codec := _streamed_gb_codec(path, encoding)):
        separator = _csv_separator(path, _first_line(path, skip_rows))
        frames = _GbCsv(path, gb_codec, separator, skip_rows, detected=encoding is None)
        text_codec = gb_codec
        drop_blank = False   # _GbCsv drops them (its compiled reading never makes them)
    else:
        raw = _read_raw(path, encoding=encoding, sheet=sheet, skip_rows=skip_rows)
        layout = _file_layout(path, raw.columns, columns, encoding=encoding, sheet=sheet, skip_rows=skip_rows,
                              settlement=settlement, on_unused=on_unused)
        if raw.height == 0:
            yield _canonicalise(raw, layout, row_offset=0, settlement=settlement, ahead=ahead)
        for offset in range(0, raw.height, batch_size):
            yield _canonicalise(raw.slice(offset, batch_size), layout, row_offset=offset, settlement=settlement, ahead=ahead)
        return

    try:
        schema = frames.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    layout = _file_layout(path, list(schema), columns, encoding=encoding, sheet=sheet, skip_rows=skip_rows,
                          settlement=settlement, on_unused=on_unused)
    rows_done = 0
    try:
        if kind == "parquet":
            reading = _parquet_slices(frames, batch_size)
        elif isinstance(frames, _GbCsv):
            reading = frames.collect_batches(chunk_size=batch_size, layout=layout)
        else:
            reading = frames.collect_batches(chunk_size=batch_size)
        for batch in reading:
            if drop_blank:
                batch = _drop_blank_rows(batch)
            if batch.height:
                yield _canonicalise(batch, layout, row_offset=rows_done, settlement=settlement, ahead=ahead)
                rows_done += batch.height
    except pl.exceptions.PolarsError as exc:
        if kind != "csv":
            raise InputError(f"cannot read {path} (after {rows_done} rows): {_first_line_of(exc)}") from exc
        # A line Polars rejects: read on from the first record not yet given, line by line.
        with path.open(encoding=text_codec, newline="") as text:
            try:
                for batch in _tolerant_csv(text, list(schema), separator, batch_size=batch_size, skip=rows_done,
                                           skip_lines=skip_rows):
                    yield _canonicalise(batch, layout, row_offset=rows_done, settlement=settlement, ahead=ahead)
                    rows_done += batch.height
            except UnicodeDecodeError as error:
                raise _decode_error(path, encoding, None) from error
    if rows_done == 0:
        yield _canonicalise(pl.DataFrame(schema=schema), layout, row_offset=0, settlement=settlement, ahead=ahead)


def _parquet_slices(frames: pl.LazyFrame, batch_size: int) -> Iterator[pl.DataFrame]:
    """A Parquet file's rows in batches of ramped_sizes (at most `batch_size`), each batch read on
    its own (the slice pushed down to the pages it needs). Polars' own batches (`collect_batches`)
    decode ahead: their first came after 0.11 CPU-s (most of a 1 M-row file decoded at once, 0.2–0.5 s
    of waiting on a busy machine) against 0.013 CPU-s here, while the grouping thread had nothing to
    do; read on their own, the batches cost ~0.0025 CPU-s each more, in the reading thread (issue 20)."""
    offset = 0
    for size in ramped_sizes(frames.select(pl.len()).collect().item(), batch_size):   # (rows: from the footer)
        batch = frames.slice(offset, size).collect()
        if batch.height:
            yield batch
        offset += size


def ramps(path: str | Path) -> bool:
    """Whether the batches of this input follow ramped_sizes (a Parquet file: its row count is known
    before it is read)."""
    return Path(path).suffix.lower() in _PARQUET_EXTENSIONS


def ramped_sizes(total: int, largest: int) -> list[int]:
    """Batch sizes for `total` rows, at most `largest` each, that start and end small: a quarter of
    `largest`, doubling up to it, and the same down again at the end (when there are rows enough),
    so that the first batch reaches the grouping thread and the last one leaves it soon (the stages
    overlap only in between), while the batches between are large (each batch costs every stage
    a little, ~0.01 CPU-s in all). The sizes add up to `total`."""
    ramp, size = [], max(1, largest // 4)
    while size < largest and total - 2 * sum(ramp) >= 2 * size:
        ramp.append(size)
        size *= 2
    middle = total - 2 * sum(ramp)
    return [*ramp, *[largest] * (middle // largest), *([middle % largest] if middle % largest else []), *ramp[::-1]]


def expected_rows(path: Path, sheet=None, skip_rows: int = 0) -> tuple[int | None, bool]:
    """(rows of the input, whether that is an estimate), found cheaply (the progress bar, the row groups
    of grouper.api.group_file's Parquet output): Parquet
    from its metadata, Excel from the sheets' dimensions, CSV estimated from the file size and the
    length of its first lines. (None, False) when unknown."""
    suffix = path.suffix.lower()
    try:
        if suffix in _PARQUET_EXTENSIONS:   # from the footer (Polars: pyarrow.parquet is not loaded for it)
            return pl.scan_parquet(path).select(pl.len()).collect().item(), False
        if suffix in (".xlsx",):
            rows = _excel_sheet_rows(path, sheet)
            return (None, False) if rows is None else (max(0, rows - 1 - skip_rows), True)
        if suffix in (".csv", ".tsv", ".txt"):
            size = path.stat().st_size
            with path.open("rb") as file:
                head = file.read(1 << 20)
            lines = head.split(b"\n")[skip_rows:]
            if len(head) == size:
                return max(0, sum(1 for line in lines[1:] if line.strip())), True
            header = len(lines[0]) + 1
            body = lines[1:-1]                      # the last line of the sample may be cut
            if not body:
                return None, False
            per_row = sum(len(line) + 1 for line in body) / len(body)
            return max(1, round((size - header) / per_row)), True
    except Exception:   # an unreadable input is reported by the reader, not here
        return None, False
    return None, False


def _excel_sheet_rows(path: Path, sheet) -> int | None:
    """Rows (header included) of the sheet(s) `sheet` picks (see grouper.io.read_cases), from the
    `<dimension>` each worksheet starts with; None when a sheet has none."""
    import zipfile

    with zipfile.ZipFile(path) as book:
        workbook = book.read("xl/workbook.xml").decode("utf-8", "replace")
        rels = book.read("xl/_rels/workbook.xml.rels").decode("utf-8", "replace")
        targets = dict(re.findall(r'<Relationship[^>]*?Id="([^"]+)"[^>]*?Target="([^"]+)"', rels))
        targets.update({k: v for v, k in re.findall(r'<Relationship[^>]*?Target="([^"]+)"[^>]*?Id="([^"]+)"', rels)})
        sheets = re.findall(r'<sheet\b[^>]*?name="([^"]*)"[^>]*?r:id="([^"]+)"', workbook)
        if sheet == "all":
            chosen = sheets
        elif sheet is None:
            chosen = sheets[:1]
        elif str(sheet).isdigit():
            chosen = sheets[int(sheet) - 1:int(sheet)]
        else:
            chosen = [s for s in sheets if s[0] == str(sheet)]
        total = 0
        for _, rel in chosen:
            target = targets.get(rel, "")
            name = target.lstrip("/") if target.startswith("/") else f"xl/{target}"
            with book.open(name) as xml:
                head = xml.read(4096).decode("utf-8", "replace")
            found = re.search(r'<dimension ref="[A-Z]+\d+(?::[A-Z]+(\d+))?"', head)
            if not found:
                return None
            total += int(found.group(1) or 1)
        return total if chosen else None


# ---------------------------------------------------------------------------
# Reading raw files (every column as text where the format allows it)


def _file_kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in _CSV_EXTENSIONS:
        return "csv"
    if suffix in _PARQUET_EXTENSIONS:
        return "parquet"
    if suffix in _EXCEL_EXTENSIONS:
        return "excel"
    supported = ", ".join(_CSV_EXTENSIONS + _PARQUET_EXTENSIONS + _EXCEL_EXTENSIONS)
    raise InputError(
        f"cannot read {path}: unknown extension {path.suffix!r}; rename it to one of {supported}"
    )


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise InputError(f"input file not found: {path}")


def _read_raw(path: Path, *, encoding: str | None, sheet: str | int | None, skip_rows: int = 0) -> pl.DataFrame:
    kind = _file_kind(path)
    _require_file(path)
    if kind == "csv":
        return _read_csv(path, encoding, skip_rows)
    if kind == "parquet":
        try:
            return pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    return _read_excel(path, sheet, skip_rows)


def _read_csv(path: Path, encoding: str | None, skip_rows: int = 0) -> pl.DataFrame:
    data = _as_utf8(path.read_bytes(), encoding, path)
    first_line = (data.split(b"\n", skip_rows + 1)[skip_rows:skip_rows + 1] or [b""])[0]
    separator = _csv_separator(path, first_line)
    try:
        df = pl.read_csv(data, infer_schema=False, separator=separator, skip_lines=skip_rows)
    except pl.exceptions.NoDataError as exc:
        raise InputError(f"{path} is empty: it needs a header line and one line per case") from exc
    except pl.exceptions.PolarsError:
        # A line Polars rejects becomes one flagged row; every other line is read as usual.
        names = pl.read_csv(first_line, infer_schema=False, separator=separator).columns
        text = data.decode("utf-8-sig").splitlines(keepends=True)
        return pl.concat(list(_tolerant_csv(text, names, separator, batch_size=1_000_000, skip_lines=skip_rows)))
    return _drop_blank_rows(df)


def _first_line_of(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0]  # polars appends hints about its own options


class _Lines:
    """Physical lines for csv.reader, remembering those of the current record; lines can be put back."""

    def __init__(self, lines: Iterable[str]):
        self._lines = iter(lines)
        self.back: list[str] = []  # put back, last first
        self.taken: list[str] = []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = self.back.pop() if self.back else next(self._lines)
        self.taken.append(line)
        return line


def _tolerant_csv(lines: Iterable[str], names: list[str], separator: str, *, batch_size: int,
                  skip: int = 0, skip_lines: int = 0) -> Iterator[pl.DataFrame]:
    """Raw frames of a CSV text (header line first), read like Polars reads it, except that a line
    Polars rejects becomes one row flagged in _READ_PROBLEM_RAW instead of stopping the read.

    A record with more fields than the header keeps its first fields; a quote opened and never
    closed spoils only its own line (the lines after it are read again). Blank lines (nothing but
    separators) are not records, as in the fast path; the first `skip` records are left out (they
    were read already), like the `skip_lines` lines above the header.  Slower than Polars: used
    only once Polars has rejected the file.
    """
    width = len(names)
    lines = iter(lines)
    for _ in range(skip_lines):
        next(lines, None)
    source = _Lines(lines)
    reader = csv.reader(source, delimiter=separator)
    line_no = skip_lines
    rows: list[list[str]] = []
    problems: list[str | None] = []
    records, yielded = 0, False
    while True:
        source.taken = []
        try:
            fields = next(reader)
            error = None
        except StopIteration:
            break
        except csv.Error as exc:  # e.g. a field past csv's size limit: an open quote ran on
            fields, error = None, str(exc)
        taken, start = source.taken, line_no + 1
        if len(taken) > 1 and (fields is None or len(fields) != width):
            # Not a record spread over lines (those have the header's width): an unbalanced quote.
            # Only its first line is this record; the others are read again.
            source.back.extend(reversed(taken[1:]))
            reader = csv.reader(source, delimiter=separator)
            taken = taken[:1]
            fields = next(csv.reader(taken, delimiter=separator), [])
            error = "a quote opened and never closed"
        line_no += len(taken)
        if start == skip_lines + 1:
            continue  # the header
        if fields is None:
            fields = []
        elif len(taken) == 1 and not taken[0].rstrip("\r\n").strip(separator):
            continue  # blank line: not a record
        records += 1
        if records <= skip:
            continue
        if error is None and len(fields) > width:
            error = f"{len(fields)} fields, the header has {width}"
        problems.append(None if error is None else f"line {start}: {error}")
        rows.append((fields + [""] * (width - len(fields)))[:width])
        if len(rows) == batch_size:
            yield _raw_frame(rows, problems, names)
            rows, problems, yielded = [], [], True
    if rows or not yielded:
        yield _raw_frame(rows, problems, names)


def _raw_frame(rows: list[list[str]], problems: list[str | None], names: list[str]) -> pl.DataFrame:
    """Rows of text fields → a raw frame like Polars' (an empty field is null), plus the problems."""
    columns = list(zip(*rows)) if rows else [()] * len(names)
    frame = pl.DataFrame({name: pl.Series(name, values, dtype=pl.String) for name, values in zip(names, columns)})
    frame = frame.with_columns(pl.when(pl.col(name) != "").then(pl.col(name)).alias(name) for name in names)
    return frame.with_columns(pl.Series(_READ_PROBLEM_RAW, problems, dtype=pl.String))


def input_notes(path: str | Path, *, sheet: str | int | None = None) -> list[str]:
    """What a user should know about how an input will be read, before it is: today, that a
    workbook has sheets besides the one grouped."""
    path = Path(path)
    if sheet is not None or path.suffix.lower() not in _EXCEL_EXTENSIONS or not path.is_file():
        return []
    names = excel_sheet_names(path)
    if len(names) < 2:
        return []
    return [f"{path.name} has {len(names)} sheets ({', '.join(names)}); only the first, {names[0]!r}, is grouped: "
            "--sheet NAME picks another, --sheet all groups every sheet"]


def excel_sheet_names(path: str | Path) -> list[str]:
    """The sheets of a workbook, in order."""
    import fastexcel

    try:
        return list(fastexcel.read_excel(str(path)).sheet_names)
    except Exception as exc:  # fastexcel raises its own exception hierarchy
        raise InputError(f"cannot read Excel file {path}: {exc}") from exc


def _read_excel(path: Path, sheet: str | int | None, skip_rows: int = 0) -> pl.DataFrame:
    """One sheet (by name, or 1-based number; default the first), or every sheet with sheet="all"
    (they must have the same columns; their rows follow each other in sheet order)."""
    if isinstance(sheet, int) and sheet < 1:
        raise InputError(f"Excel sheet numbers start at 1, got {sheet}")
    if isinstance(sheet, str) and sheet != "all":
        names = excel_sheet_names(path)
        if sheet not in names:
            if not sheet.isdigit():
                raise InputError(f"{path} has no sheet {sheet!r}; its sheets are: {', '.join(names)} (or --sheet all)")
            sheet = int(sheet)
    if sheet == "all":
        frames = {name: _read_excel(path, name, skip_rows) for name in excel_sheet_names(path)}
        frames = {name: frame for name, frame in frames.items() if frame.width}  # blank sheets hold no cases
        if not frames:
            return pl.DataFrame()
        first, *others = frames.items()
        for name, frame in others:
            if frame.columns != first[1].columns:
                raise InputError(f"sheet {name!r} of {path} has other columns than sheet {first[0]!r}; "
                                 "--sheet all needs the same header on every sheet")
        return pl.concat(list(frames.values()))
    try:
        return pl.read_excel(
            path,
            sheet_name=sheet if isinstance(sheet, str) else None,
            sheet_id=sheet if isinstance(sheet, int) else None,
            infer_schema_length=0,  # all String: keeps leading zeros, 12.0 comes back as "12"
            drop_empty_rows=True,  # formatting-only rows at the bottom of a sheet are not cases
            drop_empty_cols=False,
            read_options={"header_row": skip_rows},
        )
    # fastexcel raises its own exception hierarchy, plus ValueError for a missing sheet.
    except Exception as exc:
        raise InputError(f"cannot read Excel file {path} (sheet {sheet or 1}): {exc}") from exc


def _canonical_encoding(encoding: str, path: Path) -> str:
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise InputError(
            f"unknown encoding {encoding!r} for {path}; use e.g. utf-8, gbk or gb18030"
        ) from None


def _as_utf8(data: bytes, encoding: str | None, path: Path) -> bytes:
    """Return ``data`` as UTF-8 bytes (polars reads nothing else; it strips a UTF-8 BOM itself)."""
    if encoding is None and data[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        encoding = "utf-16"  # Excel's "Unicode text" export; the BOM says which byte order
    if encoding is None:
        try:
            data.decode("utf-8")
            if not _gbk_that_reads_as_utf8([data]):
                return data
        except UnicodeDecodeError:
            pass
        try:
            return data.decode("gb18030").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise _decode_error(path, None, exc.start) from exc
    codec = _canonical_encoding(encoding, path)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise _decode_error(path, encoding, exc.start) from exc
    return data if codec == "utf-8" else text.encode("utf-8")


def _decode_error(path: Path, encoding: str | None, offset: int | None) -> InputError:
    """The error for a byte the encoding cannot decode (`encoding` None: detected, UTF-8 or GB18030)."""
    where = f"bad byte at offset {offset}" if offset is not None else "a bad byte"
    if encoding is None:
        return InputError(f"cannot decode {path}: it is neither UTF-8 nor GB18030/GBK ({where}); "
                          "save it as UTF-8 or pass its encoding")
    return InputError(f"cannot decode {path} as {encoding} ({where}); "
                      "pass the file's real encoding, or omit it to detect UTF-8/GBK")


# GB encodings never use the bytes of '"' or of a line break inside a character (GBK's second
# bytes are 0x40-0xFE, GB18030's four-byte forms add 0x30-0x39), so a GB file can be cut into
# pieces of whole records by looking at bytes alone, each piece decoded and parsed on its own.
_STREAMED_GB_CODECS = ("gb18030", "gbk", "gb2312")
_GB_PIECE_BYTES = 1 << 25   # 32 MiB of the file per piece (about 250,000 wide records)
_GB_DECODE_BYTES = 1 << 20  # decoded in slices of about this much (see _GbCsv._utf8)


def _streamed_gb_codec(path: Path, encoding: str | None) -> str | None:
    """The codec of a CSV read piece by piece in a GB encoding (not UTF-8, no UTF-16 byte-order
    mark: detected as GB18030; or given as GBK, GB18030, GB2312), else None (read whole)."""
    if encoding is not None:
        codec = _canonical_encoding(encoding, path)
        return codec if codec in _STREAMED_GB_CODECS else None
    with path.open("rb") as file:
        start = file.read(2)
    return None if start in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) else "gb18030"


class _GbCsv:
    """A GB-encoded CSV as raw text frames, piece by piece (see _STREAMED_GB_CODECS): the scan_csv
    interface that iter_case_batches uses (collect_schema, collect_batches), in bounded memory."""

    def __init__(self, path: Path, codec: str, separator: str, skip_rows: int, *, detected: bool):
        self.path, self.codec, self.separator, self.skip_rows = path, codec, separator, skip_rows
        self.encoding = None if detected else codec   # for the error message

    def _utf8(self, data: bytes, offset: int) -> bytes:
        decoder = _gb_decoder(self.codec)
        if decoder is not None:
            return decoder(data, lambda part, at: self._decoded(part, offset + at))
        return self._decoded(data, offset)

    def _decoded(self, data: bytes, offset: int) -> bytes:
        """`data` (whole lines, or the rest of one) by Python's codec; a bad byte is reported at its
        offset in the file (`offset`: where data starts)."""
        # Python's codecs hold the GIL while they run: slices of about 1 MiB (cut after a line break,
        # which no GB character contains) let the grouping thread run its Python parts in between.
        parts, start = [], 0
        while start < len(data):
            end = data.find(b"\n", start + _GB_DECODE_BYTES) + 1 or len(data)
            try:
                parts.append(data[start:end].decode(self.codec).encode("utf-8"))
            except UnicodeDecodeError as exc:
                raise _decode_error(self.path, self.encoding, offset + start + exc.start) from exc
            start = end
        return b"".join(parts)

    def _header(self, file) -> tuple[bytes, int]:
        skipped = sum(len(file.readline()) for _ in range(self.skip_rows))
        header = file.readline()
        return self._utf8(header, skipped), skipped + len(header)

    def collect_schema(self) -> pl.Schema:
        with self.path.open("rb") as file:
            header, _ = self._header(file)
        try:
            return pl.read_csv(header, infer_schema=False, separator=self.separator).schema
        except pl.exceptions.NoDataError as exc:
            raise InputError(f"{self.path} is empty: it needs a header line and one line per case") from exc

    def collect_batches(self, *, chunk_size: int, layout: "_Layout | None" = None) -> Iterator[pl.DataFrame]:
        """Raw frames of at most `chunk_size` rows, blank lines dropped. With `layout`, the records are
        read by the compiled reader (_GbRecords: only the columns the layout uses, the wide code cells
        already made into lists) as far as it reads them; the rest, and everything without the compiled
        module, is decoded and parsed by Polars, every column."""
        records = _GbRecords.of(self, layout, chunk_size) if layout is not None else None
        with self.path.open("rb") as file:
            header, offset = self._header(file)   # offset: where `data` starts in the file
            rest = b""
            while True:
                block = file.read(_GB_PIECE_BYTES)
                data = rest + block
                start = 0
                if records is not None:
                    status = records.FULL
                    while status == records.FULL:
                        status, start, frame = records.read(data, start, at_end=not block)
                        if frame is not None:
                            yield frame
                    if status != records.STOP:   # read to the end of the data (or of its last whole record)
                        offset, rest = offset + start, data[start:]
                        if not block:
                            return
                        continue
                cut = len(data) if not block else max(start, _records_end(data))
                piece, rest = data[start:cut], data[cut:]
                if piece:
                    frame = pl.read_csv(header + self._utf8(piece, offset + start), infer_schema=False,
                                        separator=self.separator)
                    for first in range(0, frame.height, chunk_size):
                        batch = _drop_blank_rows(frame.slice(first, chunk_size))
                        if batch.height:
                            yield batch
                offset += cut
                if not block:
                    return


# The code lists a compiled read makes, as columns of its raw frames (no header is called so).
_LISTS_RAW = {"dx": "\x00dx", "proc": "\x00proc"}


class _GbRecords:
    """The compiled reading of a GB CSV's records for one layout (ext/_text.pyx read_gb_records): the
    columns the layout uses as text columns (a cell of ASCII bytes viewed where it lies in the file's
    bytes: no transcoding, no copy), and the cells of a wide export's code lists straight into the
    lists (_LISTS_RAW), as _wide_lists makes them; the other columns only checked (their bytes decode).
    `read` stops at a record it does not read as Polars and Python's codec would (see the module):
    from there the caller reads by them."""

    def __init__(self, module, names: list[str], layout: "_Layout", separator: str, codec: str, chunk_size: int):
        import numpy as np

        self.module, self.chunk_size, self.width = module, chunk_size, len(names)
        self.FULL, self.STOP = module.RECORDS_FULL, module.RECORDS_STOP
        self.separator = ord(separator)
        self.single, self.double = _gb_tables(codec)
        lists = {kind: members for kind, listed, principal, others in
                 (("dx", layout.dx_list, layout.dx_principal, layout.dx_others),
                  ("proc", layout.proc_list, layout.proc_principal, layout.proc_others))
                 if listed is None and principal is not None
                 for members in [(principal, *others)] if not set(members) & layout.list_cells}
        if len(lists) == 2 and set(lists["dx"]) & set(lists["proc"]):
            lists = {}   # a header in both lists: joined and split as usual
        referenced = {*layout.scalar_sources.values(), *layout.settlement_sources.values(), layout.dx_list,
                      layout.proc_list}
        in_lists = {h for members in lists.values() for h in members}
        column = {name: k for k, name in enumerate(names)}
        self.texts = [h for h in names if h not in layout.unused and (h not in in_lists or h in referenced)]
        self.lists = list(lists)
        self.slot_columns = np.array([column[h] for h in self.texts], np.int32)
        self.list_columns = np.array([column[h] for members in lists.values() for h in members], np.int32)
        self.list_starts = np.cumsum([0, *(len(m) for m in lists.values())]).astype(np.int32)
        self.proc_lists = np.array([k for k, kind in enumerate(lists) if kind == "proc"], np.int32)

    @classmethod
    def of(cls, csv: "_GbCsv", layout: "_Layout", chunk_size: int) -> "_GbRecords | None":
        """The compiled reading of `csv` for `layout`, or None without the compiled module."""
        module = _text_checks()
        if module is None or not hasattr(module, "read_gb_records"):
            return None
        return cls(module, list(csv.collect_schema()), layout, csv.separator, csv.codec, chunk_size)

    def read(self, data: bytes, start: int, *, at_end: bool) -> tuple[int, int, pl.DataFrame | None]:
        """(status, where the next record starts, a raw frame of the rows read or None) of the records of
        data[start:] (ext/_text.pyx RECORDS_*); `at_end`: data ends where the file does."""
        import pyarrow as pa

        from .engine.encode import series_from_arrow

        status, end, rows, views, validity, nulls, offsets, items, side = self.module.read_gb_records(
            data, start, at_end, self.separator, self.width, self.slot_columns, self.list_columns, self.list_starts,
            self.proc_lists, self.single, self.double, self.chunk_size)
        if rows == 0:
            return status, end, None
        buffers = [pa.py_buffer(data), pa.py_buffer(side.copy())]   # side: a copy of the few bytes used
        columns = [series_from_arrow(pa.Array.from_buffers(
            pa.string_view(), rows, [pa.py_buffer(validity[k]) if nulls[k] else None,
                                     pa.py_buffer(views[k, :16 * rows]), *buffers], null_count=int(nulls[k])), name)
            for k, name in enumerate(self.texts)]
        columns += [series_from_arrow(_list_array([(offsets[k, :rows + 1], items[k], buffers)]), _LISTS_RAW[kind])
                    for k, kind in enumerate(self.lists)]
        return status, end, pl.DataFrame(columns)


def _gb_decoder(codec: str):
    """GB text → UTF-8 by the compiled tables (ext/_text.pyx, no GIL held): a function
    (data, by_codec) → bytes, where by_codec(part, at) decodes what the tables do not hold (a GB18030
    four-byte character, a bad byte: the rest of its line, from `at` in data) with Python's codec, so
    the text and every error are exactly the codec's. None without the compiled module."""
    text = _text_checks()
    if text is None:
        return None
    single, double = _gb_tables(codec)

    def decode(data: bytes, by_codec) -> bytes:
        import numpy as np

        out = np.empty(3 * len(data), np.uint8)   # pages never written are never touched
        parts, start, written = [], 0, 0
        while True:
            start, written = text.gb_to_utf8(data, start, single, double, out, written)
            if start == len(data):
                break
            end = data.find(b"\n", start) + 1 or len(data)
            parts.append(out[:written].tobytes())
            parts.append(by_codec(data[start:end], start))
            start, written = end, 0
        parts.append(out[:written].tobytes())
        return b"".join(parts) if len(parts) > 1 else parts[0]

    return decode


# The bytes that can follow a GB lead byte (0x81–0xFE) in a two-byte character.
_GB_TRAILS = bytes([*range(0x40, 0x7F), *range(0x80, 0xFF)])


@functools.cache
def _gb_tables(codec: str):
    """The compiled decoder's tables for `codec` (see ext/_text.pyx), made from Python's codec: every
    single byte and every two-byte sequence (lead 0x81–0xFE, trail 0x40–0xFE but 0x7F) that it
    decodes to one character of the Basic Multilingual Plane. A lead byte's sequences are decoded
    together (one call); those of a lead with a sequence the codec refuses, one by one."""
    import numpy as np

    def alone(raw: bytes) -> str:
        try:
            char = raw.decode(codec)
        except UnicodeDecodeError:
            return "\0"   # not held (a NUL is never one of these sequences)
        return char if len(char) == 1 else "\0"

    rows = []
    for lead in range(0x81, 0xFF):
        try:
            chars = b"".join(bytes([lead, trail]) for trail in _GB_TRAILS).decode(codec)
        except UnicodeDecodeError:
            chars = ""
        rows.append(chars if len(chars) == len(_GB_TRAILS) else "".join(alone(bytes([lead, t])) for t in _GB_TRAILS))
    singles = "".join(alone(bytes([b])) for b in range(256))
    code = np.frombuffer((singles + "".join(rows)).encode("utf-32-le"), np.uint32)
    # each code point's UTF-8 (first byte lowest) and its length in the top byte; 0 for NUL and past the BMP
    one, two, three = code < 0x80, (code >= 0x80) & (code < 0x800), (code >= 0x800) & (code < 0x10000)
    low6, mid6 = 0x80 | (code & 0x3F), 0x80 | ((code >> 6) & 0x3F)
    entry = np.where(one, (1 << 24) | code, 0)
    entry = np.where(two, (2 << 24) | (0xC0 | (code >> 6)) | (low6 << 8), entry)
    entry = np.where(three, (3 << 24) | (0xE0 | (code >> 12)) | (mid6 << 8) | (low6 << 16), entry)
    entry = np.where(code == 0, 0, entry).astype(np.uint32)
    double = np.zeros((126, 256), np.uint32)
    double[:, list(_GB_TRAILS)] = entry[256:].reshape(126, len(_GB_TRAILS))
    return np.ascontiguousarray(entry[:256]), double.reshape(-1)


def _records_end(data: bytes) -> int:
    """Where the last whole record of `data` ends: after its last line break outside quotes (0: none)."""
    end = data.rfind(b"\n")
    while end >= 0 and data.count(b'"', 0, end) % 2:
        end = data.rfind(b"\n", 0, end)
    return end + 1


def _is_utf8_csv(path: Path, encoding: str | None) -> bool:
    """Whether polars can scan ``path`` directly: UTF-8 forced, or detected by a streaming check."""
    if encoding is not None:
        return _canonical_encoding(encoding, path) in ("utf-8", "utf-8-sig")
    decoder = codecs.getincrementaldecoder("utf-8")()
    chinese_utf8 = two_byte_only = False
    with path.open("rb") as file:
        try:
            while chunk := file.read(1 << 24):
                decoder.decode(chunk)
                if not chinese_utf8 and not chunk.isascii():
                    chinese_utf8 = bool(_UTF8_THREE_BYTE_LEAD.search(chunk))
                    two_byte_only = not chinese_utf8
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    if chinese_utf8 or not two_byte_only:   # the common cases: no second look
        return True
    with path.open("rb") as file:
        return not _gbk_that_reads_as_utf8(iter(lambda: file.read(1 << 24), b""))


_NON_ASCII = re.compile(rb"[\x80-\xff]")
_UTF8_THREE_BYTE_LEAD = re.compile(rb"[\xe0-\xff]")   # every CJK character in UTF-8 starts so; a BOM too
_NOT_CHINESE = re.compile(r"[^\x00-\x7f\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")


def _gbk_that_reads_as_utf8(chunks: Iterable[bytes]) -> bool:
    """Whether bytes that decode as UTF-8 are really GBK/GB18030 text.

    A short GBK text can be valid UTF-8: 住院 is D7 A1 D4 BA in GBK, which UTF-8 reads as two
    Hebrew/Armenian letters. Chinese UTF-8 text always holds three-byte sequences (lead byte ≥ E0);
    so bytes whose non-ASCII sequences are all two-byte ones (U+0080–U+07FF: Latin accents, Greek,
    Cyrillic, Hebrew…) and which GB18030 decodes into Chinese characters only (CJK ideographs,
    CJK and full-width punctuation) are GBK. A UTF-8 file holding only such two-byte letters and
    no Chinese at all is the one case this misreads: pass `--encoding utf-8` for it."""
    decoder = codecs.getincrementaldecoder("gb18030")()
    non_ascii = False
    try:
        for chunk in chunks:
            if _UTF8_THREE_BYTE_LEAD.search(chunk):
                return False
            non_ascii = non_ascii or bool(_NON_ASCII.search(chunk))
            if _NOT_CHINESE.search(decoder.decode(chunk)):
                return False
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return non_ascii


def _first_line(path: Path, skip_rows: int = 0) -> bytes:
    """The header line (after `skip_rows` title lines)."""
    with path.open("rb") as file:
        for _ in range(skip_rows):
            file.readline()
        return file.readline()


def _csv_separator(path: Path, first_line: bytes) -> str:
    """Tab for .tsv; for .txt whichever of tab/comma is more common in the header; else comma."""
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".txt" and first_line.count(b"\t") > first_line.count(b","):
        return "\t"
    return ","


def _drop_blank_rows(df: pl.DataFrame) -> pl.DataFrame:
    # polars turns a blank CSV line into an all-null row; csv readers (and the
    # reference grouper) do not count blank lines as records.
    if df.width == 0:
        return df
    return df.filter(~pl.all_horizontal(pl.all().is_null()))


# ---------------------------------------------------------------------------
# Column layout: which input columns feed which canonical column


@dataclass(frozen=True)
class _Layout:
    scalar_sources: dict[str, str | None]  # canonical scalar name -> input header
    dx_list: str | None  # list shape
    dx_principal: str | None  # wide shape: principal cell ("" when absent from the file)
    dx_others: tuple[str, ...]  # wide shape, in order
    proc_list: str | None
    proc_principal: str | None  # wide shape: principal cell
    proc_others: tuple[str, ...]  # wide shape, in order
    settlement_sources: dict[str, str | None]  # settlement field -> input header
    list_cells: frozenset[str] = frozenset()  # wide "others" columns holding several codes in one cell
    unused: tuple[str, ...] = ()  # input columns that feed nothing, in input order


_header_key = header_key


def _file_layout(path: Path, headers: list[str], columns: Mapping[str, str] | None, *, encoding: str | None,
                 sheet: str | int | None, skip_rows: int, settlement: bool = False,
                 on_unused: Callable[[tuple[str, ...]], None] | None = None) -> _Layout:
    """_detect_layout, naming the header line when title rows sit above it; tells `on_unused`."""
    try:
        layout = _detect_layout(headers, columns, settlement=settlement)
    except InputError as exc:
        header_at = _header_line(path, columns, encoding=encoding, sheet=sheet, skip_rows=skip_rows)
        if header_at is None:
            raise
        raise InputError(f"{exc}; line {header_at + 1} of {path.name} looks like the header: the lines above it "
                         f"seem to be a title, skip them with --skip-rows {header_at}") from None
    if on_unused is not None:
        on_unused(layout.unused)
    return layout


def _header_line(path: Path, columns: Mapping[str, str] | None, *, encoding: str | None,
                 sheet: str | int | None, skip_rows: int, look: int = 20) -> int | None:
    """The 0-based line (CSV) or row (Excel) among the first `look` after `skip_rows` whose
    fields would make a valid header, or None."""
    try:
        if _file_kind(path) == "excel":
            frame = _read_excel(path, sheet if sheet != "all" else None, skip_rows)
            lines = [list(frame.columns)] + [[str(v or "") for v in row] for row in frame.head(look).rows()]
        elif _file_kind(path) == "csv":
            with path.open("rb") as file:
                head = file.read(1 << 16)
            head = head[:head.rfind(b"\n") + 1] or head   # whole lines: a character cut in two decodes as neither
            text = _as_utf8(head, encoding, path).decode("utf-8-sig", errors="replace").splitlines()[skip_rows:]
            lines = list(csv.reader(text[:look], delimiter=_csv_separator(path, text[0].encode() if text else b"")))
        else:
            return None
    except (InputError, OSError, csv.Error):
        return None
    for i, fields in enumerate(lines[1:look], start=1):
        try:
            _detect_layout([f.strip() for f in fields if f.strip()], columns)
            return skip_rows + i
        except InputError:
            continue
    return None


def _detect_layout(headers: list[str], columns: Mapping[str, str] | None, *,
                   settlement: bool = True) -> _Layout:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(CANONICAL_COLUMNS) - set(SETTLEMENT_COLUMNS) - set(EXTRA_MAPPINGS))
    if unknown:
        raise InputError(
            f"unknown canonical column(s) {unknown} in the column mapping; "
            f"valid names are {', '.join(CANONICAL_COLUMNS + SETTLEMENT_COLUMNS + EXTRA_MAPPINGS)}"
        )
    headers = [h for h in headers if h != _READ_PROBLEM_RAW]
    by_key: dict[str, str] = {}
    for header in headers:
        by_key.setdefault(header_key(header), header)

    def given(name: str, wanted: str) -> str:
        found = wanted if wanted in headers else by_key.get(header_key(wanted))
        if found is None:
            raise InputError(f"column {wanted!r} (given for {name!r}) is not in the input; "
                             f"its columns are: {', '.join(headers)}")
        return found

    def find(name: str) -> str | None:
        if name in columns:
            return given(name, columns[name])
        return next((by_key[alias] for alias in SPELLINGS[name] if alias in by_key), None)

    ignored = [given("ignore", h.strip()) for h in columns.get("ignore", "").split(",") if h.strip()]
    scalar_sources = {name: find(name) for name in SCALAR_COLUMNS}
    list_cells: set[str] = set()

    dx_list, dx_principal, dx_others = _code_columns("dx", find("dx"), columns, headers, list_cells)
    if dx_list is None and dx_principal is None:
        if dx_others:
            raise InputError(
                f"found other-diagnosis columns ({dx_others[0]}, ...) but no principal "
                "diagnosis column; add 主要诊断编码 or map it with --column dx=HEADER"
            )
        raise InputError(
            "no diagnosis column found: expected a 'dx' column of |-separated codes "
            f"(or one of {', '.join(SPELLINGS['dx'][1:])}), or numbered columns "
            "such as 主要诊断编码 + 其他诊断编码1..N, 诊断1..N or dx1..N; "
            f"the input has: {', '.join(headers) or '(no columns)'}"
        )

    proc_list, proc_principal, proc_others = _code_columns("proc", find("proc"), columns, headers, list_cells)
    if proc_others and proc_principal is None:
        raise InputError(
            f"found other-procedure columns ({proc_others[0]}, ...) but no principal procedure "
            "column; add 主要手术操作编码 or map it with --column proc=HEADER"
        )

    settlement_sources = {name: find(name) for name in SETTLEMENT_COLUMNS}
    used = {*scalar_sources.values(), dx_list, dx_principal, *dx_others, proc_list, proc_principal, *proc_others,
            *(settlement_sources.values() if settlement else ())}
    unused = tuple(h for h in headers if h not in used)
    unknown_codes = [h for h in unused if h not in ignored and looks_like_code_column(h) and not known_spelling(h)]
    if unknown_codes:
        raise InputError(
            f"column(s) {', '.join(unknown_codes)} look like diagnosis or procedure codes, but grouper does not "
            "know the spelling, so they would be left out: map them with --column other_dx=HEADER (other diagnoses: "
            "a header, or the stem of numbered headers), --column other_proc=HEADER, --column dx=/proc=HEADER "
            "(principal), or leave them out with --column ignore=HEADER[,HEADER...]"
        )
    return _Layout(scalar_sources, dx_list, dx_principal, dx_others, proc_list, proc_principal, proc_others,
                   settlement_sources, frozenset(list_cells), unused)


def _code_columns(kind: str, listed: str | None, columns: Mapping[str, str], headers: list[str],
                  list_cells: set[str]) -> tuple[str | None, str | None, tuple[str, ...]]:
    """(list column, wide principal column, wide other columns) of the diagnoses (`kind` "dx") or
    procedures ("proc"): `listed` is the list column found; a mapped other_dx/other_proc makes the
    shape wide, `listed` (or the principal column of a known family) being the principal one."""
    families = DX_FAMILIES if kind == "dx" else PROC_FAMILIES
    other = f"other_{kind}"
    if other in columns:
        others = _mapped_others(columns[other], headers, other, list_cells)
        principal = listed if listed is not None else _find_wide(headers, families, set())[0]
        return None, principal, others
    if listed is not None:
        return listed, None, ()
    return None, *_find_wide(headers, families, list_cells)


def _mapped_others(wanted: str, headers: list[str], name: str, list_cells: set[str]) -> tuple[str, ...]:
    """The headers --column other_dx/other_proc=WANTED names: the header itself (a cell of several
    codes) and/or the numbered headers of that stem, in number order."""
    key = header_key(wanted)
    exact = [h for h in headers if header_key(h) == key]
    numbered = sorted((number, h) for h in headers
                      for stem, number in [split_number(header_key(h))] if number is not None and stem == key)
    if not exact and not numbered:
        raise InputError(f"column {wanted!r} (given for {name!r}) is not in the input, nor numbered columns "
                         f"{wanted}1..N; its columns are: {', '.join(headers)}")
    list_cells.update(exact)
    return (*exact, *(h for _, h in numbered))


def _find_wide(headers: list[str], families: tuple[WideFamily, ...],
               list_cells: set[str]) -> tuple[str | None, tuple[str, ...]]:
    """Return (principal header, other headers in numeric order) of the first family with a column
    in `headers`; an unnumbered other header (a cell of several codes) goes into `list_cells`.

    For a family without a principal header, the lowest-numbered column is the principal. Within
    a family the first spelling with a column wins (its others of other spellings stay unused).
    """
    keyed = [(header_key(h), h) for h in headers]
    for family in families:
        principal = next((h for name in family.principal_headers for key, h in keyed if key == name), None)
        for stems in (family.other_stems, family.numbered_stems):
            for stem in stems:
                numbered, whole = [], []
                for key, header in keyed:
                    if header == principal:
                        continue
                    base, number = split_number(key)
                    if base == stem and number is not None:
                        numbered.append((number, header))
                    elif key == stem and stems is family.other_stems:
                        whole.append(header)
                if not numbered and not whole:
                    continue
                others = tuple(header for _, header in sorted(numbered))  # 2 before 10
                if stems is family.numbered_stems:
                    if principal is None:
                        return others[0], others[1:]
                    continue
                list_cells.update(whole if not numbered else ())
                return principal, (others or tuple(whole))
        if principal is not None:
            return principal, ()
    return None, ()


# ---------------------------------------------------------------------------
# Building the canonical frame


@dataclass
class ReadAhead:
    """Work canonicalising does for the encoding (grouper.engine.encode) while it looks at a batch's
    text anyway, so that no column is walked twice: with `codes` (giving a plan's code table,
    grouper.engine.encode.code_table, when first needed), a code list column is interned as it is split; the text
    fields named in `fields` are parsed (the kernel's parse_ints), which also tells which of them
    need no stripping. Compiled only, and only for what canonicalising passes on unchanged (text
    columns of the list shape; fields of a batch without malformed lines). grouper.pipeline takes
    each batch's part (`take`) right after the batch and hands it to the encoding with it."""

    codes: Callable[[], tuple] | None = None
    fields: tuple[str, ...] = ()
    lists: dict = dataclass_field(default_factory=dict)    # "dx"/"proc" → (int64 offsets, uint32 ids, items Text)
    parsed: dict = dataclass_field(default_factory=dict)   # field → (int32 values, uint8 ir.FIELD_* states)

    def take(self) -> "ReadAhead":
        """The last batch's part (lists, parsed), cleared here for the next batch."""
        part = ReadAhead(self.codes, self.fields, self.lists, self.parsed)
        self.lists, self.parsed = {}, {}
        return part


def _canonicalise(df: pl.DataFrame, layout: _Layout, *, row_offset: int, settlement: bool = False,
                  ahead: ReadAhead | None = None) -> pl.DataFrame:
    schema = df.schema
    if ahead is not None:   # this batch's part only (nothing left of an attempt that raised)
        ahead.lists, ahead.parsed = {}, {}
    parse = ahead is not None and ahead.fields and _READ_PROBLEM_RAW not in schema
    has_empty: dict[str, bool] = {}   # fields parsed ahead: whether a value is '' (so made null below)

    def text(header: str) -> pl.Expr:
        return _as_text(pl.col(header), schema[header])

    def other(header: str) -> pl.Expr:
        # a cell of several other codes: split like a list cell, then like separate cells
        return text(header).str.replace_all(r"[|,;，；、]", _CELL_SEPARATOR) if header in layout.list_cells else text(header)

    def scalar(name: str) -> pl.Expr:
        # stripped here; a value left empty becomes null below, once stripped (not stripped twice)
        header = layout.scalar_sources[name]
        if header is not None and parse and name in ahead.fields:
            plain = _parsed_ahead(df[header])   # plain integers or empty: nothing to strip
            if plain is not None:
                ahead.parsed[name], has_empty[name] = plain
                return text(header)
        if header is not None:
            return text(header).str.strip_chars() if _strip_needed(df[header]) else text(header)
        if name == "id":
            return pl.int_range(row_offset + 1, row_offset + pl.len() + 1).cast(pl.String)
        return pl.lit(None, dtype=pl.String)

    def commas(header: str) -> bool:
        # ',' separates codes like '|': replacing it costs a pass, so only where a cell has one
        return schema[header] != pl.String or bool(df[header].str.contains(",", literal=True).any())

    def listed(header: str, kind: str) -> pl.Expr:
        # a text column of codes: split by the compiled splitter when there is one, else by Polars
        split = _split_listed(df[header], kind, ahead)   # None unless compiled and text
        if split is not None:
            return pl.lit(split)
        rule = _dx_from_list if kind == "dx" else _proc_from_list
        return rule(text(header), schema[header], commas=commas(header))

    def wide(principal: str | None, others: tuple[str, ...], kind: str) -> pl.Expr:
        # the row's cells: made into the list by the compiled pass when it can, else joined here and
        # split below (_split_wide)
        if _LISTS_RAW[kind] in schema:   # made by the compiled reader (_GbRecords)
            done.add(kind)
            return pl.col(_LISTS_RAW[kind])
        lists = _wide_lists(df, principal, others, layout.list_cells, kind) if principal else None
        if lists is not None:
            done.add(kind)
            return pl.lit(lists)
        return _wide_joined(text(principal) if principal else None, [other(h) for h in others])

    done: set[str] = set()   # the wide lists made already
    dx = listed(layout.dx_list, "dx") if layout.dx_list is not None else \
        wide(layout.dx_principal, layout.dx_others, "dx")
    proc = listed(layout.proc_list, "proc") if layout.proc_list is not None else \
        wide(layout.proc_principal, layout.proc_others, "proc")

    def raw(name: str) -> pl.Expr:
        header = layout.settlement_sources[name]
        return (pl.col(header) if header is not None else pl.lit(None, dtype=pl.String)).alias(name)

    def trusted(expr: pl.Expr) -> pl.Expr:
        # A malformed line's values may sit in the wrong columns: none is passed on but its id.
        return pl.when(pl.col(_READ_PROBLEM_RAW).is_null()).then(expr) if _READ_PROBLEM_RAW in schema else expr

    cases = df.select(
        scalar("id").alias("id"),
        *(trusted(scalar(name)).alias(name) for name in SCALAR_COLUMNS if name != "id"),
        dx.alias("dx"),
        proc.alias("proc"),
        *(trusted(raw(name)).alias(name) for name in (SETTLEMENT_COLUMNS if settlement else ())),
        *([pl.col(_READ_PROBLEM_RAW).alias(READ_PROBLEM)] if _READ_PROBLEM_RAW in schema else []),
    )
    joined = {kind: _split_wide(cases[kind], kind=kind) for kind, source in
              (("dx", layout.dx_list), ("proc", layout.proc_list)) if source is None and kind not in done}
    blank = [name for name in SCALAR_COLUMNS if layout.scalar_sources[name] is not None
             and has_empty.get(name, True) and (cases[name].str.len_bytes() == 0).any()]
    blanks = {name: pl.when(pl.col(name).str.len_bytes() > 0).then(pl.col(name)) for name in blank}
    return cases.with_columns(**joined, **blanks) if joined or blanks else cases


# The list-shape split rules below reproduce the reference grouper exactly:
# dx: ',' -> '|', split on '|', empty items kept ('' -> [''], '|A' -> ['', 'A']);
# proc: same, except that an empty cell means no procedures ('' -> []).
# Items are neither stripped nor case-folded.


def _split_codes(cell: pl.Expr, commas: bool = True) -> pl.Expr:
    return (cell.str.replace_all(",", "|", literal=True) if commas else cell).str.split("|")


def _dx_from_list(cell: pl.Expr, dtype: pl.DataType, *, commas: bool = True) -> pl.Expr:
    if isinstance(dtype, pl.List):
        # Keep the principal slot: a missing or empty list becomes [''] like an empty cell.
        codes = cell.list.eval(pl.element().fill_null(""))
        return pl.when(codes.list.len() > 0).then(codes).otherwise(pl.lit([""]))
    return _split_codes(cell.fill_null(""), commas)


def _proc_from_list(cell: pl.Expr, dtype: pl.DataType, *, commas: bool = True) -> pl.Expr:
    if isinstance(dtype, pl.List):
        return cell.list.eval(pl.element().fill_null("")).fill_null(pl.lit([], dtype=pl.List(pl.String)))
    # an empty cell (or none) means no procedures: made null, split (null stays null), then []
    return _split_codes(pl.when(cell != "").then(cell), commas).fill_null(pl.lit([], dtype=pl.List(pl.String)))


# Wide shape. A row's cells (principal first) are joined with a character no code cell holds and
# split once: building the list with concat_list over dozens of columns cost ~11 s per million
# rows. Blank cells are export padding: null cells vanish in the join; cells that are empty or
# hold blanks around a code (rare) are cleaned on the joined text, only in batches that have them.
_CELL_SEPARATOR = "\x1f"  # ASCII unit separator
_NEEDS_CLEANING = r"\s|\x1f\x1f|\x1f$"  # a blank around or instead of a code, or an empty other cell


def _wide_joined(principal: pl.Expr | None, others: list[pl.Expr]) -> pl.Expr:
    """The row's wide cells as one text: the principal cell always (blank keeps its slot), then
    the non-null other cells, separated by _CELL_SEPARATOR."""
    if principal is None:
        return pl.lit("", dtype=pl.String)
    return pl.concat_str([principal.fill_null(""), *others], separator=_CELL_SEPARATOR, ignore_nulls=True)


def _text_checks():
    """The compiled column checks (ext/_text.pyx), or None when the module is not built."""
    from .engine.kernel import companion

    return companion("_text", None)


def _split_compiled(column: pl.Series, separators: str, *, empty_is_none: bool) -> pl.Series | None:
    """A String column of codes split at each of `separators` (one or two ASCII characters) by the
    compiled splitter, as List(String): exactly what Polars' `str.split` gives after the second
    separator is replaced by the first (items kept as they are, empty ones too; a null reads as '';
    with `empty_is_none`, '' gives an empty list). The items are string views over the column's own
    text: no copy of a code longer than 12 bytes. None without the compiled module (Polars splits)."""
    parts = _split_parts(column, separators, empty_is_none=empty_is_none)
    if parts is None:
        return None
    from .engine.encode import series_from_arrow

    return series_from_arrow(_list_array(parts), column.name)


def _split_listed(column: pl.Series, kind: str, ahead: ReadAhead | None) -> pl.Series | None:
    """A code column of the list shape split by the compiled splitter (the list-shape rules below:
    '|' and ',' separate; for "proc" an empty cell has no item), its items also interned for
    `ahead` when that has a code table. None: see _split_parts."""
    codes = ahead.codes() if ahead is not None and ahead.codes is not None and _text_checks() is not None else None
    parts = _split_parts(column, "|,", empty_is_none=kind == "proc", codes=codes)
    if parts is None:
        return None
    from .engine.encode import Text, list_offsets, series_from_arrow

    lists = _list_array(parts)
    if codes is not None:
        import numpy as np

        ids = np.concatenate([part[-1] for part in parts]) if len(parts) > 1 else parts[0][-1]
        ahead.lists[kind] = (list_offsets(lists), ids, Text(lists.values))
    return series_from_arrow(lists, column.name)


def _split_parts(column: pl.Series, separators: str, *, empty_is_none: bool, codes: tuple | None = None):
    """_split_compiled's parts, one per chunk of `column` (see _list_array); with `codes` (a plan's code
    table), each part ends with the code ids of its items, looked up as they are split. None
    without the compiled module or for a column that is not text."""
    checks = _text_checks()
    if checks is None or column.dtype != pl.String:
        return None
    from .engine.encode import Text

    parts = []
    for _, text in Text.chunks(column):
        split = checks.split_codes(*text.kernel_args(), len(text.array), ord(separators[0]), ord(separators[-1]),
                                   empty_is_none, codes)
        if split is None:
            return None
        parts.append((*split[:2], text.array.buffers()[2:], *split[2:]))
    return parts


def _parsed_ahead(column: pl.Series) -> tuple[tuple, bool] | None:
    """((int32 values, uint8 ir.FIELD_* states), whether a value is '') of a text field whose every
    value the kernel's parse_ints reads as a plain integer or as empty, as encoding would parse it
    after canonicalising (which then changes nothing but '' to null, both read as absent); None
    when a value is anything else (stripping and the full reading rules may apply) or without the
    compiled module."""
    if column.dtype != pl.String or _text_checks() is None:
        return None
    import numpy as np

    from .engine import ir
    from .engine.encode import parse_int_field
    from .engine.kernel import KERNEL

    values, state = parse_int_field(column, KERNEL)
    if (state == ir.FIELD_SLOW).any():
        return None
    return (values, state), int(np.count_nonzero(state == ir.FIELD_ABSENT)) > column.null_count()


def _wide_lists(df: pl.DataFrame, principal: str, others: tuple[str, ...], list_cells, kind: str) -> pl.Series | None:
    """The code lists of a wide batch by the compiled pass (ext/_text.pyx `wide_lists`): exactly what
    joining the cells and _split_wide give (the cleaning included: items stripped, empty other
    cells dropped), without the joined text. The items are string views over the cells' own text.
    None (the caller joins and splits) without the compiled module, for cells that are not text, or
    for cells of several codes (list_cells)."""
    checks = _text_checks()
    headers = (principal, *others)
    if checks is None or any(df.schema[h] != pl.String or h in list_cells for h in headers):
        return None
    from .engine.encode import Text, series_from_arrow

    chunked = [Text.chunks(df[h]) for h in headers]
    if any([start for start, _ in column] != [start for start, _ in chunked[0]] for column in chunked):
        chunked = [[(0, Text.of(df[h]))] for h in headers]   # chunks that do not line up: joined
    parts = []
    for k, (start, _) in enumerate(chunked[0]):
        texts = [column[k][1] for column in chunked]
        rows = len(texts[0].array)
        capacity = rows + sum(len(t.array) - t.array.null_count for t in texts[1:])
        made = checks.wide_lists([t.kernel_args() for t in texts], rows, ord(_CELL_SEPARATOR), kind == "proc", capacity)
        if made is None:
            return None
        parts.append((*made, [b for t in texts for b in t.array.buffers()[2:]]))
    return series_from_arrow(_list_array(parts), kind)


def _list_array(parts):
    """A large_list<string_view> Arrow array of the compiled splitters' parts, in order: (int64 list
    offsets, item views, the data buffers the views of long items point into[, code ids]), one per
    chunk of the input."""
    import numpy as np
    import pyarrow as pa

    from .engine.encode import int64_array

    if len(parts) == 1:
        list_offsets, item_views, buffers = parts[0][:3]
    else:   # one array: offsets shifted, each part's long items pointed at its buffers among all
        shifted, views, buffers, items, base = [np.zeros(1, np.int64)], [], [], 0, 0
        for part_offsets, part_views, part_buffers, *_ in parts:
            shifted.append(part_offsets[1:] + items)
            words = part_views.view(np.int32).reshape(-1, 4)
            if base and len(words):
                words = words.copy()
                words[words[:, 0] > 12, 2] += base
            views.append(words.reshape(-1).view(np.uint8))
            buffers.extend(part_buffers)
            items += len(part_views) // 16
            base += len(part_buffers)
        list_offsets, item_views = np.concatenate(shifted), np.concatenate(views)
    items = pa.Array.from_buffers(pa.string_view(), len(item_views) // 16, [None, pa.py_buffer(item_views), *buffers])
    return pa.Array.from_buffers(pa.large_list(pa.string_view()), len(list_offsets) - 1,
                                 [None, int64_array(list_offsets).buffers()[1]], children=[items])


def _strip_needed(column: pl.Series) -> bool:
    """Whether stripping could change a value of `column` (a compiled look at each value's first
    and last byte, no copy; text of another type, or without the compiled module: assume so)."""
    checks = _text_checks()
    if column.dtype != pl.String or checks is None:
        return True
    from .engine.encode import Text

    return any(checks.strip_needed(*part.kernel_args(), len(part.array)) for _, part in Text.chunks(column))


def _rows_matching_cleaning(joined: pl.Series) -> pl.Series:
    """The rows of joined wide cells that match _NEEDS_CLEANING (UInt32 row numbers): the compiled
    check marks the candidates (whitespace-free ASCII rows never match), the regex decides them."""
    checks = _text_checks()
    if checks is None:
        return joined.str.contains(_NEEDS_CLEANING).arg_true()
    import numpy as np

    from .engine.encode import Text

    marks = np.empty(len(joined), np.uint8)
    if not checks.cleaning_candidates(*Text.of(joined).kernel_args(), len(joined), ord(_CELL_SEPARATOR), marks):
        return pl.Series(dtype=pl.UInt32)
    rows = pl.Series(np.flatnonzero(marks), dtype=pl.UInt32)
    return rows.filter(joined.gather(rows).str.contains(_NEEDS_CLEANING).fill_null(False))


def _split_wide(joined: pl.Series, *, kind: str) -> pl.Series:
    """Joined wide cells → codes: the principal slot first ('' when blank), then the other codes in
    column order, each stripped. dx: all blank gives ['']; proc: all blank gives no procedure,
    while a blank principal with other procedures gives ['', others...] — exactly what the list
    shape gives for `|P`, so the first other procedure is never promoted to principal."""
    rows = _rows_matching_cleaning(joined)
    if len(rows):
        # only the rows that need it (about 1 in 100 in exports), not four passes over every row
        sep = _CELL_SEPARATOR
        cleaned = (joined.gather(rows).str.replace_all(rf"\s*{sep}\s*", sep).str.strip_chars()
                   .str.replace_all(f"{sep}{{2,}}", sep).str.replace(f"{sep}+$", ""))
        joined = joined.clone().scatter(rows, cleaned)
    split = _split_compiled(joined, _CELL_SEPARATOR, empty_is_none=kind == "proc")
    if split is not None:
        return split.alias(joined.name)
    if kind == "proc":   # no procedure at all: an empty list (made null, split, then filled)
        return pl.select(pl.when(joined != "").then(joined).str.split(_CELL_SEPARATOR)
                         .fill_null(pl.lit([], dtype=pl.List(pl.String)))).to_series().alias(joined.name)
    return joined.str.split(_CELL_SEPARATOR)
