"""Semantic checks over a parsed scheme. Every finding becomes a Diagnostic with a span.

`check()` collects everything (it never stops at the first problem) and returns the list;
callers raise SchemeError if any has severity "error".
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from .. import reasons
from ..errors import Diagnostic
from . import ast
from .overlay import READS, read_keys
from .printer import statement_lines
from .settings import SETTINGS, resolved
from .tables import TableStore

DX_SCOPES = ("pdx", "dx", "secondary dx")
INT_LIMIT = 2**31 - 1  # numbers of conditions are int32 in the plan; -2**31 marks a missing value


@dataclass
class Names:
    """Name tables of a scheme, shared by check and compile."""

    tables: dict[str, ast.TableDef]
    sets: dict[str, ast.SetDef]
    defines: dict[str, ast.DefineDef]
    dictionaries: dict[str, ast.DictionaryDef]

    @classmethod
    def of(cls, scheme: ast.Scheme) -> "Names":
        return cls({t.name: t for t in scheme.of_type(ast.TableDef)},
                   {s.name: s for s in scheme.of_type(ast.SetDef)},
                   {d.name: d for d in scheme.of_type(ast.DefineDef)},
                   {d.kind: d for d in scheme.of_type(ast.DictionaryDef)})

    def resolve(self, expr: ast.SetExpr) -> ast.SetExpr:
        """Follow named sets down to a table, a table filter or an inline set (cycles are checked elsewhere)."""
        seen = set()
        while isinstance(expr, ast.SetRef) and expr.name in self.sets and expr.name not in seen:
            seen.add(expr.name)
            expr = self.sets[expr.name].expr
        return expr

    def define_cond(self, name: str) -> ast.Cond:
        return self.defines[name].cond


def walk_cond(cond: ast.Cond):
    """Yield a condition and all its sub-conditions (not following define references)."""
    yield cond
    if isinstance(cond, (ast.AnyOf, ast.AllOf)):
        for item in cond.items:
            yield from walk_cond(item)
    elif isinstance(cond, ast.Negation):
        yield from walk_cond(cond.item)


# Levels a condition may nest once the defines it names are written out in place (grouping,
# explain and compile follow them level by level; real schemes use about a dozen).
MAX_CONDITION_DEPTH = 200


def _cond_depth(cond: ast.Cond, define_depth: dict[str, int]) -> int:
    """How deep `cond` nests with each define it names counted at its own depth (no recursion)."""
    deepest, stack = 0, [(cond, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, ast.DefineRef):
            depth += define_depth.get(node.name, 0)
        deepest = max(deepest, depth)
        if isinstance(node, (ast.AnyOf, ast.AllOf)):
            stack.extend((item, depth + 1) for item in node.items)
        elif isinstance(node, ast.Negation):
            stack.append((node.item, depth + 1))
    return deepest


def define_depths(defines: dict[str, ast.DefineDef]) -> dict[str, int]:
    """Each define's depth written out in place, defines first that name only computed ones (a
    define in a cycle gets none: the cycle is reported on its own)."""
    refs = {name: {node.name for node in walk_cond(d.cond) if isinstance(node, ast.DefineRef) and node.name in defines}
            for name, d in defines.items()}
    depth: dict[str, int] = {}
    ready = [name for name, r in refs.items() if not r]
    users: dict[str, list[str]] = {}
    for name, r in refs.items():
        for used in r:
            users.setdefault(used, []).append(name)
    waiting = {name: len(r) for name, r in refs.items()}
    while ready:
        name = ready.pop()
        depth[name] = _cond_depth(defines[name].cond, depth)
        for user in users.get(name, ()):
            waiting[user] -= 1
            if waiting[user] == 0:
                ready.append(user)
    return depth


def _tags(expr: ast.TagExpr):
    if isinstance(expr, ast.Tag):
        yield expr
    else:
        for item in expr.items:
            yield from _tags(item)


class _Checker:
    def __init__(self, scheme: ast.Scheme, store: TableStore | None):
        self.scheme = scheme
        self.store = store
        self.names = Names.of(scheme)
        self.found: list[Diagnostic] = []
        self.bad_tables: set[str] = set()
        self.dictionary_codes: dict[str, frozenset] = {}
        self.cyclic: set[str] = set()  # defines in a cycle: never expanded
        self.dictionary_checked: set[tuple[str, str]] = set()
        self.adrg_without_drg = resolved(scheme)["adrg_without_drg"]

    def error(self, code, message, span, hint=None):
        self.found.append(Diagnostic(code, "error", message, span, hint))

    def warning(self, code, message, span, hint=None):
        self.found.append(Diagnostic(code, "warning", message, span, hint))

    # ---- driver --------------------------------------------------------------------------
    def run(self) -> list[Diagnostic]:
        self.check_duplicates()
        self.check_depth()
        if self.store is not None:
            errors = self.store.load_errors()
            self.found.extend(errors)
            self.bad_tables = {name for name, t in self.names.tables.items()
                               if any(d.span in (t.span, *(p.span for p in t.patches)) for d in errors)}
        for d in self.names.dictionaries.values():
            if d.kind not in ("dx", "proc"):
                self.error("bad-dictionary", f"unknown dictionary kind {d.kind!r}", d.span, "use `dictionary dx = TABLE` or `dictionary proc = TABLE`")
            self.check_table_name(d.table, d.span)
        for s in self.names.sets.values():
            self.check_set(s.expr, None)
        self.check_data_statements()
        self.check_reads()
        self.check_overlay_leftovers()
        self.check_set_cycles()
        self.check_define_cycles()
        for statement in self.scheme.statements:
            if isinstance(statement, (ast.DefineDef, ast.InvalidDef, ast.WarnDef, ast.QyDef)):
                self.check_cond(statement.cond)
            elif isinstance(statement, ast.MdcDef):
                self.check_mdc(statement)
        if not self.scheme.mdcs:
            self.error("empty-scheme", "the scheme defines no MDC", self.scheme.header.span)
        return self.found

    # ---- names ---------------------------------------------------------------------------
    def check_duplicates(self):
        seen: dict[tuple[str, str], ast.Statement] = {}
        kinds = {ast.TableDef: "table", ast.SetDef: "set", ast.DefineDef: "define", ast.InvalidDef: "rule",
                 ast.WarnDef: "rule", ast.DictionaryDef: "dictionary", ast.MapDef: "map", ast.ValidateDef: "validate",
                 ast.WeightsDef: "weights", ast.SettingDef: "setting"}
        for st in self.scheme.statements:
            kind = kinds.get(type(st))
            if kind is None:
                continue
            key = (kind, getattr(st, "name", None) or getattr(st, "kind", None) or getattr(st, "reason", None) or "")
            if key in seen:
                self.error("duplicate-name", f"{kind} {key[1]!r} is defined twice (first at {seen[key].span})", st.span)
            seen[key] = st
        for name in set(self.names.sets) & set(self.names.tables):
            self.error("duplicate-name", f"set {name!r} has the name of a table", self.names.sets[name].span,
                       "a bare table name already means the set of its codes; pick another set name")
        groups: dict[str, ast.Statement] = {}
        for mdc in self.scheme.mdcs:
            for node in (mdc, *mdc.adrgs, *(d for a in mdc.adrgs for d in a.drgs)):
                if node.code in groups:
                    self.error("duplicate-group", f"group code {node.code} is defined twice (first at {groups[node.code].span})", node.span)
                else:
                    groups[node.code] = node
        # One ambiguous group may have several qy rules (MQY from MDCM and from MDCN), but its code
        # must not be an MDC, ADRG or DRG code.
        for qy in self.all_qys():
            if qy.code in groups:
                self.error("duplicate-group", f"qy code {qy.code} is already a group code (at {groups[qy.code].span})", qy.span)
        reads: dict[tuple[str, str], ast.Statement] = {}
        for st in self.scheme.statements:
            for key in read_keys(st) if isinstance(st, READS) else ():
                if key in reads:
                    overlay = self.scheme.header.extends is not None
                    self.error("duplicate-name", f"`{' '.join(key)}` is set twice (first at {reads[key].span})", st.span,
                               f"an overlay changes its base's with `replace {' '.join(key)} ...`" if overlay else None)
                reads[key] = st

    def all_qys(self) -> list[ast.QyDef]:
        return [*self.scheme.of_type(ast.QyDef), *(q for m in self.scheme.mdcs for q in m.qys)]

    def check_reads(self):
        mdcs = {m.code for m in self.scheme.mdcs}
        for qy in self.all_qys():
            if qy.mdc is not None and qy.mdc not in mdcs:
                self.error("unknown-mdc", f"qy {qy.code} reports MDC {qy.mdc}, which the scheme does not define",
                           qy.span, "name one of the scheme's MDCs after `mdc`")
        for st in self.scheme.statements:
            if isinstance(st, ast.ReadSex):
                texts = [text for text, _ in st.spellings]
                if len(set(texts)) != len(texts):
                    self.error("bad-read", "a sex spelling is given twice", st.span)
                if st.digits and any(text.isascii() and text.isdigit() for text in texts):
                    self.error("bad-read", "`digits` already reads every string of digits as its number: "
                               "a spelling of digits would say otherwise", st.span)
                if any(text.strip() != text or not text for text in texts):
                    self.error("bad-read", "sex spellings are compared after trimming blanks: write them without "
                               "blanks, and never empty (an empty field is missing)", st.span)
            elif isinstance(st, ast.ReadEmptyNumber):
                for f in st.fields:
                    if f in ("sex", "dept"):
                        self.error("bad-read", f"`read empty ... as N` is for number fields; {f} is not one", st.span,
                                   "number fields: age, age_days, weight, los, discharge")
                self.check_int_range(st, st.value)

    def check_overlay_leftovers(self):
        """Overlay operations are consumed when an overlay is merged onto its base; anywhere else they are errors."""
        for st in self.scheme.statements:
            if isinstance(st, ast.OVERLAY_OPERATIONS):
                keyword = statement_lines(st)[0].split(" ")[0]
                self.error("overlay-only", f"`{keyword}` changes a base scheme, but this scheme has no base", st.span,
                           'name the base in the first line: scheme "NAME" version "V" extends "BASE"')

    def check_data_statements(self):
        for st in self.scheme.statements:
            if isinstance(st, ast.SettingDef):
                setting = SETTINGS.get(st.name)
                if setting is None:
                    self.error("unknown-setting", f"there is no setting {st.name!r}", st.span,
                               "settings: " + ", ".join(SETTINGS))
                elif str(st.value) not in setting.values:
                    self.error("bad-value", f"setting {st.name} is one of {', '.join(setting.values)}, not {st.value!r}",
                               st.span, f"default: {setting.default}")
            elif isinstance(st, ast.ValidateDef):
                if st.reason not in reasons.CATALOGUE:
                    self.error("unknown-reason", f"no built-in check is called {st.reason!r}", st.span,
                               "built-in checks: " + ", ".join(reasons.CATALOGUE))
                if st.level not in reasons.LEVELS:
                    self.error("bad-level", f"{st.level!r} is not a severity", st.span, "use error, warning or off")
                elif st.reason in reasons.FIXED_LEVEL and st.level != "error":
                    self.error("bad-level", f"{st.reason} is always an error: the values of such a line cannot be trusted",
                               st.span, "remove this line")
            elif isinstance(st, ast.MapDef):
                if st.kind not in ("dx", "proc"):
                    self.error("bad-map", f"unknown map kind {st.kind!r}", st.span, "use `map dx = TABLE` or `map proc = TABLE`")
                if self.check_table_name(st.table, st.span):
                    for column in ("from", "to"):
                        self.check_column(st.table, column, st.span)
            elif isinstance(st, ast.WeightsDef):
                if self.check_table_name(st.table, st.span):
                    before = len(self.found)
                    for column in ("drg", "weight"):
                        self.check_column(st.table, column, st.span)
                    if self.store is not None and len(self.found) == before:
                        self.check_weight_values(st)
                        weighted = set(self.store.frame(st.table)["drg"].to_list())
                        missing = [d.code for m in self.scheme.mdcs for a in m.adrgs for d in a.drgs if d.code not in weighted]
                        if missing:
                            self.warning("missing-weight", f"{len(missing)} DRG(s) have no weight in {st.table}: "
                                         + ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else ""), st.span)

    def check_weight_values(self, st: ast.WeightsDef):
        """A weight that is not a number would silently count as missing: an error naming its line."""
        frame = self.store.frame(st.table).with_row_index("_line", offset=2)  # line 1 is the header
        text = pl.col("weight").str.strip_chars()
        bad = frame.filter(text.is_not_null() & (text != "") & text.cast(pl.Float64, strict=False).is_null())
        if bad.height:
            sample = ", ".join(f"line {line}: {drg} {weight!r}" for line, drg, weight in
                               bad.select("_line", "drg", "weight").head(5).iter_rows())
            self.error("bad-value", f"{bad.height} weight(s) in {st.table} are not numbers ({sample})", st.span,
                       f"fix them in {self.store.path(st.table).name}")

    def check_table_name(self, name: str, span) -> bool:
        if name not in self.names.tables:
            hint = f"declared tables: {', '.join(self.names.tables) or 'none'}"
            self.error("unknown-table", f"unknown table {name!r}", span, hint)
            return False
        return name not in self.bad_tables

    def check_column(self, table: str, column: str, span):
        if self.store is None or table in self.bad_tables or table not in self.names.tables:
            return
        columns = self.store.columns(table)
        if column not in columns:
            self.error("unknown-column", f"table {table} has no column {column!r}", span, f"columns are {', '.join(columns)}")

    def check_set(self, expr: ast.SetExpr, scope: str | None):
        if isinstance(expr, ast.SetRef):
            if expr.name not in self.names.sets and expr.name not in self.names.tables:
                self.error("unknown-set", f"unknown set or table {expr.name!r}", expr.span,
                           "declare it with `set NAME = ...` or `table NAME = \"file.csv\"`")
        elif isinstance(expr, ast.TableFilter):
            if self.check_table_name(expr.table, expr.span):
                before = len(self.found)
                for f in expr.filters:
                    self.check_column(expr.table, f.column, f.span)
                if self.store is not None and len(self.found) == before and not self.store.codes(expr):
                    self.warning("empty-set", f"{_set_text(expr)} selects no codes", expr.span)
        elif isinstance(expr, ast.InlineSet) and not expr.codes:
            self.warning("empty-set", "this inline set is empty", expr.span)
        elif isinstance(expr, ast.PrefixSet) and not all(expr.prefixes):
            self.error("bad-value", "an empty prefix would match every code", expr.span)
        if scope is not None:
            self.check_dictionary(expr, scope)

    def check_dictionary(self, expr: ast.SetExpr, scope: str):
        """Warn about codes of a set that the scheme's code dictionary does not list."""
        kind = "dx" if scope in DX_SCOPES else "proc"
        dictionary = self.names.dictionaries.get(kind)
        if self.store is None or dictionary is None or dictionary.table in self.bad_tables:
            return
        if dictionary.table not in self.names.tables:
            return
        resolved = self.names.resolve(expr)
        if isinstance(resolved, ast.PrefixSet):
            return
        if isinstance(resolved, ast.SetRef) and (resolved.name not in self.names.tables
                                                  or resolved.name in self.bad_tables):
            return  # unknown or unreadable table: reported where it is declared
        if isinstance(resolved, ast.TableFilter) and (resolved.table not in self.names.tables or resolved.table in self.bad_tables
                                                      or any(f.column not in self.store.columns(resolved.table)
                                                             for f in resolved.filters)):
            return  # unknown table or column: reported where it is written
        if (_set_text(resolved), kind) in self.dictionary_checked:
            return
        self.dictionary_checked.add((_set_text(resolved), kind))
        if dictionary.table not in self.dictionary_codes:
            self.dictionary_codes[dictionary.table] = frozenset(self.store.codes(ast.SetRef(dictionary.table)))
        known = self.dictionary_codes[dictionary.table]
        codes = resolved.codes if isinstance(resolved, ast.InlineSet) else self.store.codes(resolved)
        absent = [c for c in codes if c not in known]
        if absent:
            sample = ", ".join(absent[:5]) + (" ..." if len(absent) > 5 else "")
            self.warning("unknown-code", f"{len(absent)} code(s) of {_set_text(resolved)} are not in dictionary "
                         f"{kind} ({dictionary.table}): {sample}", expr.span,
                         "such codes never match a case coded from the dictionary")

    def check_set_cycles(self):
        for name, s in self.names.sets.items():
            seen = [name]
            expr = s.expr
            while isinstance(expr, ast.SetRef) and expr.name in self.names.sets:
                if expr.name in seen:
                    self.error("cycle", f"set {name} refers to itself ({' -> '.join(seen + [expr.name])})", s.span)
                    break
                seen.append(expr.name)
                expr = self.names.sets[expr.name].expr

    def check_depth(self):
        """Defines and conditions nested deeper than MAX_CONDITION_DEPTH once written out: an error
        each, and such a define is never followed (like one in a cycle)."""
        depth = define_depths(self.names.defines)
        too_deep = {name for name in self.names.defines if depth.get(name, 0) > MAX_CONDITION_DEPTH}
        self.cyclic |= too_deep
        for name, define in self.names.defines.items():
            if name in too_deep and not any(isinstance(node, ast.DefineRef) and node.name in too_deep for node in walk_cond(define.cond)):
                self.error("too-deep", f"define {name} nests {depth[name]} levels deep with the defines it names "
                           f"written out (the limit is {MAX_CONDITION_DEPTH})", define.span,
                           "a chain of defines each naming the previous one: name fewer levels")

        def with_conditions(nodes):
            for node in nodes:
                if not isinstance(node, ast.DefineDef) and getattr(node, "cond", None) is not None:
                    yield node
                yield from with_conditions(getattr(node, "items", None) or getattr(node, "drgs", None) or ())

        for statement in with_conditions(self.scheme.statements):
            cond = statement.cond
            levels = _cond_depth(cond, depth)
            if levels > MAX_CONDITION_DEPTH and not any(isinstance(node, ast.DefineRef) and node.name in self.cyclic
                                                        for node in walk_cond(cond)):
                self.error("too-deep", f"this condition nests {levels} levels deep with its defines written out "
                           f"(the limit is {MAX_CONDITION_DEPTH})", statement.span)

    def check_define_cycles(self):
        def visit(name, path):
            if name in path:
                return path + [name]
            define = self.names.defines.get(name)
            if define is None or name in self.cyclic:   # too deep: reported, not followed
                return None
            for node in walk_cond(define.cond):
                if isinstance(node, ast.DefineRef):
                    cycle = visit(node.name, path + [name])
                    if cycle:
                        return cycle
            return None

        reported: set[frozenset] = set()
        for name, define in self.names.defines.items():
            cycle = visit(name, [])
            if cycle and cycle[0] == name and frozenset(cycle) not in reported:
                reported.add(frozenset(cycle))
                self.cyclic.update(cycle)
                self.error("cycle", f"define {name} refers to itself ({' -> '.join(cycle)})", define.span)

    # ---- conditions ------------------------------------------------------------------------
    def check_cond(self, cond: ast.Cond):
        for node in walk_cond(cond):
            if isinstance(node, ast.DefineRef):
                if node.name not in self.names.defines:
                    self.error("unknown-define", f"unknown condition name {node.name!r}", node.span,
                               "define it with `define NAME = condition` before use, or check the spelling")
            elif isinstance(node, (ast.OneIn, ast.ManyIn)):
                self.check_set(node.set, node.scope)
                if isinstance(node, ast.ManyIn) and node.unless is not None:
                    self.check_unless(node)
            elif isinstance(node, (ast.CountLabels, ast.TagsMatch)):
                self.check_set(node.set, node.scope)
                self.check_label_source(node)
                if isinstance(node, ast.CountLabels):
                    self.check_int_range(node, node.value)
            elif isinstance(node, (ast.FieldCmp, ast.FieldIn)):
                values = (node.value,) if isinstance(node, ast.FieldCmp) else node.values
                for value in values:
                    self.check_field_value(node, value)
                if isinstance(node, ast.FieldCmp) and node.field in ("dept", "sex") and node.op not in ("=", "!="):
                    self.error("bad-comparison", f"{node.field} can only be compared with = or !=", node.span)
            elif isinstance(node, ast.CountItems):
                self.check_int_range(node, node.value)
            elif isinstance(node, ast.FieldRange):
                for value in (node.low, node.high):
                    self.check_int_range(node, value)
                if node.field in ("dept", "sex"):
                    self.error("bad-comparison", f"{node.field} has no numeric range", node.span)
                elif node.low > node.high:
                    self.error("empty-range", f"range {node.low}..{node.high} is empty", node.span, "write LOW..HIGH")

    def check_field_value(self, node, value):
        if node.field == "dept":
            if not isinstance(value, str) or value in ("male", "female"):
                self.error("bad-value", "dept values are quoted strings, e.g. dept = \"ICU\"", node.span)
        elif node.field == "sex":
            if value == "other":
                if not any(sex == "other" for r in self.scheme.of_type(ast.ReadSex) for _, sex in r.spellings):
                    self.error("bad-value", "sex is `other` only when a spelling is read as other", node.span,
                               'e.g. read sex digits, "男" as other, "女" as other')
            elif value not in (1, 2, "male", "female"):
                self.error("bad-value", f"sex is compared with male/female (or 1/2), not {value!r}", node.span)
        elif not isinstance(value, int):
            self.error("bad-value", f"{node.field} is a whole number; {value!r} is not", node.span)
        else:
            self.check_int_range(node, value)

    def check_int_range(self, node, value):
        """Numbers are compared as 32-bit integers (the lowest one marks a missing value)."""
        if isinstance(value, int) and not -INT_LIMIT <= value <= INT_LIMIT:
            self.error("bad-value", f"{value} is out of range", node.span, f"numbers are between -{INT_LIMIT} and {INT_LIMIT}")

    def check_unless(self, node: ast.ManyIn):
        u = node.unless
        if not node.scope.endswith("dx"):
            self.error("bad-unless", "`unless` compares with the principal diagnosis; use it on diagnoses", u.span)
        for table, column in ((u.item_table, u.item_column), (u.pdx_table, u.pdx_column)):
            if self.check_table_name(table, u.span):
                self.check_column(table, column, u.span)

    def check_label_source(self, node):
        resolved = self.names.resolve(node.set)
        if isinstance(resolved, (ast.InlineSet, ast.PrefixSet)) or (
                isinstance(resolved, ast.SetRef) and resolved.name not in self.names.tables):
            self.error("labels-need-table", f"`{node.column} of ...` reads a column, so it needs a table, not {_set_text(resolved)}",
                       node.span, "write e.g. `count distinct site of dx in mdc_dx[mdc = \"MDCZ\"] >= 2`")
            return
        table = resolved.table if isinstance(resolved, ast.TableFilter) else resolved.name
        if table in self.names.tables:
            self.check_column(table, node.column, node.span)

    # ---- hierarchy -------------------------------------------------------------------------
    def check_mdc(self, mdc: ast.MdcDef):
        self.check_cond(mdc.cond)
        if not mdc.items:
            self.warning("empty-mdc", f"MDC {mdc.code} has no ADRG: a case entering it goes on to the next MDC", mdc.span)
        self.check_siblings(mdc.items, "ADRG")
        for qy in mdc.qys:
            self.check_cond(qy.cond)
        self.check_out_of_mdc_codes(mdc)
        for adrg in mdc.adrgs:
            self.check_cond(adrg.cond)
            if not adrg.drgs:
                self.error("empty-adrg", f"ADRG {adrg.code} has no DRG", adrg.span, "add at least `drg CODE \"name\"`")
                continue
            for drg in adrg.drgs:
                if drg.cond is not None:
                    self.check_cond(drg.cond)
            # Only when no DRG of the ADRG is unconditional: an unconditional one earlier than the last
            # (reported as unreachable siblings) already gives every case a DRG.
            if not any(d.cond is None or isinstance(d.cond, ast.Always) for d in adrg.drgs):
                outcome = ("goes on to the next ADRG (setting adrg_without_drg = next_adrg, the default)"
                           if self.adrg_without_drg == "next_adrg" else "gets status no_drg (setting adrg_without_drg = no_drg)")
                self.warning("no-default-drg", f"the last DRG of ADRG {adrg.code} has a condition: a case matching the "
                             f"ADRG and none of its DRGs {outcome}", adrg.drgs[-1].span,
                             "make the last DRG unconditional (drop its `when`) if every case should get a DRG")
            self.check_siblings(adrg.drgs, "DRG")

    def check_out_of_mdc_codes(self, mdc: ast.MdcDef):
        """Warn about principal-diagnosis (procedure) codes of an ADRG that its MDC never admits.

        A case reaches an ADRG only through its MDC's entry, so when both require `pdx in ...`
        (or `pproc in ...`), codes of the ADRG's list outside the MDC's list can never be used.
        """
        for scope in ("pdx", "pproc"):
            entry = self._one_in_sets(mdc.cond, scope)
            if entry is None:
                continue
            for adrg in mdc.adrgs:
                own = self._one_in_sets(adrg.cond, scope)
                if own is None:
                    continue
                outside = sorted(own - entry)
                if outside:
                    sample = ", ".join(outside[:5]) + (" ..." if len(outside) > 5 else "")
                    self.warning("out-of-mdc-code", f"{len(outside)} {scope} code(s) of ADRG {adrg.code} are not "
                                 f"admitted by MDC {mdc.code}'s entry, so they can never match: {sample}", adrg.span,
                                 f"add them to the MDC's list, or drop them from the ADRG's")

    def _one_in_sets(self, cond: ast.Cond, scope: str) -> frozenset | None:
        """The codes a condition requires of `scope` (intersection of its `scope in SET` conjuncts), or None."""
        required = None
        for atom in self._conjuncts(cond):
            if isinstance(atom, ast.OneIn) and atom.scope == scope:
                codes = self._code_set(atom.set)
                if codes is None:
                    return None
                required = codes if required is None else required & codes
        return required

    def check_siblings(self, nodes, kind: str):
        """A rule never matches when an earlier sibling matches every case it could match (a dead rule).

        Official tables carry such rules, so they are warnings (errors under --strict). A rule whose
        own code list is empty is reported by the empty-set warning, not blamed on a sibling.
        """
        for i, later in enumerate(nodes):
            if later.cond is not None and self.requires_empty_set(later.cond):
                continue
            for earlier in nodes[:i]:
                if self.implies(later.cond, earlier.cond):
                    where = f"{earlier.span.file}:{earlier.span.line}" if earlier.span else "?"
                    self.warning("unreachable", f"{kind} {later.code} can never match: {kind} {earlier.code} "
                                 f"({where}) is tried first and matches every case it would", later.span,
                                 f"reorder the rules or narrow {earlier.code}")
                    break

    def requires_empty_set(self, cond: ast.Cond) -> bool:
        """The condition needs an item in a set that has no code (so it never holds)."""
        for atom in self._conjuncts(cond):
            if isinstance(atom, (ast.OneIn, ast.ManyIn)) and (isinstance(atom, ast.OneIn) or atom.quant == "any"):
                codes = self._code_set(atom.set)
                if codes is not None and not codes:
                    return True
        return False

    def implies(self, later: ast.Cond | None, earlier: ast.Cond | None) -> bool:
        """True when `later` holding guarantees `earlier` holds (conservative: False when unsure)."""
        if earlier is None or isinstance(earlier, ast.Always):
            return True
        if later is None:
            return False
        later_atoms = self._conjuncts(later)
        return all(any(self._atom_implies(l, e) for l in later_atoms) for e in self._conjuncts(earlier))

    def _conjuncts(self, cond: ast.Cond) -> list[ast.Cond]:
        if isinstance(cond, ast.DefineRef) and cond.name in self.names.defines and cond.name not in self.cyclic:
            return self._conjuncts(self.names.define_cond(cond.name))
        if isinstance(cond, ast.AllOf):
            return [atom for item in cond.items for atom in self._conjuncts(item)]
        return [cond]

    def _atom_implies(self, later: ast.Cond, earlier: ast.Cond) -> bool:
        if later == earlier or isinstance(earlier, ast.Always):
            return True
        if (isinstance(later, ast.OneIn) and isinstance(earlier, ast.OneIn) and later.scope == earlier.scope) or (
                isinstance(later, ast.ManyIn) and isinstance(earlier, ast.ManyIn) and later.scope == earlier.scope
                and later.quant == earlier.quant == "any" and later.unless is None and earlier.unless is None):
            small, big = self._code_set(later.set), self._code_set(earlier.set)
            return small is not None and big is not None and small <= big
        return False

    def _code_set(self, expr: ast.SetExpr) -> frozenset | None:
        resolved = self.names.resolve(expr)
        if isinstance(resolved, ast.InlineSet):
            return frozenset(resolved.codes)
        if self.store is None or isinstance(resolved, ast.PrefixSet):
            return None
        table = resolved.table if isinstance(resolved, ast.TableFilter) else resolved.name
        if table not in self.names.tables or table in self.bad_tables:
            return None
        try:
            return frozenset(self.store.codes(resolved))
        except Exception:  # an unknown filter column is reported elsewhere
            return None


def _set_text(expr: ast.SetExpr) -> str:
    if isinstance(expr, ast.SetRef):
        return expr.name
    if isinstance(expr, ast.TableFilter):
        inner = ", ".join(f'{f.column} {f.op} "{f.value}"' for f in expr.filters)
        return f"{expr.table}[{inner}]"
    if isinstance(expr, ast.PrefixSet):
        return "prefix " + ", ".join(f'"{p}"' for p in expr.prefixes)
    return "{" + ", ".join(f'"{c}"' for c in expr.codes[:3]) + (", ..." if len(expr.codes) > 3 else "") + "}"


def check(scheme: ast.Scheme, store: TableStore | None) -> list[Diagnostic]:
    return _Checker(scheme, store).run()
