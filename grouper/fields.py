"""Settlement fields of the input (医疗保障基金结算清单): parsing, validation, carry-through.

`grouper.io` reads the raw columns (``settlement=True``) with the input's own dtype; this module
turns them into the canonical types of the pay1/pay2/dip contract:

    hospital          String   定点医疗机构编码, stripped
    hospital_level    Int8     3 / 2 / 1 from 三级/二级/一级 (三级甲等, 三甲, 3级 ...) or 3/2/1
    insurance         String   "employee" (310, 职工...), "resident" (390, 居民...), other codes as given
    cost, fund_paid   Int64    fen. Text is yuan: ``¥``/``￥``, blanks and a trailing 元 are tolerated,
                               thousands separators only in groups of three (``1,234.50``); one comma
                               before one or two final digits is a decimal comma (``1234,50`` = 1,234.50);
                               at most two decimals (more only when they are zeros); anything else is
                               malformed (money is never rounded from text). Integer columns are whole
                               yuan in a raw export; in a grouped file (as `grouper group` writes it)
                               they are fen. Float or decimal columns are yuan, read from their decimal
                               form and rounded half away from zero to the fen.
    admission_date,
    discharge_date    Date     2024-01-05, 2024/1/5, 2024.1.5, 2024年1月5日, 20240105 (a time after
                               the date, ``20240105143000`` included, is dropped), Excel serial day
                               numbers (5 digits), Date/Datetime columns
    patient_id        String   个人编码 / 证件号码
    special_review    Boolean  1/0, 是/否, true/false, y/n, yes/no, t/f; false when absent, empty or
                               unreadable (an unreadable flag is reported)

plus, typed, the grouping fields that payment needs: ``sex`` Int8, ``age``, ``age_days``, ``los``,
``discharge`` Int32 (null when missing or unreadable: grouping validation already reports those) and
``dept`` String.

A value that cannot be read becomes null and gets a problem (reason ``malformed_<field>``, detail =
the value as written); ``implausible_cost`` (negative money) and ``implausible_dates`` (discharge
before admission) are reported too. These checks are warnings by default (they do not affect
grouping); a scheme may raise one to ``error`` with ``validate malformed_cost = error``, and the case is
then ``invalid`` with that reason (unless it already was invalid for an earlier reason). No row is ever
dropped.
"""
from __future__ import annotations

import polars as pl

from . import io
from .engine import ir
from .engine.encode import SEX_WORDS, _parse_ints
from .validate import level_of

SETTLEMENT_COLUMNS = io.SETTLEMENT_COLUMNS
GROUPING_CARRIED = ("sex", "age", "age_days", "los", "discharge", "dept")
CARRIED_COLUMNS = (*SETTLEMENT_COLUMNS, *GROUPING_CARRIED)
RESULT_COLUMNS = ("id", "status", "mdc", "adrg", "drg", "reason", "warnings")
GROUPED_COLUMNS = (*RESULT_COLUMNS, *CARRIED_COLUMNS)
MONEY_COLUMNS = ("cost", "fund_paid")
DATE_COLUMNS = ("admission_date", "discharge_date")

CARRIED_SCHEMA: dict[str, pl.DataType] = {
    "hospital": pl.String, "hospital_level": pl.Int8, "insurance": pl.String,
    "cost": pl.Int64, "fund_paid": pl.Int64,
    "admission_date": pl.Date, "discharge_date": pl.Date,
    "patient_id": pl.String, "special_review": pl.Boolean,
    "sex": pl.Int8, "age": pl.Int32, "age_days": pl.Int32, "los": pl.Int32, "discharge": pl.Int32,
    "dept": pl.String,
}

INSURANCE_CODES = {"310": "employee", "390": "resident"}
TRUE_WORDS = ("1", "true", "t", "y", "yes", "是")
FALSE_WORDS = ("0", "false", "f", "n", "no", "否")
EXCEL_EPOCH = "1899-12-30"  # Excel's day 0 in the (1900, Lotus-compatible) date system

PROBLEM_SCHEMA = {"row": pl.UInt32, "reason": pl.String, "level": pl.String, "detail": pl.String}


def _text(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Stripped text, empty → null (numbers as io reads them: 12.0 → "12")."""
    value = io._as_text(expr, dtype).str.strip_chars()
    return pl.when(value != "").then(value)


def money_fen(expr: pl.Expr, dtype: pl.DataType, integers: str = "yuan") -> pl.Expr:
    """Money in fen (Int64), see the module doc: text and decimals are yuan read exactly; floats are
    yuan read from their shortest decimal form, half up (away from zero) to the fen; integers are
    yuan, or fen when `integers = "fen"` (a grouped file written by grouper, whose money is Int64 fen)."""
    if dtype.is_integer():
        return expr.cast(pl.Int64) if integers == "fen" else expr.cast(pl.Int64) * 100
    if dtype.is_float() or dtype.is_decimal():
        return _decimal_text_fen(expr.cast(pl.String))
    text = _text(expr, dtype).str.replace_all(r"[¥￥\s]", "").str.strip_suffix("元").str.replace_all("，", ",")
    # thousands separators only in groups of three ("1,234.50"); "1234,50" is a decimal comma
    grouped = text.str.contains(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?$")
    decimal_comma = text.str.contains(r"^[-+]?\d+,\d{1,2}$")
    text = (pl.when(grouped).then(text.str.replace_all(",", ""))
            .when(decimal_comma).then(text.str.replace(",", ".", literal=True))
            .otherwise(text))
    parts = text.str.extract_groups(r"^([-+]?)(\d{1,15})(?:\.(\d{0,2})0*)?$")
    whole = parts.struct.field("2").cast(pl.Int64, strict=False)
    cents = parts.struct.field("3").fill_null("").str.pad_end(2, "0").cast(pl.Int64, strict=False)
    sign = pl.when(parts.struct.field("1") == "-").then(-1).otherwise(1)
    return (whole * 100 + cents) * sign


def _decimal_text_fen(text: pl.Expr) -> pl.Expr:
    """A number written in decimal ("1234.565", as Polars writes a float: its shortest round-trip
    form) → fen, half up (away from zero) on the third decimal; exponent forms and more than 15
    whole digits → null (no plausible amount)."""
    parts = text.str.extract_groups(r"^(-?)(\d{1,15})(?:\.(\d*))?$")
    whole = parts.struct.field("2").cast(pl.Int64, strict=False)
    decimals = parts.struct.field("3").fill_null("").str.pad_end(3, "0")
    cents = decimals.str.slice(0, 2).cast(pl.Int64, strict=False)
    up = (decimals.str.slice(2, 1).cast(pl.Int64, strict=False) >= 5).cast(pl.Int64)
    sign = pl.when(parts.struct.field("1") == "-").then(-1).otherwise(1)
    return (whole * 100 + cents + up) * sign


def yuan_decimal(expr: pl.Expr) -> pl.Expr:
    """Fen (Int64) → yuan as Decimal(38, 2), exactly: how a raw file that grouper writes (a synthetic
    history) stores money in Parquet, so that a reader cannot take it for fen or for whole yuan."""
    return expr.cast(pl.Decimal(38, 2)).truediv(100).cast(pl.Decimal(38, 2))


def fen_text(fen: int) -> str:
    """Integer fen as yuan text with thousands separators and two decimals: -123456 → "-1,234.56"."""
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100:,}.{abs(fen) % 100:02d}"


def yuan_text(expr: pl.Expr) -> pl.Expr:
    """Fen (Int64) → yuan with exactly two decimals, e.g. 123450 → "1234.50", -5 → "-0.05"."""
    magnitude = expr.abs()
    sign = pl.when(expr < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return pl.format("{}{}.{}", sign, magnitude // 100, (magnitude % 100).cast(pl.String).str.zfill(2))


def parse_date(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """A Date from the spellings of the module doc; null when it is not a real date."""
    if dtype == pl.Date:
        return expr
    if isinstance(dtype, pl.Datetime):
        return expr.dt.date()
    text = _text(expr, dtype)
    separated = text.str.extract_groups(r"^(\d{4})\s*[-/.年]\s*(\d{1,2})\s*[-/.月]\s*(\d{1,2})\s*日?(?:[ T].*)?$")
    compact = text.str.extract_groups(r"^(\d{4})(\d{2})(\d{2})(?:\d{6})?$")

    def iso(groups: pl.Expr) -> pl.Expr:
        return pl.format("{}-{}-{}", groups.struct.field("1"), groups.struct.field("2").str.zfill(2),
                         groups.struct.field("3").str.zfill(2)).str.to_date("%Y-%m-%d", strict=False)

    serial = text.str.extract(r"^(\d{5})(?:\.\d+)?$", 1).cast(pl.Int64, strict=False)
    from_serial = pl.lit(EXCEL_EPOCH).str.to_date() + pl.duration(days=serial)
    return pl.coalesce(iso(separated), iso(compact), pl.when(serial.is_not_null()).then(from_serial))


def parse_level(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    text = _text(expr, dtype)
    return (pl.when(text.str.contains(r"^(?:三|3)")).then(3)
            .when(text.str.contains(r"^(?:二|2)")).then(2)
            .when(text.str.contains(r"^(?:一|1)")).then(1)
            .otherwise(None).cast(pl.Int8))


def parse_insurance(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    text = _text(expr, dtype)
    return (pl.when(text.is_in(list(INSURANCE_CODES)))
            .then(text.replace_strict(INSURANCE_CODES, default=None))
            .when(text.str.contains("职工") | (text.str.to_lowercase() == "employee")).then(pl.lit("employee"))
            .when(text.str.contains("居民") | (text.str.to_lowercase() == "resident")).then(pl.lit("resident"))
            .otherwise(text))


def parse_flag(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    """Boolean; absent/empty → false, unreadable → null."""
    if dtype == pl.Boolean:
        return expr.fill_null(False)
    text = _text(expr, dtype).str.to_lowercase()
    return (pl.when(text.is_null()).then(False)
            .when(text.is_in(TRUE_WORDS)).then(True)
            .when(text.is_in(FALSE_WORDS)).then(False)
            .otherwise(None))


def _int(expr: pl.Expr, dtype: pl.DataType, out: pl.DataType) -> pl.Expr:
    if dtype.is_integer():
        return expr.cast(out, strict=False)
    return _parse_ints(_text(expr, dtype)).cast(out, strict=False)


def _sex(expr: pl.Expr, dtype: pl.DataType) -> pl.Expr:
    text = _text(expr, dtype)
    return pl.coalesce(_int(text, pl.String, pl.Int8),
                       text.replace_strict(SEX_WORDS, default=None, return_dtype=pl.Int8))


def _field_exprs(name: str, col: pl.Expr, dtype: pl.DataType, integer_money: str) -> tuple[pl.Expr, pl.Expr | None]:
    """(the typed value of one carried field, its ``_bad_<field>`` flag or None): functions of that column alone."""
    if name in MONEY_COLUMNS:
        value = money_fen(col, dtype, integer_money)
    elif name in DATE_COLUMNS:
        value = parse_date(col, dtype)
    elif name == "hospital_level":
        value = parse_level(col, dtype)
    elif name == "insurance":
        value = parse_insurance(col, dtype)
    elif name == "special_review":
        value = parse_flag(col, dtype)
    elif name == "sex":
        value = _sex(col, dtype)
    elif name in ("age", "age_days", "los", "discharge"):
        value = _int(col, dtype, pl.Int32)
    else:
        value = _text(col, dtype)
    bad = None
    if name in MALFORMED:
        # a value is written unless null or blank text (only text can be blank)
        written = (pl.lit(False) if dtype == pl.Boolean else _text(col, dtype).is_not_null() if dtype == pl.String
                   else col.is_not_null())
        bad = (written & value.is_null()).alias(f"_bad_{name}")
    if name == "special_review":
        value = value.fill_null(False)  # unreadable: reported, and not a special-review case
    return value.cast(CARRIED_SCHEMA[name]).alias(name), bad


# Parsed through their distinct values when they have few (the usual case for text exports: a few
# hundred dates, levels, ages): the parsing rules are regexes, the lookup is one hash pass.
_PARSED_AS_TEXT = ("hospital_level", "insurance", "special_review", "sex")


def _by_distinct(series: pl.Series, exprs: list[pl.Expr]) -> pl.DataFrame | None:
    """`series.to_frame().select(exprs)`, worked out once per distinct value and gathered back to
    the rows (the same frame: each expression is a function of the value alone); None when the
    values are too varied for that to pay."""
    distinct = series.unique().drop_nulls()
    if len(distinct) * 4 > len(series):
        return None
    if series.dtype == pl.String:
        codes = series.cast(pl.Enum(distinct)).to_physical()
    else:
        codes = series.replace_strict(distinct, pl.int_range(0, len(distinct), eager=True, dtype=pl.UInt32))
    values = pl.concat([distinct, pl.Series([None], dtype=series.dtype)]).to_frame(series.name).select(exprs)
    return values.select(pl.all().gather(codes.fill_null(len(distinct))))


def typed_fields(frame: pl.DataFrame, integer_money: str = "yuan",
                 columns: tuple[str, ...] = CARRIED_COLUMNS) -> pl.DataFrame:
    """The CARRIED_COLUMNS of `frame` (or the `columns` among them), parsed to CARRIED_SCHEMA (absent
    columns: null; special_review false), plus one Boolean ``_bad_<field>`` column per readable-or-not
    field (value written but unreadable). `integer_money`: what an integer money column holds — "yuan"
    (a raw export) or "fen" (a grouped file)."""
    schema = frame.schema
    parsed, exprs = [], []
    for name in columns:
        dtype = schema.get(name, pl.String)
        col = pl.col(name) if name in schema else pl.repeat(None, pl.len(), dtype=pl.String)  # frame's height
        value, bad = _field_exprs(name, col, dtype, integer_money)
        pair = [value] if bad is None else [value, bad]
        worth = name in schema and frame.height >= 1024 and (
            dtype == pl.String or (dtype.is_integer() and name in _PARSED_AS_TEXT))
        done = _by_distinct(frame[name], pair) if worth else None
        if done is None:
            exprs += pair
        else:
            parsed.append(done)
    rest = frame.with_columns(exprs).select(e.meta.output_name() for e in exprs)   # the frame's height, even with none
    return pl.concat([rest, *parsed], how="horizontal").select(
        *columns, *(f"_bad_{name}" for name in columns if name in MALFORMED))


# fields whose unreadable values are reported here (the grouping fields are reported by validation)
MALFORMED = ("hospital_level", "cost", "fund_paid", "admission_date", "discharge_date", "special_review")


def field_problems(frame: pl.DataFrame, typed: pl.DataFrame, levels: dict[str, str]) -> pl.DataFrame:
    """Problems (row, reason, level, detail) of the settlement fields; `levels`: reason → level ("off" skips)."""
    schema = frame.schema
    raw = frame.select(pl.col(name).alias(f"_raw_{name}") for name in MALFORMED if name in schema)
    both = pl.concat([raw, typed], how="horizontal").lazy().with_row_index("row")
    chunks = []

    def add(reason: str, condition: pl.Expr, detail: pl.Expr) -> None:
        level = levels.get(reason, "warning")
        if level == "off":
            return
        # the rows first: the detail text is made for the few rows reported, not for every row
        chunks.append(both.filter(condition.fill_null(False)).select(
            "row", pl.lit(reason).alias("reason"), pl.lit(level).alias("level"), detail.cast(pl.String).alias("detail")))

    for name in MALFORMED:
        if name in schema and f"_bad_{name}" in typed.columns:
            add(f"malformed_{name}", pl.col(f"_bad_{name}"), _text(pl.col(f"_raw_{name}"), schema[name]))
    for name in MONEY_COLUMNS:
        if name in typed.columns:
            add("implausible_cost", pl.col(name) < 0, yuan_text(pl.col(name)))
    add("implausible_dates", pl.col("discharge_date") < pl.col("admission_date"),
        pl.format("{} < {}", pl.col("discharge_date"), pl.col("admission_date")))
    if not chunks:
        return pl.DataFrame(schema=PROBLEM_SCHEMA)
    order = {code: i for i, code in enumerate(SETTLEMENT_REASONS)}
    return (pl.concat(pl.collect_all(chunks)).cast(PROBLEM_SCHEMA)
            .with_columns(pl.col("reason").replace_strict(order, return_dtype=pl.Int32).alias("_order"))
            .sort("row", "_order", maintain_order=True).drop("_order"))


SETTLEMENT_REASONS = (*(f"malformed_{name}" for name in MALFORMED), "implausible_cost", "implausible_dates")


def settlement_fields(cases: pl.DataFrame, columns: tuple[str, ...] = CARRIED_COLUMNS
                      ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """What carry_fields computes that does not depend on the scheme: (the typed `columns` of `cases`,
    their problems, every one at level "warning"). Work out once, carry under several schemes
    (grouper.versions.migration groups one year under two versions)."""
    typed_all = typed_fields(cases, columns=columns)
    return typed_all, field_problems(cases, typed_all, {})


def carry_fields(plan: ir.Plan, cases: pl.DataFrame, results: pl.DataFrame,
                 fields: tuple[pl.DataFrame, pl.DataFrame] | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Results (id, status, mdc, adrg, drg, reason, warnings) followed by the typed CARRIED_COLUMNS of
    `cases` (read with ``settlement=True``): a grouped batch. Returns (grouped, settlement problems).
    `fields`: `settlement_fields(cases, ...)` worked out before (then its columns are the ones carried).

    The settlement problems join the case's `warnings` (warning level) or, raised to error by the
    scheme, make a not-yet-invalid case invalid with that reason. Row count and order never change.
    """
    typed_all, found = fields if fields is not None else settlement_fields(cases)
    typed = typed_all.select(c for c in CARRIED_COLUMNS if c in typed_all.columns)
    # the scheme's level of each reason ("off": not reported)
    levels = {code: level_of(plan, code) for code in SETTLEMENT_REASONS}
    problems = (found.with_columns(pl.col("reason").replace_strict(levels, return_dtype=pl.String).alias("level"))
                .filter(pl.col("level") != "off"))
    if problems.height:
        warns = (problems.filter(pl.col("level") == "warning").group_by("row", maintain_order=True)
                 .agg(pl.col("reason").unique(maintain_order=True).alias("_new")))
        errors = (problems.filter(pl.col("level") == "error").unique("row", keep="first", maintain_order=True)
                  .select("row", pl.col("reason").alias("_error")))
        rows = pl.int_range(0, results.height, dtype=pl.UInt32, eager=True).to_frame("row")
        extra = rows.join(warns, on="row", how="left").join(errors, on="row", how="left").sort("row")
        if "warnings" not in results.columns:
            results = results.with_columns(pl.lit([], dtype=pl.List(pl.String)).alias("warnings"))
        newly_invalid = extra["_error"].is_not_null() & (results["status"] != "invalid")
        results = results.with_columns(
            pl.col("warnings").list.concat(extra["_new"].fill_null(pl.lit([], dtype=pl.List(pl.String)))),
            pl.when(newly_invalid).then(pl.lit("invalid")).otherwise(pl.col("status")).alias("status"),
            *(pl.when(newly_invalid).then(None).otherwise(pl.col(c)).alias(c) for c in ("mdc", "adrg", "drg")),
            pl.when(newly_invalid).then(extra["_error"]).otherwise(pl.col("reason")).alias("reason"),
        )
    return pl.concat([results, typed], how="horizontal"), problems


def for_text_output(grouped: pl.DataFrame) -> pl.DataFrame:
    """A grouped frame as written to CSV/Excel: money as yuan text with exactly two decimals."""
    present = [name for name in MONEY_COLUMNS if name in grouped.columns]
    return grouped.with_columns(yuan_text(pl.col(name)).alias(name) for name in present)


def typed_problem_rows(problems: pl.DataFrame, results: pl.DataFrame, cases: pl.DataFrame) -> pl.DataFrame:
    """Settlement problems in the shape of `group(..., problems=True)`: row, id, dept, reason, level, detail."""
    ids = results["id"].cast(pl.String)
    dept = cases["dept"].cast(pl.String) if "dept" in cases.columns else pl.Series([None] * cases.height, dtype=pl.String)
    return problems.select("row", ids.gather(problems["row"]).alias("id"), dept.gather(problems["row"]).alias("dept"),
                           "reason", "level", "detail")


__all__ = ["CARRIED_COLUMNS", "CARRIED_SCHEMA", "GROUPED_COLUMNS", "carry_fields", "for_text_output",
           "money_fen", "parse_date", "settlement_fields", "typed_fields", "yuan_text"]
