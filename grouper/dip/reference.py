"""The DIP rules interpreted one case at a time, straight from the catalogue rows (strings, no
plan arrays): the reference the batch kernel is tested against, and the engine of `explain`,
which shows every candidate row and why the winner won.

Rules (docs/dip.md): key = principal diagnosis at `diagnosis length` × the case's distinct
qualifying procedures; try core rows of that category, then primary rows; a row matches when one
of its alternatives (`/`) has all its codes (`+`) among the qualifying procedures, a conservative
row (no codes) when the case has no qualifying procedure; the best matching row of the first level
with any wins by (1) most `+` terms in a matching alternative, (2) most of the case's qualifying
procedures named by the row, (3) highest treatment rank of the row's codes, (4) file order. Else
the comprehensive row of the case's treatment type (the highest-ranked type among all its
procedures; the first type when none has one) for the longest listed prefix of the diagnosis that
has a row of that type.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ..explain import Change, apply_changes, parse_change, removal_scenarios  # noqa: F401 - re-exported
from .ast import LEVELS
from .auxiliary import FIELD_NAMES, case_fields, load_auxiliary, reference_subtype
from .catalogue import Row

TIE_BREAKS = ("most '+' terms", "most matched procedures", "highest treatment type", "file order")


@dataclass
class Candidate:
    row: Row
    matches: bool
    plus: int = -1                    # '+' terms of the best matching alternative
    matched: tuple[str, ...] = ()     # the case's qualifying procedures the row names
    rank: int = 0
    why: str = ""

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.plus, len(self.matched), self.rank)


@dataclass
class Decision:
    status: str                       # grouped / ungrouped / invalid
    row: Row | None
    treatment: str | None
    reason: str | None
    category: str | None = None
    comp_category: str | None = None
    qualifying: tuple[str, ...] = ()
    candidates: dict[str, list[Candidate]] = field(default_factory=dict)   # level → rows of the category
    decided_by: str = ""
    aux: object | None = None                                              # the winning auxiliary Subtype
    aux_verdicts: list = field(default_factory=list)                       # (Subtype, holds) for every subtype

    @property
    def aux_factor(self) -> float | None:
        return None if self.row is None else (self.aux.factor if self.aux is not None else 1.0)

    @property
    def code(self) -> str | None:
        return self.row.code if self.row else None


class Reference:
    """The rules of one loaded DIP pack, over strings."""

    def __init__(self, loaded):
        scheme, store, rows = loaded.ast, loaded.store, loaded.rows
        self.length = scheme.dx_length
        self.treatments = list(scheme.treatments) or ["保守治疗"]
        self.qualifying = set(store.codes(scheme.setting("qualifying").value))
        self.excluded = set(store.codes(scheme.setting("exclude").value)) if scheme.setting("exclude") else set()
        self.rank: dict[str, int] = {}
        if scheme.setting("treatment_column"):
            table, column = scheme.setting("treatment_column").value
            frame = store.frame(table)
            for code, kind in zip(frame[store.key(table)].to_list(), frame[column].to_list()):
                if code and kind in self.treatments:
                    self.rank.setdefault(code, self.treatments.index(kind))
        self.by_category: dict[tuple[str, str], list[Row]] = {}
        for level in ("core", "primary"):
            for row in rows.get(level, ()):
                self.by_category.setdefault((level, row.dx), []).append(row)
        self.comprehensive: dict[tuple[str, str], Row] = {}
        for row in rows.get("comprehensive", ()):
            self.comprehensive.setdefault((row.dx, row.treatment), row)
        self.comp_categories = sorted({dx for dx, _ in self.comprehensive}, key=len, reverse=True)
        self.auxiliary = None
        if scheme.setting("auxiliary"):
            lists = scheme.setting("auxiliary_lists")
            self.auxiliary, _ = load_auxiliary(scheme.setting("auxiliary").value, lists.value if lists else None, store)

    def row_rank(self, row: Row) -> int:
        return max((self.rank.get(c, 0) for c in row.codes), default=0)

    def candidate(self, row: Row, qualifying: tuple[str, ...]) -> Candidate:
        have = set(qualifying)
        rank = self.row_rank(row)
        if row.conservative:
            if have:
                return Candidate(row, False, rank=rank, why="conservative row, but the case has qualifying procedures")
            return Candidate(row, True, 0, (), rank, "conservative row and no qualifying procedure")
        plus, held = -1, None
        for alt in row.alternatives:
            if set(alt) <= have and len(alt) - 1 > plus:
                plus, held = len(alt) - 1, alt
        if plus < 0:
            missing = min((tuple(c for c in alt if c not in have) for alt in row.alternatives), key=len)
            return Candidate(row, False, rank=rank, why="missing " + "+".join(missing))
        matched = tuple(c for c in qualifying if c in set(row.codes))
        return Candidate(row, True, plus, matched, rank, "has " + "+".join(held))

    def decide(self, dx: list[str] | None, procs: list[str] | None, fields: dict | None = None) -> Decision:
        """The group of one case; `fields` (age, age_days, los, discharge as ints or None) feed the
        auxiliary subtypes."""
        decision = self._group(dx, procs)
        if self.auxiliary is not None and decision.row is not None:
            case = {"dx": list(dx or []), "proc": list(procs or []), **(fields or {})}
            decision.aux, decision.aux_verdicts = reference_subtype(self.auxiliary, case, decision.row.code)
        return decision

    def _group(self, dx: list[str] | None, procs: list[str] | None) -> Decision:
        pdx = dx[0] if dx else None
        if not pdx:
            return Decision("invalid", None, None, "missing_dx")
        if pdx in self.excluded:
            return Decision("invalid", None, None, "excluded_dx")
        procs = [p for p in procs or () if p is not None]
        qualifying = tuple(dict.fromkeys(p for p in procs if p in self.qualifying))
        treatment = max((self.rank[p] for p in procs if p in self.rank), default=0)
        category = pdx[:self.length]
        decision = Decision("ungrouped", None, self.treatments[treatment], None, category, None, qualifying)
        for level in ("core", "primary"):
            found = [self.candidate(r, qualifying) for r in self.by_category.get((level, category), ())]
            decision.candidates[level] = found
            matching = [c for c in found if c.matches]
            if matching:
                best = max(matching, key=lambda c: c.key)   # max keeps the first of equal keys: file order
                decision.status, decision.row = "grouped", best.row
                decision.decided_by = _decided_by(best, matching)
                return decision
        prefixes = [c for c in self.comp_categories if pdx.startswith(c)]     # longest first
        if not prefixes:
            decision.reason = "no_comprehensive_category"
            return decision
        comp = next((c for c in prefixes if (c, decision.treatment) in self.comprehensive), None)
        if comp is None:
            decision.reason = "no_comprehensive_treatment"
            return decision
        decision.comp_category = comp
        decision.status, decision.row = "grouped", self.comprehensive[(comp, decision.treatment)]
        decision.decided_by = f"comprehensive: category {comp} × {decision.treatment}"
        return decision


def _decided_by(best: Candidate, matching: list[Candidate]) -> str:
    others = [c for c in matching if c is not best]
    if not others:
        return "the only matching row"
    runner = max(others, key=lambda c: c.key)
    for name, a, b in zip(TIE_BREAKS, best.key, runner.key):
        if a != b:
            return f"{name} ({a} vs {b} for {runner.row.code})"
    return f"file order (line {best.row.span.line} before {runner.row.code} on line {runner.row.span.line})"




def reference_group(loaded, cases: pl.DataFrame) -> pl.DataFrame:
    """The reference result frame (same columns as the batch engine), one case at a time."""
    ref = Reference(loaded)
    rows = []
    frame = pl.concat([cases.select("id", "dx", "proc"), case_fields(cases)], how="horizontal")
    for case in frame.iter_rows(named=True):
        d = ref.decide(case["dx"], case["proc"], {k: case[k] for k in FIELD_NAMES})
        rows.append({"id": case["id"], "status": d.status, "dip": d.code,
                     "dip_level": d.row.level if d.row else None,
                     "treatment": d.treatment, "score": d.row.score if d.row else None,
                     "aux": d.aux.code if d.aux is not None else None, "aux_factor": d.aux_factor,
                     "reason": d.reason})
    return pl.DataFrame(rows, schema={"id": pl.String, "status": pl.String, "dip": pl.String, "dip_level": pl.String,
                                      "treatment": pl.String, "score": pl.Float64, "aux": pl.String,
                                      "aux_factor": pl.Float64, "reason": pl.String})


@dataclass
class DipWhatIf:
    changes: str
    status: str
    dip: str | None
    dip_level: str | None
    score: float | None
    aux: str | None
    aux_factor: float | None
    changed: bool


def dip_what_if(loaded, case_row: pl.DataFrame, scenarios: list[list[Change]]) -> list[DipWhatIf]:
    """The group and score of the case under each scenario; the first row is the case as recorded."""
    ref = Reference(loaded)
    labels = ["(as recorded)"] + [", ".join(map(str, s)) for s in scenarios]
    frames = [case_row] + [apply_changes(case_row, s) for s in scenarios]
    out, base = [], None
    for label, frame in zip(labels, frames):
        case = pl.concat([frame.select("dx", "proc"), case_fields(frame)], how="horizontal").row(0, named=True)
        d = ref.decide(case["dx"], case["proc"], {k: case[k] for k in FIELD_NAMES})
        base = base or d
        out.append(DipWhatIf(label, d.status, d.code, d.row.level if d.row else None,
                             d.row.score if d.row else None, d.aux.code if d.aux is not None else None, d.aux_factor,
                             (d.status, d.code, d.aux_factor) != (base.status, base.code, base.aux_factor)))
    return out


def explain_dip(loaded, case_row: pl.DataFrame) -> Decision:
    case = pl.concat([case_row.select("dx", "proc"), case_fields(case_row)], how="horizontal").row(0, named=True)
    return Reference(loaded).decide(case["dx"], case["proc"], {k: case[k] for k in FIELD_NAMES})


LEVEL_NAMES = dict(zip(LEVELS, ("核心病种", "基层病种", "综合病种")))
