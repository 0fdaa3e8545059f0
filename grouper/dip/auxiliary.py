"""The auxiliary catalogue (辅助目录): severity subtypes of the DIP groups, each with a factor; when
several subtypes hold for a case, **the highest factor wins** (the first in file order on a tie);
none → factor 1 and no subtype.

A scheme names the subtype table with `auxiliary = TABLE` and, when subtypes use code lists, the
list table with `auxiliary lists = TABLE` (columns `list, code`, plus `category, weight` for the
Charlson list `cci`). Subtype rows: `code, name, factor` and any of these criteria, all of which
must hold (an empty cell is no criterion; a criterion on a missing field does not hold):

| column | holds when |
|---|---|
| `age_min`, `age_max` | age in years within the bounds (inclusive) |
| `age_days_min`, `age_days_max` | age in days within the bounds (neonates: 0–28) |
| `los_min`, `los_max` | length of stay within the bounds |
| `death` | `1`: 离院方式 5 (death); `0`: any other discharge mode |
| `dx` / `secondary_dx` | some diagnosis (any / secondary only) is in the named list |
| `proc` | some procedure is in the named list |
| `cci_min`, `cci_max` | Charlson index within the bounds: Σ `weight` over the distinct `category` of the secondary diagnoses in list `cci` |
| `groups` | the case's 病种 code starts with one of these `/`-separated prefixes (empty: every group) |

Examples (docs/dip.md has a full table): 疾病严重程度 I-B `los_min = 4`; III `secondary_dx = mcc`;
IV-B `death = 1, los_min = 4`; 肿瘤 IV `secondary_dx = metastasis`; V-A `proc = radiotherapy`;
年龄 0–28 天 `age_days_max = 28, age_max = 0`; CCI ≥ 5 `cci_min = 5`.

Batch evaluation is one Polars expression per subtype over the whole batch (no per-case Python);
`reference_subtype` evaluates one case in plain Python for the tests and `explain`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from ..errors import Diagnostic, Span
from ..lang import ast as lang_ast
from ..lang.tables import TableStore

BOUNDS = ("age", "age_days", "los", "cci")
LIST_CRITERIA = ("dx", "secondary_dx", "proc")
CRITERIA = (*(f"{b}_{e}" for b in BOUNDS for e in ("min", "max")), "death", *LIST_CRITERIA, "groups")
DEATH = 5  # 离院方式 5 = 死亡


@dataclass(frozen=True)
class Subtype:
    code: str
    name: str
    factor: float
    bounds: dict[str, tuple[int | None, int | None]]
    death: bool | None
    lists: dict[str, str]                 # criterion → list name
    groups: tuple[str, ...]
    span: Span | None = None


@dataclass
class Auxiliary:
    subtypes: list[Subtype]
    lists: dict[str, frozenset[str]] = field(default_factory=dict)
    cci: dict[str, tuple[str, float]] = field(default_factory=dict)   # code → (category, weight)


def load_auxiliary(subtypes_expr, lists_table: str | None, store: TableStore) -> tuple[Auxiliary | None, list[Diagnostic]]:
    found: list[Diagnostic] = []
    table = subtypes_expr.table if isinstance(subtypes_expr, lang_ast.TableFilter) else subtypes_expr.name
    frame = store.frame(table).with_row_index("_line", offset=2)
    for f in getattr(subtypes_expr, "filters", ()):
        column = pl.col(f.column).fill_null("")
        frame = frame.filter(column == f.value if f.op == "=" else column != f.value)
    path = store.path(table)
    missing = {"code", "factor"} - set(frame.columns)
    if missing:
        return None, [Diagnostic("unknown-column", "error", f"auxiliary table {table} lacks {', '.join(sorted(missing))}",
                                 subtypes_expr.span, "columns: code, name, factor and criteria such as los_min, death")]
    lists: dict[str, set[str]] = {}
    cci: dict[str, tuple[str, float]] = {}
    if lists_table is not None:
        lf = store.frame(lists_table)
        if not {"list", "code"} <= set(lf.columns):
            return None, [Diagnostic("unknown-column", "error", f"auxiliary lists table {lists_table} needs columns list, code",
                                     None)]
        for rec in lf.iter_rows(named=True):
            lists.setdefault(rec["list"] or "", set()).add(rec["code"] or "")
            if rec["list"] == "cci":
                try:
                    cci[rec["code"]] = (rec.get("category") or rec["code"], float(rec.get("weight") or 1))
                except ValueError:
                    found.append(Diagnostic("bad-value", "error", f"CCI weight {rec.get('weight')!r} of {rec['code']} is not a number",
                                            Span(str(store.path(lists_table)), 1, 1)))
    subtypes, seen = [], set()
    for rec in frame.iter_rows(named=True):
        line = int(rec["_line"])
        span = Span(str(path), line, 1, line, 2)
        cell = lambda c: (rec.get(c) or "").strip()  # noqa: E731
        if not cell("code") or cell("code") in seen:
            found.append(Diagnostic("duplicate-group", "error",
                                    f"auxiliary subtype code {cell('code')!r} is empty or listed twice", span))
            continue
        seen.add(cell("code"))
        try:
            factor = float(cell("factor"))
            bounds = {b: (int(cell(f"{b}_min")) if cell(f"{b}_min") else None,
                          int(cell(f"{b}_max")) if cell(f"{b}_max") else None) for b in BOUNDS}
        except ValueError:
            found.append(Diagnostic("bad-value", "error", f"auxiliary subtype {cell('code')}: a factor or bound is not a number",
                                    span))
            continue
        death = {"1": True, "0": False, "": None}.get(cell("death"))
        named = {c: cell(c) for c in LIST_CRITERIA if cell(c)}
        unknown = [n for n in named.values() if n not in lists]
        if cell("cci_min") or cell("cci_max"):
            if "cci" not in lists:
                unknown.append("cci")
        if death is None and cell("death"):
            found.append(Diagnostic("bad-value", "error", f"auxiliary subtype {cell('code')}: death is 1 or 0", span))
            continue
        if unknown:
            found.append(Diagnostic("unknown-list", "error",
                                    f"auxiliary subtype {cell('code')} names list(s) {', '.join(unknown)} that the "
                                    "`auxiliary lists` table does not have", span))
            continue
        groups = tuple(g.strip() for g in cell("groups").split("/") if g.strip())
        subtypes.append(Subtype(cell("code"), cell("name"), factor,
                                {b: v for b, v in bounds.items() if v != (None, None)}, death, named, groups, span))
    return Auxiliary(subtypes, {k: frozenset(v) for k, v in lists.items()}, cci), found


FIELD_NAMES = ("age", "age_days", "los", "discharge")


def case_fields(cases: pl.DataFrame) -> pl.DataFrame:
    """age, age_days, los, discharge of canonical cases as Int32 (null when missing or unreadable),
    parsed by the project's field reader (grouper.fields); absent columns are null."""
    from ..fields import typed_fields

    text = cases.with_columns(pl.lit(None, dtype=pl.String).alias(c) for c in FIELD_NAMES if c not in cases.columns)
    return typed_fields(text.select(FIELD_NAMES)).select(FIELD_NAMES)


# ---- batch ------------------------------------------------------------------------------------
def _bounded(column: pl.Expr, lo, hi) -> pl.Expr:
    cond = column.is_not_null()
    if lo is not None:
        cond = cond & (column >= lo)
    if hi is not None:
        cond = cond & (column <= hi)
    return cond.fill_null(False)


def _subtype_expr(s: Subtype, aux: Auxiliary) -> pl.Expr:
    cond = pl.lit(True)
    for b, (lo, hi) in s.bounds.items():
        cond = cond & _bounded(pl.col(b if b != "cci" else "_cci"), lo, hi)
    if s.death is not None:
        died = (pl.col("discharge") == DEATH).fill_null(False)
        cond = cond & (died if s.death else pl.col("discharge").is_not_null() & ~died)
    for criterion, name in s.lists.items():
        codes = list(aux.lists[name])
        items = pl.col("proc") if criterion == "proc" else pl.col("dx")
        if criterion == "secondary_dx":
            items = items.list.slice(1)
        cond = cond & items.list.eval(pl.element().is_in(codes)).list.any().fill_null(False)
    if s.groups:
        in_group = pl.any_horizontal([pl.col("_dip").str.starts_with(g) for g in s.groups]).fill_null(False)
        cond = cond & in_group
    return cond & pl.col("_dip").is_not_null()


def _cci_expr(aux: Auxiliary) -> pl.Expr:
    if not aux.cci:
        return pl.lit(None, dtype=pl.Float64)
    categories = {c: cat for c, (cat, _) in aux.cci.items()}
    weights = {cat: w for cat, w in aux.cci.values()}
    cats = pl.col("dx").list.slice(1).list.eval(
        pl.element().replace_strict(categories, default=None, return_dtype=pl.String).drop_nulls().unique())
    return cats.list.eval(pl.element().replace_strict(weights, return_dtype=pl.Float64)).list.sum().fill_null(0.0)


def subtype_masks(aux: Auxiliary, cases: pl.DataFrame, dip: pl.Series) -> pl.DataFrame:
    """One Boolean column per subtype (named by its code, in file order): does it hold for the case?"""
    frame = pl.DataFrame({"dx": cases["dx"], "proc": cases["proc"], "_dip": dip}).with_columns(case_fields(cases))
    if any("cci" in s.bounds for s in aux.subtypes):
        frame = frame.with_columns(_cci_expr(aux).alias("_cci"))
    return frame.select(_subtype_expr(s, aux).alias(s.code) for s in aux.subtypes)


def apply_auxiliary(aux: Auxiliary, cases: pl.DataFrame, dip: pl.Series) -> tuple[pl.Series, pl.Series]:
    """(subtype code, factor) per case: the matching subtype with the highest factor (first on a
    tie); null / 1.0 when none holds; null factor for a case with no group."""
    masks = subtype_masks(aux, cases, dip).with_columns(dip.alias("_dip"))
    # Highest factor first; equal factors keep file order (sorted is stable), so the first listed wins.
    ranked = sorted(aux.subtypes, key=lambda s: -s.factor)
    code = pl.coalesce([pl.when(pl.col(s.code)).then(pl.lit(s.code)) for s in ranked] or [pl.lit(None, dtype=pl.String)])
    factor = pl.coalesce([pl.when(pl.col(s.code)).then(pl.lit(s.factor)) for s in ranked]
                         or [pl.lit(None, dtype=pl.Float64)])
    out = masks.select(code.alias("aux"),
                       pl.when(pl.col("_dip").is_not_null()).then(factor.fill_null(1.0)).alias("aux_factor"))
    return out["aux"], out["aux_factor"]


# ---- one case ----------------------------------------------------------------------------------
def reference_subtype(aux: Auxiliary, case: dict, dip: str | None) -> tuple[Subtype | None, list[tuple[Subtype, bool]]]:
    """(the winning subtype or None, every subtype with whether it holds) for one case; `case`
    holds dx, proc (lists) and age, age_days, los, discharge (int or None)."""
    if dip is None:
        return None, []
    dx, procs = case.get("dx") or [], case.get("proc") or []
    secondary = dx[1:]
    seen: dict[str, float] = {}
    for code in secondary:
        if code in aux.cci:
            cat, w = aux.cci[code]
            seen[cat] = w
    values = {"age": case.get("age"), "age_days": case.get("age_days"), "los": case.get("los"), "cci": sum(seen.values())}
    verdicts = []
    for s in aux.subtypes:
        ok = all(values[b] is not None and (lo is None or values[b] >= lo) and (hi is None or values[b] <= hi)
                 for b, (lo, hi) in s.bounds.items())
        if s.death is not None:
            d = case.get("discharge")
            ok = ok and d is not None and ((d == DEATH) == s.death)
        for criterion, name in s.lists.items():
            items = procs if criterion == "proc" else (secondary if criterion == "secondary_dx" else dx)
            ok = ok and any(c in aux.lists[name] for c in items)
        if s.groups:
            ok = ok and any(dip.startswith(g) for g in s.groups)
        verdicts.append((s, ok))
    holding = [s for s, ok in verdicts if ok]
    best = max(holding, key=lambda s: s.factor) if holding else None   # max keeps the first of equal factors
    return best, verdicts
