"""The grouping pipeline for one case, in plain Python: how `grouper serve` answers a single case.

Polars costs tens of microseconds per operation whatever the row count, and the batch pipeline
(grouper.pipeline) runs a few hundred of them: ~20 ms for one row idle. This module takes one case
through the same stages in plain Python, on the same definitions:

    read + canonicalise   grouper.io's rules: scalars stripped (empty → missing), dx/proc split on | and ,
    code maps             the plan's `map` tables; `unmapped_*` as grouper.validate.convert_codes
    encode                the plan's code ids (and `prefix` ids), `read` statements, malformed fields
    validate              the kernel's one-pass check (grouper.validate.find_problems: the catalogue's
                          checks and the scheme's `warn` rules), levels from grouper.validate
    kernel                the same compiled kernel (grouper.engine.run.run_kernel), on one row
    results, carry        status, mdc, adrg, drg, reason, warnings; the typed settlement fields and
                          their problems (grouper.fields)

Exact or nothing: a value written in a form whose reading is not plain — a number like "+5" or
"12.5", money with separators or a currency sign, a date other than 2024-01-05 or 20240105, a
character the two string libraries treat differently — makes `group_one` return None, and the
caller uses the batch pipeline. tests/test_onecase.py checks, case by case, that every case of the
golden sets and of a bad-input corpus comes out of both equal.
"""
from __future__ import annotations

import re
import struct
import weakref
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from . import reasons
from .engine import ir
from .engine.encode import SEX_WORDS, Batch
from .engine.run import run_kernel
from .fields import FALSE_WORDS, INSURANCE_CODES, MALFORMED, SETTLEMENT_REASONS, TRUE_WORDS
from .io import SCALAR_COLUMNS, SETTLEMENT_COLUMNS
from .validate import ORDER, code_flags, find_problems, level_of

# Python's str.strip() takes \x1c-\x1f for blanks, Polars' strip_chars() does not; grouper.io uses
# \x1f itself to join cells. A case holding one goes the batch way.
_UNLIKE = re.compile("[\x1c-\x1f]")
_DIGIT = re.compile(r"\d")                       # Unicode digits, as the regex crate's \d
_INTEGER = re.compile(r"(-?[0-9]+)(?:\.0*)?")    # "12", "-3", "12.0": read alike by both libraries
_FRACTION = re.compile(r"-?[0-9]+\.[0-9]*[1-9][0-9]*")   # "6.5": not a whole number to either
_MONEY = re.compile(r"([-+]?)([0-9]{1,15})(?:\.([0-9]{0,2})0*)?")
_DATE = re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})|([0-9]{4})([0-9]{2})([0-9]{2})")
_INT32 = (np.iinfo(np.int32).min + 1, np.iinfo(np.int32).max)   # for the kernel: MISSING is int32's minimum
_INT32_TYPED = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)  # grouper.fields' Int32 columns
_INT8 = (-128, 127)


class Declined(Exception):
    """A value whose reading is not plain: the batch pipeline reads this case."""


@dataclass
class OneCase:
    """One grouped case: the result columns of grouper.pipeline, its problems (reason, level,
    detail) in the order `group_frame(..., problems=True)` lists them, and (settlement) the typed
    fields of grouper.fields.CARRIED_COLUMNS."""

    id: str | None
    status: str
    mdc: str | None
    adrg: str | None
    drg: str | None
    reason: str | None
    warnings: list[str]
    problems: list[tuple[str, str, str | None]]
    fields: dict = field(default_factory=dict)


# ---- per-plan lookups (built once per plan) ----------------------------------------------------

@dataclass
class _PlanFacts:
    code_ids: dict[str, int]            # code → id (1-based; 0: unknown)
    prefixes: list[tuple[str, int]]     # (prefix, id), the one that wins first
    dept_ids: dict[str, int]
    accepted: dict[str, frozenset]      # kind → codes accepted without a map entry
    levels: dict[str, str]              # catalogue reason → level (grouper.validate.level_of)


_FACTS: dict[int, tuple[weakref.ref, _PlanFacts]] = {}


def _facts(plan: ir.Plan) -> _PlanFacts:
    cached = _FACTS.get(id(plan))
    if cached is not None and cached[0]() is plan:
        return cached[1]
    n_codes = plan.n_codes
    # encode's rule: the longest prefix wins; among equally long ones, the later
    order = sorted(enumerate(plan.prefixes), key=lambda kp: len(kp[1]))
    prefixes = [(prefix, n_codes + 1 + k) for k, prefix in reversed(order)]
    dept_ids = {d: i + 1 for i, d in enumerate(plan.depts)}
    flags = code_flags(plan)
    accepted = {}
    for kind, mapping in (getattr(plan, "code_maps", None) or {}).items():
        dictionary = flags.dx_dict if kind == "dx" else flags.proc_dict
        known = set() if dictionary is None else {plan.codes[i - 1] for i in np.flatnonzero(dictionary) if i > 0}
        accepted[kind] = frozenset(mapping) | frozenset(mapping.values()) | known
    facts = _PlanFacts({code: i + 1 for i, code in enumerate(plan.codes)}, prefixes,
                       {d: i for d, i in dept_ids.items() if d != ""}, accepted,
                       {code: level_of(plan, code) for code in reasons.CATALOGUE})
    key = id(plan)
    _FACTS[key] = (weakref.ref(plan, lambda _ref, key=key: _FACTS.pop(key, None)), facts)
    return facts


def _code_id(facts: _PlanFacts, code: str) -> int:
    found = facts.code_ids.get(code)
    if found is not None:
        return found
    for prefix, k in facts.prefixes:
        if code.startswith(prefix):
            return k
    return 0


# ---- reading ------------------------------------------------------------------------------------

def _stripped(text: str | None) -> str | None:
    """A scalar cell as grouper.io reads it: stripped, empty → missing."""
    if text is None:
        return None
    text = text.strip()
    return text or None


def _integer(text: str | None) -> int | None:
    """A stripped number text by grouper.engine.encode's rules: digits, or digits then ".0"; None
    when missing, or unreadable: without any digit, with a character outside ASCII (neither library
    reads "1岁" or "４０") or with a fraction ("6.5"); any other text is declined."""
    if text is None:
        return None
    match = _INTEGER.fullmatch(text)
    if match:
        return int(match.group(1))
    if _DIGIT.search(text) is None or not text.isascii() or _FRACTION.fullmatch(text):
        return None
    raise Declined(text)


def _in(value: int | None, bounds: tuple[int, int]) -> int | None:
    return value if value is not None and bounds[0] <= value <= bounds[1] else None


class _Problems:
    """(order, reason, level, detail), each (reason, detail) once, as grouper.validate lists them."""

    def __init__(self, plan: ir.Plan, facts: _PlanFacts):
        self.levels = facts.levels
        self.found: list[tuple[int, str, str, str | None]] = []
        self.seen: set[tuple[str, str | None]] = set()

    def enabled(self, code: str) -> bool:
        return self.levels[code] != "off"

    def add(self, code: str, detail: str | None = None, *, level: str | None = None, order: int | None = None) -> None:
        if (code, detail) in self.seen:
            return
        self.seen.add((code, detail))
        self.found.append((ORDER.get(code, len(ORDER)) if order is None else order, code,
                           level or self.levels[code], detail))

    def sorted(self) -> list[tuple[str, str, str | None]]:
        return [(code, level, detail) for _, code, level, detail in sorted(self.found, key=lambda p: p[0])]


def group_one(plan: ir.Plan, case: dict, *, settlement: bool = False) -> OneCase | None:
    """Group one case given as text cells (grouper.serve.cases.case_columns: name → text or None, the
    code lists as one text), exactly as grouper.pipeline.grouped_batches groups it (with `settlement`:
    carry=True). None when a value needs the batch pipeline's reading (see the module docstring)."""
    try:
        return _group_one(plan, case, settlement)
    except Declined:
        return None


def _group_one(plan: ir.Plan, case: dict, settlement: bool) -> OneCase:
    if _UNLIKE.search("".join(value for value in case.values() if value)):
        raise Declined("a character from \\x1c to \\x1f")
    facts = _facts(plan)
    text = {name: _stripped(case.get(name)) for name in SCALAR_COLUMNS}
    dx = (case.get("dx") or "").replace(",", "|").split("|")
    proc_cell = case.get("proc")
    proc = proc_cell.replace(",", "|").split("|") if proc_cell else []
    codes = {"dx": dx, "proc": proc}
    for scope in getattr(plan, "empty_lists", ()):
        if codes[scope] == [""]:
            codes[scope] = []

    # code maps (grouper.validate.convert_codes)
    mapped = _Problems(plan, facts)
    for kind, mapping in (getattr(plan, "code_maps", None) or {}).items():
        if not mapping:
            continue
        reason = f"unmapped_{kind}"
        if mapped.enabled(reason):
            for code in codes[kind]:
                if code != "" and code not in facts.accepted[kind]:
                    mapped.add(reason, code)
        codes[kind] = [mapping.get(code, code) for code in codes[kind]]
    dx, proc = codes["dx"], codes["proc"]

    # encode (grouper.engine.encode.encode_cases)
    values: dict[str, int] = {}
    read: dict[str, bool] = {}   # a value given and read (ir.FIELD_OK); given and not read: FIELD_BAD
    for name in ir.FIELDS:
        given = text[name]
        if name == "dept":
            values[name] = facts.dept_ids.get(given, 0) if plan.depts and given is not None else 0
            read[name] = True
            continue
        if name == "sex" and plan.sex_spellings is not None:   # `read sex ...`: only its spellings
            value = None if given is None else plan.sex_spellings.get(given)
        else:
            value = _integer(given)
            if value is None and name == "sex" and given in SEX_WORDS:
                value = SEX_WORDS[given]
        value = _in(value, _INT32)   # a value given but unread stays missing: validation reports it
        read[name] = value is not None
        if value is None:
            empty = plan.empty_numbers.get(name)
            value = empty if empty is not None and given is None else ir.MISSING
        values[name] = value
    dx_ids = [_code_id(facts, c) for c in dx]
    px_ids = [_code_id(facts, c) for c in proc]
    state = np.array([[ir.FIELD_ABSENT if text[name] is None else ir.FIELD_OK if read[name] else ir.FIELD_BAD]
                      for name in ir.FIELDS], np.uint8)
    batch = Batch(np.array([0, len(dx_ids)], np.int64), np.array(dx_ids, np.uint32),
                  np.array([0, len(px_ids)], np.int64), np.array(px_ids, np.uint32),
                  np.array([[values[name]] for name in ir.FIELDS], np.int32), np.zeros(1, np.uint8), None,
                  state, _ItemText(dx), _ItemText(proc))

    # validate: the kernel's one-pass check of the batch pipeline (grouper.validate.find_problems: the
    # built-in checks and the scheme's warn rules), its problems with their details
    found = _Problems(plan, facts)
    warn_names = getattr(plan, "warn_names", ())
    for check, ref in zip(*find_problems(plan, None, batch, threads=1)[1:]):
        if check >= len(ir.CHECKS):
            found.add(warn_names[check - len(ir.CHECKS)], level="warning", order=len(ORDER) + int(check) - len(ir.CHECKS))
            continue
        code = ir.CHECKS[check]
        found.add(code, _detail(code, int(ref), text, values, state, dx, proc))
    for order, code, level, detail in mapped.found:
        found.found.append((order, code, level, detail))
    problems = found.sorted()

    # block, kernel, results (grouper.validate.block, grouper.engine.run / results)
    first_error = next((code for code, level, _ in problems if level == "error"), None)
    batch.skip[0] = first_error is not None
    status, mdc, adrg, drg, rule = (int(a[0]) for a in run_kernel(plan, batch, threads=1))
    reason = first_error if first_error is not None else (plan.invalid_names[rule] if rule >= 0 else None)
    warnings = list(dict.fromkeys(code for code, level, _ in problems if level == "warning"))
    if ir.STATUS_NAMES[status] == "invalid" and rule >= 0:
        problems.append((plan.invalid_names[rule], "error", None))
    result = OneCase(text["id"], ir.STATUS_NAMES[status], plan.mdc_codes[mdc] if mdc >= 0 else None,
                     plan.adrg_codes[adrg] if adrg >= 0 else None, plan.drg_codes[drg] if drg >= 0 else None,
                     reason, warnings, problems)
    if settlement:
        _carry(plan, case, text, result)
    return result


class _ItemText:
    """One case's codes as the kernel's text argument: an Arrow string_view array (16 bytes a string:
    its length, then up to 12 bytes inline, or its first 4 bytes and where the rest is)."""

    __slots__ = ("items",)

    def __init__(self, items: list[str]):
        self.items = items

    def kernel_args(self) -> tuple:
        views, data = [], b""
        for item in self.items:
            raw = item.encode()
            if len(raw) <= 12:
                views.append(struct.pack("<i12s", len(raw), raw))
            else:
                views.append(struct.pack("<i4sii", len(raw), raw[:4], 0, len(data)))
                data += raw
        return (np.frombuffer(b"".join(views), np.uint8), (np.frombuffer(data, np.uint8),), None, 0)


_CODE_CHECKS = {**{f"bad_{k}_format": k for k in ("dx", "proc")}, **{f"unknown_{k}": k for k in ("dx", "proc")},
                **{f"duplicate_{k}": k for k in ("dx", "proc")}, "not_principal_dx": "dx"}
_VALUE_CHECKS = {"implausible_age": "age", "implausible_weight": "weight", "implausible_los": "los",
                 "unknown_discharge": "discharge"}


def _detail(code: str, ref: int, text: dict, values: dict, state: np.ndarray, dx: list[str], proc: list[str]) -> str | None:
    """A problem's detail as grouper.validate's problem frame gives it: the code it is about, the value
    as written (malformed_*) or as read."""
    kind = _CODE_CHECKS.get(code)
    if kind is not None:
        return (dx if kind == "dx" else proc)[ref]
    if code.startswith("malformed_"):
        return text[code[len("malformed_"):]]
    name = _VALUE_CHECKS.get(code)
    if name is not None:
        return str(values[name])
    if code == "implausible_age_days":
        with_age = state[ir.FIELD_IDS["age"], 0] == ir.FIELD_OK
        return f"{values['age_days']} d" + (f" / {values['age']} y" if with_age else "")
    return None


# ---- settlement fields (grouper.fields) ----------------------------------------------------------

def _carry(plan: ir.Plan, case: dict, text: dict, result: OneCase) -> None:
    raw = {name: _stripped(case.get(name)) for name in SETTLEMENT_COLUMNS}
    typed = {"hospital": raw["hospital"], "hospital_level": _level(raw["hospital_level"]),
             "insurance": _insurance(raw["insurance"]), "cost": _money(raw["cost"]),
             "fund_paid": _money(raw["fund_paid"]), "admission_date": parse_date(raw["admission_date"]),
             "discharge_date": parse_date(raw["discharge_date"]), "patient_id": raw["patient_id"],
             "special_review": _flag(raw["special_review"])}
    sex = _in(_integer(text["sex"]), _INT8)
    if sex is None and text["sex"] is not None:
        sex = SEX_WORDS.get(text["sex"])
    typed["sex"] = sex
    for name in ("age", "age_days", "los", "discharge"):
        typed[name] = _in(_integer(text[name]), _INT32_TYPED)
    typed["dept"] = text["dept"]
    found: list[tuple[str, str | None]] = []
    for name in MALFORMED:
        if raw[name] is not None and typed[name] is None:
            found.append((f"malformed_{name}", raw[name]))
    for name in ("cost", "fund_paid"):
        if typed[name] is not None and typed[name] < 0:
            found.append(("implausible_cost", _yuan(typed[name])))
    admitted, discharged = typed["admission_date"], typed["discharge_date"]
    if admitted is not None and discharged is not None and discharged < admitted:
        found.append(("implausible_dates", f"{discharged.isoformat()} < {admitted.isoformat()}"))
    typed["special_review"] = bool(typed["special_review"])
    order = {code: i for i, code in enumerate(SETTLEMENT_REASONS)}
    problems = []
    for code, detail in sorted(found, key=lambda p: order[p[0]]):
        level = _facts(plan).levels[code]
        if level != "off":
            problems.append((code, level, detail))
    result.warnings += list(dict.fromkeys(code for code, level, _ in problems if level == "warning"))
    error = next((code for code, level, _ in problems if level == "error"), None)
    if error is not None and result.status != "invalid":
        result.status, result.mdc, result.adrg, result.drg, result.reason = "invalid", None, None, None, error
    result.problems += problems
    result.fields = typed


def _level(text: str | None) -> int | None:
    if text is None:
        return None
    return 3 if text[0] in "三3" else 2 if text[0] in "二2" else 1 if text[0] in "一1" else None


def _insurance(text: str | None) -> str | None:
    if text is None or text in INSURANCE_CODES:
        return None if text is None else INSURANCE_CODES[text]
    if "职工" in text or text.lower() == "employee":
        return "employee"
    if "居民" in text or text.lower() == "resident":
        return "resident"
    return text


def _plain(pattern: re.Pattern, text: str) -> re.Match | None:
    """The match of a plain spelling; None for text without any digit (unreadable to both libraries);
    any other text is declined."""
    match = pattern.fullmatch(text)
    if match is None and _DIGIT.search(text) is not None:
        raise Declined(text)
    return match


def _money(text: str | None) -> int | None:
    """Yuan text → fen by grouper.fields.money_fen, for the plain spellings (digits, a point, at
    most two decimals, a sign); text without a digit is unreadable; anything else is declined."""
    match = None if text is None else _plain(_MONEY, text)
    if match is None:
        return None
    sign, whole, cents = match.groups()
    return (int(whole) * 100 + int((cents or "").ljust(2, "0"))) * (-1 if sign == "-" else 1)


def parse_date(text: str | None) -> date | None:
    """2024-01-05 (or 2024-1-5) and 20240105 by grouper.fields.parse_date; text without a digit is
    unreadable; other spellings are declined."""
    match = None if text is None else _plain(_DATE, text)
    if match is None:
        return None
    y, m, d = (int(g) for g in (match.groups()[:3] if match.group(1) else match.groups()[3:]))
    if y < 1:
        raise Declined(text)
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _flag(text: str | None) -> bool | None:
    if text is None:
        return False
    text = text.lower()
    return True if text in TRUE_WORDS else False if text in FALSE_WORDS else None


def _yuan(fen: int) -> str:
    """grouper.fields.yuan_text for one value."""
    return f"{'-' if fen < 0 else ''}{abs(fen) // 100}.{abs(fen) % 100:02d}"


__all__ = ["Declined", "OneCase", "group_one", "parse_date"]
