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

Everything is vectorised over the batch (Polars expressions, NumPy over the kernel's code ids);
there is no Python loop per case, and no input raises or drops a row.

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
from .engine.encode import Batch
from .engine.run import eval_conditions
from .io import READ_PROBLEM

# ICD-10 医保版 2.0 diagnosis codes: A00.000, A00.000x001, A33.x00, A33.x00x001, with an optional
# asterisk code after a dagger code: A01.001+K77.0*, A17.000+G01*. Every code of the CHS-DRG 1.1
# dictionary matches.
DX_FORMAT = r"^[A-Z][0-9]{2}\.(?:[0-9]{3}|x[0-9]{2})(?:x[0-9]{3})?(?:\+[A-Z][0-9]{2}(?:\.[0-9])?\*)?$"
# ICD-9-CM-3 医保版 2.0 procedure codes: 51.2300, 00.0200x001, 01.6x00, 01.6x00x001, 17.91100,
# 17.912A0, and two dictionary codes of the form 86.700x0013. Every code of the dictionary matches.
PROC_FORMAT = (r"^[0-9]{2}\.(?:[0-9]{4}(?:x[0-9]{3})?|[0-9]x[0-9]{2}(?:x[0-9]{3})?|[0-9]{5}|[0-9]{3}[A-Z][0-9]"
               r"|[0-9]{3}x[0-9]{4})$")
# May not be the principal diagnosis: an asterisk (manifestation) code on its own — ending in `*`
# without the `+` of a dagger/asterisk pair — or an external cause of injury V01-Y98.
ASTERISK_ONLY = r"^[^+]*\*$"
EXTERNAL_CAUSE = r"^(?:V(?:0[1-9]|[1-9][0-9])|[WX][0-9]{2}|Y(?:[0-8][0-9]|9[0-8]))"
NOT_PRINCIPAL = f"(?:{ASTERISK_ONLY})|(?:{EXTERNAL_CAUSE})"

DISCHARGE_MODES = (1, 2, 3, 4, 5, 9)
MAX_AGE = 150
WEIGHT_RANGE = (100, 10_000)

ORDER = {code: i for i, code in enumerate(reasons.CATALOGUE)}
PROBLEM_SCHEMA = {"row": pl.UInt32, "reason": pl.String, "level": pl.String, "detail": pl.String}


def _nulls(n: int) -> pl.Series:
    return pl.repeat(None, n, dtype=pl.String, eager=True)


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


# ---- the checks --------------------------------------------------------------------------------

@dataclass
class _Items:
    """The flat items of one code list of a batch: owner row, position in the list, id, text."""

    row: np.ndarray
    pos: np.ndarray
    ids: np.ndarray
    text: pl.Series
    lengths: np.ndarray


def _flat_text(column: pl.Series) -> pl.Series:
    """The items of a List(String) column, flattened like the kernel's Arrow values (empty lists
    and null lists contribute nothing; null items stay, as "")."""
    try:
        flat = column.explode(empty_as_null=False, keep_nulls=False)  # zero-copy (Polars >= 1.35)
    except TypeError:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = column.rechunk().to_arrow()
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        flat = pl.Series(pl.from_arrow(pc.list_flatten(arr)), dtype=pl.String)
    return flat.fill_null("")


def _items(column: pl.Series, offsets: np.ndarray, ids: np.ndarray, n: int) -> _Items:
    column = column.cast(pl.List(pl.String))
    text = _flat_text(column)
    lengths = np.diff(offsets).astype(np.int64)
    if len(text) != len(ids) or len(lengths) != n:  # defensive: re-derive from the text alone
        lengths = column.list.len().fill_null(0).to_numpy().astype(np.int64)
        ids = np.zeros(len(text), np.uint32)
    row = np.repeat(np.arange(n, dtype=np.int64), lengths)
    starts = np.cumsum(lengths) - lengths
    pos = np.arange(len(row), dtype=np.int64) - starts[row]
    return _Items(row, pos, np.asarray(ids), text, lengths)


def _text_matches(items: _Items, known: np.ndarray, pattern: str, where: np.ndarray) -> np.ndarray:
    """Whether each item matches `pattern`: from the per-plan table for known codes, by regex for the rest."""
    out = known[items.ids]
    unknown = where & (items.ids == 0)
    if unknown.any():
        out = out.copy()
        out[unknown] = items.text.filter(pl.Series(unknown)).str.contains(pattern).fill_null(False).to_numpy()
    return out


def _duplicates(codes: pl.Series, items: _Items, where: np.ndarray) -> tuple[np.ndarray, pl.Series]:
    """(row, code) of every code listed more than once in the same case, each pair once.

    `codes` is the plan's code list indexed by id (index 0 unused)."""
    from .engine.kernel import KERNEL

    rows, details = [], []
    # Known codes: the kernel compares each item with the earlier items of its row (rows are short).
    offsets = np.zeros(len(items.lengths) + 1, np.int64)
    np.cumsum(items.lengths, out=offsets[1:])
    repeats = np.zeros(len(items.ids), np.uint8)
    KERNEL.duplicate_items(offsets, np.ascontiguousarray(items.ids, dtype=np.uint32), repeats)
    repeated = repeats.view(bool) & where
    if repeated.any():
        pairs = np.unique((items.row[repeated] << 32) | items.ids[repeated].astype(np.int64))  # each (row, code) once
        rows.append(pairs >> 32)
        details.append(codes.gather(pl.Series(pairs & 0xFFFFFFFF)))
    unknown = where & (items.ids == 0)
    if unknown.any():
        frame = pl.DataFrame({"row": items.row[unknown], "code": items.text.filter(pl.Series(unknown))})
        frame = frame.filter(frame.is_duplicated()).unique(maintain_order=True)
        rows.append(frame["row"].to_numpy())
        details.append(frame["code"])
    if not rows:
        return np.zeros(0, np.int64), pl.Series([], dtype=pl.String)
    return np.concatenate(rows), pl.concat(details)


def _check_codes(found: _Found, flags: _CodeFlags, items: _Items, kind: str) -> None:
    if not len(items.row):
        return
    empty = (items.text.str.len_bytes() == 0).to_numpy()
    coded = ~empty
    fmt_code, unknown_code, dup_code = f"bad_{kind}_format", f"unknown_{kind}", f"duplicate_{kind}"
    if found.enabled(fmt_code):
        pattern, known = (DX_FORMAT, flags.dx_format) if kind == "dx" else (PROC_FORMAT, flags.proc_format)
        bad = coded & ~_text_matches(items, known, pattern, coded)
        # an empty item is a stray separator, except an empty principal diagnosis (missing_dx)
        bad |= empty & (items.pos > 0) if kind == "dx" else empty
        found.add(fmt_code, items.row[bad], items.text.filter(pl.Series(bad)))
    dictionary = flags.dx_dict if kind == "dx" else flags.proc_dict
    if dictionary is not None and found.enabled(unknown_code):
        unknown = coded & ~dictionary[items.ids]
        found.add(unknown_code, items.row[unknown], items.text.filter(pl.Series(unknown)))
    if kind == "dx" and found.enabled("not_principal_dx"):
        principal = coded & (items.pos == 0)
        bad = principal & _text_matches(items, flags.not_principal, NOT_PRINCIPAL, principal)
        found.add("not_principal_dx", items.row[bad], items.text.filter(pl.Series(bad)))
    if found.enabled(dup_code):
        found.add(dup_code, *_duplicates(flags.codes, items, coded))


def _check_fields(found: _Found, cases: pl.DataFrame, fields: np.ndarray) -> None:
    f = {name: fields[i].astype(np.int64) for i, name in enumerate(ir.FIELDS)}
    present = {name: fields[i] != ir.MISSING for i, name in enumerate(ir.FIELDS)}
    for name in getattr(found.plan, "empty_numbers", {}):  # `read empty F as N`: judge what was written
        if name in cases.columns:
            written = cases[name].cast(pl.String).str.strip_chars().str.len_bytes().fill_null(0).to_numpy() > 0
            present[name] = present[name] & written

    def report(code: str, bad: np.ndarray, values: np.ndarray) -> None:
        if bad.any():
            found.add(code, np.flatnonzero(bad), pl.Series(values[bad]).cast(pl.String))

    # unreadable values: text present, no number (encode_cases makes them missing); one pass
    malformed = [name for name in ("sex", "age", "age_days", "weight", "los", "discharge")
                 if found.enabled(f"malformed_{name}") and name in cases.columns]
    if malformed and cases.height:
        # cheap test first (a value is there but no number came out), text work only on those rows
        given = cases.select(pl.col(name).is_not_null().alias(name) for name in malformed).to_numpy()
        for j, name in enumerate(malformed):
            rows = np.flatnonzero(given[:, j] & ~present[name])
            if len(rows):
                raw = cases[name].cast(pl.String).gather(pl.Series(rows, dtype=pl.UInt32)).str.strip_chars()
                written = (raw.str.len_bytes() > 0).fill_null(False).to_numpy()
                found.add(f"malformed_{name}", rows[written], raw.filter(pl.Series(written)))

    age, days = f["age"], f["age_days"]
    if found.enabled("implausible_age"):
        report("implausible_age", present["age"] & ((age < 0) | (age > MAX_AGE)), age)
    if found.enabled("implausible_age_days"):
        with_days = present["age_days"]
        older = with_days & present["age"] & (age > 0) & ((days < age * 365) | (days > (age + 1) * 366))
        infant = with_days & present["age"] & (age == 0) & (days > 366)
        bad = older | infant | (with_days & (days < 0))
        if bad.any():
            detail = pl.DataFrame({"d": days[bad], "a": age[bad], "p": present["age"][bad]}).select(
                pl.format("{} d", "d") + pl.when(pl.col("p")).then(pl.format(" / {} y", "a")).otherwise(pl.lit("")))
            found.add("implausible_age_days", np.flatnonzero(bad), detail.to_series())
    if found.enabled("implausible_weight"):
        w = f["weight"]
        report("implausible_weight", present["weight"] & ((w < WEIGHT_RANGE[0]) | (w > WEIGHT_RANGE[1])), w)
    if found.enabled("implausible_los"):
        report("implausible_los", present["los"] & (f["los"] < 0), f["los"])
    if found.enabled("unknown_discharge"):
        report("unknown_discharge", present["discharge"] & ~np.isin(f["discharge"], DISCHARGE_MODES), f["discharge"])


def _scheme_ids(plan: ir.Plan, ids: np.ndarray) -> np.ndarray:
    """Code ids with the ids of unknown codes that only matched a `prefix` set made 0 (unknown)."""
    if not getattr(plan, "prefixes", None):
        return ids
    return np.where(ids > plan.n_codes, 0, ids).astype(ids.dtype, copy=False)


def check_cases(plan: ir.Plan, cases: pl.DataFrame, batch: Batch, *, threads: int | None = None,
                kernel=None) -> pl.DataFrame:
    """Every problem of every case of an encoded batch (see the module docstring for the frame)."""
    n = len(batch.skip)
    found = _Found(plan)
    flags = _code_flags(plan)
    unreadable = _check_lines(found, cases)
    _check_fields(found, cases, batch.fields)
    dx = _items(cases["dx"], batch.dx_offsets, _scheme_ids(plan, batch.dx_codes), n)
    if found.enabled("missing_dx"):
        first_empty = np.zeros(n, dtype=bool)
        heads = dx.pos == 0
        first_empty[dx.row[heads]] = (dx.text.filter(pl.Series(heads)).str.len_bytes() == 0).to_numpy()
        found.add("missing_dx", np.flatnonzero(first_empty | (dx.lengths == 0)))
    _check_codes(found, flags, dx, "dx")
    _check_codes(found, flags, _items(cases["proc"], batch.px_offsets, _scheme_ids(plan, batch.px_codes), n), "proc")
    warn_cond = getattr(plan, "warn_cond", np.zeros(0, np.int32))
    if len(warn_cond) and n:
        everyone = dataclasses.replace(batch, skip=np.zeros(n, dtype=np.uint8))  # warnings for every case
        truth = eval_conditions(plan, everyone, warn_cond, threads=threads, kernel=kernel)
        for i, name in enumerate(plan.warn_names):
            found.add(name, np.flatnonzero(truth[i]), level="warning", order=len(ORDER) + i)
    problems = found.frame()
    if unreadable is not None:  # a line read against the wrong columns: its other findings are noise
        problems = problems.filter(~pl.col("row").is_in(unreadable.implode()) | (pl.col("reason") == "malformed_line"))
    return problems


def _check_lines(found: _Found, cases: pl.DataFrame) -> pl.Series | None:
    """`malformed_line` for the rows the reader could not read against the header (grouper.io
    READ_PROBLEM); returns those rows, or None when there are none."""
    if READ_PROBLEM not in cases.columns or cases[READ_PROBLEM].null_count() == cases.height:
        return None
    bad = cases[READ_PROBLEM].is_not_null()
    rows = pl.Series(np.flatnonzero(bad.to_numpy()), dtype=pl.UInt32)
    found.add("malformed_line", rows.to_numpy(), cases[READ_PROBLEM].filter(bad), level="error")
    return rows


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
