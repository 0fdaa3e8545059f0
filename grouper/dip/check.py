"""Semantic checks of a DIP scheme and its catalogue: every problem with file:line:col (the scheme
line, or the catalogue CSV line of a bad row)."""
from __future__ import annotations

from collections import Counter, defaultdict

from ..errors import Diagnostic
from ..lang import ast as lang_ast
from ..lang.tables import TableStore
from .ast import LEVELS, DipScheme
from .auxiliary import load_auxiliary
from .catalogue import Row, load_rows, reachable_key



def _set_expr_errors(expr, store: TableStore, what: str) -> list[Diagnostic]:
    name = expr.table if isinstance(expr, lang_ast.TableFilter) else expr.name
    if name not in store.defs:
        return [Diagnostic("unknown-table", "error", f"{what}: no table named {name!r}", expr.span,
                           f"declare it with `table {name} = \"{name}.csv\"`")]
    columns = store.columns(name)
    return [Diagnostic("unknown-column", "error", f"table {name} has no column {f.column!r}", f.span,
                       f"columns are {', '.join(columns)}")
            for f in getattr(expr, "filters", ()) if f.column not in columns]


def check(scheme: DipScheme, store: TableStore) -> tuple[dict[str, list[Row]], list[Diagnostic]]:
    """(catalogue rows by level, diagnostics). Rows are empty when the scheme itself has errors."""
    found: list[Diagnostic] = []
    seen_tables: set[str] = set()
    for t in scheme.tables:
        if t.name in seen_tables:
            found.append(Diagnostic("duplicate-name", "error", f"table {t.name} is declared twice", t.span))
        seen_tables.add(t.name)
    found += store.load_errors()
    if scheme.block_span is None:
        found.append(Diagnostic("missing-dip-block", "error", "the scheme has no `dip { ... }` block", scheme.header.span,
                                "a DIP scheme says how cases are keyed and which catalogue rows are tried"))
        return {}, found
    names = defaultdict(list)
    for s in scheme.settings:
        names[s.name].append(s)
    for name, items in names.items():
        for extra in items[1:]:
            found.append(Diagnostic("duplicate-setting", "error", f"`{name}` is set twice in the dip block", extra.span))
    for name, hint in (("dx_length", "diagnosis length 5   # 亚目, e.g. K80.1"),
                       ("qualifying", "qualifying = proc_types[qualifying = \"1\"]"),
                       ("core", "core = catalogue[level = \"core\"]")):
        if name not in names:
            found.append(Diagnostic("missing-setting", "error", f"the dip block does not set `{name}`",
                                    scheme.block_span, f"add e.g. `{hint}`"))
    if "comprehensive" in names and not ("treatment_column" in names and "treatment_order" in names):
        found.append(Diagnostic("missing-setting", "error",
                                "comprehensive groups need `treatment = TABLE.COLUMN` and a `treatments` order",
                                names["comprehensive"][0].span,
                                'e.g. treatments "保守治疗" < "诊断性操作" < "治疗性操作" < "相关手术"'))
    length = scheme.dx_length
    if length is not None and length < 1:
        found.append(Diagnostic("bad-value", "error", f"diagnosis length must be at least 1, not {length}",
                                scheme.setting("dx_length").span))
    order = scheme.treatments
    if len(set(order)) != len(order):
        found.append(Diagnostic("bad-value", "error", "a treatment type is listed twice", scheme.setting("treatment_order").span))
    found += _order_settings(scheme)
    if any(d.severity == "error" for d in found):
        return {}, found
    for s in scheme.settings:
        if s.name in ("qualifying", "exclude", "auxiliary", *LEVELS):
            found += _set_expr_errors(s.value, store, f"`{s.name}`")
        elif s.name == "auxiliary_lists" and s.value not in store.defs:
            found.append(Diagnostic("unknown-table", "error", f"`auxiliary lists`: no table named {s.value!r}", s.span))
        elif s.name == "treatment_column":
            table, column = s.value
            if table not in store.defs:
                found.append(Diagnostic("unknown-table", "error", f"no table named {table!r}", s.span))
            elif column not in store.columns(table):
                found.append(Diagnostic("unknown-column", "error", f"table {table} has no column {column!r}", s.span,
                                        f"columns are {', '.join(store.columns(table))}"))
    if any(d.severity == "error" for d in found):
        return {}, found
    if order:
        table, column = scheme.setting("treatment_column").value
        used = set(store.frame(table)[column].drop_nulls().unique().to_list()) - {""}
        unknown = sorted(used - set(order))
        if unknown:
            found.append(Diagnostic("unknown-treatment", "error",
                                    f"table {table} uses treatment type(s) {', '.join(map(repr, unknown))} "
                                    "that the `treatments` order does not list",
                                    scheme.setting("treatment_order").span))
    rows, problems = load_rows(scheme, store)
    found += problems
    found += _row_checks(scheme, store, rows)
    if scheme.setting("auxiliary"):
        lists = scheme.setting("auxiliary_lists")
        _, problems = load_auxiliary(scheme.setting("auxiliary").value, lists.value if lists else None, store)
        found += problems
    return rows, found


def _order_settings(scheme: DipScheme) -> list[Diagnostic]:
    """The `precedence`, `tie breaks` and `point value` lines."""
    found = []
    types = list(scheme.treatments) or ["保守治疗"]
    if (s := scheme.setting("precedence")) is not None:
        unknown = [kind for _, kind in s.value if kind not in types]
        if unknown:
            found.append(Diagnostic("unknown-treatment", "error",
                                    f"the precedence names treatment type(s) {', '.join(map(repr, unknown))} "
                                    "that the `treatments` order does not list", s.span,
                                    "treatments are " + " < ".join(types)))
        twice = [f"{level} {kind!r}" for (level, kind), n in Counter(s.value).items() if n > 1]
        if twice:
            found.append(Diagnostic("bad-value", "error", f"the precedence lists {', '.join(twice)} twice", s.span))
    if (s := scheme.setting("point_value")) is not None and scheme.point_value <= 0:
        found.append(Diagnostic("bad-value", "error", f"the point value must be above 0, not {s.value}", s.span,
                                "yuan per point, e.g. `point value 12.5`"))
    return found


def _row_checks(scheme: DipScheme, store: TableStore, rows: dict[str, list[Row]]) -> list[Diagnostic]:
    found = []
    codes: dict[str, Row] = {}
    qualifying = set(store.codes(scheme.setting("qualifying").value))
    cost_step = scheme.setting("point_value") is not None or any(
        r.cost is not None for level in LEVELS for r in rows.get(level, ()))
    for level in LEVELS:
        keys: dict[tuple, Row] = {}
        unqualified = []
        for row in rows.get(level, ()):
            if row.code in codes:
                found.append(Diagnostic("duplicate-group", "error",
                                        f"group {row.code} is listed twice (first on line {codes[row.code].span.line})",
                                        row.span))
            codes.setdefault(row.code, row)
            if level != "comprehensive" and len(row.dx) != scheme.dx_length:
                found.append(Diagnostic("bad-dx-length", "error",
                                        f"{level} group {row.code} has diagnosis {row.dx!r} ({len(row.dx)} characters); "
                                        f"the scheme keys on {scheme.dx_length}", row.span,
                                        "core and primary rows name the principal diagnosis at the `diagnosis length`"))
            why = reachable_key(row.dx)
            if why is not None:
                found.append(Diagnostic("unreachable-key", "warning",
                                        f"{level} group {row.code} can never be chosen: no valid diagnosis code reaches "
                                        f"its key ({why})", row.span,
                                        "keys are the start of an ICD-10 code (K80.1, K80, K) or a chapter range (A00-B99)"))
            if level == "comprehensive":
                key = (row.dx, row.treatment)
            else:
                key = (row.dx, frozenset(frozenset(frozenset(t) for t in a) for a in row.alternatives))
            if key in keys and not (cost_step and level in scheme.tie_break_levels):
                found.append(Diagnostic("unreachable", "warning",
                                        f"{level} group {row.code} has the same key as {keys[key].code} "
                                        f"(line {keys[key].span.line}), which comes first: it can never be chosen",
                                        row.span))
            elif key in keys:
                found.append(Diagnostic("same-key", "warning",
                                        f"{level} group {row.code} has the same key as {keys[key].code} "
                                        f"(line {keys[key].span.line}): only the cost step tells them apart",
                                        row.span))
            keys.setdefault(key, row)
            if any(c not in qualifying for c in row.codes):
                unqualified.append(row)
        if unqualified:
            first = unqualified[0]
            bad = [c for c in first.codes if c not in qualifying]
            found.append(Diagnostic("unqualified-code", "warning",
                                    f"{len(unqualified)} {level} row(s) name procedures outside the qualifying set "
                                    f"(first: {first.code} names {', '.join(bad)}); a term that is not qualifying never matches",
                                    first.span))
    return found
