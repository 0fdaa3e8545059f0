"""Case validation (病案质控): every problem of every case, with a stable reason code.

Two stages of the grouping pipeline (`grouper.pipeline`): `convert_codes` (the scheme's `map`
tables, before encoding) and, on the encoded batch, `check_cases` (the built-in catalogue
`grouper.reasons` and the scheme's `warn` rules) then `block` (error-level problems skip the kernel). The result is a long *problems* frame, one row per problem:

    row      UInt32   position of the case in the batch
    reason   String   a catalogue code (e.g. unknown_dx) or the name of a scheme `warn` rule
    level    String   "error" (blocks grouping) or "warning"
    detail   String   the offending code or value (null when there is none)

A case may have many problems; all are reported (each (row, reason, detail) once). Problems at
level "error" block grouping: the case gets status `invalid` and, as `reason`, its first error in
catalogue order (so `malformed_*` first). Built-in errors take precedence over the scheme's
`invalid` rules, which the kernel tests only on the cases validation let through. A check whose
level is "off" is not run.

The checks run in one walk of the kernel over the encoded batch (`check_cases` of ext/_kernel.pyx,
twin of grouper/engine/_kernel_py.py): the code ids it interned while encoding, per-code flags
computed once per plan, the fields it parsed, the warn rules as condition programs; only the
details of the problems found are gathered afterwards. There is no Python loop per case in the
compiled path, and no input raises or drops a row.

Choices worth knowing:
- An empty principal diagnosis (or an empty diagnosis list) is `missing_dx` only. An empty
  *secondary* item (`A|` or `A||B`: a stray separator) is `bad_dx_format` / `bad_proc_format`
  with detail "" and is not also reported as unknown or duplicated.
- A code that is not in the 医保版 format is usually also absent from the dictionary: both are
  reported, since their severities can be set separately.
- `unknown_dx` / `unknown_proc` run only when the scheme declares `dictionary dx` / `dictionary proc`.
- `malformed_<field>` is reported for every unreadable field of a case (not only the first). At
  level "warning" the case is grouped with that field missing.
"""
from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np
import polars as pl

from . import reasons
from .engine import ir
from .engine.encode import Batch, encode_cases
from .engine.kernel import KERNEL
from .engine.run import over_rows
from .io import READ_PROBLEM

# The code formats and plausibility bounds are the engine's (the kernel's validation pass applies them).
DX_FORMAT, PROC_FORMAT, NOT_PRINCIPAL = ir.DX_FORMAT, ir.PROC_FORMAT, ir.NOT_PRINCIPAL
ASTERISK_ONLY, EXTERNAL_CAUSE = ir.ASTERISK_ONLY, ir.EXTERNAL_CAUSE
DISCHARGE_MODES, MAX_AGE, WEIGHT_RANGE = ir.DISCHARGE_MODES, ir.MAX_AGE, ir.WEIGHT_RANGE

ORDER = {code: i for i, code in enumerate(reasons.CATALOGUE)}
PROBLEM_SCHEMA = {"row": pl.UInt32, "reason": pl.String, "level": pl.String, "detail": pl.String}


def _nulls(n: int) -> pl.Series:
    return pl.Series([None], dtype=pl.String).new_from_index(0, n)   # (pl.repeat: an expression run per call)


def empty_problems() -> pl.DataFrame:
    return pl.DataFrame(schema=PROBLEM_SCHEMA)


def level_of(plan: ir.Plan, code: str) -> str:
    """The severity of a catalogue check under this plan ("error", "warning" or "off")."""
    if code in reasons.FIXED_LEVEL:
        return reasons.CATALOGUE[code].level
    return (getattr(plan, "validation", None) or {}).get(code) or reasons.CATALOGUE[code].level


# ---- per-plan facts about the plan's own codes (computed once per plan) ------------------------

@dataclass
class _CodeFlags:
    codes: pl.Series           # the plan's codes by id ("" at 0)
    dx_format: np.ndarray      # bool[n_codes + 1], by code id (id 0: unknown code, False)
    proc_format: np.ndarray
    not_principal: np.ndarray
    dx_dict: np.ndarray | None  # in the dx dictionary (None: no dictionary declared)
    proc_dict: np.ndarray | None
    maps: dict = dataclasses.field(default_factory=dict)  # kind → (from, to, accepted) Series
    bits: np.ndarray | None = None  # ir.CODE_* bits by code id (_code_flag_bits)


_FLAGS: dict[int, tuple[weakref.ref, _CodeFlags]] = {}


def _set_members(plan: ir.Plan, s: int) -> np.ndarray:
    ids = np.arange(plan.n_codes + 1, dtype=np.uint64)
    words = plan.set_bits[s][(ids >> np.uint64(6)).astype(np.intp)]
    return ((words >> (ids & np.uint64(63))) & np.uint64(1)).astype(bool)


def _code_flags(plan: ir.Plan) -> _CodeFlags:
    cached = _FLAGS.get(id(plan))
    if cached is not None and cached[0]() is plan:
        return cached[1]
    codes = pl.Series([""] + list(plan.codes), dtype=pl.String)  # index = code id

    def matches(pattern: str) -> np.ndarray:
        out = codes.str.contains(pattern).fill_null(False).to_numpy().copy()
        out[0] = False
        return out

    dictionaries = getattr(plan, "dictionary_sets", None) or {}
    flags = _CodeFlags(
        codes=codes, dx_format=matches(DX_FORMAT), proc_format=matches(PROC_FORMAT), not_principal=matches(NOT_PRINCIPAL),
        dx_dict=_set_members(plan, dictionaries["dx"]) if "dx" in dictionaries else None,
        proc_dict=_set_members(plan, dictionaries["proc"]) if "proc" in dictionaries else None,
    )
    key = id(plan)
    _FLAGS[key] = (weakref.ref(plan, lambda _ref, key=key: _FLAGS.pop(key, None)), flags)
    return flags


def code_flags(plan: ir.Plan) -> _CodeFlags:
    """Per-plan facts about the plan's own codes, by code id (format, principal, dictionaries)."""
    return _code_flags(plan)


# ---- building the problems frame ---------------------------------------------------------------

class _Found:
    """Collects problems as (rows, reason, detail) column chunks; one frame at the end."""

    def __init__(self, plan: ir.Plan):
        self.plan = plan
        self.chunks: list[pl.DataFrame] = []

    def enabled(self, code: str) -> bool:
        return level_of(self.plan, code) != "off"

    def add(self, code: str, rows: np.ndarray, detail: pl.Series | list | None = None, *, level: str | None = None,
            order: int | None = None) -> None:
        rows = np.asarray(rows)
        if not len(rows):
            return
        level = level or level_of(self.plan, code)
        if detail is None:
            detail = _nulls(len(rows))
        self.chunks.append(pl.DataFrame({
            "row": pl.Series(rows, dtype=pl.UInt32),
            "reason": pl.Series([code], dtype=pl.String).new_from_index(0, len(rows)),
            "level": pl.Series([level], dtype=pl.String).new_from_index(0, len(rows)),
            "detail": pl.Series(detail, dtype=pl.String),
            "order": pl.Series([ORDER.get(code, len(ORDER)) if order is None else order],
                               dtype=pl.UInt32).new_from_index(0, len(rows)),
        }))

    def frame(self) -> pl.DataFrame:
        if not self.chunks:
            return empty_problems()
        return (pl.concat(self.chunks, rechunk=True)
                .unique(subset=["row", "reason", "detail"], keep="first", maintain_order=True)
                .sort(["row", "order"], maintain_order=True)
                .drop("order"))


# ---- code conversion ---------------------------------------------------------------------------

def convert_codes(plan: ir.Plan, cases: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace codes through the plan's `map dx` / `map proc` tables (from → to).

    A code without an entry is kept as it is; it is reported `unmapped_dx` / `unmapped_proc`
    unless it already is a grouper code: a target of the map, or a code of the scheme's
    dictionary of that kind. Empty items are not reported (they are missing, not unmapped).
    Returns (converted cases, problems).
    """
    found = _Found(plan)
    code_maps = getattr(plan, "code_maps", None) or {}
    replaced = {}
    for kind, code in (("dx", "unmapped_dx"), ("proc", "unmapped_proc")):
        mapping = code_maps.get(kind)
        if not mapping or kind not in cases.columns:
            continue
        old, new, accepted = _map_series(plan, kind)
        column = cases[kind].cast(pl.List(pl.String))
        if found.enabled(code):
            unmapped = (pl.DataFrame({"row": pl.int_range(0, cases.height, dtype=pl.UInt32, eager=True),
                                      "code": column})
                        .explode("code")
                        .filter(pl.col("code").is_not_null() & (pl.col("code") != "")
                                & ~pl.col("code").is_in(accepted.implode())))
            found.add(code, unmapped["row"].to_numpy(), unmapped["code"])
        replaced[kind] = column.list.eval(pl.element().replace(old, new))
    if replaced:
        cases = cases.with_columns(**replaced)
    return cases, found.frame()


def _map_series(plan: ir.Plan, kind: str) -> tuple[pl.Series, pl.Series, pl.Series]:
    """(from codes, to codes, codes accepted without an entry) of a plan's code map, cached per plan."""
    flags = _code_flags(plan)
    if kind not in flags.maps:
        mapping = plan.code_maps[kind]
        old = pl.Series(list(mapping), dtype=pl.String)
        new = pl.Series(list(mapping.values()), dtype=pl.String)
        dictionary = flags.dx_dict if kind == "dx" else flags.proc_dict
        in_dictionary = flags.codes.filter(pl.Series(dictionary)) if dictionary is not None else pl.Series([], dtype=pl.String)
        flags.maps[kind] = (old, new, pl.concat([old, new, in_dictionary]).unique())
    return flags.maps[kind]


# ---- the checks: one pass of the kernel over the batch -----------------------------------------

assert [ORDER[c] for c in ir.CHECKS] == sorted(ORDER[c] for c in ir.CHECKS), "ir.CHECKS is in catalogue order"


def _code_flag_bits(plan: ir.Plan) -> np.ndarray:
    """uint8[n_codes + 1]: the ir.CODE_* bits of each code id (id 0: no format; the dictionaries'
    bits are what unknown codes get)."""
    flags = _code_flags(plan)
    if flags.bits is None:
        bits = (flags.dx_format * ir.CODE_DX_FORMAT + flags.proc_format * ir.CODE_PROC_FORMAT
                + flags.not_principal * ir.CODE_NOT_PRINCIPAL)
        for dictionary, bit in ((flags.dx_dict, ir.CODE_DX_DICT), (flags.proc_dict, ir.CODE_PROC_DICT)):
            if dictionary is not None:
                bits = bits + dictionary * bit
        flags.bits = np.ascontiguousarray(bits, dtype=np.uint8)
    return flags.bits


def _enabled(plan: ir.Plan) -> np.ndarray:
    """uint8 per ir.CHECKS: whether it runs (its level is not "off"; unknown_* need a dictionary).
    Kept on the plan (plans are never changed in place): a single case (grouper.onecase) would
    otherwise pay for it on every call, more than for its checks."""
    cached = plan.__dict__.get("_enabled_checks")
    if cached is not None:
        return cached
    dictionaries = getattr(plan, "dictionary_sets", None) or {}
    on = [level_of(plan, code) != "off" for code in ir.CHECKS]
    for kind in ("dx", "proc"):
        if kind not in dictionaries:
            on[ir.CHECKS.index(f"unknown_{kind}")] = False
    plan.__dict__["_enabled_checks"] = enabled = np.array(on, dtype=np.uint8)
    return enabled


def prepare_checks(plan: ir.Plan) -> None:
    """Build what the checks keep on a plan (its codes' flags, the checks that run), once, ahead of
    the first batch (grouper.pipeline does it while that batch is read)."""
    _code_flag_bits(plan)
    _enabled(plan)


def check_cases(plan: ir.Plan, cases: pl.DataFrame, batch: Batch, *, threads: int | None = None,
                kernel=None, details: bool = True) -> pl.DataFrame:
    """Every problem of every case of an encoded batch (see the module docstring for the frame).
    `details=False`: every `detail` null, for a caller that needs only which problems each row has
    (blocking and the results' warnings read no detail; writing them is most of the frame's cost)."""
    kernel = kernel or KERNEL
    if batch.field_state is None or batch.dx_text is None or batch.px_text is None:
        batch = encode_cases(plan, cases, kernel=kernel)    # a Batch made elsewhere: read the text again
    return _problem_frame(plan, cases, batch, *find_problems(plan, cases, batch, threads=threads, kernel=kernel),
                          details=details)


def find_problems(plan: ir.Plan, cases: pl.DataFrame, batch: Batch, *, threads: int | None = None,
                  kernel=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's walk over an encoded batch (`check_cases`: the codes it interned, the fields it
    parsed, the scheme's warn rules), rows split over threads like the grouping itself (`cases`: the
    case frame, for its read problems; None when there are none, as for grouper.onecase's one case):
    (row, check, ref) arrays in problem order (check: an index of ir.CHECKS, or len(ir.CHECKS) + w
    for warn rule w; ref: the item a code problem is about)."""
    kernel = kernel or KERNEL
    n = len(batch.skip)
    read_problem = (cases[READ_PROBLEM].is_not_null().to_numpy().astype(np.uint8)
                    if cases is not None and READ_PROBLEM in cases.columns else np.zeros(n, np.uint8))
    warn_cond = getattr(plan, "warn_cond", None)
    warn_cond = np.ascontiguousarray(warn_cond if warn_cond is not None else np.zeros(0), dtype=np.int32)
    args = (plan.set_bits, plan.label_maps, plan.program, plan.cond_start, warn_cond,
            batch.dx_offsets, batch.dx_codes, batch.dx_text.kernel_args(),
            batch.px_offsets, batch.px_codes, batch.px_text.kernel_args(),
            batch.fields, batch.field_state, read_problem, _code_flag_bits(plan), plan.n_codes, _enabled(plan))
    parts = over_rows(n, threads, kernel, lambda start, stop: kernel.check_cases(*args, start, stop))
    return tuple(np.concatenate(column) for column in zip(*parts))


def _problem_frame(plan: ir.Plan, cases: pl.DataFrame, batch: Batch, rows: np.ndarray, checks: np.ndarray,
                   refs: np.ndarray, *, details: bool = True) -> pl.DataFrame:
    """The kernel's (row, check, ref) problems as the problems frame: reason, level, detail (the
    offending code, the value as written, or the value read; null throughout without `details`)."""
    if not len(rows):
        return empty_problems()
    warn_names = list(getattr(plan, "warn_names", []))
    names = pl.Series([*ir.CHECKS, *warn_names], dtype=pl.String)
    levels = pl.Series([level_of(plan, code) for code in ir.CHECKS] + ["warning"] * len(warn_names), dtype=pl.String)
    check = pl.Series(checks)
    detail = _nulls(len(rows))
    if details:
        detail = _details(cases, batch, rows, checks, refs, detail)
    return pl.DataFrame({"row": pl.Series(rows, dtype=pl.UInt32), "reason": names.gather(check),
                         "level": levels.gather(check), "detail": detail})


def _details(cases: pl.DataFrame, batch: Batch, rows: np.ndarray, checks: np.ndarray, refs: np.ndarray,
             detail: pl.Series) -> pl.Series:
    """`detail` (null per problem) with each problem's offending code or value written in."""

    def where(code: str) -> np.ndarray:
        return np.flatnonzero(checks == ir.CHECKS.index(code))

    for kind, text in (("dx", batch.dx_text), ("proc", batch.px_text)):
        for code in (f"bad_{kind}_format", f"unknown_{kind}", "not_principal_dx", f"duplicate_{kind}"):
            at = where(code) if code != "not_principal_dx" or kind == "dx" else ()
            if len(at):
                detail = detail.scatter(at, text.take(refs[at]))
    for f, name in enumerate(ir.FIELDS[:6]):
        at = where(f"malformed_{name}")
        if len(at):
            detail = detail.scatter(at, cases[name].cast(pl.String).gather(rows[at]).str.strip_chars())
    for code, name in (("implausible_age", "age"), ("implausible_weight", "weight"), ("implausible_los", "los"),
                       ("unknown_discharge", "discharge")):
        at = where(code)
        if len(at):
            detail = detail.scatter(at, pl.Series(batch.fields[ir.FIELD_IDS[name]][rows[at]].astype(np.int64))
                                    .cast(pl.String))
    at = where("implausible_age_days")
    if len(at):
        r = rows[at]
        with_age = batch.field_state[ir.FIELD_IDS["age"]][r] == ir.FIELD_OK
        text = pl.DataFrame({"d": batch.fields[ir.FIELD_IDS["age_days"]][r].astype(np.int64),
                             "a": batch.fields[ir.FIELD_IDS["age"]][r].astype(np.int64), "p": with_age}).select(
            pl.format("{} d", "d") + pl.when(pl.col("p")).then(pl.format(" / {} y", "a")).otherwise(pl.lit("")))
        detail = detail.scatter(at, text.to_series())
    at = where("malformed_line")
    if len(at):
        detail = detail.scatter(at, cases[READ_PROBLEM].cast(pl.String).gather(rows[at]))
    return detail


def block(plan: ir.Plan, batch: Batch, problems: pl.DataFrame) -> Batch:
    """The batch with every case that has an error-level problem skipped, reason = its first error.

    Rows encode_cases skipped for a reason outside the catalogue keep that reason; its
    `malformed_*` rejections are replaced by the validation result (so a scheme can lower them).
    """
    n = len(batch.skip)
    errors = problems.filter(pl.col("level") == "error").unique(subset="row", keep="first", maintain_order=True)
    reason = _nulls(n)
    if errors.height:
        reason = reason.scatter(errors["row"], errors["reason"])
    earlier = batch.skip_reason.cast(pl.String)
    foreign = earlier.is_not_null() & ~earlier.is_in(list(reasons.CATALOGUE))
    if foreign.any():
        reason = earlier.zip_with(foreign, reason)
    skip = np.ascontiguousarray(reason.is_not_null().to_numpy().astype(np.uint8))
    return dataclasses.replace(batch, skip=skip, skip_reason=reason.rename("skip_reason"))


# ---- messages and the quality report -----------------------------------------------------------

def messages(plan: ir.Plan) -> dict[str, tuple[str, str]]:
    """reason → (Chinese, English) message: the catalogue, then the scheme's invalid and warn rules.

    A rule message written "中文 / English" is split at the " / "; otherwise both are the message.
    """
    out = {code: (r.zh, r.en) for code, r in reasons.CATALOGUE.items()}
    for names, texts in ((plan.invalid_names, plan.invalid_messages),
                         (getattr(plan, "warn_names", []), getattr(plan, "warn_messages", []))):
        for name, text in zip(names, texts):
            zh, sep, en = (text or name).partition(" / ")
            out.setdefault(name, (zh.strip(), en.strip() if sep else zh.strip()))
    return out


REPORT_SCHEMA = {"scope": pl.String, "dept": pl.String, "reason": pl.String, "level": pl.String, "value": pl.String,
                 "cases": pl.Int64, "total": pl.Int64, "percent": pl.Float64,
                 "message_zh": pl.String, "message_en": pl.String}
UNUSED_COLUMN = "unused_column"  # a quality-report row (scope "input") naming an input column that fed nothing
_UNUSED_MESSAGES = ("输入列未使用", "input column not used")


class QualityReport:
    """Problem counts accumulated batch by batch (bounded memory: counts only, never the problems).

    `add(cases, problems)` takes a batch's case frame and its problems (with `dept`, see
    `grouper.pipeline.group_frame(..., problems=True)`); `frame()` gives the summary:

        scope       "all" (every case), "dept" (the cases of one department), "value" (one
                    rejected value of a field: the VALUES_SHOWN most frequent of each malformed_*
                    reason, e.g. sex 男 under a scheme that reads only 1/2) or "input" (an input
                    column that fed nothing: reason unused_column, cases null)
        dept        the department (null for scope all, and for cases without a department)
        reason      reason code, or "(any)": cases with at least one problem (one such row per
                    scope, also when it is 0, so `total` gives every department's case count)
        level       error / warning (null for "(any)")
        value       the rejected value (scope value) or the column's header (scope input); else null
        cases       cases with this problem (a case counts once per reason)
        total       cases in the scope; percent = 100 * cases / total
        message_zh, message_en
    """

    ANY = "(any)"

    def __init__(self, plan: ir.Plan):
        self.messages = messages(plan)
        self.order = {**ORDER, **{name: len(ORDER) + i for i, name in enumerate(plan.invalid_names)},
                      **{name: len(ORDER) + len(plan.invalid_names) + i
                         for i, name in enumerate(getattr(plan, "warn_names", []))}}
        self._by_reason = pl.DataFrame(schema={"dept": pl.String, "reason": pl.String, "level": pl.String,
                                               "cases": pl.Int64})
        self._depts = pl.DataFrame(schema={"dept": pl.String, "total": pl.Int64})
        self.unreadable_lines: list[str] = []  # the first SHOWN malformed lines: "line N: why (id X)"
        self._values = pl.DataFrame(schema={"reason": pl.String, "level": pl.String, "value": pl.String,
                                            "cases": pl.Int64})
        self.unused_columns: tuple[str, ...] = ()

    SHOWN = 10
    VALUES_SHOWN = 20

    def note_unused(self, headers: tuple[str, ...]) -> None:
        """The input columns that fed nothing (grouper.io's on_unused)."""
        self.unused_columns = tuple(headers)

    def add(self, cases: pl.DataFrame, problems: pl.DataFrame) -> None:
        if len(self.unreadable_lines) < self.SHOWN:
            lines = problems.filter(pl.col("reason") == "malformed_line").head(self.SHOWN - len(self.unreadable_lines))
            ids = lines["id"] if "id" in lines.columns else pl.Series([None] * lines.height, dtype=pl.String)
            self.unreadable_lines += [f"{detail} (id {i})" if i is not None else detail
                                      for detail, i in zip(lines["detail"], ids)]
        dept = cases["dept"] if "dept" in cases.columns else pl.Series([None] * cases.height, dtype=pl.String)
        totals = dept.cast(pl.String).to_frame("dept").group_by("dept").agg(pl.len().cast(pl.Int64).alias("total"))
        if "dept" not in problems.columns:
            problems = problems.with_columns(dept.cast(pl.String).gather(problems["row"]).alias("dept"))
        counts = pl.concat([
            problems.group_by("dept", "reason", "level").agg(pl.col("row").n_unique().cast(pl.Int64).alias("cases")),
            problems.group_by("dept").agg(pl.lit(self.ANY).alias("reason"), pl.lit(None, pl.String).alias("level"),
                                          pl.col("row").n_unique().cast(pl.Int64).alias("cases")),
        ], how="vertical_relaxed").select("dept", "reason", "level", "cases")
        self._by_reason = (pl.concat([self._by_reason, counts])
                           .group_by("dept", "reason", "level").agg(pl.col("cases").sum()))
        self._depts = pl.concat([self._depts, totals]).group_by("dept").agg(pl.col("total").sum())
        rejected = problems.filter(pl.col("reason").str.starts_with("malformed_") & (pl.col("reason") != "malformed_line"))
        if rejected.height:
            values = rejected.group_by("reason", "level", pl.col("detail").alias("value")).agg(
                pl.col("row").n_unique().cast(pl.Int64).alias("cases"))
            self._values = (pl.concat([self._values, values.select(self._values.columns)])
                            .group_by("reason", "level", "value").agg(pl.col("cases").sum()))

    @property
    def total(self) -> int:
        return int(self._depts["total"].sum())

    def frame(self) -> pl.DataFrame:
        """The summary: for each scope, its "(any)" row first (always present, also with 0 cases,
        so every department's case count is there), then one row per reason in catalogue order."""
        counts = self._by_reason
        any_rows = counts.filter(pl.col("reason") == self.ANY).select("dept", "cases")
        per_dept = pl.concat([
            self._depts.join(any_rows, on="dept", how="left", nulls_equal=True)
            .with_columns(pl.lit(self.ANY).alias("reason"), pl.lit(None, pl.String).alias("level"),
                          pl.col("cases").fill_null(0)),
            counts.filter(pl.col("reason") != self.ANY).join(self._depts, on="dept", how="left", nulls_equal=True),
        ], how="diagonal_relaxed").with_columns(pl.lit("dept").alias("scope"))
        all_depts = pl.concat([
            pl.DataFrame({"reason": [self.ANY], "level": pl.Series([None], dtype=pl.String),
                          "cases": [int(any_rows["cases"].sum())]}),
            counts.filter(pl.col("reason") != self.ANY).group_by("reason", "level").agg(pl.col("cases").sum()),
        ], how="vertical_relaxed").with_columns(
            pl.lit("all").alias("scope"), pl.lit(None, pl.String).alias("dept"), pl.lit(self.total, pl.Int64).alias("total"))
        values = (self._values.sort(["reason", "cases", "value"], descending=[False, True, False])
                  .group_by("reason", maintain_order=True).head(self.VALUES_SHOWN)
                  .with_columns(pl.lit("value").alias("scope"), pl.lit(None, pl.String).alias("dept"),
                                pl.lit(self.total, pl.Int64).alias("total")))
        unused = pl.DataFrame({"value": list(self.unused_columns)}, schema={"value": pl.String}).with_columns(
            pl.lit("input").alias("scope"), pl.lit(None, pl.String).alias("dept"), pl.lit(UNUSED_COLUMN).alias("reason"),
            pl.lit(None, pl.String).alias("level"), pl.lit(None, pl.Int64).alias("cases"),
            pl.lit(self.total, pl.Int64).alias("total"))
        columns = ["scope", "dept", "reason", "level", "value", "cases", "total"]
        frame = pl.concat([part.with_columns(pl.lit(None, pl.String).alias("value")).select(columns)
                           for part in (all_depts, per_dept)]
                          + [values.select(columns), unused.select(columns)], how="vertical_relaxed")
        zh = {k: v[0] for k, v in self.messages.items()} | {UNUSED_COLUMN: _UNUSED_MESSAGES[0]}
        en = {k: v[1] for k, v in self.messages.items()} | {UNUSED_COLUMN: _UNUSED_MESSAGES[1]}
        frame = frame.with_columns(
            pl.when(pl.col("total") > 0).then((100.0 * pl.col("cases") / pl.col("total")).round(2)).alias("percent"),
            pl.col("reason").replace_strict(zh, default=None, return_dtype=pl.String).alias("message_zh"),
            pl.col("reason").replace_strict(en, default=None, return_dtype=pl.String).alias("message_en"),
            pl.col("reason").replace_strict({self.ANY: -1, **self.order}, default=len(self.order),
                                            return_dtype=pl.Int64).alias("_order"),
            pl.col("scope").replace_strict({"all": 0, "dept": 1, "value": 2, "input": 3}, return_dtype=pl.Int8)
            .alias("_by_dept"),
            pl.int_range(pl.len()).alias("_given"),
        )
        return (frame.sort(["_by_dept", "dept", "_order", "reason", "_given"], nulls_last=False)
                .select(REPORT_SCHEMA.keys()).cast(REPORT_SCHEMA))


def quality_report(plan: ir.Plan, cases: pl.DataFrame, problems: pl.DataFrame) -> pl.DataFrame:
    """The quality-report summary of one frame of cases and its problems (see QualityReport)."""
    report = QualityReport(plan)
    report.add(cases, problems)
    return report.frame()
