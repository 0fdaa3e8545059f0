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
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import polars as pl

# Shared with the rest of the package (a GrouperError); re-exported here as grouper.io.InputError.
from grouper.errors import InputError
from grouper.outputs import atomic_output

__all__ = [
    "CANONICAL_COLUMNS",
    "InputError",
    "cases_from_frame",
    "iter_case_batches",
    "read_cases",
    "write_results",
]

SCALAR_COLUMNS = ("id", "sex", "age", "age_days", "weight", "dept", "los", "discharge")
CANONICAL_COLUMNS = (*SCALAR_COLUMNS, "dx", "proc")
# Settlement fields (read only when asked: `settlement=True`), passed on with the input's own
# dtype; grouper.fields parses them (money to fen, dates, levels, insurance type).
SETTLEMENT_COLUMNS = (
    "hospital", "hospital_level", "insurance", "cost", "fund_paid",
    "admission_date", "discharge_date", "patient_id", "special_review",
)

# Default header aliases, best first: when several are present the first listed wins.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "病案号", "住院号", "病案首页号", "结算清单号", "清单流水号", "mdtrt_id", "setl_id"),
    "sex": ("sex", "gender", "性别"),
    "age": ("age", "年龄", "年龄(岁)"),
    "age_days": (
        "age_days", "ageday", "年龄(天)", "年龄不足1周岁的年龄(天)",
        "年龄不足1周岁年龄(天)", "新生儿年龄(天)",
    ),
    "weight": ("weight", "新生儿出生体重", "新生儿出生体重(克)", "出生体重"),
    "dept": ("dept", "科室", "出院科别", "出院科室"),
    "los": ("los", "住院天数", "实际住院天数"),
    "discharge": ("discharge", "离院方式"),
    "dx": ("dx", "diagnoses", "诊断编码", "诊断"),
    "proc": ("proc", "procedures", "手术编码", "手术操作编码", "手术"),
    # 医疗保障基金结算清单 and the usual HIS / 医保 exports (English names of the 医保 interface too)
    "hospital": ("hospital", "定点医疗机构编码", "医疗机构编码", "定点医药机构编号", "机构编码", "fixmedins_code"),
    "hospital_level": ("hospital_level", "医疗机构等级", "医院等级", "机构等级", "hosp_lv"),
    "insurance": ("insurance", "险种类型", "险种", "医保类型", "insutype"),
    "cost": ("cost", "医疗总费用", "住院总费用", "总费用", "medfee_sumamt"),
    "fund_paid": ("fund_paid", "统筹基金支付", "基金支付", "hifp_pay"),
    "admission_date": ("admission_date", "入院日期", "入院时间", "adm_time", "begndate"),
    "discharge_date": ("discharge_date", "出院日期", "出院时间", "dscg_time", "enddate"),
    "patient_id": ("patient_id", "个人编码", "证件号码", "身份证号", "psn_no", "certno"),
    "special_review": ("special_review", "特例单议", "特病单议"),
}


@dataclass(frozen=True)
class _WideFamily:
    """One naming scheme for wide code columns: an optional principal header plus numbered ones."""

    principal_headers: tuple[str, ...]
    numbered: re.Pattern[str]


# Tried in order; the first family with a matching header is used.  Headers are
# compared after _header_key(), so these are lower case with ASCII parentheses.
_DX_FAMILIES = (
    _WideFamily(("主要诊断编码", "主要诊断代码"), re.compile(r"其他诊断(?:编码|代码)(\d+)")),
    _WideFamily((), re.compile(r"(?:诊断(?:编码|代码)?|dx|diag)(\d+)")),
)
_PROC_FAMILIES = (
    _WideFamily(
        ("主要手术操作编码", "主要手术操作代码", "主要手术编码"),
        re.compile(r"其他手术(?:操作)?(?:编码|代码)(\d+)"),
    ),
    _WideFamily((), re.compile(r"(?:手术操作(?:编码|代码)?|手术(?:编码|代码)?|proc)(\d+)")),
)

_CSV_EXTENSIONS = (".csv", ".txt", ".tsv")
_PARQUET_EXTENSIONS = (".parquet", ".pq")
_EXCEL_EXTENSIONS = (".xlsx", ".xls")
_EXCEL_MAX_ROWS = 1_048_576  # including the header row


# ---------------------------------------------------------------------------
# Public API


def read_cases(
    path: str | Path,
    *,
    encoding: str | None = None,
    columns: Mapping[str, str] | None = None,
    sheet: str | int | None = None,
    settlement: bool = False,
) -> pl.DataFrame:
    """Read a CSV/TSV, Parquet or Excel file into the canonical case frame.

    ``encoding`` applies to CSV only; None detects UTF-8 (with or without BOM),
    falling back to GB18030 (a superset of GBK).  ``columns`` maps canonical
    names to input headers and overrides the built-in aliases.  ``sheet`` picks
    an Excel sheet by name or by 1-based number (default: the first sheet).

    Completely blank lines in CSV and completely empty rows in Excel are not
    records and are skipped; every other row becomes one case, in order.

    ``settlement=True`` appends the SETTLEMENT_COLUMNS, unparsed (the input's dtype; null
    columns for fields the input lacks): see grouper.fields.
    """
    path = Path(path)
    raw = _read_raw(path, encoding=encoding, sheet=sheet)
    return _canonicalise(raw, _detect_layout(raw.columns, columns), row_offset=0, settlement=settlement)


def cases_from_frame(df: pl.DataFrame, *, columns: Mapping[str, str] | None = None,
                     settlement: bool = False) -> pl.DataFrame:
    """Normalise an in-memory frame exactly like ``read_cases`` (all rows kept)."""
    return _canonicalise(df, _detect_layout(df.columns, columns), row_offset=0, settlement=settlement)


def iter_case_batches(
    path: str | Path,
    *,
    batch_size: int = 1_000_000,
    encoding: str | None = None,
    columns: Mapping[str, str] | None = None,
    settlement: bool = False,
) -> Iterator[pl.DataFrame]:
    """Yield the canonical case frame of ``path`` in consecutive batches.

    Concatenating the batches gives ``read_cases(path)``: same rows, same order,
    and generated ids are global row numbers.  Parquet and UTF-8 CSV are
    streamed; other encodings and Excel are read whole, then sliced.  An input
    without rows yields one empty frame, so consumers always see the schema.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    path = Path(path)
    kind = _file_kind(path)
    _require_file(path)

    if kind == "parquet":
        lazy = pl.scan_parquet(path)
        drop_blank = False
    elif kind == "csv" and _is_utf8_csv(path, encoding):
        lazy = pl.scan_csv(path, infer_schema=False, separator=_csv_separator(path, _first_line(path)))
        drop_blank = True
    else:
        raw = _read_raw(path, encoding=encoding, sheet=None)
        layout = _detect_layout(raw.columns, columns)
        if raw.height == 0:
            yield _canonicalise(raw, layout, row_offset=0, settlement=settlement)
        for offset in range(0, raw.height, batch_size):
            yield _canonicalise(raw.slice(offset, batch_size), layout, row_offset=offset, settlement=settlement)
        return

    try:
        schema = lazy.collect_schema()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"cannot read {path}: {exc}") from exc
    layout = _detect_layout(list(schema), columns)
    rows_done = 0
    try:
        for batch in lazy.collect_batches(chunk_size=batch_size):
            if drop_blank:
                batch = _drop_blank_rows(batch)
            if batch.height:
                yield _canonicalise(batch, layout, row_offset=rows_done, settlement=settlement)
                rows_done += batch.height
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"cannot read {path} (after {rows_done} rows): {exc}") from exc
    if rows_done == 0:
        yield _canonicalise(pl.DataFrame(schema=schema), layout, row_offset=0, settlement=settlement)


def write_results(df: pl.DataFrame, path: str | Path) -> None:
    """Write a result frame; the format comes from the extension (.csv, .parquet/.pq, .xlsx).

    CSV is UTF-8 without BOM.  For CSV and Excel, list columns are joined with ``|``.  The file
    appears whole or not at all (see grouper.outputs).
    """
    with ResultSink(path) as sink:
        sink.write(df)


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


def _read_raw(path: Path, *, encoding: str | None, sheet: str | int | None) -> pl.DataFrame:
    kind = _file_kind(path)
    _require_file(path)
    if kind == "csv":
        return _read_csv(path, encoding)
    if kind == "parquet":
        try:
            return pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"cannot read Parquet file {path}: {exc}") from exc
    return _read_excel(path, sheet)


def _read_csv(path: Path, encoding: str | None) -> pl.DataFrame:
    data = _as_utf8(path.read_bytes(), encoding, path)
    first_line = data[: data.find(b"\n")] if b"\n" in data else data
    try:
        df = pl.read_csv(data, infer_schema=False, separator=_csv_separator(path, first_line))
    except pl.exceptions.NoDataError as exc:
        raise InputError(f"{path} is empty: it needs a header line and one line per case") from exc
    except pl.exceptions.PolarsError as exc:
        reason = str(exc).strip().splitlines()[0]  # polars appends hints about its own options
        raise InputError(
            f"cannot parse CSV file {path}: {reason}; every line needs the header's number "
            "of fields (quote values that contain the separator)"
        ) from exc
    return _drop_blank_rows(df)


def _read_excel(path: Path, sheet: str | int | None) -> pl.DataFrame:
    if isinstance(sheet, int) and sheet < 1:
        raise InputError(f"Excel sheet numbers start at 1, got {sheet}")
    try:
        return pl.read_excel(
            path,
            sheet_name=sheet if isinstance(sheet, str) else None,
            sheet_id=sheet if isinstance(sheet, int) else None,
            infer_schema_length=0,  # all String: keeps leading zeros, 12.0 comes back as "12"
            drop_empty_rows=True,  # formatting-only rows at the bottom of a sheet are not cases
            drop_empty_cols=False,
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
    if encoding is None:
        try:
            data.decode("utf-8")
            return data
        except UnicodeDecodeError:
            pass
        try:
            return data.decode("gb18030").encode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"cannot decode {path}: it is neither UTF-8 nor GB18030/GBK "
                f"(bad byte at offset {exc.start}); save it as UTF-8 or pass its encoding"
            ) from exc
    codec = _canonical_encoding(encoding, path)
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"cannot decode {path} as {encoding} (bad byte at offset {exc.start}); "
            "pass the file's real encoding, or omit it to detect UTF-8/GBK"
        ) from exc
    return data if codec == "utf-8" else text.encode("utf-8")


def _is_utf8_csv(path: Path, encoding: str | None) -> bool:
    """Whether polars can scan ``path`` directly: UTF-8 forced, or detected by a streaming check."""
    if encoding is not None:
        return _canonical_encoding(encoding, path) in ("utf-8", "utf-8-sig")
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as file:
        try:
            while chunk := file.read(1 << 24):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _first_line(path: Path) -> bytes:
    with path.open("rb") as file:
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
    proc_wide: tuple[str, ...]  # wide shape, principal first
    settlement_sources: dict[str, str | None]  # settlement field -> input header


def _header_key(header: str) -> str:
    return header.strip().replace("（", "(").replace("）", ")").lower()


def _detect_layout(headers: list[str], columns: Mapping[str, str] | None) -> _Layout:
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(CANONICAL_COLUMNS) - set(SETTLEMENT_COLUMNS))
    if unknown:
        raise InputError(
            f"unknown canonical column(s) {unknown} in the column mapping; "
            f"valid names are {', '.join(CANONICAL_COLUMNS + SETTLEMENT_COLUMNS)}"
        )
    by_key: dict[str, str] = {}
    for header in headers:
        by_key.setdefault(_header_key(header), header)

    def find(name: str) -> str | None:
        if name in columns:
            wanted = columns[name]
            found = wanted if wanted in headers else by_key.get(_header_key(wanted))
            if found is None:
                raise InputError(
                    f"column {wanted!r} (given for {name!r}) is not in the input; "
                    f"its columns are: {', '.join(headers)}"
                )
            return found
        return next((by_key[alias] for alias in COLUMN_ALIASES[name] if alias in by_key), None)

    scalar_sources = {name: find(name) for name in SCALAR_COLUMNS}

    dx_list = find("dx")
    dx_principal, dx_others = (None, ()) if dx_list else _find_wide(headers, _DX_FAMILIES)
    if dx_list is None and dx_principal is None:
        if dx_others:
            raise InputError(
                f"found other-diagnosis columns ({dx_others[0]}, ...) but no principal "
                "diagnosis column; add 主要诊断编码 or map it with columns={'dx': ...}"
            )
        raise InputError(
            "no diagnosis column found: expected a 'dx' column of |-separated codes "
            f"(or one of {', '.join(COLUMN_ALIASES['dx'][1:])}), or numbered columns "
            "such as 主要诊断编码 + 其他诊断编码1..N, 诊断1..N or dx1..N; "
            f"the input has: {', '.join(headers) or '(no columns)'}"
        )

    proc_list = find("proc")
    proc_wide: tuple[str, ...] = ()
    if proc_list is None:
        proc_principal, proc_others = _find_wide(headers, _PROC_FAMILIES)
        proc_wide = (proc_principal, *proc_others) if proc_principal else proc_others

    settlement_sources = {name: find(name) for name in SETTLEMENT_COLUMNS}
    return _Layout(scalar_sources, dx_list, dx_principal, dx_others, proc_list, proc_wide, settlement_sources)


def _find_wide(headers: list[str], families: tuple[_WideFamily, ...]) -> tuple[str | None, tuple[str, ...]]:
    """Return (principal header, other headers in numeric order) of the first matching family.

    For a family without a principal header, the lowest-numbered column is the principal.
    """
    for family in families:
        principal = next(
            (h for h in headers if _header_key(h) in family.principal_headers), None
        )
        numbered = []
        for header in headers:
            match = family.numbered.fullmatch(_header_key(header))
            if match:
                numbered.append((int(match.group(1)), header))
        others = tuple(header for _, header in sorted(numbered))  # 2 before 10
        if principal is None and not family.principal_headers and others:
            principal, others = others[0], others[1:]
        if principal is not None or others:
            return principal, others
    return None, ()


# ---------------------------------------------------------------------------
# Building the canonical frame


def _canonicalise(df: pl.DataFrame, layout: _Layout, *, row_offset: int, settlement: bool = False) -> pl.DataFrame:
    schema = df.schema

    def text(header: str) -> pl.Expr:
        return _as_text(pl.col(header), schema[header])

    def scalar(name: str) -> pl.Expr:
        header = layout.scalar_sources[name]
        if header is not None:
            value = text(header).str.strip_chars()
            return pl.when(value != "").then(value)
        if name == "id":
            return pl.int_range(row_offset + 1, row_offset + pl.len() + 1).cast(pl.String)
        return pl.lit(None, dtype=pl.String)

    if layout.dx_list is not None:
        dx = _dx_from_list(text(layout.dx_list), schema[layout.dx_list])
    else:
        dx = _dx_from_wide(
            _wide_cell(text(layout.dx_principal)),
            [_wide_cell(text(h)) for h in layout.dx_others],
        )
    if layout.proc_list is not None:
        proc = _proc_from_list(text(layout.proc_list), schema[layout.proc_list])
    else:
        proc = _proc_from_wide([_wide_cell(text(h)) for h in layout.proc_wide])

    def raw(name: str) -> pl.Expr:
        header = layout.settlement_sources[name]
        return (pl.col(header) if header is not None else pl.lit(None, dtype=pl.String)).alias(name)

    return df.select(
        *(scalar(name).alias(name) for name in SCALAR_COLUMNS),
        dx.alias("dx"),
        proc.alias("proc"),
        *(raw(name) for name in (SETTLEMENT_COLUMNS if settlement else ())),
    )


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


# The list-shape split rules below reproduce the reference grouper exactly:
# dx: ',' -> '|', split on '|', empty items kept ('' -> [''], '|A' -> ['', 'A']);
# proc: same, except that an empty cell means no procedures ('' -> []).
# Items are neither stripped nor case-folded.


def _split_codes(cell: pl.Expr) -> pl.Expr:
    return cell.str.replace_all(",", "|", literal=True).str.split("|")


def _dx_from_list(cell: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.List):
        # Keep the principal slot: a missing or empty list becomes [''] like an empty cell.
        codes = cell.list.eval(pl.element().fill_null(""))
        return pl.when(codes.list.len() > 0).then(codes).otherwise(pl.lit([""]))
    return _split_codes(cell.fill_null(""))


def _proc_from_list(cell: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    if isinstance(dtype, pl.List):
        return cell.list.eval(pl.element().fill_null("")).fill_null(pl.lit([], dtype=pl.List(pl.String)))
    no_procedures = cell.is_null() | (cell == "")
    return pl.when(no_procedures).then(pl.lit([], dtype=pl.List(pl.String))).otherwise(_split_codes(cell))


def _wide_cell(cell: pl.Expr) -> pl.Expr:
    """One code per cell: surrounding blanks are export padding, so strip; empty -> null."""
    code = cell.str.strip_chars()
    return pl.when(code != "").then(code)


def _dx_from_wide(principal: pl.Expr, others: list[pl.Expr]) -> pl.Expr:
    """Principal first (an empty principal stays as '' so it keeps its slot), then the
    non-empty other diagnoses in column order; all cells empty gives ['']."""
    first = pl.concat_list([principal.fill_null("")])
    if not others:
        return first
    return pl.concat_list([first, pl.concat_list(others).list.drop_nulls()])


def _proc_from_wide(cells: list[pl.Expr]) -> pl.Expr:
    """The non-empty procedure cells in column order (principal first); no columns gives [].

    Unlike diagnoses, an empty principal procedure does not keep a '' slot: a case
    whose principal procedure cell is blank but whose other procedure cells are not
    keeps those other procedures, and the first of them is then treated as principal.
    """
    if not cells:
        return pl.lit([], dtype=pl.List(pl.String))
    return pl.concat_list(cells).list.drop_nulls()


def _join_list_columns(df: pl.DataFrame) -> pl.DataFrame:
    list_columns = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.List)]
    if not list_columns:
        return df
    # An empty list becomes an empty cell, not a quoted "" (which reads back as text).
    return df.with_columns(
        pl.when(pl.col(name).list.len() > 0).then(_as_text(pl.col(name), df.schema[name]).list.join("|")).alias(name)
        for name in list_columns
    )


def output_format(path: str | Path) -> str:
    """The suffix of a results file (.csv, .parquet/.pq, .xlsx); InputError for any other."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".xlsx", *_PARQUET_EXTENSIONS):
        raise InputError(f"cannot write {path}: unknown extension {path.suffix!r}; use .csv, .parquet or .xlsx")
    return suffix


class ResultSink:
    """Writes result batches to one file as they come, so a run never holds all results.

    CSV and Parquet are written incrementally; Excel needs the whole sheet, so its batches are
    collected and written on close.  Batches go to a temporary file beside the target, which
    replaces it on a clean close; leaving the `with` block by an exception (Ctrl-C and SIGTERM
    included) removes it (grouper.outputs.atomic_output).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.suffix = output_format(self.path)
        self._parquet = None
        self._csv = None
        self._excel: list[pl.DataFrame] = []
        self._excel_rows = 0
        self._atomic = atomic_output(self.path)
        self._tmp = self._atomic.__enter__()

    def write(self, batch: pl.DataFrame) -> None:
        if self.suffix == ".csv":
            if self._csv is None:
                self._csv = self._tmp.open("wb")
                _join_list_columns(batch).write_csv(self._csv)
            else:
                _join_list_columns(batch).write_csv(self._csv, include_header=False)
        elif self.suffix == ".xlsx":
            self._excel_rows += batch.height
            if self._excel_rows >= _EXCEL_MAX_ROWS:
                raise InputError(
                    f"{self._excel_rows:,} rows or more do not fit in one Excel sheet "
                    f"(max {_EXCEL_MAX_ROWS - 1:,}); write .csv or .parquet instead"
                )
            self._excel.append(batch)
        else:
            import pyarrow.parquet as pq

            table = batch.to_arrow()
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self._tmp, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))

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
            self._close_writers()
            if self.suffix == ".xlsx" and self._excel:
                _join_list_columns(pl.concat(self._excel)).write_excel(self._tmp)
        except BaseException as exc:
            self._atomic.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._atomic.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the temporary file; the target is left as it was."""
        self._close_writers()
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
