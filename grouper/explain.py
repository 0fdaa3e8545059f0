"""Why did a case land in its group? The decision path of one case, rule by rule.

Each rule's verdict comes from the reference kernel's evaluator on the compiled plan (so it is
exactly what the batch kernel decides); the explanation of *why* comes from walking the rule's
AST over the same plan arrays: which code matched which table, which condition failed, which
CC/MCC diagnoses counted and which the exclusion table removed.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl

from .engine import ir
from .io import as_case_frame
from .engine._kernel_py import Case, compare, eval_condition, in_set
from .lang import ast
from .lang.check import Names
from .lang.printer import cond_text, set_text
from .pipeline import group_frame, prepare
from .validate import messages

SCOPE_LABELS = {"pdx": "principal diagnosis", "pproc": "principal procedure", "dx": "diagnosis",
                "proc": "procedure", "secondary dx": "secondary diagnosis", "secondary proc": "secondary procedure"}


@dataclass
class Check:
    """One part of a condition: its text, whether it holds, and the evidence."""

    text: str
    holds: bool
    detail: str = ""
    children: list["Check"] = field(default_factory=list)


@dataclass
class Step:
    """One rule tried: an input check, an MDC entry, an ADRG or a DRG."""

    level: str  # "invalid" | "warn" | "qy" | "mdc" | "adrg" | "drg"
    code: str
    name: str
    matched: bool
    rule: str
    source: str | None
    why: Check | None = None
    children: list["Step"] = field(default_factory=list)


@dataclass
class Explanation:
    id: str | None
    status: str
    mdc: str | None
    adrg: str | None
    drg: str | None
    reason: str | None
    weight: float | None
    warnings: list[str]
    problems: list[dict]  # validation findings: reason, level, detail, message
    steps: list[Step]
    case: dict

    def to_dict(self) -> dict:
        return asdict(self)


class _Evaluator:
    """Evaluates AST conditions of a loaded scheme over one encoded case, collecting evidence."""

    def __init__(self, scheme, case: Case, codes: dict[str, list[str]], raw: dict):
        self.plan: ir.Plan = scheme.plan
        self.names = Names.of(scheme.ast)
        self.case = case
        self.codes = codes  # scope → code strings, aligned with case.items(scope)
        self.raw = raw

    def label(self, code: str) -> str:
        name = self.plan.code_names.get(code)
        return f"{code} {name}" if name else (code if code else "''")

    def items(self, scope: str) -> list[tuple[str, int]]:
        ids = self.case.items(ir.SCOPE_IDS[scope])
        return list(zip(self.codes[scope], ids))

    def set_of(self, expr: ast.SetExpr) -> int:
        return self.plan.set_index[set_text(self.names.resolve(expr))]

    def map_of(self, expr: ast.SetExpr, column: str) -> int:
        resolved = self.names.resolve(expr)
        if isinstance(resolved, ast.TableFilter):
            key = (resolved.table, tuple((f.column, f.op, f.value) for f in resolved.filters), column)
        else:
            key = (resolved.name, (), column)
        return self.plan.map_index[key]

    def label_text(self, label_id: int) -> str:
        return self.plan.labels[label_id - 1] if label_id else ""

    def check(self, cond: ast.Cond) -> Check:
        text = cond_text(cond)
        if isinstance(cond, ast.Always):
            return Check(text, True, "always holds")
        if isinstance(cond, ast.DefineRef):
            define = self.names.defines[cond.name]
            inner = self.check(define.cond)
            # a define an overlay replaced says where its text now comes from
            where = f"defined at {define.span.file}:{define.span.line}" if define.changes and define.span else ""
            return Check(text, inner.holds, where, [inner])
        if isinstance(cond, (ast.AllOf, ast.AnyOf)):
            children = [self.check(item) for item in cond.items]
            holds = all(c.holds for c in children) if isinstance(cond, ast.AllOf) else any(c.holds for c in children)
            return Check(text, holds, "", children)
        if isinstance(cond, ast.Negation):
            inner = self.check(cond.item)
            return Check(text, not inner.holds, "", [inner])
        if isinstance(cond, ast.OneIn):
            items = self.items(cond.scope)
            if not items:
                return Check(text, False, f"there is no {SCOPE_LABELS[cond.scope]}")
            code, code_id = items[0]
            holds = in_set(self.plan.set_bits, self.set_of(cond.set), code_id)
            return Check(text, holds, f"{self.label(code)} is {'' if holds else 'not '}in {set_text(cond.set)}"
                         + self.overlay_note(cond.set))
        if isinstance(cond, ast.ManyIn):
            return self.many_in(cond, text)
        if isinstance(cond, ast.CountLabels):
            labels = self.labels_found(cond.scope, self.map_of(cond.set, cond.column))
            count = len(labels)
            holds = compare(count, ir.CMP_IDS[cond.op], cond.value)
            found = "; ".join(f"{label}: {', '.join(codes)}" for label, codes in labels.items()) or "none"
            return Check(text, holds, f"{count} distinct {cond.column} ({found})")
        if isinstance(cond, ast.CountItems):
            items = self.items(cond.scope)
            holds = compare(len(items), ir.CMP_IDS[cond.op], cond.value)
            shown = ", ".join(self.label(c) for c, _ in items) or "none"
            return Check(text, holds, f"{len(items)} {SCOPE_LABELS[cond.scope]} item(s): {shown}")
        if isinstance(cond, ast.TagsMatch):
            labels = self.labels_found(cond.scope, self.map_of(cond.set, cond.column))
            present = set(labels)
            holds = _tags_hold(cond.expr, present)
            found = "; ".join(f"{label}: {', '.join(codes)}" for label, codes in labels.items()) or "none"
            return Check(text, holds, f"{cond.column} present: {found}")
        if isinstance(cond, (ast.FieldCmp, ast.FieldRange, ast.FieldIn, ast.FieldPresence)):
            value = self.case.fields[ir.FIELD_IDS[cond.field]]
            holds = self.field_holds(cond, value)
            shown = "missing" if value == ir.MISSING else repr(self.raw.get(cond.field))
            return Check(text, holds, f"{cond.field} is {shown}")
        raise TypeError(f"cannot explain {cond!r}")

    def field_holds(self, cond, value: int) -> bool:
        if isinstance(cond, ast.FieldPresence):
            return (value != ir.MISSING) == cond.present
        if value == ir.MISSING:
            return False
        if isinstance(cond, ast.FieldRange):
            return cond.low <= value <= cond.high
        values = (cond.value,) if isinstance(cond, ast.FieldCmp) else cond.values
        wanted = [self.field_value(cond.field, v) for v in values]
        if isinstance(cond, ast.FieldCmp):
            return compare(value, ir.CMP_IDS[cond.op], wanted[0])
        return value in wanted

    def field_value(self, name: str, value) -> int:
        if name == "dept":
            return self.plan.depts.index(value) + 1 if value in self.plan.depts else -1
        if name == "sex":
            return ir.SEX_NAMES.get(value, value)
        return value

    def many_in(self, cond: ast.ManyIn, text: str) -> Check:
        s = self.set_of(cond.set)
        matched = [(code, code_id) for code, code_id in self.items(cond.scope) if in_set(self.plan.set_bits, s, code_id)]
        excluded: list[tuple[str, str]] = []
        if cond.unless is not None:
            u = cond.unless
            item_map = self.plan.label_maps[self.plan.map_index[(u.item_table, (), u.item_column)]]
            pdx_map = self.plan.label_maps[self.plan.map_index[(u.pdx_table, (), u.pdx_column)]]
            pdx_label = int(pdx_map[self.case.pdx])
            kept = []
            for code, code_id in matched:
                label = int(item_map[code_id])
                if label and label == pdx_label:
                    excluded.append((code, self.label_text(label)))
                else:
                    kept.append((code, code_id))
            matched = kept
        holds = bool(matched) if cond.quant == "any" else not matched
        parts = [f"matched: {', '.join(self.label(c) for c, _ in matched)}" if matched else "no item matched"]
        if excluded:
            u = cond.unless
            parts.append(f"excluded because {u.item_table}.{u.item_column} equals the principal diagnosis's "
                         f"{u.pdx_table}.{u.pdx_column}: " + ", ".join(f"{self.label(c)} (table {t})" for c, t in excluded))
        return Check(text, holds, "; ".join(parts) + self.overlay_note(cond.set))

    def overlay_note(self, expr: ast.SetExpr) -> str:
        """Where an overlay replaced the set, or replaced or patched the table, that the test reads."""
        notes, seen = [], set()
        while isinstance(expr, ast.SetRef) and expr.name in self.names.sets and expr.name not in seen:
            seen.add(expr.name)
            node = self.names.sets[expr.name]
            if node.changes:
                notes.append(f"set {node.name} replaced at {_lines(node.changes)}")
            expr = node.expr
        table = self.names.tables.get(expr.table if isinstance(expr, ast.TableFilter) else getattr(expr, "name", None))
        if table is not None and table.changes:
            notes.append(f"table {table.name} {'patched' if table.patches else 'replaced'} at {_lines(table.changes)}")
        return f" ({'; '.join(notes)})" if notes else ""

    def labels_found(self, scope: str, map_index: int) -> dict[str, list[str]]:
        label_map = self.plan.label_maps[map_index]
        found: dict[str, list[str]] = {}
        for code, code_id in self.items(scope):
            label = int(label_map[code_id])
            if label:
                found.setdefault(self.label_text(label), []).append(code)
        return found


def _tags_hold(expr: ast.TagExpr, present: set[str]) -> bool:
    if isinstance(expr, ast.Tag):
        return expr.value in present
    results = [_tags_hold(item, present) for item in expr.items]
    return all(results) if isinstance(expr, ast.TagAll) else any(results)


def _lines(spans) -> str:
    return ", ".join(f"{span.file}:{span.line}" for span in spans)


def _source(node) -> str | None:
    """file:line of a rule; for a base rule an overlay changed, the overlay lines too."""
    if not node.span:
        return None
    changes = [f"{c.file}:{c.line}" for c in getattr(node, "changes", ())]
    return f"{node.span.file}:{node.span.line}" + (f" (changed at {', '.join(changes)})" if changes else "")


def _setting_step(scheme, name: str, detail: str) -> Step:
    """A setting that decided the path, with the line that states it (or "default")."""
    value = scheme.plan.settings[name]
    stated = [st for st in scheme.ast.of_type(ast.SettingDef) if st.name == name]
    source = _source(stated[-1]) if stated else None
    rule = f"setting {name} = {value}" + ("" if stated else " (default)")
    return Step("setting", name, f"= {value}{'' if stated else ' (default)'}: {detail}", True, rule, source)


def _second_attempts(scheme, case: Case, codes: dict, raw: dict, dx: list, px: list) -> list[Step]:
    """setting second_attempt (later_procedures, later_procedure_alone): each later procedure in turn as the principal one."""
    plan_arrays = scheme.plan.kernel_args()
    steps = [_setting_step(scheme, "second_attempt", "no group on the first attempt: each later procedure "
                                                     "in turn becomes the principal procedure"
                           + (" (and the only one)" if scheme.plan.behaviour & ir.ATTEMPT_ALONE else ""))]
    alone = scheme.plan.behaviour & ir.ATTEMPT_ALONE
    for j in range(1, len(px)):
        moved_px = [px[j]] if alone else [px[j]] + px[:j] + px[j + 1:]
        moved = Case(case.dx, [case.px[j]] if alone else [case.px[j]] + case.px[:j] + case.px[j + 1:], case.fields)
        moved_codes = {**codes, "pproc": moved_px[:1], "proc": moved_px, "secondary proc": moved_px[1:]}
        ev = _Evaluator(scheme, moved, moved_codes, raw)

        def rule_step(level, node, code, name, k, ev=ev, moved=moved) -> Step:
            matched = eval_condition(plan_arrays, int(k), moved)
            why = ev.check(node.cond)
            if why.holds != matched:
                why.detail += " [explanation disagrees with the kernel: please report]"
            return Step(level, code, name, matched, cond_text(node.cond), _source(node), why)

        hierarchy, grouped = _hierarchy_steps(scheme, rule_step)
        steps.append(Step("attempt", str(j + 1), f"principal procedure {px[j]} (procedure {j + 1})", grouped,
                          f"procedures {' | '.join(moved_px)}", None, None, hierarchy))
        if grouped:
            break
    return steps


def explain_case(scheme, case_row: pl.DataFrame) -> Explanation:
    """Explain one case: a one-row frame as read by grouper.io, or any one-row frame in an input
    shape (e.g. from pl.read_csv), read as `grouper group` reads it."""
    case_row = as_case_frame(case_row)
    if case_row.height != 1:
        raise ValueError(f"explain takes one case, got {case_row.height} rows")
    plan: ir.Plan = scheme.plan
    result = group_frame(plan, case_row, threads=1).row(0, named=True)
    # The same validation as the batch path: code conversion, built-in checks, blocking errors.
    ready = prepare(plan, case_row, threads=1)
    case_row, batch, found = ready.cases, ready.batch, ready.problems
    texts = messages(plan)
    problems = [{"reason": r["reason"], "level": r["level"], "detail": r["detail"],
                 "message": " / ".join(dict.fromkeys(texts.get(r["reason"], (r["reason"], r["reason"]))))}
                for r in found.iter_rows(named=True)]
    row = case_row.row(0, named=True)
    dx, px = list(row["dx"] or []), list(row["proc"] or [])
    case = Case(batch.dx_codes.tolist(), batch.px_codes.tolist(), batch.fields[:, 0].tolist())
    codes = {"pdx": dx[:1], "dx": dx, "secondary dx": dx[1:], "pproc": px[:1], "proc": px, "secondary proc": px[1:]}
    raw = {k: row.get(k) for k in ir.FIELDS}
    ev = _Evaluator(scheme, case, codes, raw)
    plan_arrays = plan.kernel_args()
    steps: list[Step] = []

    def rule_step(level, node, code, name, k) -> Step:
        matched = eval_condition(plan_arrays, int(k), case)
        why = ev.check(node.cond)
        if why.holds != matched:  # the AST walk and the kernel disagree: a bug, never hidden
            why.detail += " [explanation disagrees with the kernel: please report]"
        return Step(level, code, name, matched, cond_text(node.cond), _source(node), why)

    if batch.skip[0]:
        reason = str(batch.skip_reason[0])
        detail = next((p["message"] + (f" ({p['detail']})" if p["detail"] else "") for p in problems
                       if p["reason"] == reason), reason)
        steps.append(Step("invalid", reason, detail, True, "built-in validation check (error level)", None))
    else:
        invalids = scheme.ast.of_type(ast.InvalidDef)
        for node, k in zip(invalids, plan.invalid_cond):
            step = rule_step("invalid", node, node.name, node.message or "", k)
            steps.append(step)
            if step.matched:
                break
        else:
            hierarchy, grouped = _hierarchy_steps(scheme, rule_step)
            steps.extend(hierarchy)
            if not grouped and plan.behaviour & ir.SECOND_ATTEMPT:
                steps.extend(_second_attempts(scheme, case, codes, raw, dx, px))
    weight = None
    if result["drg"] is not None:
        weight = plan.drg_weights[plan.drg_codes.index(result["drg"])]
    return Explanation(row.get("id"), result["status"], result["mdc"], result["adrg"], result["drg"], result["reason"],
                       weight, list(result.get("warnings") or []), problems, steps,
                       {k: row.get(k) for k in case_row.columns})


def _hierarchy_steps(scheme, rule_step) -> tuple[list[Step], bool]:
    """The MDC → ADRG → DRG path of one attempt (qy rules in their places), and whether it ended in a
    DRG or a qy rule (a final result: no second attempt follows)."""
    plan = scheme.plan
    steps = []
    a_index = d_index = 0
    q_index = 0   # top-level qy rules are numbered first in the plan, in file order
    m = 0
    for st in scheme.ast.statements:
        if isinstance(st, ast.QyDef):
            step = rule_step("qy", st, st.code, st.name or "", plan.qy_cond[q_index])
            q_index += 1
            steps.append(step)
            if step.matched:
                return steps, True
            continue
        if not isinstance(st, ast.MdcDef):
            continue
        mdc = st
        mdc_step = rule_step("mdc", mdc, mdc.code, mdc.name or "", plan.mdc_cond[m])
        m += 1
        steps.append(mdc_step)
        first_adrg = a_index
        a_index += len(mdc.items)
        if not mdc_step.matched:
            d_index += sum(len(a.drgs) for a in mdc.adrgs)
            continue
        for a, adrg in enumerate(mdc.items, start=first_adrg):
            if isinstance(adrg, ast.QyDef):
                qy_step = rule_step("qy", adrg, adrg.code, adrg.name or "", plan.adrg_cond[a])
                mdc_step.children.append(qy_step)
                if qy_step.matched:
                    return steps, True
                continue
            adrg_step = rule_step("adrg", adrg, adrg.code, adrg.name or "", plan.adrg_cond[a])
            mdc_step.children.append(adrg_step)
            first_drg = d_index
            d_index += len(adrg.drgs)
            if not adrg_step.matched:
                continue
            for g, drg in enumerate(adrg.drgs, start=first_drg):
                if drg.cond is None:
                    adrg_step.children.append(Step("drg", drg.code, drg.name or "", True, "(unconditional)", _source(drg)))
                    return steps, True
                drg_step = rule_step("drg", drg, drg.code, drg.name or "", plan.drg_cond[g])
                adrg_step.children.append(drg_step)
                if drg_step.matched:
                    return steps, True
            if not plan.behaviour & ir.NO_DRG_STATUS:
                adrg_step.children.append(_setting_step(scheme, "adrg_without_drg", "no DRG of this ADRG holds: the next ADRG is tried"))
                continue
            adrg_step.children.append(_setting_step(scheme, "adrg_without_drg", "no DRG of this ADRG holds: status no_drg"))
            return steps, False
    return steps, False


# ---- what-if -------------------------------------------------------------------------------
@dataclass
class Change:
    action: str  # "add" | "remove"
    kind: str    # "dx" | "proc"
    code: str

    def __str__(self) -> str:
        return f"{'+' if self.action == 'add' else '-'}{self.kind}:{self.code}"


def parse_change(text: str) -> Change:
    """`+dx:J18.900`, `-proc:51.2300` (add or remove a secondary diagnosis / a procedure)."""
    text = text.strip()
    if len(text) < 2 or text[0] not in "+-" or ":" not in text:
        raise ValueError(f"a change looks like +dx:CODE, -dx:CODE, +proc:CODE or -proc:CODE, not {text!r}")
    kind, _, code = text[1:].partition(":")
    if kind not in ("dx", "proc") or not code:
        raise ValueError(f"a change looks like +dx:CODE, -dx:CODE, +proc:CODE or -proc:CODE, not {text!r}")
    return Change("add" if text[0] == "+" else "remove", kind, code)


def apply_changes(case_row: pl.DataFrame, changes: list[Change]) -> pl.DataFrame:
    dx, px = _codes(case_row, "dx"), _codes(case_row, "proc")
    for change in changes:
        items = dx if change.kind == "dx" else px
        if change.action == "add":
            items.append(change.code)  # added as a secondary item: what-if never changes the principal diagnosis
            continue
        positions = [i for i, code in enumerate(items) if code == change.code and (change.kind == "proc" or i > 0)]
        if not positions:
            where = "a secondary diagnosis" if change.kind == "dx" else "a procedure"
            raise ValueError(f"{change.code} is not {where} of this case")
        for i in reversed(positions):
            del items[i]
    return case_row.with_columns(pl.Series("dx", [dx], dtype=pl.List(pl.String)),
                                 pl.Series("proc", [px], dtype=pl.List(pl.String)))


def _codes(case_row: pl.DataFrame, column: str) -> list[str]:
    value = case_row[column][0]
    return [] if value is None else list(value)


@dataclass
class WhatIf:
    changes: str
    status: str
    mdc: str | None
    adrg: str | None
    drg: str | None
    weight: float | None
    changed: bool


def what_if(scheme, case_row: pl.DataFrame, scenarios: list[list[Change]]) -> list[WhatIf]:
    """The group (and weight) of the case under each scenario; the first row is the case as recorded."""
    plan = scheme.plan
    case_row = as_case_frame(case_row)
    rows = [case_row] + [apply_changes(case_row, changes) for changes in scenarios]
    results = group_frame(plan, pl.concat(rows), threads=1)
    out = []
    base = results.row(0, named=True)
    for label, r in zip(["(as recorded)"] + [", ".join(map(str, s)) for s in scenarios], results.iter_rows(named=True)):
        weight = plan.drg_weights[plan.drg_codes.index(r["drg"])] if r["drg"] else None
        changed = (r["status"], r["drg"], r["mdc"]) != (base["status"], base["drg"], base["mdc"])
        out.append(WhatIf(label, r["status"], r["mdc"], r["adrg"], r["drg"], weight, changed))
    return out


def removal_scenarios(case_row: pl.DataFrame) -> list[list[Change]]:
    """One scenario per recorded secondary diagnosis and procedure: drop it (never adds a code)."""
    dx = list(dict.fromkeys(_codes(case_row, "dx")[1:]))
    px = list(dict.fromkeys(_codes(case_row, "proc")))
    return [[Change("remove", "dx", c)] for c in dx if c] + [[Change("remove", "proc", c)] for c in px if c]


# ---- compact trace for batch output ---------------------------------------------------------
def trace_text(explanation: Explanation) -> str:
    """One line: the rules that held, e.g. `MDCA>- | MDCG>GD1>GD13`; `-` where none held. An ADRG
    without a DRG shows `>-` and, with no_drg = next_adrg, the ADRG tried next; a second attempt
    follows `||` with its principal procedure: `MDCG>GD1>- || proc 2 51.2300: MDCG>GD2>GD29`. A qy
    rule that held shows as `qy:CODE` (top level) or `MDC>qy:CODE` (inside an MDC)."""
    return _trace_steps(explanation.steps) or "-"


def _trace_steps(steps: list[Step]) -> str:
    parts, attempts = [], []
    for step in steps:
        if step.level in ("invalid", "qy"):
            if step.matched:
                parts.append(f"{step.level}:{step.code}")
            continue
        if step.level == "attempt":
            attempts.append(f"proc {step.code} {step.name.split()[2]}: " + (_trace_steps(step.children) or "-"))
            continue
        if step.level == "setting" or not step.matched:
            continue
        adrgs = [c for c in step.children if c.matched]
        if not adrgs:
            parts.append(f"{step.code}>-")
        for adrg in adrgs:
            if adrg.level == "qy":
                parts.append(f"{step.code}>qy:{adrg.code}")
                continue
            drg = next((c for c in adrg.children if c.matched and c.level == "drg"), None)
            parts.append(f"{step.code}>{adrg.code}>{drg.code if drg else '-'}")
    return " || ".join([" | ".join(parts)] + attempts) if attempts else " | ".join(parts)


@dataclass(frozen=True)
class TraceRequest:
    """Which rows of a batch get a `trace` column: these ids, and every row with one of these statuses."""

    ids: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()


def attach_trace(scheme, cases: pl.DataFrame, results: pl.DataFrame, request: TraceRequest) -> pl.DataFrame:
    """Add a `trace` column (null except for the chosen rows). Only chosen rows are explained, so a
    run that traces a few rows costs a few explanations, and a run without --trace costs nothing."""
    chosen = results.with_row_index("_row").filter(
        pl.col("id").cast(pl.String).is_in(list(request.ids)) | pl.col("status").is_in(list(request.statuses)))["_row"]
    traces: list[str | None] = [None] * results.height
    for i in chosen.to_list():
        traces[i] = trace_text(explain_case(scheme, cases[i:i + 1]))
    return results.with_columns(pl.Series("trace", traces, dtype=pl.String))
