"""Settle a year of grouped cases under a policy: case types, points, point values, payments.

Stages, each one function over a whole Polars frame (so no result depends on row order):

    prepare → attach base points (a BaseSource) → coefficients and prices → classify
    → points → readmission → pay (point value, largest remainder) → hospitals, groups, pools

The frame keeps the input order throughout; decisions made on a subset go back by position.
Two steps run beside the main line in a background thread (Polars releases the GIL): the order
of stays for readmissions (`stay_order`, while cases are classified) and the hospital and group
tables (while the case table is written). The inner loops of the largest remainder and of the
readmission search are in the compiled kernel (ext/_settle_kernel.pyx; twin: _kernel_py.py).

**One engine for a frame or one case.** Each per-case rule (coefficient and price, the typing steps,
who pays, the points formulas, a source's per-case columns) is a builder over an `ops` namespace:
`POLARS` makes the expression the frame stages evaluate; `row_ops.RowOps` works the same builder out
on one case's values (`CasePricer`: the estimate of `grouper serve`, without a frame). The stages
that need the year's other cases (budget, point values, special review's cap, readmissions, the
largest remainder, the hospital tables) are the frame's only.

**The seam for other payment methods.** Only `BaseSource.attach` knows what a group is.
`DrgWeights` reads a weights table (`drg, weight[, mean]`): base points = RW × scale. A DIP
source (grouper/dip) gives each case its DIP group, its score as base points (`base_micro`) and the group's
mean cost; case classification, coefficients, point values, sharing bands, clearing and the
report are shared, and a policy file selects the source by `policy.method` ("points"/"rate"
use DRG weights; a DIP policy passes its own source to `settle`).

Exactness: no number that decides money is ever a binary float. Money is integer fen (Int64);
points are integer micro-points (10⁻⁶ point); policy numbers are read from the TOML as decimals
and kept as integers in fixed units (coefficients in 10⁻¹² — a product of two six-decimal
coefficients is exact —, thresholds, shares and factors in 10⁻⁶, prices in 10⁻⁴ fen per point);
products and quotients are worked out in 128-bit integers (Polars Int128) and rounded once. The
rounding rules, each stated where it is made:

- base points B = RW × scale (or a DIP score × its auxiliary factor): half up to the micro-point;
- a case's points = its formula (module `case_points`) on B, c = the coefficient, the cost ratio
  r = cost ÷ reference and the thresholds, worked out exactly, rounded half up to the micro-point
  once; B × c is itself rounded half up to the micro-point first wherever it appears (it is the
  normal case's points); the readmission factor multiplies the rounded points, half up again;
- the reference of the cost ratio: the group's mean cost (fen, from the weights table's yuan,
  half up to the fen), or the case's payment standard = B × c (micro-points) × the budget point
  value or base rate, half up to the fen; thresholds are compared exactly (cost × 10⁶ against
  threshold × 10⁶ × reference, in integers);
- 预算点值 (budget point value) = planned ÷ Σ standard micro-points, half up to 10⁻⁴ fen per point
  (10⁻⁶ yuan), the value every case uses, published as such (deterministic: integer sums);
- 结算点值 (settlement point value) = distributable ÷ points, published half up to 10⁻⁶ yuan (it
  is shown only: payments share the distributable budget by the largest remainder below);
- rate method: payment = micro-points × base rate, half up to the fen; a per-diem case is paid
  `per_day` yuan × days (× the coefficient when `cases.per_diem.coefficient`), half up to the fen.

Under the points method a pool's distributable budget D is shared in proportion to points by the
largest-remainder method in exact integer arithmetic (128-bit): each case gets ⌊points × D ÷ T⌋
fen, and the fen left over go one each to the cases with the largest remainders (ties: hospital,
then id, then row content), so Σ payments = D to the fen. Standards, sharing adjustments and
monthly prepayments are rounded half up to the fen, each on its own (a month's amount is summed
from the cases' parts in integer milli-fen, each half up).
"""
from __future__ import annotations

import datetime
import operator
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache, reduce
from typing import Protocol

import numpy as np
import polars as pl

from ..errors import InputError
from ..fields import fen_text
from ..reasons import STATUSES
from ..engine.kernel import companion
from . import _settle_kernel_py as _kernel_py
from .policy import Policy
from .row_ops import RowOps, Value, compare_products
from .row_ops import mul_div_half_up as mul_div
from .settle_codes import CASE_TYPES, PAID_BY, PAY, RULE, RULES, TYPE  # noqa: F401  (the outputs read them here too)

KERNEL = companion("_settle_kernel", _kernel_py)  # 128-bit shares, compiled when built

MICRO = 1_000_000  # points are kept as integer micro-points
COEF = 10**12      # a coefficient's unit: the product of two six-decimal coefficients stays exact
UNIT = 10**6       # thresholds, shares, factors (policy numbers have at most six decimals)
PRICE = 10**4      # a price (budget point value, base rate) is kept in 10⁻⁴ fen per point
MAX_COST = 10**12  # fen (10¹⁰ yuan): a larger case cost is refused (it would take its pool)
MAX_POINTS = 10**9  # base points of a group above this are refused (a weight or score gone wrong)

KNOWN_STATUSES = (*STATUSES, "ungrouped")  # "ungrouped": a DIP grouped file's case without a 病种
GROUP_PAID = ("normal", "high", "low", "incomplete", "transfer", "per_diem", "special_review")

# Columns the engine reads; the optional ones are filled with nulls (a rule needing them then never fires).
REQUIRED_COLUMNS = ("status", "drg", "hospital", "cost")
OPTIONAL_COLUMNS = {
    "id": pl.String, "adrg": pl.String, "hospital_level": pl.Int8, "insurance": pl.String,
    "admission_date": pl.Date, "discharge_date": pl.Date, "patient_id": pl.String,
    "special_review": pl.Boolean, "los": pl.Int32, "discharge": pl.String,
    "aux_factor": pl.Float64,  # DIP: the auxiliary catalogue's factor (grouper/dip)
}


class BaseSource(Protocol):
    """Where a case's base points come from (see the module docstring)."""

    def attach(self, cases: pl.DataFrame, extra: pl.DataFrame | None = None) -> pl.DataFrame:
        """Return `cases` with four columns added, and the columns of `extra` (further per-group
        columns keyed by `group`: the engine passes what the policy says of each group), looked up
        in the same pass (`join_groups(cases, table, extra)` does both):

        group        String   the payment group (DRG code, DIP code), null when the case has none
        rw           Float64  relative weight, shown per case and used for CMI (null when unknown)
        base_micro   Int64    base points B in micro-points: RW × scale (points method), RW (rate
                              method), or a DIP score, half up; null makes the case `excluded`
                              (rule `weights`)
        group_mean   Int64    the group's mean cost in fen, for ratio.reference = group_mean

        A source may also have `codes` (the groups it knows), for the check of policy lists.
        """
        ...

    def groups(self) -> pl.DataFrame:
        """The per-group table `attach` joins (`group` and the columns it gathers for a case)."""
        ...

    def case_rules(self, ops) -> dict:
        """The columns `attach` works out per case after the join (name → a builder's expression
        over `ops`, see grouper/payment/row_ops.py); {} when the join is all."""
        ...


def group_table(table: pl.DataFrame, extra: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per group: the columns of `table` and of `extra` (full join on `group`; a group listed
    twice in `table` is refused), the groups that are not blank: what `join_groups` gathers from."""
    duplicated = table.filter(pl.col("group").is_duplicated())["group"].unique().sort()
    if duplicated.len():
        raise InputError(f"the group table lists {', '.join(duplicated.head(5).to_list())} more than once: one row per group")
    if extra is not None:
        table = table.join(extra, on="group", how="full", coalesce=True, maintain_order="left_right")
    return table.filter(pl.col("group").is_not_null())  # a blank group matches no case


def join_groups(cases: pl.DataFrame, table: pl.DataFrame, extra: pl.DataFrame | None = None) -> pl.DataFrame:
    """`cases` with the columns of `table` (one row per `group`) and of `extra` if given, added as
    by left joins on `group`, in input order: each case's group becomes a position in one table
    (one pass over the group codes), and every column is gathered there."""
    table = group_table(table, extra)
    # a group not in the table points at a last row of nulls (a gather without null positions is faster);
    # the position is the code's index among the table's groups: an Enum cast (a third of a string join's time)
    padded = pl.concat([table, pl.DataFrame([[None]] * table.width, schema=table.schema)])
    position = (pl.col("group").cast(pl.Enum(table["group"].to_list()), strict=False).to_physical()
                .cast(pl.UInt32).fill_null(table.height))
    return (cases.with_columns(position.alias("_position"))
            .with_columns(pl.lit(padded[c]).gather(pl.col("_position")).alias(c) for c in table.columns if c != "group")
            .drop("_position"))


def point_value_in_force(policy: Policy, point_value) -> Decimal | None:
    """The point value an estimate prices with (yuan per point): the one given, else the policy's
    `points.budget_point_value`, else None."""
    value = point_value if point_value is not None else policy["points"]["budget_point_value"]
    return None if value is None else Decimal(value)


def point_price_e4(policy: Policy, point_value) -> int | None:
    """That point value as the engine's price: yuan × 10⁶ = fen × 10⁴ per point, half up."""
    value = point_value_in_force(policy, point_value)
    return None if value is None else half_up(value, UNIT)


@lru_cache(maxsize=4096)  # the policy's numbers, made again for every case priced alone (CasePricer)
def half_up(value: Decimal, unit: int = 1) -> int:
    """`value` × `unit` rounded half up (away from zero at .5) to an integer."""
    return int((Decimal(value) * unit).quantize(Decimal(1), rounding=ROUND_HALF_UP))


_THOUSANDS = re.compile(r"[-+]?[1-9]\d{0,2}(?:,\d{3})+(?:\.\d*)?")


def decimal_of(text) -> Decimal | None:
    """A number written in a table cell as an exact Decimal (None: blank); raises ValueError when
    unreadable. A comma is read only as a thousands separator in groups of three (`12,345.67`):
    `0,85` (a decimal comma) or `1,2345` is refused, never read as 85 or 12345."""
    if text is None or str(text).strip() == "":
        return None
    text = str(text).strip()
    if "," in text:
        if not _THOUSANDS.fullmatch(text):
            raise ValueError(text)
        text = text.replace(",", "")
    number = Decimal(text)
    if not number.is_finite():
        raise ValueError
    return number


@dataclass(frozen=True)
class DrgWeights:
    """Base points from a weights table: `drg, weight` (RW), optionally `mean` (yuan per case).

    The table is checked row by row (`origin` names it in errors): a blank DRG, a DRG listed
    twice, a weight that is blank, not a number, ≤ 0, not finite or making more than 10⁹ base
    points, and a mean that is not a positive number are refused with the row named. B = RW ×
    scale, half up to the micro-point; the mean is yuan, half up to the fen. Read from the
    table's text (a float column is taken as Polars writes it, shortest round-trip digits).
    """

    weights: pl.DataFrame
    scale: Decimal = Decimal(100)
    origin: str = "the weights table"
    los_column: str = "los_mean"

    @classmethod
    def read(cls, path, scale, los_column: str = "los_mean") -> "DrgWeights":
        """The weights table in file `path`: CSV, Parquet or Excel (see `read_weights`)."""
        return cls(read_weights(path), Decimal(scale), str(path), los_column)

    @property
    def codes(self) -> set[str]:
        return set(self.table()["group"].to_list())

    def table(self) -> pl.DataFrame:
        """group, rw, base_micro, group_mean and the LOS columns: one row per DRG (checked once; see the class doc)."""
        if "_table" not in self.__dict__:
            object.__setattr__(self, "_table", self._checked_table())  # frozen: the cache is set once
        return self.__dict__["_table"]

    def _checked_table(self) -> pl.DataFrame:
        w = self.weights
        if "drg" not in w.columns or "weight" not in w.columns:
            raise InputError(f"{self.origin}: a weights table needs columns drg and weight (it has {', '.join(w.columns)})")
        has_mean = "mean" in w.columns
        text = w.select(pl.col("drg").cast(pl.String), pl.col("weight").cast(pl.String),
                        (pl.col("mean") if has_mean else pl.lit(None)).cast(pl.String).alias("mean"))
        groups, rws, bases, means, seen = [], [], [], [], {}
        scale = Decimal(self.scale)
        for line, (drg, weight, mean) in enumerate(text.iter_rows(), 2):
            where = f"{self.origin}, line {line}"
            code = (drg or "").strip()
            if not code:
                raise InputError(f"{where}: the drg is blank")
            if code in seen:
                raise InputError(f"{where}: drg {code} is listed twice (first on line {seen[code]}); "
                                 "one weight per DRG")
            seen[code] = line
            try:
                rw = decimal_of(weight)
                if rw is None or rw <= 0 or rw * scale > MAX_POINTS:
                    raise ValueError
            except (ValueError, ArithmeticError):
                shown = "blank" if weight is None or not weight.strip() else repr(weight)
                raise InputError(f"{where}, drg {code}: weight {shown} is not a positive number "
                                 f"(at most {MAX_POINTS:,} base points)") from None
            try:
                fen = decimal_of(mean)
                if fen is not None and (fen <= 0 or fen * 100 >= MAX_COST):
                    raise ValueError
            except (ValueError, ArithmeticError):
                raise InputError(f"{where}, drg {code}: mean {mean!r} is not a positive amount in yuan") from None
            groups.append(code)
            rws.append(float(rw))
            bases.append(half_up(rw * scale, MICRO))
            means.append(None if fen is None else half_up(fen, 100))
        table = pl.DataFrame({"group": groups, "rw": rws, "base_micro": bases, "group_mean": means},
                             schema={"group": pl.String, "rw": pl.Float64, "base_micro": pl.Int64, "group_mean": pl.Int64})
        return table.with_columns(self._los_columns(w))

    def _los_columns(self, w: pl.DataFrame) -> list[pl.Series]:
        """The optional length-of-stay columns: `group_los` (the mean LOS of `los_column`, in 10⁻⁶
        day) for transfers; G-DRG limits `los_low`, `los_high` (days) and their per-day weights as
        micro-points per day (weight × scale, half up) for cases.outliers = "los_limits"."""
        wanted = {"group_los": (self.los_column, UNIT), "los_low": ("los_low", 1), "los_high": ("los_high", 1),
                  "los_low_micro": ("los_low_weight", MICRO * Decimal(self.scale)),
                  "los_high_micro": ("los_high_weight", MICRO * Decimal(self.scale))}
        out = []
        for name, (column, unit) in wanted.items():
            values = []
            texts = w[column].cast(pl.String).to_list() if column in w.columns else [None] * w.height
            for line, text in enumerate(texts, 2):
                try:
                    number = decimal_of(text)
                    if number is not None and not 0 < number < MAX_POINTS:
                        raise ValueError
                except (ValueError, ArithmeticError):
                    raise InputError(f"{self.origin}, line {line}: {column} {text!r} is not a positive number") from None
                values.append(None if number is None else half_up(number, unit))
            if any(v is not None for v in values):  # only the columns the table has (10⁷ cases: 80 MB each)
                out.append(pl.Series(name, values, dtype=pl.Int64))
        return out

    def attach(self, cases: pl.DataFrame, extra: pl.DataFrame | None = None) -> pl.DataFrame:
        return join_groups(cases.with_columns(pl.col("drg").alias("group")), self.table(), extra)

    def groups(self) -> pl.DataFrame:
        return self.table()

    def case_rules(self, ops) -> dict:
        return {}


def read_weights(path) -> pl.DataFrame:
    """A weights table file as read by every command that takes one (`settle`, `group`, `metrics`,
    `screen`, `serve`): the project's one table reader (CSV in UTF-8 or GBK, Parquet, Excel),
    every column as written; check it with `checked_weights`."""
    from pathlib import Path

    from ..io import _read_raw

    try:
        return _read_raw(Path(path), encoding=None, sheet=None)
    except OSError as exc:
        raise InputError(f"cannot read the weights table {path}: {exc.strerror or exc}") from None


def checked_weights(weights: pl.DataFrame, origin: str = "the weights table") -> pl.DataFrame:
    """`weights` once it has passed the checks of `DrgWeights` (a blank or repeated DRG, a weight
    that is not a positive finite number, a mean or LOS column that is not positive: InputError
    naming `origin` and the line); the one check of a weights table, whatever reads it. The DRG
    codes come back stripped, as the check reads them, so that ` AA11` in a file joins `AA11`."""
    DrgWeights(weights, Decimal(1), origin).table()
    return weights.with_columns(pl.col("drg").cast(pl.String).str.strip_chars())


class Settlement:
    """The results of `settle`: `cases` (input order), `hospitals`, `groups`, `pools`, `policy`, and
    `checks` (grouper.payment.settle_checks.Checks: the settlement's own end-of-run checks; `warnings`
    are the messages of those a payer should look at).

    The hospital and group tables may still be in the making in a background thread when
    `settle` returns (so that writing the case table overlaps with them); reading them waits.
    """

    def __init__(self, cases: pl.DataFrame, hospitals: pl.DataFrame | Future, groups: pl.DataFrame | Future,
                 pools: pl.DataFrame, policy: Policy, checks=None):
        self.cases, self.pools, self.policy, self.checks = cases, pools, policy, checks
        self._hospitals, self._groups = hospitals, groups

    @property
    def warnings(self) -> tuple[str, ...]:
        return () if self.checks is None else tuple(self.checks.warnings)

    @property
    def hospitals(self) -> pl.DataFrame:
        if isinstance(self._hospitals, Future):
            self._hospitals = self._hospitals.result()
        return self._hospitals

    @property
    def groups(self) -> pl.DataFrame:
        if isinstance(self._groups, Future):
            self._groups = self._groups.result()
        return self._groups


# -- codes ----------------------------------------------------------------------------------
CODE = pl.UInt8   # the dtype of the case codes (grouper.payment.settle_codes) while settling


class _PolarsOps:
    """The `ops` of a frame: a rule's builder (`ops=POLARS`, the default) makes a Polars expression;
    with `row_ops.RowOps` the same builder is worked out on one case (see grouper/payment/row_ops.py)."""

    col, lit, when = staticmethod(pl.col), staticmethod(pl.lit), staticmethod(pl.when)
    coalesce, min_horizontal = staticmethod(pl.coalesce), staticmethod(pl.min_horizontal)

    @staticmethod
    def deferred(make):
        """A rule's expression where a row would work it out only if its when-test holds: made now."""
        return make()


POLARS = _PolarsOps()


def _is_type(*names: str, ops=POLARS) -> pl.Expr:
    return ops.col("case_type").is_in([TYPE[n] for n in names])


def _paid(name: str, ops=POLARS) -> pl.Expr:
    return ops.col("paid_by") == PAY[name]


def _named(column: str, names: tuple[str, ...]) -> pl.Expr:
    """A code column as an Enum of its names."""
    return pl.lit(pl.Series(names, dtype=pl.Enum(list(names)))).gather(pl.col(column)).alias(column)


# -- helpers --------------------------------------------------------------------------------

def _level_expr(table: dict, level: pl.Expr, unit: int, ops=POLARS) -> pl.Expr:
    """Per-level lookup as an exact integer (the value × `unit`): the level's own value, else the
    `default` entry, else null."""
    default = table.get("default")
    chain = ops
    for key, value in table.items():
        if key != "default":
            chain = chain.when(level == int(key)).then(ops.lit(half_up(value, unit), pl.Int64))
    otherwise = ops.lit(None if default is None else half_up(default, unit), pl.Int64)
    return otherwise if chain is ops else chain.otherwise(otherwise)


def _wide(expr) -> pl.Expr:
    """`expr` as Int128 (a row's Value is an exact Python int already)."""
    if isinstance(expr, Value):
        return expr
    return (expr if isinstance(expr, pl.Expr) else pl.lit(expr)).cast(pl.Int128)


def _div_half_up(numerator: pl.Expr, denominator: pl.Expr | int) -> pl.Expr:
    """numerator ÷ denominator (Int128, denominator > 0) rounded half up, as Int64 (null when it does not fit)."""
    d = denominator if isinstance(numerator, Value) else _wide(denominator)
    return ((numerator * 2 + d) // (d * 2)).cast(pl.Int64, strict=False)


def _shown(integers: pl.Expr, unit: int) -> pl.Expr:
    """Exact integers in 1/unit as Float64 for the outputs: the double nearest the decimal (a plain
    division can land one bit off, which CSV then prints as 321.25309999999996)."""
    return (integers / unit).round(len(str(unit)) - 1)


def _one_of(column: str, values, ops=POLARS) -> pl.Expr:
    """`column` is one of `values` (strings): a few equality tests are a third of `is_in`'s time (no hashing)."""
    values = list(values)
    if len(values) > 8:
        return ops.col(column).is_in(values)
    return reduce(operator.or_, (ops.col(column) == v for v in values), ops.lit(False))


def _by_pool(values: dict[str, int | None]) -> pl.Expr:
    """Int64 per case: the value of its pool (null: none); a when-chain over the few pools, not a string join."""
    chain = pl
    for pool, value in values.items():
        chain = chain.when(pl.col("pool") == pool).then(pl.lit(value, pl.Int64))
    return pl.lit(None, pl.Int64) if chain is pl else chain.otherwise(pl.lit(None, pl.Int64))


def _ints(frame: pl.DataFrame, value) -> np.ndarray:
    """A column (name or Series) or a constant as an Int64 array for the kernel, null as −1."""
    if isinstance(value, int):  # a read-only view of one value (no array of 10⁷ copies)
        return np.broadcast_to(np.int64(value), (frame.height,))
    series = frame[value] if isinstance(value, str) else value
    if series.dtype != pl.Int64:
        series = series.cast(pl.Int64)
    if series.null_count():
        series = series.fill_null(-1)
    return np.ascontiguousarray(series.to_numpy())


def _mul_div(frame: pl.DataFrame, a, b, d, name: str) -> pl.Series:
    """a × b ÷ d per row, half up, exactly (the kernel's 128-bit loop); null where an input is null
    or negative, d ≤ 0, or the result does not fit."""
    out = np.empty(frame.height, np.int64)
    KERNEL.mul_div_half_up(_ints(frame, a), _ints(frame, b), _ints(frame, d), out)
    result = pl.Series(name, out)
    return pl.select(pl.when(result >= 0).then(result).alias(name)).to_series()


def _compare(frame: pl.DataFrame, a, b, c, d, name: str) -> pl.Series:
    """The sign of a × b − c × d per row (Int8: −1, 0, 1), exactly; null where an input is null or negative."""
    out = np.empty(frame.height, np.int8)
    KERNEL.compare_products(_ints(frame, a), _ints(frame, b), _ints(frame, c), _ints(frame, d), out)
    result = pl.Series(name, out)
    return pl.select(pl.when(result != 2).then(result).alias(name)).to_series()


def _on_rows(frame: pl.DataFrame, where: pl.Expr, expr: pl.Expr, base: pl.Series) -> pl.Series:
    """`base` with `expr` worked out only on the rows where `where` holds (a formula for a few rows
    is not computed for ten million)."""
    rows = frame.lazy().filter(where.fill_null(False)).select("row", expr.alias("_value")).collect()
    return base.scatter(rows["row"], rows["_value"]) if rows.height else base


def _to_fen(value: Decimal) -> int:
    return half_up(value)


def _scatter(height: int, rows: pl.Series, values, dtype, default) -> pl.Series:
    """A column of `height` rows: `values` at positions `rows`, `default` elsewhere (the frame is in row order)."""
    out = np.full(height, default, dtype=dtype)
    out[rows.to_numpy()] = values if np.isscalar(values) else np.asarray(values)
    return pl.Series(out)


# -- stages ---------------------------------------------------------------------------------

def prepare(cases: pl.DataFrame) -> pl.DataFrame:
    """Check and cast the columns the engine reads; add `row` (input position).

    Refused (InputError naming the row, its id and the field): a status that is not a grouping
    status (blank, "GROUPED", "grouped "), a blank hospital, a cost that is not an integer
    number of fen or is 10¹⁰ yuan or more, and a case id given twice (it would be paid twice).
    A negative cost is not refused: the case is invalid (rule `cost`) and paid nothing.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in cases.columns]
    if missing:
        raise InputError(f"cases to settle need columns {', '.join(missing)} (a grouped file with the settlement fields)")
    exprs = [pl.col("status").cast(pl.String), pl.col("drg").cast(pl.String), pl.col("hospital").cast(pl.String),
             pl.col("cost").cast(pl.Int64, strict=False)]
    for name, dtype in OPTIONAL_COLUMNS.items():
        if name in cases.columns:
            source = pl.col(name)
            if name == "discharge" and cases.schema[name].is_integer():
                dtype = pl.Int32  # compared with the policy's codes as numbers: no string per case
            elif dtype == pl.Boolean and cases.schema[name] != pl.Boolean:
                source = source.cast(pl.String).str.to_lowercase().is_in(["1", "true", "t", "y", "yes", "是"])
            exprs.append(source.cast(dtype, strict=False).alias(name))
        else:
            exprs.append(pl.lit(None, dtype).alias(name))
    out = cases.select(exprs).with_row_index("row")
    if "id" not in cases.columns:
        out = out.with_columns((pl.col("row") + 1).cast(pl.String).alias("id"))
    known = KNOWN_STATUSES
    checks = {
        "status": (~pl.col("status").is_in(known).fill_null(False), f"is not a grouping status ({', '.join(known)})"),
        "hospital": (pl.col("hospital").is_null() | pl.col("hospital").str.contains(r"^\s*$"),
                     "is blank: every case is paid to a hospital"),
        "cost": (pl.col("cost") >= MAX_COST, f"is {fen_text(MAX_COST)} yuan or more: not a plausible case cost"),
    }
    if cases.schema["cost"] not in (pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.UInt32, pl.UInt16, pl.UInt8, pl.Null):
        unreadable = cases["cost"].is_not_null() & out["cost"].is_null()
        checks["unreadable cost"] = (pl.lit(unreadable), "is not an amount in fen (read the file with the project's reader)")
    # one pass to see whether anything is wrong; the rows are looked for only then
    found = out.select(*(test.any().alias(key) for key, (test, _) in checks.items()),
                       (pl.col("id").hash(0x1D).n_unique() < pl.len()).alias("id")).row(0, named=True)  # exact check below
    for key, (test, problem) in checks.items():
        if found[key]:
            _refuse_rows(out, test, key.split()[-1], problem)
    if found["id"]:  # two 64-bit hashes alike: look at the ids themselves
        _refuse_rows(out, pl.col("id").is_duplicated(), "id", "is given to more than one case (each would be paid)")
    return out.with_columns(pl.col("special_review").fill_null(False))


def _refuse_rows(frame: pl.DataFrame, bad: pl.Expr, field: str, problem: str) -> None:
    """Raise an InputError naming the first rows where `bad` holds (row = 1-based data row)."""
    found = frame.filter(bad.fill_null(False)).select("row", "id", pl.col(field).alias("_value"))
    if found.height:
        shown = "; ".join(f"row {r + 1} (id {i}): {field} {v!r}" for r, i, v in found.head(3).iter_rows())
        more = f" (and {found.height - 3:,} more)" if found.height > 3 else ""
        raise InputError(f"cannot settle: {shown}{more} {problem}")


def policy_groups(policy: Policy) -> pl.DataFrame:
    """What the policy says of the groups it lists, one row per group, so that each case needs one
    lookup (made with the base points, see `BaseSource.attach`) instead of one string test per
    rule: `_basic` (基础病组), `_group_coefficient` (DRG 差异系数, in 10⁻¹²), `_per_day` (床日: the
    policy's number × 10⁶, i.e. micro-points per day, or under the rate method 10⁻⁴ fen per day)
    and `_excluded_group` (listed in cases.exclusions.drgs). `_policy_defaults` fills the others.
    `_group_coefficient` and `_excluded_group` are left out when the policy has no such list (only
    the rules that read them ask for them: 10⁷ cases would carry two columns of defaults)."""
    v = policy.values
    basic = set(v["basic_groups"]["drgs"] or ())
    coefficients = {k: half_up(x, COEF) for k, x in (v["coefficients"]["drgs"] or {}).items()}
    per_day = {k: half_up(x, UNIT) for k, x in (v["cases"]["per_diem"]["per_day"] or {}).items()}
    excluded = set(v["cases"]["exclusions"]["drgs"] or ())
    codes = sorted(basic | set(coefficients) | set(per_day) | excluded)
    columns = {"group": (codes, pl.String), "_basic": ([c in basic for c in codes], pl.Boolean),
               "_per_day": ([per_day.get(c) for c in codes], pl.Int64)}
    if coefficients:
        columns["_group_coefficient"] = ([coefficients.get(c) for c in codes], pl.Int64)
    if excluded:
        columns["_excluded_group"] = ([c in excluded for c in codes], pl.Boolean)
    return pl.DataFrame({name: values for name, (values, _) in columns.items()},
                        schema={name: dtype for name, (_, dtype) in columns.items()})


# A group the policy does not list: not basic, not excluded, coefficient 1.
GROUP_DEFAULTS = {"_basic": False, "_excluded_group": False, "_group_coefficient": COEF}


def _policy_defaults(frame: pl.DataFrame, table: pl.DataFrame) -> pl.DataFrame:
    """The policy's group columns for groups it does not list: not basic, coefficient 1, no
    per-diem points, not excluded (joined here if the source did not take `extra`)."""
    if "_basic" not in frame.columns:
        frame = join_groups(frame, table)
    return frame.with_columns(pl.col(c).fill_null(value) for c, value in GROUP_DEFAULTS.items() if c in frame.columns)


def _los_defaults(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """The LOS columns a transfer or G-DRG rule reads, null where the source has none."""
    cases = policy["cases"]
    if not cases["transfer"]["discharge"] and cases["outliers"] != "los_limits":
        return frame
    return frame.with_columns(pl.lit(None, pl.Int64).alias(c) for c in LOS_COLUMNS if c not in frame.columns)


LOS_COLUMNS = ("group_los", "los_low", "los_high", "los_low_micro", "los_high_micro")


def _prices(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Coefficient (`coef`, Int64 in 10⁻¹²), pool and (rate method) `price_e4`, the base rate in
    10⁻⁴ fen per unit of RW (= yuan × 10⁶), per case (the rules: `_price_rules`)."""
    return frame.with_columns(expr.alias(name) for name, expr in
                              _price_rules(policy, "fixed_coefficient" in frame.columns).items())


def _price_rules(policy: Policy, fixed_coefficient: bool, ops=POLARS) -> dict[str, pl.Expr]:
    """coef, pool, price_level and (rate method) price_e4 of a case; `fixed_coefficient`: the
    source gives some cases their own coefficient (DIP 基层病种), which wins."""
    v = policy.values
    basic = ops.col("_basic")
    level = ops.when(basic).then(ops.lit(v["basic_groups"]["level"], pl.Int8)).otherwise(ops.col("hospital_level"))
    coef = _level_expr(v["coefficients"]["level"], level, COEF, ops)
    hospitals = v["coefficients"]["hospitals"]
    if hospitals:
        own = ops.col("hospital").replace_strict({k: half_up(x, COEF) for k, x in hospitals.items()}, default=None,
                                                 return_dtype=pl.Int64)
        coef = ops.when(basic | own.is_null()).then(coef).otherwise(own)
    if fixed_coefficient:
        coef = ops.coalesce(ops.col("fixed_coefficient"), coef)
    if v["coefficients"]["drgs"]:  # two six-decimal factors: the product is exact in 10⁻¹²
        coef = (_wide(coef) * _wide(ops.col("_group_coefficient")) // COEF).cast(pl.Int64)
    annual = v["budget"]["annual"] or {}
    if "all" in annual:
        pool = ops.lit("all")
    elif annual:
        pool = ops.when(_one_of("insurance", annual, ops)).then(ops.col("insurance"))
    else:
        pool = ops.col("insurance").fill_null("all")
    rules = {"coef": coef, "pool": pool.cast(pl.String), "price_level": level}
    if policy.method == "rate":
        rates = v["rate"]["base_rate"]
        rate = _level_expr(rates["all"], level, UNIT, ops) if "all" in rates else ops.lit(None, pl.Int64)
        for insurance, table in rates.items():  # a named insurance type wins over `all`
            if insurance != "all":
                rate = ops.when(ops.col("insurance") == insurance).then(_level_expr(table, level, UNIT, ops)).otherwise(rate)
        rules["price_e4"] = rate
    return rules


def _decide(frame: pl.DataFrame, steps: list[tuple[pl.Expr, str, str]]) -> pl.DataFrame:
    """Type the untyped cases (`case_type` null or absent) by the first step whose test holds:
    sets `case_type` and `rule` (codes); a case no step holds for stays untyped."""
    if not steps:
        return frame if "case_type" in frame.columns else frame.with_columns(pl.lit(None, CODE).alias("case_type"),
                                                                             pl.lit(None, CODE).alias("rule"))
    step = pl
    for n, (test, _, _) in enumerate(steps):
        step = step.when(test.fill_null(False)).then(pl.lit(n, CODE))
    kinds = pl.Series([TYPE[kind] for _, kind, _ in steps], dtype=CODE)
    keys = pl.Series([RULE[key] for _, _, key in steps], dtype=CODE)
    frame = frame.with_columns(step.otherwise(pl.lit(None, CODE)).alias("_step"))
    kind, key = pl.lit(kinds).gather(pl.col("_step")), pl.lit(keys).gather(pl.col("_step"))
    if "case_type" in frame.columns:
        kind, key = pl.coalesce(pl.col("case_type"), kind), pl.coalesce(pl.col("rule"), key)
    return frame.with_columns(kind.alias("case_type"), key.alias("rule")).drop("_step")


def classify_fixed(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `case_type` and `rule` (codes: the type, and the policy key that decided it) where the cost
    ratio plays no part.

    In order, the first that holds: invalid (grouping status; unreadable cost; no coefficient or
    base rate for the hospital level) → ungrouped (no_adrg, ungroupable) → excluded (no base
    points: rule `weights`; points method: no budget pool for the insurance type; the
    exclusions) → per_diem. Other cases stay untyped (null) for `classify_by_ratio`.
    """
    return _decide(frame, _fixed_steps(policy))


def _fixed_steps(policy: Policy, ops=POLARS) -> list[tuple[pl.Expr, str, str]]:
    """The steps of `classify_fixed`, in order: (test, case type, rule)."""
    v = policy.values
    per_day = v["cases"]["per_diem"]["per_day"] or {}
    ex = v["cases"]["exclusions"]
    steps: list[tuple[pl.Expr, str, str]] = [
        (ops.col("status") == "invalid", "invalid", "status"),
        (ops.col("cost").is_null() | (ops.col("cost") < 0), "invalid", "cost"),
        (ops.col("status") != "grouped", "ungrouped", "status"),
        (ops.col("coef").is_null(), "invalid", "coefficients.level"),
    ]
    if policy.method == "rate":
        steps.append((ops.col("price_e4").is_null(), "invalid", "rate.base_rate"))
    per_diem = ops.col("_per_day").is_not_null()
    steps.append((ops.col("base_micro").is_null() & ~per_diem, "excluded", "weights"))
    if policy.method == "points":
        steps.append((ops.col("pool").is_null(), "excluded", "budget.annual"))
    if ex["los_at_most"] is not None:
        steps.append((ops.col("los") <= ex["los_at_most"], "excluded", "cases.exclusions.los_at_most"))
    if ex["los_at_least"] is not None:
        steps.append((ops.col("los") >= ex["los_at_least"], "excluded", "cases.exclusions.los_at_least"))
    if ex["cost_below"] is not None:
        steps.append((ops.col("cost") < ex["cost_below"], "excluded", "cases.exclusions.cost_below"))
    if ex["drgs"]:
        steps.append((ops.col("_excluded_group"), "excluded", "cases.exclusions.drgs"))
    if per_day:
        steps.append((per_diem & ops.col("los").is_null(), "invalid", "los"))
        steps.append((per_diem, "per_diem", "cases.per_diem.per_day"))
    return steps


def classify_by_ratio(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `reference` (fen), the thresholds (in 10⁻⁶),
    `ratio_micro` (cost ÷ reference in 10⁻⁶, half up: shown, and the order of special review) and
    type the cases `classify_fixed` left open.

    In order: special_review (flagged, within the cap) → incomplete → high → low → normal.
    The reference is the group's mean cost, or the case's payment standard: B × c × the budget
    point value or base rate, half up to the fen. High and low are decided exactly: a case is
    high when cost × 10⁶ > threshold × 10⁶ × reference (≥ when inclusive), low likewise.
    """
    v = policy.values
    cases = v["cases"]
    reference = (frame["group_mean"] if v["ratio"]["reference"] == "group_mean"
                 else _mul_div(frame, "bc_micro", "price_e4", MICRO * PRICE, "reference"))
    level = pl.col("hospital_level")
    frame = frame.with_columns(pl.when(reference > 0).then(reference).alias("reference"),
                               _level_expr(cases["high"]["threshold"], level, UNIT).alias("high_threshold"),
                               _level_expr(cases["low"]["threshold"], level, UNIT).alias("low_threshold"))
    frame = frame.with_columns(_mul_div(frame, "cost", UNIT, "reference", "ratio_micro"),
                               *(_compare(frame, "cost", UNIT, f"{case}_threshold", "reference", f"_{case}_sign")
                                 for case in ("high", "low") if cases["outliers"] == "cost_ratio"))
    _refuse_missing_thresholds(frame, policy)
    frame = _special_review(frame, cases["special_review"])
    return _decide(frame, _ratio_steps(policy, frame.schema["discharge"])).drop("_high_sign", "_low_sign", strict=False)


def _ratio_steps(policy: Policy, discharge_type, ops=POLARS) -> list[tuple[pl.Expr, str, str]]:
    """The steps of `classify_by_ratio` after special review, in order: (test, case type, rule);
    `discharge_type`: the dtype of the cases' `discharge` column."""
    cases = policy["cases"]
    incomplete = cases["incomplete"]
    steps: list[tuple[pl.Expr, str, str]] = []
    if incomplete["discharge"]:
        test = _discharge_in(discharge_type, incomplete["discharge"], ops)
        if incomplete["max_los"] is not None:
            test = test & (ops.col("los") <= incomplete["max_los"])
        steps.append((test, "incomplete", "cases.incomplete"))
    if cases["transfer"]["discharge"]:
        steps.append((_discharge_in(discharge_type, cases["transfer"]["discharge"], ops) & (ops.col("group_los") > 0),
                      "transfer", "cases.transfer"))
    outliers = cases["outliers"]
    if outliers == "cost_ratio":
        steps += [(_beyond("high", cases["high"], ops), "high", "cases.high"),
                  (_beyond("low", cases["low"], ops), "low", "cases.low")]
    elif outliers == "fixed_loss":  # CMS: cost = charges × CCR above the standard + the fixed-loss amount
        steps.append((_wide(ops.col("cost")) * half_up(cases["high"]["cost_to_charge"], UNIT)
                      > (_wide(ops.col("reference")) + cases["high"]["fixed_loss"]) * UNIT, "high", "cases.outliers"))
    else:  # G-DRG: at most the first deduction day is low, from the first surcharge day on high
        days = _stay_days(cases, ops)
        steps += [((days <= ops.col("los_low")) & ops.col("los_low_micro").is_not_null(), "low", "cases.outliers"),
                  ((days >= ops.col("los_high")) & ops.col("los_high_micro").is_not_null(), "high", "cases.outliers")]
    steps.append((ops.lit(True), "normal", "normal"))
    return steps


def _discharge_in(discharge_type, codes, ops=POLARS) -> pl.Expr:
    """The case's 离院方式 is one of `codes` (as numbers when the column, of `discharge_type`, is numeric)."""
    codes = list(codes)
    if discharge_type.is_integer():
        codes = [int(d) for d in codes if str(d).strip().isdigit()]
    return ops.col("discharge").is_in([str(d) for d in codes] if discharge_type == pl.String else codes)


def _stay_days(cases: dict, ops=POLARS) -> pl.Expr:
    """The stay's length for `cases.outliers = "los_limits"`: the `los` field, or the nights
    between admission and discharge (the discharge day not counted)."""
    if cases["los_limits"]["count"] == "nights":
        return (ops.col("discharge_date") - ops.col("admission_date")).dt.total_days()
    return ops.col("los")


def _refuse_missing_thresholds(frame: pl.DataFrame, policy: Policy) -> None:
    """A per-level threshold table without `default` must cover the level of every case it may type."""
    if policy["cases"]["outliers"] != "cost_ratio":
        return
    open_ = pl.col("case_type").is_null() & pl.col("reference").is_not_null()
    for case in ("high", "low"):
        table = policy["cases"][case]["threshold"]
        if "default" in table:
            continue
        missing = (frame.lazy().filter(open_ & pl.col(f"{case}_threshold").is_null()).group_by("hospital_level").len()
                   .sort("hospital_level").collect())
        if missing.height:
            levels = ", ".join(f"{'no level' if lv is None else f'level {lv}'} ({n:,} cases)" for lv, n in missing.iter_rows())
            raise InputError(f"{policy.path}: `cases.{case}.threshold` has no value for {levels} and no `default`: "
                             "those cases could never be typed " + case)


def _beyond(case: str, rule: dict, ops=POLARS) -> pl.Expr:
    """The high (or low) test, exact: the sign of cost × 10⁶ − threshold (10⁻⁶) × reference."""
    sign = ops.col(f"_{case}_sign")
    if case == "high":
        return sign >= 0 if rule["inclusive"] else sign > 0
    return sign <= 0 if rule["inclusive"] else sign < 0


def _special_review(frame: pl.DataFrame, rule: dict) -> pl.DataFrame:
    """Accept flagged cases not yet typed (so paid by group) up to the cap, highest cost ratio first.

    The cap is ⌊cap × n⌋ cases, n = the cases not yet typed, per hospital or over the region.
    The cost ratio ranked is `ratio_micro` (10⁻⁶, half up); ties are broken by hospital, then id (then cost and input position).
    Only the flagged cases are ranked; the decisions go back to their rows by position.
    """
    scope = ["hospital"] if rule["cap_scope"] == "hospital" else []
    open_ = pl.col("case_type").is_null()
    flagged = (frame.lazy().filter(open_ & pl.col("special_review"))
               .select("row", "hospital", "id", "cost", pl.col("ratio_micro").fill_null(0).alias("_r")).collect())
    if flagged.height == 0:
        return frame
    counts = frame.lazy().filter(open_).group_by(scope or pl.lit(1).alias("_all")).len("_n").collect()
    share = Decimal(rule["cap"])
    counts = counts.with_columns(((pl.col("_n").cast(pl.Int64) * int(share * MICRO)) // MICRO).alias("_allowed"))
    if scope:
        flagged = flagged.sort(["hospital", "_r", "id", "cost", "row"], descending=[False, True, False, False, False],
                               nulls_last=True)
    else:
        flagged = flagged.sort(["_r", "hospital", "id", "cost", "row"], descending=[True, False, False, False, False],
                               nulls_last=True).with_columns(pl.lit(1).alias("_all"))
    flagged = (flagged.with_columns(pl.int_range(1, pl.len() + 1).over(scope or "_all").alias("_rank"))
               .join(counts, on=scope or "_all", how="left", nulls_equal=True)
               .select("row", (pl.col("_rank") <= pl.col("_allowed")).alias("_accepted")))
    accepted = flagged.filter(pl.col("_accepted"))["row"]
    over = flagged.filter(~pl.col("_accepted"))["row"]
    decided = [(accepted, "special_review", "cases.special_review")]
    if rule["over_cap"] == "fee_for_service":
        decided.append((over, "excluded", "cases.special_review.over_cap"))
    kind, key = frame["case_type"].clone(), frame["rule"].clone()
    for rows, case_type, rule_key in decided:
        if rows.len():
            kind.scatter(rows, TYPE[case_type])
            key.scatter(rows, RULE[rule_key])
    return frame.with_columns(kind, key)


# -- points ---------------------------------------------------------------------------------

def _per_diem_e4(policy: Policy, ops=POLARS) -> pl.Expr:
    """Rate method: a per-diem case's payment in 10⁻⁴ fen: `per_day` yuan × days (× c), exact."""
    days = _wide(ops.col("los").clip(lower_bound=1))  # a same-day stay counts one day
    amount = _wide(ops.col("_per_day")) * days
    if policy["cases"]["per_diem"]["coefficient"]:
        return amount * _wide(ops.col("coef")), PRICE * COEF
    return amount, PRICE


def _standard_points(policy: Policy, ops=POLARS) -> pl.Expr:
    """Micro-points of a case paid at its group's standard: B × c (`bc_micro`, or worked out here
    before `classify_by_ratio`); per-diem: per-day points × days (× c), half up. Under the rate
    method a per-diem case's points are its payment ÷ the base rate, half up (shown; the payment
    itself is `per_day` yuan × days)."""
    per_diem = policy["cases"]["per_diem"]
    per_day = per_diem["per_day"] or {}
    normal = ops.col("bc_micro")
    if not per_day:
        return normal
    if policy.method == "rate":
        amount, unit = _per_diem_e4(policy, ops)  # amount ÷ unit = fen × 10⁴ … in 10⁻⁴ fen: points = that ÷ price
        daily = _div_half_up(amount * MICRO * PRICE, _wide(ops.col("price_e4")) * unit)
    else:
        days = _wide(ops.col("los").clip(lower_bound=1))  # a same-day stay counts one day
        daily = _wide(ops.col("_per_day")) * days
        daily = (_div_half_up(daily * _wide(ops.col("coef")), COEF) if per_diem["coefficient"]
                 else daily.cast(pl.Int64, strict=False))
    return ops.when(ops.col("case_type") == TYPE["per_diem"]).then(daily).otherwise(normal)


def _formula(name: str, case: str, policy: Policy, ops=POLARS) -> pl.Expr | None:
    """Micro-points of one case type under a named formula (exact, half up once); None means
    fee-for-service (the actual cost). B = base points, c = coefficient, r = cost ÷ reference,
    t = the type's threshold, P = the budget point value or base rate (fen per point)."""
    if name == "fee_for_service":
        return None
    B, bc, c = _wide(ops.col("base_micro")), _wide(ops.col("bc_micro")), _wide(ops.col("coef"))
    cost, ref, price = _wide(ops.col("cost")), _wide(ops.col("reference")), _wide(ops.col("price_e4"))
    t = _wide(ops.col(f"{case}_threshold")) if case in ("high", "low") else None
    over = (lambda: cost * UNIT - t * ref)  # noqa: E731  (cost − t × reference) × 10⁶
    marginal = half_up(policy["cases"]["high"]["marginal"], UNIT)
    formulas = {
        "standard": lambda: bc,                                                        # B·c
        "cost": lambda: _div_half_up(cost * (MICRO * PRICE), price),                   # cost ÷ P
        "excess_ratio": lambda: bc + _div_half_up(B * over(), ref * UNIT),             # B·c + B·(r − t)
        "excess_ratio_coefficient": lambda: _div_half_up(bc * (ref * UNIT + over()), ref * UNIT),  # B·c·(1 + r − t)
        "excess_ratio_plus_coefficient": lambda: _div_half_up(                         # B·(r − t + c)
            B * (over() * (COEF // UNIT) + c * ref), ref * COEF),
        "excess_cost": lambda: bc + _div_half_up(over() * (marginal * PRICE), price * UNIT),  # B·c + m·(cost − t·ref) ÷ P
        "ratio": lambda: _div_half_up(bc * cost, ref),                                  # B·c·r
        "ratio_capped": lambda: ops.min_horizontal(_div_half_up(bc * cost, ref), B),     # min(B·c·r, B)
        "ratio_capped_no_coefficient": lambda: ops.min_horizontal(_div_half_up(B * cost, ref), B),  # min(B·r, B)
        "ratio_no_coefficient": lambda: _div_half_up(B * cost, ref),                    # B·r
    }
    return formulas[name]().cast(pl.Int64, strict=False)


def _outlier_points(case: str, policy: Policy, ops=POLARS) -> pl.Expr:
    """Micro-points of a high or low case under `cases.outliers` = fixed_loss or los_limits.

    fixed_loss (high): B·c + marginal × (cost × CCR − standard − fixed loss) ÷ P.
    los_limits: low: (B − (first deduction day + 1 − days) × per-day deduction) × c, never below 0;
    high: (B + (days − first surcharge day + 1) × per-day surcharge) × c; per-day = weight × scale.
    Each rounded half up to the micro-point once."""
    cases = policy["cases"]
    bc, B, coef = _wide(ops.col("bc_micro")), _wide(ops.col("base_micro")), _wide(ops.col("coef"))
    if cases["outliers"] == "fixed_loss":
        excess = (_wide(ops.col("cost")) * half_up(cases["high"]["cost_to_charge"], UNIT)
                  - (_wide(ops.col("reference")) + cases["high"]["fixed_loss"]) * UNIT)
        marginal = half_up(cases["high"]["marginal"], UNIT)
        return (bc + _div_half_up(excess * (marginal * PRICE), _wide(ops.col("price_e4")) * UNIT)).cast(pl.Int64, strict=False)
    days = _wide(_stay_days(cases, ops))
    if case == "low":
        points = B - (_wide(ops.col("los_low")) + 1 - days) * _wide(ops.col("los_low_micro"))
    else:
        points = B + (days - _wide(ops.col("los_high")) + 1) * _wide(ops.col("los_high_micro"))
    return _div_half_up(points.clip(lower_bound=0) * coef, COEF)


def _transfer_points(policy: Policy, ops=POLARS) -> pl.Expr:
    """Micro-points of a transfer: B·c ÷ mean LOS per day × (LOS + extra_days), capped at B·c, half up."""
    bc = _wide(ops.col("bc_micro"))
    days = _wide(ops.col("los").clip(lower_bound=0)) + policy["cases"]["transfer"]["extra_days"]
    return ops.min_horizontal(_div_half_up(bc * days * UNIT, _wide(ops.col("group_los"))), ops.col("bc_micro"))


def _points_rules(policy: Policy, ops=POLARS) -> tuple[pl.Expr, pl.Expr | None]:
    """(`paid_by`: the code of who pays the case; the micro-points of a case paid by group that is not
    normal, by its type: None when no type has a formula). A normal case's points are B × c."""
    cases = policy["cases"]

    def formula(name: str, case_type: str):  # None: paid by item (the actual cost)
        return None if name == "fee_for_service" else ops.deferred(lambda: _formula(name, case_type, policy, ops))

    cost_points = formula("cost", "normal")
    chain = ops  # points of the cases not normal, by type
    table = {
        "per_diem": ops.deferred(lambda: _standard_points(policy, ops)),
        "high": (formula(cases["high"]["formula"], "high") if cases["outliers"] == "cost_ratio"
                 else ops.deferred(lambda: _outlier_points("high", policy, ops))),
        "low": (formula(cases["low"]["formula"], "low") if cases["outliers"] == "cost_ratio"
                else ops.deferred(lambda: _outlier_points("low", policy, ops))),
        "transfer": ops.deferred(lambda: _transfer_points(policy, ops)) if cases["transfer"]["discharge"] else None,
        "incomplete": formula(cases["incomplete"]["formula"], "incomplete"),
        "special_review": formula(cases["special_review"]["pay"], "special_review"),
    }
    group, ffs, none = (ops.lit(PAY[p], CODE) for p in PAID_BY)
    paid_by = ops.when(_is_type("excluded", ops=ops)).then(ffs)
    for case_type, expr in table.items():
        if case_type == "transfer" and expr is None:
            continue  # no transfer rule: no case has the type
        is_type = ops.col("case_type") == TYPE[case_type]
        if expr is None:
            paid_by = paid_by.when(is_type).then(ffs)
        else:
            chain = chain.when(is_type).then(expr)
    unpaid = _is_type("ungrouped", "invalid", ops=ops)
    ungrouped = cases["ungrouped"]["pay"]
    if ungrouped == "cost":
        cost_known = ops.col("cost").is_not_null() & ops.col("price_e4").is_not_null() & ops.col("pool").is_not_null()
        chain = chain.when(unpaid & cost_known).then(cost_points)
        paid_by = paid_by.when(unpaid & cost_known).then(group).when(unpaid).then(ffs)
    else:
        paid_by = paid_by.when(unpaid).then(ops.lit(PAY[ungrouped], CODE))
    paid_by = paid_by.otherwise(group)
    # a cost that is unknown (or negative: an invalid case) cannot be paid by item nor valued
    paid_by = ops.when(ops.col("cost").is_null() | (ops.col("cost") < 0)).then(none).otherwise(paid_by)
    return paid_by, None if chain is ops else chain


def case_points(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `paid_by` (code: group / fee_for_service / none) and `points` (Int64 micro-points,
    before readmission; never negative).

    A cost-based formula turns the actual cost into points at `price_e4` (the budget point value
    or the base rate). A case whose cost is unknown or negative is paid nothing (`none`).
    """
    paid_by, chain = _points_rules(policy)
    frame = frame.with_columns(paid_by.alias("paid_by"))
    # Most cases are normal: B × c for them over the whole frame, every other formula only on the
    # few rows of its type (a when/then chain would work out every formula for every row).
    by_group = _paid("group")
    points = frame.select(pl.when(by_group & (pl.col("case_type") == TYPE["normal"]))
                          .then(pl.col("bc_micro")).alias("points")).to_series()
    if chain is not None:
        others = (frame.lazy().filter(by_group & (pl.col("case_type") != TYPE["normal"]))
                  .select("row", chain.otherwise(pl.lit(None, pl.Int64)).clip(lower_bound=0).alias("points")).collect())
        if others.height:
            points = points.scatter(others["row"], others["points"])
    return frame.with_columns(points)


@dataclass(frozen=True)
class StayOrder:
    """What `readmissions` needs of the order of stays, found before any case is typed (so
    `settle` works it out in a background thread while the cases are classified): the rows an
    earlier stay would be reduced on if it is paid by group, and the rows to order exactly."""

    candidates: pl.Series
    exact_rows: pl.Series


def stay_order(frame: pl.DataFrame, policy: Policy) -> StayOrder | None:
    """The order of stays for `readmissions` (None when the policy has no readmission rule).
    Reads only the grouping status, patient, group, ADRG, hospital and dates of `frame`."""
    rule = policy["readmission"]
    if rule["days"] is None:
        return None
    key = "group" if rule["same"] == "drg" else "adrg"
    partition = ["patient_id", key, *(["hospital"] if rule["same_hospital"] else [])]
    days = rule["days"]
    excepted = _readmission_excepted(rule)
    eligible = ((pl.col("status") == "grouped") & pl.col("patient_id").is_not_null() & pl.col(key).is_not_null()
                & pl.col("admission_date").is_not_null() & pl.col("discharge_date").is_not_null())
    span = frame.lazy().filter(eligible).select(pl.col("admission_date").min().alias("first"),
                                                 pl.col("admission_date").max().alias("last"), pl.len()).collect()
    first, last, count = span.row(0)
    no_rows = pl.Series("row", [], pl.UInt32)
    if not count:
        return StayOrder(no_rows, no_rows)
    if (last - first).days >= 1 << 16:
        return StayOrder(no_rows, frame.lazy().filter(eligible).select("row").collect()["row"])
    mixed = lambda seed: reduce(operator.xor, (pl.col(c).hash(seed + i) for i, c in enumerate(partition)))  # noqa: E731
    stays = (frame.lazy().filter(eligible).select(
        ((mixed(0x5E77) & pl.lit(_PREFIX_MASK, pl.UInt64))
         | (pl.col("admission_date") - first).dt.total_days().cast(pl.UInt64)).alias("key"),
        mixed(0xC0FF).alias("check"), pl.col("discharge_date").cast(pl.Int32).alias("discharge"),
        excepted.fill_null(False).cast(pl.UInt8).alias("excepted"), pl.col("row").cast(pl.Int64))
        .collect())
    candidates, exact = np.empty(stays.height, np.int64), np.empty(stays.height, np.int64)
    found, doubtful = KERNEL.next_stays(*(stays[c].to_numpy() for c in stays.columns), _PREFIX_MASK, _days(first),
                                        days, candidates, exact)
    return StayOrder(pl.Series("row", candidates[:found], pl.UInt32), pl.Series("row", np.sort(exact[:doubtful]), pl.UInt32))


def _readmission_excepted(rule: dict) -> pl.Expr:
    exceptions = list(rule["exceptions"] or ())
    return _one_of("group", exceptions) | _one_of("adrg", exceptions) if exceptions else pl.lit(False)


def readmissions(frame: pl.DataFrame, policy: Policy, order: StayOrder | None = None) -> pl.DataFrame:
    """Add `readmission_factor`: the policy factor for an earlier stay followed, within the window,
    by a stay of the same patient in the same ADRG (or DRG); 1 otherwise.

    Both stays must be grouped; the earlier one must be paid by group (not special review);
    a stay is reduced once however many stays follow; either stay's DRG or ADRG being listed
    in `exceptions` spares it. Stays are ordered by admission date, discharge date, id.

    How the next stay is found fast: stays are sorted by one UInt64 key, the top 48 bits of a
    hash of (patient, ADRG or DRG[, hospital]) above 16 bits of admission day, and a stay's
    successor in its partition is the next row when both rows have the same 48-bit prefix and
    the same second, independently seeded 64-bit hash. Every partition where that order could
    differ from the exact one — its prefix shared with another partition, two stays on one
    admission day (ordered then by discharge date and id), or admission days spanning more than
    65,535 days — is done again exactly, sorting the strings themselves. Two different
    partitions sharing both hashes (112 bits) is the one thing not checked: for 10^7 stays its
    chance is below 10^-19.
    """
    rule = policy["readmission"]
    if order is None:
        order = stay_order(frame, policy)
    if order is None:
        return frame.with_columns(pl.lit(1.0).alias("readmission_factor"))
    reducible = _paid("group") & (pl.col("case_type") != TYPE["special_review"])
    ok = frame.select(reducible.fill_null(False)).to_series()
    hits = [order.candidates.filter(ok.gather(order.candidates))]
    if order.exact_rows.len():
        key = "group" if rule["same"] == "drg" else "adrg"
        partition = ["patient_id", key, *(["hospital"] if rule["same_hospital"] else [])]
        hits.append(_readmissions_exact(frame.lazy().filter(pl.col("row").is_in(order.exact_rows.implode())), partition,
                                        rule["days"], _readmission_excepted(rule), reducible))
    rows = pl.concat(hits)
    return frame.with_columns(_scatter(frame.height, rows, float(rule["factor"]), np.float64, 1.0)
                              .alias("readmission_factor"))


def reduced_points(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `points_micro`: the case's points after `readmissions` — the rounded points × the
    factor (exact: the policy's decimal), half up to the micro-point."""
    if policy["readmission"]["days"] is None:
        return frame.with_columns(pl.col("points").alias("points_micro"))
    reduced = _div_half_up(_wide(pl.col("points")) * half_up(policy["readmission"]["factor"], UNIT), UNIT)
    # worked out on the few reduced stays only (128-bit arithmetic over 10⁷ rows for 1 % of them is waste)
    return frame.with_columns(_on_rows(frame, pl.col("readmission_factor") != 1.0, reduced,
                                       frame["points"].alias("points_micro")))


_PREFIX_MASK = 0xFFFF_FFFF_FFFF_0000  # the hash bits above the admission day (tests narrow it to force collisions)


def _days(day) -> int:
    """A date as days since 1970-01-01 (Polars' Date)."""
    return (day - _EPOCH).days


_EPOCH = datetime.date(1970, 1, 1)


def _readmissions_exact(stays: pl.LazyFrame, partition: list[str], days: int, excepted: pl.Expr,
                        reducible: pl.Expr) -> pl.Series:
    """The rows `readmissions` reduces among `stays`, found by sorting the partition strings."""
    stays = (stays.select(*dict.fromkeys(["row", *partition, "admission_date", "discharge_date", "id"]),
                          excepted.fill_null(False).alias("_x"), reducible.fill_null(False).alias("_ok"))
             .sort([*partition, "admission_date", "discharge_date", "id", "row"], nulls_last=True))
    same = pl.all_horizontal(pl.col(c).shift(-1).eq_missing(pl.col(c)) for c in partition)
    gap = (pl.col("admission_date").shift(-1) - pl.col("discharge_date")).dt.total_days()
    reduced = same & (gap >= 0) & (gap <= days) & ~pl.col("_x") & ~pl.col("_x").shift(-1).fill_null(False) & pl.col("_ok")
    return stays.filter(reduced.fill_null(False)).select("row").collect()["row"]


# -- money ----------------------------------------------------------------------------------

def _budget_point_values(frame: pl.DataFrame, policy: Policy) -> dict[str, dict]:
    """Per pool: budget, reserve, planned (distributable before the year), 预算点值.

    planned = budget − reserve − the cost of cases paid from the pool by cost outside the points
    (fee-for-service exclusions and ungrouped cases when fee_for_service_inside, and ungrouped
    cases valued by cost); 预算点值 = planned ÷ the standard micro-points (an integer sum) of the
    cases paid by group, half up to 10⁻⁴ fen per point (`budget_price_e4`). Computed after
    `classify_fixed`; a value in the policy (yuan per point, at most six decimals) replaces it.
    A pool whose planned amount is not positive, or which has no standard points, has none.
    """
    v = policy.values
    annual = v["budget"]["annual"] or {}
    share = Decimal(v["budget"]["reserve_share"])
    inside = v["budget"]["fee_for_service_inside"]
    fixed_value = v["points"]["budget_point_value"]
    ungrouped_by_cost = v["cases"]["ungrouped"]["pay"] == "cost"
    typed = pl.col("case_type")
    unpaid = _is_type("ungrouped", "invalid")
    valid_cost = pl.col("cost") >= 0
    ffs_known = (_is_type("excluded") | (unpaid & pl.lit(v["cases"]["ungrouped"]["pay"] == "fee_for_service"))) & valid_cost
    by_cost = unpaid & pl.lit(ungrouped_by_cost) & valid_cost
    sums = (frame.lazy().group_by("pool")
            .agg(pl.when(ffs_known).then(pl.col("cost")).sum().alias("ffs"),
                 pl.when(by_cost).then(pl.col("cost")).sum().alias("by_cost"),
                 pl.when(typed.is_null() | (typed == TYPE["per_diem"])).then(pl.col("standard_micro")).sum()
                 .alias("standard_points"), pl.len().alias("cases")).collect())
    found = {row["pool"]: row for row in sums.iter_rows(named=True)}
    pools = {}
    for pool, budget in annual.items():
        row = found.get(pool, {"ffs": 0, "by_cost": 0, "standard_points": 0, "cases": 0})
        reserve = _to_fen(Decimal(budget) * share)
        ffs = int(row["ffs"] or 0) if inside else 0
        planned = budget - reserve - ffs - int(row["by_cost"] or 0)
        standard = int(row["standard_points"] or 0)
        if fixed_value is not None:
            price = half_up(fixed_value, UNIT)  # yuan per point × 10⁶ = fen per point × 10⁴
        else:
            price = (planned * MICRO * PRICE * 2 + standard) // (2 * standard) if standard > 0 and planned > 0 else None
        pools[pool] = {"pool": pool, "budget": budget, "reserve": reserve, "planned": planned, "cases": int(row["cases"]),
                       "budget_price_e4": price}
    return pools


def _largest_remainder(frame: pl.DataFrame, pools: dict[str, dict], fee_for_service_inside: bool
                       ) -> tuple[pl.Series, dict[str, int]]:
    """(`payment` in fen per case; fen paid by points per pool) under the points method.

    Completes each pool's entry in `pools` (fee-for-service inside, distributable, points,
    settlement point value), then shares each pool's distributable fen among its group-paid
    cases by micro-points, exactly (see the module doc); fee-for-service cases are paid their
    cost, every other case 0."""
    names = list(pools)
    pool = pl
    for code, name in enumerate(names):
        pool = pool.when(pl.col("pool") == name).then(pl.lit(code, pl.UInt8))
    arrays = frame.select(
        (pool.otherwise(pl.lit(255, pl.UInt8)) if names else pl.lit(255, pl.UInt8)).alias("pool"),
        pl.col("paid_by").fill_null(255), pl.col("points_micro").fill_null(-1), pl.col("cost").fill_null(0))
    pool, paid_by, points, cost = (arrays[c].to_numpy() for c in arrays.columns)
    fee_cost, group_points = np.zeros(len(names), np.int64), np.zeros(len(names), np.int64)
    payment = np.empty(frame.height, np.int64)
    KERNEL.pool_sums(pool, paid_by, points, cost, PAY["group"], PAY["fee_for_service"], fee_cost, group_points, payment)
    rows, remainders = np.empty(frame.height, np.int64), np.empty(frame.height, np.int64)
    paid_by_pool = {}
    for code, name in enumerate(names):
        p = pools[name]
        p["fee_for_service_inside"] = int(fee_cost[code]) if fee_for_service_inside else 0
        d = p["distributable"] = max(p["budget"] - p["reserve"] - p["fee_for_service_inside"], 0)
        total = int(group_points[code])
        p["points_micro"] = total
        # shown only (payments share d by the largest remainder): yuan per point, half up to 10⁻⁶
        p["settlement_price_e4"] = (d * MICRO * PRICE * 2 + total) // (2 * total) if total else None
        paid_by_pool[name] = d if total > 0 else 0
        if total <= 0:
            continue
        # 128-bit products; a remainder is below the pool's total micro-points, which fits Int64
        m = KERNEL.pool_shares(pool, paid_by, points, code, PAY["group"], d, total, payment, rows, remainders)
        k = d - int(payment[rows[:m]].sum())
        if k <= 0:
            continue
        remainder, mine = remainders[:m], rows[:m]
        # The k cases with the largest remainders get one more fen; ties: hospital, id, cost, row.
        # Only the cases at the k-th remainder need the tie order, so no full sort.
        cut = np.partition(remainder, len(remainder) - k)[len(remainder) - k]
        above = mine[remainder > cut]
        at_cut = mine[remainder == cut]
        payment[above] += 1
        payment[_first_in_order(frame.select("row", "hospital", "id", "cost")[at_cut], k - len(above))] += 1
    return pl.Series("payment", payment), paid_by_pool


def _first_in_order(tied: pl.DataFrame, count: int) -> np.ndarray:
    """The rows of the first `count` cases of `tied` in (hospital, id, cost, row) order.

    Equal points give equal remainders, so the cases at the cut can be many (a large share of a
    pool): whole hospitals are taken by their counts, and only the hospital where the count runs
    out is sorted."""
    per_hospital = tied.group_by("hospital").len().sort("hospital", nulls_last=True)
    before = per_hospital["len"].cum_sum() - per_hospital["len"]
    whole = per_hospital.filter(before + per_hospital["len"] <= count)
    taken = tied.filter(pl.col("hospital").is_in(whole["hospital"].implode(), nulls_equal=True))["row"].to_numpy()
    rest = count - len(taken)
    if rest > 0:
        boundary = per_hospital.filter(before + per_hospital["len"] > count).row(0, named=True)["hospital"]
        last = (tied.filter(pl.col("hospital").eq_missing(boundary)).sort(["id", "cost", "row"], nulls_last=True)
                .head(rest)["row"].to_numpy())
        taken = np.concatenate([taken, last])
    return taken


def standard_points(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Add `standard_micro`: the micro-points of each case at its group's standard (`_standard_points`),
    the per-diem formula worked out on the per-diem cases only."""
    base = frame["bc_micro"].alias("standard_micro")
    if policy["cases"]["per_diem"]["per_day"]:
        base = _on_rows(frame, pl.col("case_type") == TYPE["per_diem"], _standard_points(policy), base)
    return frame.with_columns(base)


def _pay(frame: pl.DataFrame, policy: Policy, pools: dict[str, dict]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add `payment`, `standard` (fen), `price` (yuan per point) and `_prepay_milli` per case; returns
    (cases, pools summary).

    Rate method: payment = micro-points × base rate, half up to the fen (a per-diem case: `per_day`
    yuan × days [× c], half up). `price` is the settlement point value (points method: the pool's
    结算点值, to 10⁻⁶ yuan) or the base rate; standard = the standard micro-points × price, half up
    to the fen (a per-diem case under the rate method: its per-diem payment).
    """
    if policy.method == "rate":
        price = frame["price_e4"]
        frame = frame.with_columns(_paid_at_price(frame, policy).alias("payment"))
        summary = _rate_pools(frame, policy)
        payment = pl.col("payment")
    else:
        payment, paid = _largest_remainder(frame, pools, policy["budget"]["fee_for_service_inside"])
        summary = _points_pools(pools, paid)
        price = frame.select(_by_pool({k: p["settlement_price_e4"] for k, p in pools.items()})).to_series()
        payment = pl.lit(payment)
    standard = _standard_at(frame, policy, price)
    prepay = (_mul_div(frame, "points_micro", "price_e4", MICRO * PRICE // 1000, "_prepay_milli")
              if policy.method == "points" and policy["prepayment"]["basis"] == "standard" else pl.lit(None, pl.Int64).alias("_prepay_milli"))
    # one with_columns: Polars works the columns out in parallel
    frame = frame.with_columns(
        payment.alias("payment"),
        _shown(pl.lit(price), MICRO).alias("price"),
        pl.when(_is_type(*GROUP_PAID)).then(standard).otherwise(None).alias("standard"),
        (payment - pl.col("cost")).alias("surplus"),
        prepay,
    )
    return frame, summary


def _paid_at_price(frame: pl.DataFrame, policy: Policy) -> pl.Expr:
    """Each case's payment at its own price (`price_e4`: the base rate, or a point value): a case
    paid by group gets micro-points × price, half up to the fen (under the rate method a per-diem
    case: `per_day` yuan × days [× c], half up); fee-for-service its cost; any other 0."""
    by_points = _mul_div(frame, "points_micro", "price_e4", MICRO * PRICE, "_by_points")
    if policy.method == "rate" and policy["cases"]["per_diem"]["per_day"]:
        amount, unit = _per_diem_e4(policy)
        by_points = _on_rows(frame, pl.col("case_type") == TYPE["per_diem"], _div_half_up(amount, unit), by_points)
    return (pl.when(_paid("group")).then(by_points).when(_paid("fee_for_service")).then(pl.col("cost"))
            .otherwise(pl.lit(0, pl.Int64)))


def _standard_at(frame: pl.DataFrame, policy: Policy, price: pl.Series) -> pl.Series:
    """The group's payment standard of each case: its standard micro-points × `price` (10⁻⁴ fen per
    point), half up to the fen; under the rate method a per-diem case's per-diem payment."""
    standard = _mul_div(frame, "standard_micro", price, MICRO * PRICE, "standard")
    if policy.method == "rate" and policy["cases"]["per_diem"]["per_day"]:
        amount, unit = _per_diem_e4(policy)
        standard = _on_rows(frame, pl.col("case_type") == TYPE["per_diem"], _div_half_up(amount, unit), standard)
    return standard


def _yuan_per_point(price_e4: int | None) -> float | None:
    """A price kept in 10⁻⁴ fen per point as yuan per point (six decimals, exact as written)."""
    return None if price_e4 is None else float(Decimal(price_e4) / MICRO)


def _points_pools(pools: dict[str, dict], paid: dict[str, int]) -> pl.DataFrame:
    rows = []
    for pool, p in pools.items():
        rows.append({
            "pool": pool, "cases": p["cases"], "budget": p["budget"], "reserve": p["reserve"],
            "fee_for_service_inside": p["fee_for_service_inside"], "distributable": p["distributable"],
            "points": p["points_micro"] / MICRO, "budget_point_value": _yuan_per_point(p["budget_price_e4"]),
            "settlement_point_value": _yuan_per_point(p["settlement_price_e4"]),
            "paid_by_points": int(paid.get(pool) or 0),
        })
    return pl.DataFrame(rows, schema=_POOL_SCHEMA)


def _rate_pools(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    annual = policy["budget"]["annual"] or {}
    share = Decimal(policy["budget"]["reserve_share"])
    group = _paid("group")
    sums = {r["pool"]: r for r in frame.lazy().group_by("pool").agg(
        pl.len().alias("cases"),
        pl.when(group).then(pl.col("points_micro")).sum().alias("points"),
        pl.when(group).then(pl.col("payment")).sum().alias("paid")).collect().iter_rows(named=True)}
    rows = []
    for pool in sorted({*annual, *(k for k in sums if k is not None)}):
        budget = annual.get(pool)
        reserve = None if budget is None else _to_fen(Decimal(budget) * share)
        s = sums.get(pool, {"points": 0, "paid": 0, "cases": 0})
        rows.append({"pool": pool, "cases": int(s["cases"] or 0), "budget": budget, "reserve": reserve,
                     "fee_for_service_inside": 0, "distributable": None if budget is None else budget - reserve,
                     "points": (s["points"] or 0) / MICRO, "budget_point_value": None, "settlement_point_value": None,
                     "paid_by_points": int(s["paid"] or 0)})
    return pl.DataFrame(rows, schema=_POOL_SCHEMA)


_POOL_SCHEMA = {"pool": pl.String, "cases": pl.Int64, "budget": pl.Int64, "reserve": pl.Int64,
                "fee_for_service_inside": pl.Int64, "distributable": pl.Int64, "points": pl.Float64,
                "budget_point_value": pl.Float64, "settlement_point_value": pl.Float64, "paid_by_points": pl.Int64}


# -- per hospital ---------------------------------------------------------------------------

def sharing_adjustment(payment: int, cost: int, surplus_bands: list[dict], deficit_bands: list[dict]) -> int:
    """结余留用、超支分担 for one hospital, in fen (negative: recovered from the hospital; positive: paid by the fund).

    The bands cut the surplus (payment − cost) or the overspend (cost − payment), as shares of the
    payment, into pieces: a surplus piece is recovered at (1 − retain), an overspend piece is borne
    by the fund at `fund`. Past the last band's end the hospital keeps the surplus and bears the
    overspend. The sum is rounded half up to the fen.
    """
    if payment <= 0 or payment == cost:
        return 0
    amount = Decimal(abs(payment - cost))
    bands, key, sign = (surplus_bands, "retain", -1) if payment > cost else (deficit_bands, "fund", 1)
    total, lower = Decimal(0), Decimal(0)
    for band in bands:
        upper = amount if band["upto"] is None else min(amount, Decimal(band["upto"]) * payment)
        piece = max(upper - lower, Decimal(0))
        total += piece * ((1 - Decimal(band[key])) if key == "retain" else Decimal(band[key]))
        if band["upto"] is not None:
            lower = max(lower, Decimal(band["upto"]) * payment)
        if upper >= amount:
            break
    return sign * _to_fen(total)


def _prepayment_amount(policy: Policy) -> pl.Expr:
    """A case's part of its month's amount in integer milli-fen (so month sums are exact and do not
    depend on row order), before the prepayment ratio: its cost, or its points at the budget point
    value (`_prepay_milli`, half up to the milli-fen), or its payment (rate method; cases not paid by points)."""
    if policy["prepayment"]["basis"] == "cost":
        return pl.col("cost").clip(lower_bound=0).fill_null(0) * 1000
    if policy.method == "rate":
        return pl.col("payment").fill_null(0) * 1000
    return pl.when(_paid("group")).then(pl.col("_prepay_milli")).otherwise(pl.col("payment") * 1000).fill_null(0)


def _prepaid(lazy: pl.LazyFrame, policy: Policy) -> pl.LazyFrame:
    """hospital, prepaid: Σ over months of round_half_up(ratio × the month's amount).

    Summed per (hospital, discharge day) first, so the calendar month is worked out for a few
    thousand rows rather than for every case.
    """
    ratio = Decimal(policy["prepayment"]["ratio"])
    daily = lazy.group_by("hospital", "discharge_date").agg(_prepayment_amount(policy).sum().alias("_milli"))
    month = pl.col("discharge_date").dt.year().cast(pl.Int32) * 12 + pl.col("discharge_date").dt.month()
    by_month = daily.group_by("hospital", month.alias("_month")).agg(pl.col("_milli").sum())
    half_up = lambda milli: int((Decimal(milli) * ratio / 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))  # noqa: E731
    return by_month.select("hospital", pl.col("_milli").map_elements(half_up, return_dtype=pl.Int64).alias("_prepaid")) \
        .group_by("hospital").agg(pl.col("_prepaid").sum().alias("prepaid"))


def hospitals_frame(cases: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """One row per hospital: cases by type, points, payment, cost, sharing, prepaid vs due (清算)."""
    group, ffs = _paid("group"), _paid("fee_for_service")
    typed = [(pl.col("case_type") == TYPE[t]).sum().alias(f"n_{t}") for t in CASE_TYPES]
    lazy = cases.lazy()
    monthly = _prepaid(lazy, policy)
    level = (lazy.group_by("hospital", "hospital_level").len()
             .sort(["hospital", "len", "hospital_level"], descending=[False, True, True], nulls_last=True)
             .group_by("hospital", maintain_order=True).first().select("hospital", "hospital_level"))
    grouped = pl.col("status") == "grouped"
    where = lambda test, column: pl.when(test).then(pl.col(column))  # noqa: E731  (a masked sum is a plain sum: fast)
    totals = lazy.group_by("hospital").agg(
        pl.len().alias("cases"), *typed,
        _is_type(*GROUP_PAID).sum().alias("drg_cases"),
        pl.col("special_review").sum().alias("special_review_flagged"),
        pl.when(grouped).then((pl.col("rw") * MICRO).round(0).cast(pl.Int64)).sum().alias("_rw_micro"),  # RW has ≤ 6 decimals
        (grouped & pl.col("rw").is_not_null()).sum().alias("_rw_n"),
        where(group, "points_micro").sum().alias("_points"),
        where(group, "payment").sum().alias("drg_payment"),
        where(ffs, "payment").sum().alias("ffs_payment"),
        pl.col("payment").sum().alias("payment"),
        where(group, "cost").sum().alias("drg_cost"),
        pl.col("cost").sum().alias("cost"))
    totals, level, monthly = pl.collect_all([totals, level, monthly])
    out = (totals.with_columns(_shown(pl.col("_rw_micro"), MICRO).alias("rw_sum"))
           .with_columns((pl.col("_rw_micro") / pl.col("_rw_n") / MICRO).round(4).alias("cmi"))  # shown to 4 decimals
           .join(level, on="hospital", how="left", nulls_equal=True)
           .join(monthly, on="hospital", how="left", nulls_equal=True)
           .sort("hospital", nulls_last=True))
    s = policy["sharing"]
    adjustments = [sharing_adjustment(int(p or 0), int(c or 0), s["surplus"], s["deficit"])
                   for p, c in out.select("drg_payment", "drg_cost").iter_rows()]
    out = out.with_columns(
        _shown(pl.col("_points"), MICRO).alias("points"),
        (pl.col("n_special_review") / pl.col("drg_cases")).round(6).alias("special_review_share"),
        (pl.col("drg_payment") - pl.col("drg_cost")).alias("drg_surplus"),
        pl.Series("sharing_adjustment", adjustments, dtype=pl.Int64),
    ).with_columns((pl.col("payment") + pl.col("sharing_adjustment")).alias("final_payment")).with_columns(
        (pl.col("final_payment") - pl.col("cost")).alias("surplus_after_sharing"),
        pl.col("prepaid").fill_null(0),
    ).with_columns((pl.col("final_payment") - pl.col("prepaid")).alias("due"))
    return out.select("hospital", "hospital_level", "cases", *[f"n_{t}" for t in CASE_TYPES], "drg_cases",
                      "special_review_flagged", "special_review_share", "rw_sum", "cmi", "points", "drg_payment",
                      "ffs_payment", "payment", "drg_cost", "cost", "drg_surplus", "sharing_adjustment", "final_payment",
                      "surplus_after_sharing", "prepaid", "due")


def groups_frame(cases: pl.DataFrame, column: str = "group") -> pl.DataFrame:
    """One row per group: cases, RW, mean cost (fen, half up), cases by ratio type, points, payment, cost, surplus."""
    return (cases.lazy().filter(pl.col("group").is_not_null() & (pl.col("status") == "grouped"))
            .group_by(pl.col("group").alias(column)).agg(
                pl.len().alias("cases"), pl.col("rw").first().alias("rw"),
                # the mean cost in fen, half up, in integers
                pl.when(pl.col("cost").count() > 0).then((pl.col("cost").sum() * 2 + pl.col("cost").count())
                                                         // (pl.col("cost").count() * 2)).alias("mean_cost"),
                (pl.col("case_type") == TYPE["high"]).sum().alias("n_high"),
                (pl.col("case_type") == TYPE["low"]).sum().alias("n_low"),
                _shown(pl.col("points_micro").sum(), MICRO).alias("points"), pl.col("payment").sum().alias("payment"),
                pl.col("cost").sum().alias("cost"), pl.col("surplus").sum().alias("surplus"))
            .sort(column).collect())


# The per-case table: the case's keys and every number of its settlement. The input fields it was
# settled from (level, insurance type, ADRG, dates, special-review flag) stay in the grouped file,
# joined back by `id` when wanted: echoing them would add a third to the 10^7-row table's writing.
CASE_COLUMNS = ("id", "hospital", "pool", "status", "group", "rw", "case_type", "rule", "cost", "cost_ratio",
                "base_points", "coefficient", "readmission_factor", "points", "price", "standard", "payment", "paid_by",
                "surplus")


def case_table(frame: pl.DataFrame, column: str = "drg") -> pl.DataFrame:
    """The per-case output: CASE_COLUMNS, the codes as Enums of their names, the group column named
    `column`; the exact integers shown as numbers (points, base points: micro-points ÷ 10⁶,
    coefficient ÷ 10¹², cost ratio: 10⁻⁶ ÷ 10⁶), each exact to its stated decimals."""
    named = {"case_type": CASE_TYPES, "rule": RULES, "paid_by": PAID_BY}
    shown = {"points": _shown(pl.col("points_micro"), MICRO), "base_points": _shown(pl.col("base_micro"), MICRO),
             "coefficient": _shown(pl.col("coef"), COEF), "cost_ratio": _shown(pl.col("ratio_micro"), UNIT)}
    return frame.select(_named(c, named[c]) if c in named else shown[c].alias(c) if c in shown else pl.col(c)
                        for c in CASE_COLUMNS).rename({"group": column})


def _base_times_coefficient(frame: pl.DataFrame, policy: Policy) -> pl.Series:
    """`bc_micro` = B × c, half up to the micro-point. Without group coefficients every coefficient
    has at most six decimals, so it is divided by 10⁶ first: the products then fit in 64 bits (the
    kernel's fast path) and the result is the same."""
    if policy["coefficients"]["drgs"]:
        return _mul_div(frame, "base_micro", "coef", COEF, "bc_micro")
    six = frame.select((pl.col("coef") // (COEF // UNIT)).alias("_c")).to_series()
    return _mul_div(frame, "base_micro", six, UNIT, "bc_micro")


def _drop_spent(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Drop the working columns no later stage reads (10⁷ cases: 80 MB each), so that paying and
    writing do not carry them."""
    keep = {"_per_day", "los"} if policy.method == "rate" and policy["cases"]["per_diem"]["per_day"] else set()
    spent = ["reference", "high_threshold", "low_threshold", "group_mean", "price_level", "_basic", "_group_coefficient",
             "_excluded_group", "_per_day", "aux_factor", "fixed_coefficient", *LOS_COLUMNS]
    return frame.drop([c for c in spent if c in frame.columns and c not in keep])


def _attached(cases: pl.DataFrame, policy: Policy, source: BaseSource) -> pl.DataFrame:
    """prepare → base points from `source` → the policy's group columns; checked, in input order."""
    from .settle_checks import check_inputs, check_weights

    groups = policy_groups(policy)
    check_inputs(cases.columns, policy)
    frame = _los_defaults(_policy_defaults(source.attach(prepare(cases), groups), groups), policy)
    check_weights(frame)
    if not frame["row"].is_sorted():  # a source must keep the input order; be safe if one does not
        frame = frame.sort("row")
    return frame


def _typed_without_ratio(frame: pl.DataFrame, policy: Policy) -> pl.DataFrame:
    """Coefficients and prices, B × c, the case types the cost ratio plays no part in, standard points."""
    frame = _prices(frame, policy)
    frame = frame.with_columns(_base_times_coefficient(frame, policy))
    return standard_points(classify_fixed(frame, policy), policy)


PRICED_COLUMNS = ("case_type", "rule", "paid_by", "base_micro", "coef", "price_e4", "reference", "high_line",
                  "low_line", "ratio_micro", "points_micro", "standard", "payment")


def price_cases(cases: pl.DataFrame, policy: Policy, source: BaseSource, *,
                point_value: Decimal | None = None) -> pl.DataFrame:
    """Each case priced on its own (预结算), by the stages of `settle`: base points, coefficient, price,
    case type, points and payment, without what needs the other cases of the year — special review
    (its cap counts cases; no case is taken as one here), readmissions (they need the other stays)
    and the budget share.

    The price under the points method is `point_value` (yuan per point), else the policy's
    `points.budget_point_value`; a case paid by group gets its micro-points × that price, half up
    to the fen: what `settle` pays it when the year's point value is that price. Under the rate
    method the payment is the one `settle` makes. Returns PRICED_COLUMNS per case, in input order:
    the codes (case_type, rule, paid_by) as their names; base_micro, points_micro (10⁻⁶ point), coef
    (10⁻¹²), price_e4 (10⁻⁴ fen per point), ratio_micro (10⁻⁶); reference, the high and low lines
    (threshold × reference, half up), the group's standard (for every case with standard points
    and a price, whatever its type) and payment in fen.
    """
    frame = _attached(cases, policy, source).with_columns(pl.lit(False).alias("special_review"))
    frame = _typed_without_ratio(frame, policy)
    if policy.method == "points":
        price = point_price_e4(policy, point_value)
        frame = frame.with_columns(pl.when(pl.col("pool").is_not_null()).then(pl.lit(price, pl.Int64)).alias("price_e4"))
    frame = classify_by_ratio(frame, policy)
    frame = frame.with_columns(*(_mul_div(frame, f"{case}_threshold", "reference", UNIT, f"{case}_line")
                                 for case in ("high", "low")))
    frame = case_points(frame, policy).rename({"points": "points_micro"})
    frame = frame.with_columns(_paid_at_price(frame, policy).alias("payment"),
                               _standard_at(frame, policy, frame["price_e4"]))
    named = {"case_type": CASE_TYPES, "rule": RULES, "paid_by": PAID_BY}
    return frame.select(_named(c, named[c]).cast(pl.String) if c in named else pl.col(c) for c in PRICED_COLUMNS)


def settle(cases: pl.DataFrame, policy: Policy, source: BaseSource, *, column: str = "drg") -> Settlement:
    """Settle a frame of grouped cases (the grouped-file columns) under `policy`, base points from `source`.

    `column` names the group column in the outputs ("drg"; a DIP source passes "dip").
    The frame stays in input order throughout: stages add columns, and decisions made on a
    subset (special review, readmissions, largest remainder) go back to their rows by position.
    The settlement ends with its checks (grouper.payment.settle_checks): `Settlement.checks`, and the
    warnings among them.
    """
    from .settle_checks import settlement_checks

    frame = _attached(cases, policy, source)
    with ThreadPoolExecutor(max_workers=1) as background:  # Polars releases the GIL: a second core
        stays = background.submit(stay_order, frame, policy)
        frame = _typed_without_ratio(frame, policy)
        pools = _budget_point_values(frame, policy) if policy.method == "points" else {}
        if policy.method == "points":
            frame = frame.with_columns(_by_pool({k: p["budget_price_e4"] for k, p in pools.items()}).alias("price_e4"))
        frame = classify_by_ratio(frame, policy)
        frame = _drop_spent(case_points(frame, policy), policy)
        frame = reduced_points(readmissions(frame, policy, stays.result()), policy).drop("points")
    frame, pool_summary = _pay(frame, policy, pools)
    tables = ThreadPoolExecutor(max_workers=1)
    hospitals, groups = tables.submit(hospitals_frame, frame, policy), tables.submit(groups_frame, frame, column)
    tables.shutdown(wait=False)  # the thread ends when both tables are made
    checks = settlement_checks(frame, pool_summary, policy, source, column)
    return Settlement(case_table(frame, column), hospitals, groups, pool_summary, policy, checks)


class CasePricer:
    """`price_cases` one case at a time without a frame (预结算 of `grouper serve`: fifty Polars calls
    on a one-row frame take ~13 ms, this ~0.1 ms). The same engine: every rule is the builder
    `price_cases` uses (`_price_rules`, `_fixed_steps`, `_ratio_steps`, `_points_rules`, the source's
    `case_rules`), worked out on the case's values by `row_ops.RowOps`; the exact products and
    quotients are the kernel's (`row_ops.mul_div_half_up`, `compare_products`); the source's group
    table joined with the policy's (`group_table`) is made once, a dict by group.

    `price` answers None where `price_cases` would refuse the input (a status that is not a grouping
    status, a blank hospital, a cost of 10¹⁰ yuan or more, a threshold table without the case's
    level, a policy the columns cannot serve, the weights check): the caller then prices through
    `price_cases`, which raises the error. `columns` and `discharge_type`: the columns of the frames
    the caller would give `price_cases`, and the dtype of its `discharge`.
    """

    def __init__(self, policy: Policy, source: BaseSource, *, point_value: Decimal | None = None,
                 columns=(), discharge_type=pl.Int32):
        from .settle_checks import check_inputs

        self.policy, self.source, self.discharge_type = policy, source, discharge_type
        self.refused = False
        try:
            check_inputs(columns, policy)
            table = group_table(source.groups(), policy_groups(policy))
        except InputError:
            self.refused = True  # price_cases raises it
            return
        names = [c for c in table.columns if c != "group"]
        fill = {c: GROUP_DEFAULTS[c] for c in names if c in GROUP_DEFAULTS}
        self.missing = {**dict.fromkeys(LOS_COLUMNS), **dict.fromkeys(names), **fill}
        self.by_group = {row["group"]: {**dict.fromkeys(LOS_COLUMNS),
                                        **{c: (fill[c] if row[c] is None and c in fill else row[c]) for c in names}}
                         for row in table.iter_rows(named=True)}
        self.point_price = point_price_e4(policy, point_value)
        self.fixed_coefficient = "fixed_coefficient" in source.case_rules(POLARS)

    def price_all(self, cases: list[dict]) -> list[dict] | None:
        """`price` of each case, or None when one of them (or the weights check over them) needs `price_cases`."""
        if self.refused:
            return None
        out = []
        for case in cases:
            priced = self.price(case)
            if priced is None:
                return None
            out.append(priced)
        # settle_checks.check_weights over the cases (9 in 10 of at least 10 grouped cases without base points)
        grouped = [p for p in out if p["_weights_checked"]]
        if len(grouped) >= 10 and sum(p["base_micro"] is None for p in grouped) * 10 >= len(grouped) * 9:
            return None
        return out

    def price(self, case: dict) -> dict | None:
        """PRICED_COLUMNS of one case (plus `_weights_checked`), as `price_cases` gives its row; `case`
        holds the engine's columns typed as `prepare` makes them (absent: null)."""
        policy, cases = self.policy, self.policy["cases"]
        v = {name: case.get(name) for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
        status, hospital, cost = v["status"], v["hospital"], v["cost"]
        if (status not in KNOWN_STATUSES or hospital is None or re.fullmatch(r"\s*", hospital)
                or (cost is not None and cost >= MAX_COST)):
            return None  # prepare refuses it
        v["special_review"] = bool(v["special_review"])
        v["group"] = v["drg"]
        v.update(self.by_group.get(v["group"], self.missing))
        ops = RowOps(v)
        for name, expr in self.source.case_rules(ops).items():
            v[name] = expr.v
        v["special_review"] = False  # no case is taken for special review here (price_cases)
        v.update({name: expr.v for name, expr in _price_rules(policy, self.fixed_coefficient, ops).items()})
        coef = v["coef"]
        v["bc_micro"] = (mul_div(v["base_micro"], coef, COEF) if policy["coefficients"]["drgs"]
                         else mul_div(v["base_micro"], None if coef is None else coef // (COEF // UNIT), UNIT))
        v["case_type"], v["rule"] = _first_step(_fixed_steps(policy, ops))
        v["standard_micro"] = (_standard_points(policy, ops).v
                               if cases["per_diem"]["per_day"] and v["case_type"] == TYPE["per_diem"] else v["bc_micro"])
        if policy.method == "points":
            v["price_e4"] = self.point_price if v["pool"] is not None else None
        # classify_by_ratio
        reference = (v["group_mean"] if policy["ratio"]["reference"] == "group_mean"
                     else mul_div(v["bc_micro"], v["price_e4"], MICRO * PRICE))
        reference = v["reference"] = reference if reference is not None and reference > 0 else None
        for case_type in ("high", "low"):
            v[f"{case_type}_threshold"] = _level_expr(cases[case_type]["threshold"], ops.col("hospital_level"), UNIT, ops).v
        v["ratio_micro"] = mul_div(cost, UNIT, reference)
        if cases["outliers"] == "cost_ratio":
            for case_type in ("high", "low"):
                v[f"_{case_type}_sign"] = compare_products(cost, UNIT, v[f"{case_type}_threshold"], reference)
                if (v["case_type"] is None and reference is not None and v[f"{case_type}_threshold"] is None
                        and "default" not in cases[case_type]["threshold"]):
                    return None  # _refuse_missing_thresholds
        if v["case_type"] is None:
            v["case_type"], v["rule"] = _first_step(_ratio_steps(policy, self.discharge_type, ops))
        for case_type in ("high", "low"):
            v[f"{case_type}_line"] = mul_div(v[f"{case_type}_threshold"], reference, UNIT)
        # case_points
        paid_by, others = _points_rules(policy, ops)
        paid_by = v["paid_by"] = paid_by.v
        points = None
        if paid_by == PAY["group"]:
            if v["case_type"] == TYPE["normal"]:
                points = v["bc_micro"]
            elif others is not None:
                points = others.otherwise(None).clip(lower_bound=0).v
        v["points_micro"] = points
        # _paid_at_price and _standard_at
        by_points = mul_div(points, v["price_e4"], MICRO * PRICE)
        standard = mul_div(v["standard_micro"], v["price_e4"], MICRO * PRICE)
        if policy.method == "rate" and cases["per_diem"]["per_day"] and v["case_type"] == TYPE["per_diem"]:
            amount, unit = _per_diem_e4(policy, ops)
            by_points = standard = _div_half_up(amount, unit).v
        v["payment"] = (by_points if paid_by == PAY["group"] else cost if paid_by == PAY["fee_for_service"] else 0)
        v["standard"] = standard
        out = {c: v[c] for c in PRICED_COLUMNS}
        out["case_type"], out["rule"], out["paid_by"] = (CASE_TYPES[v["case_type"]], RULES[v["rule"]],
                                                         PAID_BY[paid_by])
        # what settle_checks.check_weights counts
        out["_weights_checked"] = status == "grouped" and v["group"] is not None and v["_per_day"] is None
        return out


def _first_step(steps: list[tuple]) -> tuple[int | None, int | None]:
    """`_decide` on one case: the codes of the type and rule of the first step whose test holds."""
    for test, kind, key in steps:
        if test.v is True:
            return TYPE[kind], RULE[key]
    return None, None
