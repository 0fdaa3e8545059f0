"""The DIP rules interpreted one case at a time, straight from the catalogue rows (strings, no
plan arrays): the reference the batch kernel is tested against, and the engine of `explain`,
which shows every candidate row and why the winner won.

The grouping order (domain.md §3.3, Node-DIP region.base.service.ts; docs/dip.md):
1. core candidates: the core rows of the case's category (principal diagnosis cut to `diagnosis
   length`) whose expression matches the case's qualifying procedures; a conservative row matches
   a case with no qualifying procedure;
2. primary candidates, the same way;
3. the comprehensive candidate: the row of the case's treatment type for the longest listed prefix
   of the diagnosis that has one, else for the first chapter range holding it;
4. (auxiliary subtypes are applied to the winner afterwards: grouper.dip.auxiliary);
5. in each tie-break level (default: core) the candidates are narrowed to one: most `+` terms,
   then most matched procedures (repeats counted), then the smallest |reference cost − case cost|,
   then file order;
6. the candidate whose class (level, treatment type of the procedures it matched) comes first in
   the precedence wins (default: 核心相关手术 > 基层相关手术 > 核心治疗性操作 > …); within a class,
   file order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import polars as pl

from ..explain import Change, apply_changes, parse_change, removal_scenarios  # noqa: F401 - re-exported
from .ast import LEVELS
from .auxiliary import FIELD_NAMES, case_fields, load_auxiliary, reference_subtype
from .catalogue import Row, in_range, row_reference_cost

TIE_BREAKS = ("most '+' terms", "most matched procedures", "smallest cost gap", "file order")
UNKNOWN_GAP = 1 << 62


@dataclass
class Candidate:
    row: Row
    matches: bool
    plus: int = -1                    # '+' terms of the best held alternative
    matched: tuple[str, ...] = ()     # the case's qualifying procedures the row names (repeats kept)
    kind: str | None = None           # the treatment type of its class
    gap: int | None = None            # |reference cost − case cost| in fen; None when either is unknown
    why: str = ""

    @property
    def key(self) -> tuple[int, int, int]:
        return (self.plus, len(self.matched), -(UNKNOWN_GAP if self.gap is None else self.gap))


@dataclass
class Decision:
    status: str                       # grouped / ungrouped / invalid
    row: Row | None
    treatment: str | None
    reason: str | None
    category: str | None = None
    comp_category: str | None = None
    qualifying: tuple[str, ...] = ()                                       # with repeats, in case order
    candidates: dict[str, list[Candidate]] = field(default_factory=dict)   # level → rows of the category
    leads: dict[str, tuple[Candidate, str]] = field(default_factory=dict)  # tie-break level → winner, why
    contenders: list[tuple[int, Candidate]] = field(default_factory=list)  # (precedence position, candidate)
    precedence: tuple[tuple[str, str], ...] = ()
    case_cost: int | None = None                                           # fen
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

    def __init__(self, loaded, point_value: Decimal | str | None = None):
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
        self.precedence = scheme.precedence(self.treatments)
        self.tie_break_levels = scheme.tie_break_levels
        self.point_value = scheme.point_value if point_value is None else Decimal(str(point_value))
        self.by_category: dict[tuple[str, str], list[Row]] = {}
        for level in ("core", "primary"):
            for row in rows.get(level, ()):
                self.by_category.setdefault((level, row.dx), []).append(row)
        self.comprehensive: dict[tuple[str, str], Row] = {}
        self.ranges: list[Row] = []
        for row in rows.get("comprehensive", ()):
            self.comprehensive.setdefault((row.dx, row.treatment), row)
            if row.chapter_range:
                self.ranges.append(row)
        self.comp_prefixes = sorted({dx for dx, _ in self.comprehensive if "-" not in dx}, key=len, reverse=True)
        self.auxiliary = None
        if scheme.setting("auxiliary"):
            lists = scheme.setting("auxiliary_lists")
            self.auxiliary, _ = load_auxiliary(scheme.setting("auxiliary").value, lists.value if lists else None, store)

    def candidate(self, row: Row, qualifying: tuple[str, ...], cost: int | None) -> Candidate:
        have = set(qualifying)
        reference = row_reference_cost(row, self.point_value)
        gap = abs(reference - cost) if reference is not None and cost is not None else None
        if row.conservative:
            if have:
                return Candidate(row, False, why="conservative row, but the case has qualifying procedures")
            return Candidate(row, True, 0, (), self.treatments[0], gap, "conservative row and no qualifying procedure")
        plus, held = -1, None
        for alt in row.alternatives:
            if all(any(c in have for c in term) for term in alt) and len(alt) - 1 > plus:
                plus, held = len(alt) - 1, alt
        if plus < 0:
            missing = min((tuple(t for t in alt if not any(c in have for c in t)) for alt in row.alternatives), key=len)
            return Candidate(row, False, why="missing " + "+".join(map(_term_text, missing)))
        named = set(row.codes)
        matched = tuple(c for c in qualifying if c in named)
        kind = max((self.rank.get(c, 0) for c in matched), default=0)
        return Candidate(row, True, plus, matched, self.treatments[kind], gap,
                         "has " + "+".join(_term_text(tuple(c for c in t if c in have)) for t in held))

    def decide(self, dx: list[str] | None, procs: list[str] | None, fields: dict | None = None,
               cost: int | None = None) -> Decision:
        """The group of one case; `fields` (age, age_days, los, discharge as ints or None) feed the
        auxiliary subtypes; `cost` (fen) the cost step."""
        decision = self._group(dx, procs, cost)
        if self.auxiliary is not None and decision.row is not None:
            case = {"dx": list(dx or []), "proc": list(procs or []), **(fields or {})}
            decision.aux, decision.aux_verdicts = reference_subtype(self.auxiliary, case, decision.row.code)
        return decision

    def _position(self, level: str, kind: str) -> int:
        return self.precedence.index((level, kind))

    def _group(self, dx: list[str] | None, procs: list[str] | None, cost: int | None) -> Decision:
        pdx = dx[0] if dx else None
        if not pdx:
            return Decision("invalid", None, None, "missing_dx")
        if pdx in self.excluded:
            return Decision("invalid", None, None, "excluded_dx")
        procs = [p for p in procs or () if p is not None]
        qualifying = tuple(p for p in procs if p in self.qualifying)
        treatment = self.treatments[max((self.rank[p] for p in procs if p in self.rank), default=0)]
        category = pdx[:self.length]
        decision = Decision("ungrouped", None, treatment, None, category, None, qualifying,
                            precedence=self.precedence, case_cost=cost)
        # steps 1-2: core and primary candidates; step 5: tie-breaks within a tie-break level
        for level in ("core", "primary"):
            found = [self.candidate(r, qualifying, cost) for r in self.by_category.get((level, category), ())]
            decision.candidates[level] = found
            matching = [c for c in found if c.matches]
            if not matching:
                continue
            if level in self.tie_break_levels:
                lead = max(matching, key=lambda c: c.key)       # max keeps the first of equal keys: file order
                decision.leads[level] = (lead, _tie_break(lead, matching))
                matching = [lead]
            decision.contenders += [(self._position(level, c.kind), c) for c in matching]
        # step 3: the comprehensive candidate
        keys = [c for c in self.comp_prefixes if pdx.startswith(c)]
        keys += [r.dx for r in self.ranges if in_range(pdx, r.chapter_range)]
        comp = next((k for k in keys if (k, treatment) in self.comprehensive), None)
        if comp is not None:
            decision.comp_category = comp
            row = self.comprehensive[(comp, treatment)]
            decision.contenders.append((self._position("comprehensive", treatment),
                                        Candidate(row, True, kind=treatment, why=f"key {comp} × {treatment}")))
        if not decision.contenders:
            decision.reason = "no_comprehensive_treatment" if keys else "no_comprehensive_category"
            return decision
        # step 6: precedence by class; within a class the first (file order)
        position, best = min(decision.contenders, key=lambda pc: pc[0])
        decision.status, decision.row = "grouped", best.row
        decision.decided_by = self._decided_by(position, best, decision)
        return decision

    def _decided_by(self, position: int, best: Candidate, d: Decision) -> str:
        level, kind = best.row.level, best.kind
        text = f"precedence: {level} {kind} is class {position + 1} of {len(self.precedence)}"
        others = [(p, c) for p, c in d.contenders if c is not best]
        if others:
            runner_pos, runner = min(others, key=lambda pc: pc[0])
            if runner_pos == position:
                text += f", the same class as {runner.row.code}: file order (line {best.row.span.line} first)"
            else:
                text += f", before {runner.row.level} {runner.kind} ({runner.row.code}, class {runner_pos + 1})"
        else:
            text += ", the only candidate"
        if level in d.leads:
            text += f"; within {level}: {d.leads[level][1]}"
        return text


def _term_text(term: tuple[str, ...]) -> str:
    return term[0] if len(term) == 1 else "(" + "/".join(term) + ")"


def _tie_break(best: Candidate, matching: list[Candidate]) -> str:
    """Which tie-break step put `best` ahead of the runner-up of its level."""
    others = [c for c in matching if c is not best]
    if not others:
        return "the only matching row"
    runner = max(others, key=lambda c: c.key)
    gap = lambda c: "unknown" if c.gap is None else f"{c.gap / 100:,.2f} yuan"  # noqa: E731
    for name, a, b in zip(TIE_BREAKS, best.key, runner.key):
        if a != b:
            if name == "smallest cost gap":
                return f"{name} ({gap(best)} vs {gap(runner)} for {runner.row.code})"
            return f"{name} ({a} vs {b} for {runner.row.code})"
    return f"file order (line {best.row.span.line} before {runner.row.code} on line {runner.row.span.line})"


def reference_group(loaded, cases: pl.DataFrame, point_value: Decimal | str | None = None) -> pl.DataFrame:
    """The reference result frame (same columns as the batch engine), one case at a time."""
    from .run import case_cost

    ref = Reference(loaded, point_value)
    rows = []
    frame = pl.concat([cases.select("id", "dx", "proc"), case_fields(cases),
                       pl.DataFrame({"_cost": case_cost(cases)})], how="horizontal")
    for case in frame.iter_rows(named=True):
        d = ref.decide(case["dx"], case["proc"], {k: case[k] for k in FIELD_NAMES},
                       case["_cost"] if case["_cost"] >= 0 else None)
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
    from .run import case_cost

    ref = Reference(loaded)
    cost = _one_cost(case_cost(case_row))
    labels = ["(as recorded)"] + [", ".join(map(str, s)) for s in scenarios]
    frames = [case_row] + [apply_changes(case_row, s) for s in scenarios]
    out, base = [], None
    for label, frame in zip(labels, frames):
        case = pl.concat([frame.select("dx", "proc"), case_fields(frame)], how="horizontal").row(0, named=True)
        d = ref.decide(case["dx"], case["proc"], {k: case[k] for k in FIELD_NAMES}, cost)
        base = base or d
        out.append(DipWhatIf(label, d.status, d.code, d.row.level if d.row else None,
                             d.row.score if d.row else None, d.aux.code if d.aux is not None else None, d.aux_factor,
                             (d.status, d.code, d.aux_factor) != (base.status, base.code, base.aux_factor)))
    return out


def _one_cost(costs) -> int | None:
    return int(costs[0]) if len(costs) and costs[0] >= 0 else None


def explain_dip(loaded, case_row: pl.DataFrame, point_value: Decimal | str | None = None) -> Decision:
    """The decision for one case, every step recorded; its `cost` column (if any) feeds the cost step."""
    from .run import case_cost

    case = pl.concat([case_row.select("dx", "proc"), case_fields(case_row)], how="horizontal").row(0, named=True)
    return Reference(loaded, point_value).decide(case["dx"], case["proc"], {k: case[k] for k in FIELD_NAMES},
                                                 _one_cost(case_cost(case_row)))


def explain_dip_json(loaded, case_row: pl.DataFrame, scenarios: list[list[Change]] = ()) -> dict:
    """The decision for one case as JSON (`grouper explain --json` on a DIP pack, and POST /v1/explain
    of `grouper serve`): the group, its level, score, treatment and auxiliary subtype, every
    candidate at each level with why it holds or not, the tie-breaks and the precedence; with
    `scenarios`, the what-if of each. The case's `cost` feeds the decision (and shows as cost_fen) only
    when the pack has a cost step."""
    import dataclasses

    if not loaded.plan.cost_step and "cost" in case_row.columns:
        case_row = case_row.drop("cost")
    decision = explain_dip(loaded, case_row)
    out = {"id": str(case_row["id"][0]), "status": decision.status, "dip": decision.code,
           "dip_level": decision.row.level if decision.row else None,
           "score": decision.row.score if decision.row else None, "treatment": decision.treatment,
           "aux": decision.aux.code if decision.aux is not None else None, "aux_factor": decision.aux_factor,
           "aux_subtypes": [{"aux": s.code, "factor": s.factor, "holds": holds, "source": str(s.span)}
                            for s, holds in decision.aux_verdicts],
           "reason": decision.reason, "category": decision.category, "qualifying": list(decision.qualifying),
           "cost_fen": decision.case_cost, "decided_by": decision.decided_by,
           "candidates": {level: [{"dip": c.row.code, "procs": c.row.procs, "matches": c.matches,
                                   "plus": c.plus, "matched": list(c.matched), "class": c.kind, "gap_fen": c.gap,
                                   "why": c.why, "source": str(c.row.span)} for c in found]
                          for level, found in decision.candidates.items()},
           "tie_breaks": {level: {"dip": c.row.code, "decided_by": why} for level, (c, why) in decision.leads.items()},
           "comprehensive": decision.comp_category,
           "precedence": [{"position": p + 1, "dip": c.row.code, "level": c.row.level, "class": c.kind}
                          for p, c in sorted(decision.contenders, key=lambda pc: pc[0])]}
    if scenarios:
        out["what_if"] = [dataclasses.asdict(w) for w in dip_what_if(loaded, case_row, scenarios)]
    return out


LEVEL_NAMES = dict(zip(LEVELS, ("核心病种", "基层病种", "综合病种")))
