"""Catalogue rows (病种目录) of a DIP scheme: reading them from the pack's tables, and the procedure
expressions and diagnosis keys they carry.

A row has the columns `code` (病种编码), `dx` (the diagnosis key), `procs`, `score` (病种分值), and
optionally `name`, `treatment` (required on comprehensive rows: the treatment type the row prices)
and the scheme's `reference cost` column (the group's mean cost in yuan, for the cost step).

`dx` of a core or primary row is the principal diagnosis cut to `diagnosis length` characters (亚目,
e.g. `K80.1`). `dx` of a comprehensive row is any prefix of it (`K80`, `K8`, `K`) or an ICD-10
chapter range `LO-HI` (`A00-B99`, `C00-D48`): both ends of the same length n, matching a
principal diagnosis whose first n characters lie between them (inclusive, character order).

`procs` is an expression over procedure codes: `/` separates alternatives ("any of"), `+` joins
the terms one alternative needs ("all of"), `+` binds tighter, and a term in parentheses is itself
a choice: `a+b/c` is (a and b) or c; `a+(c/d)+e` is a and (c or d) and e. An empty `procs` is a
conservative row (保守治疗): it matches a case with no qualifying procedure.
"""
from __future__ import annotations

import csv
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
import math
import re
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import Diagnostic, Span
from ..lang import ast as lang_ast
from ..lang.tables import TableStore
from .ast import LEVELS, DipScheme

REQUIRED = ("code", "dx", "procs", "score")
MAX_SCORE = 1_000_000   # a 病种分值 above this is a typo, not a score (×1000 scales stay far below it)

Term = tuple[str, ...]                  # codes of which any one will do (one code: that code)
Alternative = tuple[Term, ...]          # terms that must all hold


@dataclass(frozen=True)
class Row:
    level: str                                  # core / primary / comprehensive
    index: int                                  # position within its level (file order)
    code: str
    name: str
    dx: str
    procs: str
    alternatives: tuple[Alternative, ...]       # () for a conservative row
    treatment: str | None
    score: float
    span: Span | None                           # the CSV line of the row
    cost: int | None = None                     # reference cost in fen (the `reference cost` column)

    @property
    def conservative(self) -> bool:
        return not self.alternatives

    @property
    def codes(self) -> tuple[str, ...]:
        """Distinct procedure codes of the row, in expression order."""
        return tuple(dict.fromkeys(c for alt in self.alternatives for term in alt for c in term))

    @property
    def chapter_range(self) -> tuple[str, str] | None:
        return chapter_range(self.dx) if self.level == "comprehensive" else None


def _split_outside(text: str, sep: str) -> list[str]:
    """`text` split at `sep` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return parts + [text[start:]]


def parse_procs(text: str) -> tuple[Alternative, ...]:
    """`a+b/c` → (((a,), (b,)), ((c,),)); `a+(c/d)+e` → (((a,), (c, d), (e,)),); "" → ().
    Raises ValueError on an empty code, a stray bracket or a nested one."""
    text = text.strip()
    if not text:
        return ()
    depth = 0
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if depth not in (0, 1):
            raise ValueError(f"unbalanced or nested brackets in {text!r}: brackets hold one term's choices, e.g. a+(b/c)")
    if depth:
        raise ValueError(f"unclosed '(' in {text!r}")
    alternatives = []
    for alt in _split_outside(text, "/"):
        terms = []
        for term in _split_outside(alt, "+"):
            term = term.strip()
            inner = term[1:-1] if term.startswith("(") and term.endswith(")") else term
            codes = tuple(c.strip() for c in inner.split("/"))
            if any(not c or "(" in c or ")" in c for c in codes):
                raise ValueError(f"empty procedure code or stray bracket in {text!r} (a stray '/', '+' or bracket)")
            terms.append(tuple(dict.fromkeys(codes)))
        alternatives.append(tuple(terms))
    return tuple(alternatives)


def format_term(term: Term) -> str:
    return term[0] if len(term) == 1 else "(" + "/".join(term) + ")"


def format_procs(alternatives: tuple[Alternative, ...]) -> str:
    """The canonical text of an expression; one alternative of one choice is written `a/b`."""
    if len(alternatives) == 1 and len(alternatives[0]) == 1:
        return "/".join(alternatives[0][0])
    return "/".join("+".join(format_term(t) for t in alt) for alt in alternatives)


CATEGORY = re.compile(r"[A-Z][0-9][0-9A-Z]")     # an ICD-10 类目: the ends of a chapter range


def chapter_range(dx: str) -> tuple[str, str] | None:
    """`A00-B99` → ("A00", "B99"); None when `dx` is a prefix key. Raises ValueError on a malformed
    range: its ends must be two ICD-10 categories (letter, digit, digit or capital letter)."""
    if "-" not in dx:
        return None
    parts = dx.split("-")
    if len(parts) != 2 or not all(CATEGORY.fullmatch(p) for p in parts):
        raise ValueError(f"chapter range {dx!r} is not two ICD-10 categories LO-HI (e.g. A00-B99)")
    return parts[0], parts[1]


def in_range(pdx: str, span: tuple[str, str]) -> bool:
    """Whether a chapter range holds the diagnosis: its first 3 characters are an ICD-10 category
    between the two ends (inclusive)."""
    head = pdx[:3]
    return bool(CATEGORY.fullmatch(head)) and span[0] <= head <= span[1]


def range_categories(span: tuple[str, str]) -> list[str]:
    """Every category a chapter range holds, in order."""
    lo, hi = span
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [c for c in (a + b + d for a in alphabet[10:] if lo[0] <= a <= hi[0]
                        for b in alphabet[:10] for d in alphabet) if lo <= c <= hi]


# A prefix of an ICD-10 code as the case files write it: letter, digit, digit or letter, then an
# optional '.' and more characters (K80.100, I10.x00, C34.900x001). A key outside this never matches.
_CODE_PREFIX = re.compile(r"[A-Z](?:[0-9](?:[0-9A-Z](?:\.?[0-9A-Za-z]*)?)?)?")


def reachable_key(dx: str) -> str | None:
    """Why no valid diagnosis code can reach the key `dx`, or None when one can."""
    try:
        span = chapter_range(dx)
    except ValueError as exc:
        return str(exc)
    for end in span or (dx,):
        if not _CODE_PREFIX.fullmatch(end):
            return f"{end!r} is not the start of any ICD-10 code (letter, 2 digits, '.', ...)"
    if span and span[0] > span[1]:
        return f"the range {dx!r} runs backwards: no code lies between its ends"
    return None


def score_problem(text: str) -> tuple[float | None, str | None]:
    """(score, None) for a usable 病种分值; (None, why) for a missing, non-numeric, non-finite, ≤ 0 or
    absurd one (above MAX_SCORE)."""
    try:
        score = float(text.replace(",", ""))
    except ValueError:
        return None, f"score {text!r} is not a number"
    if not math.isfinite(score):
        return None, f"score {text!r} is not a finite number"
    if score <= 0:
        return None, f"score {text!r} is not positive (a 病种分值 is > 0)"
    if score > MAX_SCORE:
        return None, f"score {text!r} is above {MAX_SCORE:,}: not a plausible 病种分值"
    return score, None


def _table_name(expr) -> str:
    return expr.table if isinstance(expr, lang_ast.TableFilter) else expr.name


def _filtered_with_lines(store: TableStore, expr) -> pl.DataFrame:
    """Rows of the level's table (filters as in the scheme language) with `_line`, their CSV line."""
    frame = store.frame(_table_name(expr)).with_row_index("_line", offset=2)
    for f in getattr(expr, "filters", ()):
        column = pl.col(f.column).fill_null("")
        frame = frame.filter(column == f.value if f.op == "=" else column != f.value)
    return frame


def _csv_lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except OSError:
        return None


def _cell_span(path: Path, lines: list[str] | None, line: int, column: str, header: list[str],
               value: str) -> Span:
    """Where a cell sits in its CSV file, for file:line:col diagnostics (the whole line if not found)."""
    text = lines[line - 1] if lines and 0 < line <= len(lines) else ""
    col = 1
    if text and column in header:
        cells = next(csv.reader([text]), [])
        offset, i = 0, header.index(column)
        for k, cell in enumerate(cells):      # position of cell i (unquoted cells: exact)
            if k == i:
                found = text.find(cell, offset)
                col = (found if found >= 0 else offset) + 1
                break
            offset += len(cell) + 1
    return Span(str(path), line, col, line, col + max(len(value), 1))


def yuan_to_fen(text: str) -> int | None:
    """`1,234.5` → 123450 (half-up to the fen); None when not an amount ≥ 0."""
    try:
        value = Decimal(text.replace(",", "").replace("¥", "").replace("￥", "").strip())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    return int((value * 100).quantize(Decimal(1), ROUND_HALF_UP))


def row_reference_cost(row: Row, point_value: Decimal | None) -> int | None:
    """The group's reference cost in fen: the catalogue's `reference cost` column, else score ×
    point value (yuan per point) rounded half-up to the fen, else None (unknown)."""
    if row.cost is not None:
        return row.cost
    if point_value is None:
        return None
    return int((Decimal(repr(row.score)) * point_value * 100).quantize(Decimal(1), ROUND_HALF_UP))


def load_rows(scheme: DipScheme, store: TableStore) -> tuple[dict[str, list[Row]], list[Diagnostic]]:
    """Every level's rows, in file order, and the problems found reading them (bad expressions,
    scores, treatments). Assumes the tables exist (check them first with `store.load_errors()`)."""
    rows: dict[str, list[Row]] = {level: [] for level in LEVELS}
    found: list[Diagnostic] = []
    treatments = set(scheme.treatments)
    cost_column = scheme.setting("reference_cost").value if scheme.setting("reference_cost") else None
    for level in LEVELS:
        expr = scheme.level(level)
        if expr is None:
            continue
        table = _table_name(expr)
        frame = _filtered_with_lines(store, expr)
        missing = [c for c in REQUIRED if c not in frame.columns]
        if level == "comprehensive" and "treatment" not in frame.columns:
            missing.append("treatment")
        if missing:
            found.append(Diagnostic("unknown-column", "error",
                                    f"the {level} rows (table {table}) lack column(s) {', '.join(missing)}",
                                    scheme.setting(level).span,
                                    "a catalogue needs code, dx, procs, score (and treatment on comprehensive rows)"))
            continue
        if cost_column and cost_column not in frame.columns:
            found.append(Diagnostic("unknown-column", "error",
                                    f"the {level} rows (table {table}) lack the reference cost column {cost_column!r}",
                                    scheme.setting("reference_cost").span, f"columns are {', '.join(frame.columns[1:])}"))
            continue
        path = store.path(table)
        lines = _csv_lines(path)
        header = store.columns(table)
        for i, rec in enumerate(frame.iter_rows(named=True)):
            line = int(rec["_line"])
            cell = lambda col: rec.get(col) or ""  # noqa: E731 - an empty cell is ""
            span = Span(str(path), line, 1, line, 1 + len(lines[line - 1]) if lines and line <= len(lines) else 2)
            try:
                alternatives = parse_procs(cell("procs"))
            except ValueError as exc:
                found.append(Diagnostic("bad-procedures", "error", str(exc),
                                        _cell_span(path, lines, line, "procs", header, cell("procs")),
                                        "write codes joined by '+' (all of) and alternatives by '/' (any of)"))
                continue
            score, why = score_problem(cell("score"))
            if why is not None:
                found.append(Diagnostic("bad-score", "error", f"{cell('code')}: {why}",
                                        _cell_span(path, lines, line, "score", header, cell("score")),
                                        f"a 病种分值 is a finite number > 0 and at most {MAX_SCORE:,}"))
                continue
            if level == "comprehensive":
                try:
                    chapter_range(cell("dx"))
                except ValueError as exc:
                    found.append(Diagnostic("bad-range", "error", f"{cell('code')}: {exc}",
                                            _cell_span(path, lines, line, "dx", header, cell("dx"))))
                    continue
            cost = None
            if cost_column and cell(cost_column):
                cost = yuan_to_fen(cell(cost_column))
                if cost is None:
                    found.append(Diagnostic("bad-cost", "error",
                                            f"reference cost {cell(cost_column)!r} of {cell('code')} is not an amount of yuan ≥ 0",
                                            _cell_span(path, lines, line, cost_column, header, cell(cost_column))))
                    continue
            treatment = cell("treatment") or None
            if treatment is not None and treatments and treatment not in treatments:
                found.append(Diagnostic("unknown-treatment", "error",
                                        f"treatment {treatment!r} of {cell('code')} is not one of the scheme's treatments",
                                        _cell_span(path, lines, line, "treatment", header, treatment),
                                        "the `treatments` line of the dip block lists them: "
                                        + " < ".join(scheme.treatments)))
                continue
            if level == "comprehensive" and treatment is None:
                found.append(Diagnostic("missing-treatment", "error",
                                        f"comprehensive row {cell('code')} has no treatment type", span))
                continue
            rows[level].append(Row(level, i, cell("code"), cell("name"), cell("dx"), cell("procs"),
                                   alternatives, treatment, score, span, cost))
    return rows, found
