"""Catalogue rows (病种目录) of a DIP scheme: reading them from the pack's tables, and the procedure
expressions they carry.

A row has the columns `code` (病种编码), `dx` (diagnosis category: the first `diagnosis length`
characters of the principal diagnosis for core and primary rows, any prefix for comprehensive
rows), `procs`, `score` (病种分值), and optionally `name` and `treatment` (required on
comprehensive rows: the treatment type the row prices).

`procs` is an expression over procedure codes: `/` separates alternatives ("any of"), `+` joins
the codes one alternative needs ("all of"), and `+` binds tighter: `a+b/c` is (a and b) or c. An
empty `procs` is a conservative row (保守治疗): it matches a case with no qualifying procedure.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ..errors import Diagnostic, Span
from ..lang import ast as lang_ast
from ..lang.tables import TableStore
from .ast import LEVELS, DipScheme

REQUIRED = ("code", "dx", "procs", "score")


@dataclass(frozen=True)
class Row:
    level: str                                  # core / primary / comprehensive
    index: int                                  # position within its level (file order)
    code: str
    name: str
    dx: str
    procs: str
    alternatives: tuple[tuple[str, ...], ...]   # () for a conservative row
    treatment: str | None
    score: float
    span: Span | None                           # the CSV line of the row

    @property
    def conservative(self) -> bool:
        return not self.alternatives

    @property
    def codes(self) -> tuple[str, ...]:
        """Distinct procedure codes of the row, in expression order."""
        return tuple(dict.fromkeys(c for alt in self.alternatives for c in alt))


def parse_procs(text: str) -> tuple[tuple[str, ...], ...]:
    """`a+b/c` → (("a", "b"), ("c",)); "" → (). Raises ValueError on an empty term."""
    text = text.strip()
    if not text:
        return ()
    alternatives = []
    for alt in text.split("/"):
        terms = tuple(t.strip() for t in alt.split("+"))
        if any(not t for t in terms):
            raise ValueError(f"empty procedure code in {text!r} (a stray '/' or '+')")
        alternatives.append(terms)
    return tuple(alternatives)


def format_procs(alternatives: tuple[tuple[str, ...], ...]) -> str:
    return "/".join("+".join(alt) for alt in alternatives)


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


def load_rows(scheme: DipScheme, store: TableStore) -> tuple[dict[str, list[Row]], list[Diagnostic]]:
    """Every level's rows, in file order, and the problems found reading them (bad expressions,
    scores, treatments). Assumes the tables exist (check them first with `store.load_errors()`)."""
    rows: dict[str, list[Row]] = {level: [] for level in LEVELS}
    found: list[Diagnostic] = []
    treatments = set(scheme.treatments)
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
            try:
                score = float(cell("score").replace(",", ""))
            except ValueError:
                found.append(Diagnostic("bad-score", "error", f"score {cell('score')!r} of {cell('code')} is not a number",
                                        _cell_span(path, lines, line, "score", header, cell("score"))))
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
                                   alternatives, treatment, score, span))
    return rows, found
