"""Writing result tables: one writer (`ResultSink`, or `write_results` for a whole frame) for every
command that writes a table (.csv, .parquet/.pq, .xlsx).

CSV encoding. The default is UTF-8 *with* a byte-order mark (`utf-8-sig`): Excel on Chinese
Windows opens a BOM-less UTF-8 CSV as GBK and shows its Chinese as mojibake, while with the BOM
it reads UTF-8 correctly; every other tool we know of (Polars, pandas, Python's utf-8-sig, WPS,
LibreOffice) reads the BOM transparently, and UTF-8 holds every character a record can hold.
`gbk` (what older Chinese software expects) and `gb18030` (its superset, which can encode every
character) are offered, and `utf-8` for tools that want no BOM. A value GBK cannot encode is an
error that names the column and suggests gb18030 or utf-8-sig; nothing is replaced silently.

Column headers are the field names (`id, status, drg, ...`) by default; `headers="zh"` writes the
Chinese names of the 医疗保障基金结算清单 and of the grouping results instead (`CHINESE_HEADERS`).

A command line sets both once for the whole command (`output_options`); the Python API can pass
them to `ResultSink` / `write_results` directly.

Identical input gives byte-identical files: the .xlsx workbook's creation time is taken from
`SOURCE_DATE_EPOCH` when it is set and is otherwise a fixed date (2000-01-01), never "now".
"""
from __future__ import annotations

import contextlib
import contextvars
import io as _bytes_io
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import polars as pl

from .errors import InputError, UsageError
from .outputs import atomic_output

__all__ = ["CHINESE_HEADERS", "OUTPUT_ENCODINGS", "ResultSink", "output_format", "output_options",
           "write_results"]

_PARQUET_EXTENSIONS = (".parquet", ".pq")


def parquet_row_group_rows(rows: int | None) -> int:
    """Rows per Parquet row group of `grouper group`'s results for an input of about `rows` rows
    (None: unknown): a tenth of the input, at least 10,000 and at most 1,000,000 rows. It depends on
    the input alone, never on the batch size or the thread count, so neither changes the file's bytes;
    it is how earlier versions happened to cut them (one group per batch of their progress bar)."""
    if rows is None or rows >= 10_000_000:
        return 1_000_000
    return max(10_000, -(-rows // 10))
_EXCEL_MAX_ROWS = 1_048_576  # including the header row
# An .xlsx sheet is written cell by cell in Python (xlsxwriter, constant memory): about 20,000 result
# rows a second on one core of the project machine (100,000 rows: 5.2 CPU-s, 2026-12-06), some fifty
# times slower than CSV or Parquet. Above EXCEL_NOTE_ROWS the command says what it will cost.
EXCEL_ROWS_PER_SECOND = 20_000
EXCEL_NOTE_ROWS = 100_000


def excel_cost_note(rows: int | None) -> str | None:
    """What writing `rows` result rows to an .xlsx sheet costs, for a big output (None: small or unknown)."""
    if rows is None or rows < EXCEL_NOTE_ROWS:
        return None
    seconds = rows / EXCEL_ROWS_PER_SECOND
    return (f"writing {rows:,} rows to an Excel sheet takes about {seconds:,.0f} s (about "
            f"{EXCEL_ROWS_PER_SECOND:,} rows a second); .csv or .parquet take a second or two")

# name → Python codec; the first is the default for .csv
OUTPUT_ENCODINGS = {"utf-8-sig": "utf-8-sig", "utf-8": "utf-8", "gbk": "gbk", "gb18030": "gb18030"}
_ENCODING_ALIASES = {"utf8": "utf-8", "utf-8-bom": "utf-8-sig", "utf8-sig": "utf-8-sig", "bom": "utf-8-sig",
                     "cp936": "gbk", "gb2312": "gbk"}
DEFAULT_ENCODING = "utf-8-sig"
HEADER_STYLES = ("en", "zh")

# Chinese headers: the 医疗保障基金结算清单 field names for the record's fields, and the usual
# names of the grouping results. Columns not listed keep their name.
CHINESE_HEADERS: dict[str, str] = {
    # the record (结算清单)
    "id": "清单流水号", "sex": "性别", "age": "年龄", "age_days": "年龄不足1周岁的年龄(天)",
    "weight": "新生儿出生体重(克)", "dept": "出院科别", "los": "实际住院天数", "discharge": "离院方式",
    "dx": "诊断编码", "proc": "手术操作编码",
    "hospital": "定点医疗机构编码", "hospital_level": "医疗机构等级", "insurance": "险种类型",
    "cost": "医疗总费用", "fund_paid": "统筹基金支付", "admission_date": "入院日期",
    "discharge_date": "出院日期", "patient_id": "个人编码", "special_review": "特例单议",
    # grouping results
    "status": "分组状态", "mdc": "主要诊断大类(MDC)", "adrg": "核心疾病诊断相关组(ADRG)",
    "drg": "疾病诊断相关分组(DRG)", "drg_name": "DRG名称", "rw": "相对权重(RW)",
    "reason": "原因", "warnings": "质控提示", "trace": "分组路径",
    "scheme": "分组方案", "scheme_version": "方案版本",
    "dip": "病种", "dip_name": "病种名称", "score": "病种分值",
    # the quality report (group --report)
    "scope": "统计范围", "level": "级别", "cases": "病例数", "total": "总病例数", "percent": "占比(%)",
    "message_zh": "问题说明", "message_en": "问题说明(英文)",
}


@dataclass(frozen=True)
class OutputOptions:
    encoding: str = DEFAULT_ENCODING   # CSV only
    headers: str = "en"                # "en": field names; "zh": CHINESE_HEADERS


_OPTIONS: contextvars.ContextVar[OutputOptions] = contextvars.ContextVar("grouper_output_options",
                                                                         default=OutputOptions())


def output_encoding(name: str | None) -> str:
    """The canonical name of a CSV output encoding (see OUTPUT_ENCODINGS); UsageError for others."""
    if name is None:
        return _OPTIONS.get().encoding
    key = name.strip().lower().replace("_", "-")
    key = _ENCODING_ALIASES.get(key, key)
    if key not in OUTPUT_ENCODINGS:
        raise UsageError(f"unknown output encoding {name!r}; use one of {', '.join(OUTPUT_ENCODINGS)} "
                         f"(default {DEFAULT_ENCODING}: UTF-8 with a BOM, which Excel opens correctly)")
    return key


@contextlib.contextmanager
def output_options(*, encoding: str | None = None, headers: str | None = None) -> Iterator[OutputOptions]:
    """Within the block, every table written without explicit options uses these (None: unchanged)."""
    current = _OPTIONS.get()
    if headers is not None and headers not in HEADER_STYLES:
        raise UsageError(f"unknown header style {headers!r}; use one of {', '.join(HEADER_STYLES)}")
    options = replace(current, encoding=output_encoding(encoding) if encoding else current.encoding,
                      headers=headers or current.headers)
    token = _OPTIONS.set(options)
    try:
        yield options
    finally:
        _OPTIONS.reset(token)


def output_format(path: str | Path) -> str:
    """The suffix of a results file (.csv, .parquet/.pq, .xlsx); InputError for any other."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx", *_PARQUET_EXTENSIONS):
        raise InputError(f"cannot write {path}: unknown extension {path.suffix!r}; use .csv, .parquet or .xlsx")
    return suffix


def write_results(df: pl.DataFrame, path: str | Path, *, encoding: str | None = None,
                  headers: str | None = None) -> None:
    """Write a result frame; the format comes from the extension (.csv, .parquet/.pq, .xlsx).

    CSV is written in `encoding` (default: UTF-8 with BOM, see the module doc); for CSV and Excel,
    list columns are joined with ``|``.  The file appears whole or not at all (grouper.outputs).
    """
    with ResultSink(path, encoding=encoding, headers=headers) as sink:
        sink.write(df)


def _join_list_columns(df: pl.DataFrame) -> pl.DataFrame:
    list_columns = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.List)]
    if not list_columns:
        return df
    # An empty list becomes an empty cell, not a quoted "" (which reads back as text).
    return df.with_columns(
        pl.when(pl.col(name).list.len() > 0).then(_as_text(pl.col(name), df.schema[name]).list.join("|")).alias(name)
        for name in list_columns
    )


def _renamed(df: pl.DataFrame, headers: str) -> pl.DataFrame:
    if headers != "zh":
        return df
    return df.rename({c: CHINESE_HEADERS[c] for c in df.columns
                      if c in CHINESE_HEADERS and CHINESE_HEADERS[c] not in df.columns})


def _encoded(text_utf8: bytes, encoding: str, path: Path, first: bool) -> bytes:
    """Polars writes UTF-8; re-encode for the target (a BOM only at the very start)."""
    if encoding == "utf-8":
        return text_utf8
    if encoding == "utf-8-sig":
        return (b"\xef\xbb\xbf" + text_utf8) if first else text_utf8
    text = text_utf8.decode("utf-8")
    try:
        return text.encode(encoding)
    except UnicodeEncodeError as exc:
        bad = text[exc.start:exc.end]
        line = text[:exc.start].count("\n") + 1
        raise InputError(f"cannot write {path} in {encoding}: {bad!r} (U+{ord(bad[0]):04X}) near line {line} of "
                         f"this batch has no {encoding} code; use --output-encoding gb18030 or utf-8-sig") from None


def source_date_epoch():
    """SOURCE_DATE_EPOCH (the reproducible-builds convention) as a naive UTC datetime, or None."""
    import datetime
    import os

    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not epoch.isdigit():
        return None
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).replace(tzinfo=None)


def file_date():
    """The timestamp written into files that must carry one (.xlsx): SOURCE_DATE_EPOCH, else a fixed
    date, never "now", so identical input gives identical bytes."""
    import datetime

    return source_date_epoch() or datetime.datetime(2000, 1, 1)


class _ExcelStream:
    """One worksheet written row by row (xlsxwriter's constant-memory mode): batches go to disk as
    they come, so a run never holds the whole sheet, and progress can follow the writing."""

    def __init__(self, path: Path) -> None:
        import xlsxwriter

        self.book = xlsxwriter.Workbook(str(path), {
            "constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False,
            "strings_to_urls": False, "nan_inf_to_errors": True})
        self.book.set_properties({"created": file_date()})
        self.sheet = self.book.add_worksheet()
        self.bold = self.book.add_format({"bold": True})
        self.date = self.book.add_format({"num_format": "yyyy-mm-dd"})
        self.datetime = self.book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        self.row = 0
        self.columns = 0

    def write(self, batch: pl.DataFrame) -> None:
        import datetime

        if self.row == 0:
            from rich.cells import cell_len   # a CJK character is two columns wide, in Excel too

            for col, name in enumerate(batch.columns):   # widths go before the rows in this mode
                self.sheet.set_column(col, col, max(8, min(40, cell_len(name) + 2)))
            self.sheet.write_row(0, 0, batch.columns, self.bold)
            self.sheet.freeze_panes(1, 0)
            self.columns = len(batch.columns)
            self.row = 1
        write_string, write_number, write_boolean = self.sheet.write_string, self.sheet.write_number, \
            self.sheet.write_boolean
        for values in batch.iter_rows():
            for col, value in enumerate(values):
                if value is None or value == "":   # an empty cell, as Excel itself leaves it
                    continue
                if isinstance(value, str):
                    write_string(self.row, col, value)
                elif isinstance(value, bool):
                    write_boolean(self.row, col, value)
                elif isinstance(value, (int, float)):
                    if isinstance(value, float) and not math.isfinite(value):
                        write_string(self.row, col, str(value))
                    else:
                        write_number(self.row, col, value)
                elif isinstance(value, datetime.datetime):
                    self.sheet.write_datetime(self.row, col, value, self.datetime)
                elif isinstance(value, datetime.date):
                    self.sheet.write_datetime(self.row, col, value, self.date)
                else:
                    write_string(self.row, col, str(value))
            self.row += 1

    def close(self) -> None:
        if self.row > 0 and self.columns:
            self.sheet.autofilter(0, 0, max(self.row - 1, 0), self.columns - 1)   # sort and filter from the header
        self.book.close()


# Columns of one value per case (the case id): a dictionary page for them only costs time (about
# 0.04 s per million rows) and space before the writer gives up on it; every other column keeps one.
_UNIQUE_COLUMNS = ("id", CHINESE_HEADERS["id"])


def _dictionary_columns(schema) -> list[str]:
    """The Parquet leaf columns (`a`, `list.list.element`, `struct.field`) to dictionary-encode."""
    import pyarrow as pa

    def leaves(path: str, dtype) -> list[str]:
        if pa.types.is_list(dtype) or pa.types.is_large_list(dtype):
            return leaves(f"{path}.list.element", dtype.value_type)
        if pa.types.is_struct(dtype):
            return [leaf for f in dtype for leaf in leaves(f"{path}.{f.name}", f.type)]
        return [path]

    return [leaf for f in schema if f.name not in _UNIQUE_COLUMNS for leaf in leaves(f.name, f.type)]


class ResultSink:
    """Writes result batches to one file as they come, so a run never holds all results.

    CSV, Parquet and Excel are all written incrementally.  Batches go to a temporary file beside
    the target, which replaces it on a clean close; leaving the `with` block by an exception
    (Ctrl-C and SIGTERM included) removes it (grouper.outputs.atomic_output).  `encoding` and
    `headers`: see the module doc (None: the command's `output_options`).  `on_rows(n)` is called
    after each n rows written (progress). Parquet: with `row_group_rows`, the batches are gathered or
    cut into row groups of exactly that many rows (the last one holding the rest), so the file does
    not depend on how its rows came in batches; without it each batch is written as it comes.
    """

    def __init__(self, path: str | Path, *, metadata: Mapping[str, str] | None = None,
                 encoding: str | None = None, headers: str | None = None,
                 on_rows: Callable[[int], None] | None = None, row_group_rows: int | None = None):
        self.path = Path(path)
        self.suffix = output_format(self.path)
        self.metadata = dict(metadata or {})  # Parquet: key-value metadata of the file (e.g. which scheme)
        options = _OPTIONS.get()
        self.encoding = output_encoding(encoding) if encoding else options.encoding
        self.headers = headers or options.headers
        self.on_rows = on_rows
        self._parquet = None
        self._row_group_rows = row_group_rows
        self._pending: list = []   # Parquet with row_group_rows: arrow tables not yet written (less than a group)
        self._pending_rows = 0
        self._csv = None
        self._excel: _ExcelStream | None = None
        self._excel_rows = 0
        self._atomic = atomic_output(self.path)
        self._tmp = self._atomic.__enter__()

    def write(self, batch: pl.DataFrame) -> None:
        batch = _renamed(batch, self.headers)
        if self.suffix == ".csv":
            buffer = _bytes_io.BytesIO()
            first = self._csv is None
            _join_list_columns(batch).write_csv(buffer, include_header=first)
            if first:
                self._csv = self._tmp.open("wb")
            self._csv.write(_encoded(buffer.getvalue(), self.encoding, self.path, first))
        elif self.suffix == ".xlsx":
            self._excel_rows += batch.height
            if self._excel_rows >= _EXCEL_MAX_ROWS:
                raise InputError(
                    f"{self._excel_rows:,} rows or more do not fit in one Excel sheet "
                    f"(max {_EXCEL_MAX_ROWS - 1:,}); write .csv or .parquet instead"
                )
            if self._excel is None:
                self._excel = _ExcelStream(self._tmp)
            joined = _join_list_columns(batch)
            step = EXCEL_ROWS_PER_SECOND  # rows between progress calls: about one a second
            for start in range(0, joined.height, step):
                part = joined.slice(start, step)
                self._excel.write(part)
                if self.on_rows is not None:
                    self.on_rows(part.height)
            return
        else:
            self._write_parquet(batch)
        if self.on_rows is not None:
            self.on_rows(batch.height)

    def _write_parquet(self, batch: pl.DataFrame) -> None:
        import pyarrow.parquet as pq

        table = batch.to_arrow()
        if self._parquet is None:
            schema = table.schema.with_metadata({**(table.schema.metadata or {}), **{
                k.encode(): v.encode() for k, v in self.metadata.items()}})
            self._parquet = pq.ParquetWriter(self._tmp, schema, use_dictionary=_dictionary_columns(schema))
        if not table.schema.equals(self._parquet.schema):   # (cast imports pyarrow.compute: 0.1 s at start-up)
            table = table.cast(self._parquet.schema)
        if self._row_group_rows is None:
            self._parquet.write_table(table)
            return
        self._pending.append(table)
        self._pending_rows += table.num_rows
        if self._pending_rows >= self._row_group_rows:
            self._flush_parquet(final=False)

    def _flush_parquet(self, *, final: bool) -> None:
        """Write the gathered rows as whole row groups (with `final`, the rest too), each group one
        contiguous chunk: how batches were cut leaves no trace in the file."""
        import pyarrow as pa

        pending = pa.concat_tables(self._pending) if len(self._pending) != 1 else self._pending[0]
        if final and pending.num_rows == 0:
            self._parquet.write_table(pending)   # no rows at all: the schema alone, as ever
        size = self._row_group_rows
        whole = pending.num_rows if final else pending.num_rows - pending.num_rows % size
        for start in range(0, whole, size):
            self._parquet.write_table(pending.slice(start, min(size, whole - start)).combine_chunks(), row_group_size=size)
        rest = pending.slice(whole)
        self._pending = [rest] if rest.num_rows else []
        self._pending_rows = rest.num_rows

    def _close_writers(self) -> None:
        if self._csv is not None:
            self._csv.close()
            self._csv = None
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None

    def close(self) -> None:
        """Finish the file and put it in place."""
        try:
            if self._pending:
                self._flush_parquet(final=True)
            self._close_writers()
            if self._excel is not None:
                self._excel.close()
                self._excel = None
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the temporary file; the target is left as it was."""
        self._close_writers()
        if self._excel is not None:
            with contextlib.suppress(Exception):
                self._excel.close()
            self._excel = None
        exc = exc or RuntimeError("aborted")
        try:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
        except BaseException as raised:
            if raised is not exc:
                raise

    def __enter__(self) -> "ResultSink":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            self.close()
        else:
            self.abort(exc)


def _as_text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Cast to String (or List(String)); integral floats print as ints ("12", not "12.0")."""
    if dtype == pl.String:
        return expr
    if isinstance(dtype, pl.List):
        if dtype.inner == pl.String:
            return expr
        return expr.list.eval(_as_text(pl.element(), dtype.inner))
    if dtype.is_float() or dtype.is_decimal():
        number = expr.cast(pl.Float64)
        integral = number.is_finite() & (number == number.round(0)) & (number.abs() < 2.0**63)
        return (
            pl.when(integral)
            .then(number.cast(pl.Int64, strict=False).cast(pl.String))
            .otherwise(number.cast(pl.String))
        )
    return expr.cast(pl.String)
