"""Regional variants as overlays: `scheme "X" version "V" extends "BASE"`.

An overlay states only what a region changes. Besides new statements (tables, sets, defines,
input checks, warnings, weights, settings, whole new MDCs) it applies operations to the base, in
file order, each to a named target that must exist (else an error at the operation's line):

- `refine adrg A { drg ... }`                  new DRG list (细分组) of an ADRG
- `replace mdc|adrg|drg CODE ["name"] [when C]` new name and/or condition, same place and children
- `add mdc|adrg|drg ... POSITION`              a new group before/after a sibling or first/last
- `remove`, `move ... POSITION`, `rename mdc|adrg|drg CODE to NEW ["name"]`
- `replace set|define|table NAME ...`          a new definition under the same name: every base
                                               rule that names it follows
- `replace read sex ... | read empty F, ... as N | read empty dx as none`: how the base reads a
                                               field (each field named is taken from the base's
                                               `read` statement that had it)
- `patch table NAME with "patch.csv"`          rows removed (`-`) and added (`+`), see tables.py
- `setting NAME = VALUE`                       overrides the base's setting of that name
- qy rules (歧义组), named `qy CODE` (top level) or `qy CODE in MDC` (inside it): `replace qy CODE
  [in MDC] ["name"] [mdc M] when C` restates the rule, `add qy ... POSITION` (before/after any MDC,
  ADRG or qy; first/last, or `in MDC`), `remove qy`, `move qy ... POSITION`, `rename qy ... to NEW`.
  Several rules of one code at one place cannot be told apart: an error names them.
- `replace invalid|warn NAME ...` restates a check; `add invalid|warn ... POSITION`, `remove
  invalid|warn NAME`, `move invalid|warn NAME POSITION` (before/after a check of that kind, first/last)

Merging is a pure AST step. Every node keeps the span of the file it was written in, and a base
node changed by an operation records the operation's span in `changes` (explain shows both).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import Diagnostic
from . import ast

KINDS = ("mdc", "adrg", "drg")
READS = (ast.ReadSex, ast.ReadEmptyNumber, ast.ReadEmptyList)


def read_keys(st) -> list[tuple[str, str]]:
    """What a `read` statement sets: ("read", "sex"), ("read empty", FIELD) for each field it names."""
    if isinstance(st, ast.ReadSex):
        return [("read", "sex")]
    if isinstance(st, ast.ReadEmptyNumber):
        return [("read empty", f) for f in st.fields]
    return [("read empty", st.scope)]


def statement_text(st) -> str:
    from .printer import statement_lines

    return " ".join(statement_lines(st))
CHECKS = {ast.InvalidDef: "invalid", ast.WarnDef: "warn"}   # input checks, tried in order among their kind
PARENT = {"adrg": "mdc", "drg": "adrg"}


@dataclass
class _Group:
    """A mutable MDC/ADRG/DRG while operations apply: its node (children ignored) and its children."""

    node: ast.GroupDef
    children: list["_Group"] = field(default_factory=list)

    def build(self) -> ast.GroupDef:
        if isinstance(self.node, ast.MdcDef):
            return dataclasses.replace(self.node, items=tuple(c.build() for c in self.children))
        if isinstance(self.node, ast.AdrgDef):
            return dataclasses.replace(self.node, drgs=tuple(c.build() for c in self.children))
        return self.node


def _tree(node: ast.GroupDef | ast.QyDef) -> _Group:
    # qy rules keep their place among the MDCs (top level) or among an MDC's ADRGs
    children = node.items if isinstance(node, ast.MdcDef) else node.drgs if isinstance(node, ast.AdrgDef) else ()
    return _Group(node, [_tree(c) for c in children])


def _changed(node, span) -> object:
    return dataclasses.replace(node, changes=node.changes + ((span,) if span else ()))


class _Merger:
    def __init__(self, base: ast.Scheme, overlay: ast.Scheme):
        self.base, self.overlay = base, overlay
        self.found: list[Diagnostic] = []
        hierarchy = (ast.MdcDef, ast.QyDef)  # tried in file order: they keep their relative order
        self.others: list[ast.Statement] = [st for st in base.statements if not isinstance(st, hierarchy)]
        self.root = _Group(ast.MdcDef("", None, ast.Always(), ()),
                           [_tree(st) for st in base.statements if isinstance(st, hierarchy)])

    def error(self, code: str, message: str, span, hint: str | None = None):
        self.found.append(Diagnostic(code, "error", message, span, hint))

    # ---- lookups ---------------------------------------------------------------------------
    def find(self, kind: str, code: str, *, sibling: bool = False) -> tuple[_Group, int] | None:
        """(parent, index) of the group `code` of this kind, or None. A qy rule counts only as an
        anchor (`sibling`): it is never the target of an MDC/ADRG/DRG operation."""
        depth = KINDS.index(kind)
        parents = [self.root]
        for _ in range(depth):
            parents = [c for p in parents for c in p.children]
        for parent in parents:
            for i, child in enumerate(parent.children):
                if child.node.code == code and (sibling or not isinstance(child.node, ast.QyDef)):
                    return parent, i
        return None

    def qy_parent(self, within: str | None, span) -> _Group | None:
        """The top level (None) or the MDC `within`, where a qy rule is looked up or placed."""
        if within is None:
            return self.root
        where = self.find("mdc", within)
        if where is None:
            self.error("unknown-mdc", f"there is no MDC {within}", span)
            return None
        return where[0].children[where[1]]

    def locate_qy(self, code: str, within: str | None, span) -> tuple[_Group, int] | None:
        """(parent, index) of the one qy rule `code` at the top level or in MDC `within`."""
        parent = self.qy_parent(within, span)
        if parent is None:
            return None
        found = [i for i, c in enumerate(parent.children) if isinstance(c.node, ast.QyDef) and c.node.code == code]
        place = f"in MDC {within}" if within else "at the top level"
        if not found:
            elsewhere = [m.node.code for m in self.root.children for c in m.children
                         if isinstance(c.node, ast.QyDef) and c.node.code == code]
            hint = (f"it is inside {', '.join(dict.fromkeys(elsewhere))}: write `qy {code} in MDC`" if elsewhere
                    and within is None else f"the base is {self.base.path}; add one with `add qy ...`")
            self.error("unknown-qy", f"there is no qy rule {code} {place} to change", span, hint)
            return None
        if len(found) > 1:
            self.error("ambiguous-qy", f"{len(found)} qy rules {code} are {place}: an operation cannot tell them apart",
                       span, "replace the rules' MDC instead (`remove mdc` and `add mdc` with its new block)")
            return None
        return parent, found[0]

    def locate(self, kind: str, code: str, span) -> tuple[_Group, int] | None:
        where = self.find(kind, code)
        if where is None:
            self.error(f"unknown-{kind}", f"there is no {kind.upper()} {code} to change", span,
                       f"the base is {self.base.path}; check the code, or add it with `add {kind} ...`")
        return where

    def place(self, kind: str, position: ast.Position, span) -> tuple[_Group, int] | None:
        """(parent, insertion index) for a group of `kind` at `position`, or None (error reported)."""
        if kind == "qy":
            return self.place_qy(position, span)
        if position.where in ("before", "after"):
            where = self.find(kind, position.anchor, sibling=True)
            if where is None:
                self.error(f"unknown-{kind}", f"there is no {kind.upper()} {position.anchor} to place it "
                           f"{position.where}", position.span or span)
                return None
            parent, i = where
            return parent, i + (position.where == "after")
        if kind == "mdc":
            if position.anchor is not None:
                self.error("bad-position", "MDCs are not inside anything: write `first` or `last`", position.span or span)
                return None
            parent = self.root
        else:
            if position.anchor is None:
                self.error("bad-position", f"say which {PARENT[kind].upper()}: `{position.where} in CODE`",
                           position.span or span)
                return None
            where = self.find(PARENT[kind], position.anchor)
            if where is None:
                self.error(f"unknown-{PARENT[kind]}", f"there is no {PARENT[kind].upper()} {position.anchor}",
                           position.span or span)
                return None
            parent = where[0].children[where[1]]
        return parent, 0 if position.where == "first" else len(parent.children)

    def place_qy(self, position: ast.Position, span) -> tuple[_Group, int] | None:
        """A qy rule goes among the MDCs (top level) or among an MDC's ADRGs: before/after any of
        those (MDC, ADRG or qy), or first/last at the top level or `in MDC`."""
        if position.where in ("first", "last"):
            parent = self.qy_parent(position.anchor, position.span or span)
            return None if parent is None else (parent, 0 if position.where == "first" else len(parent.children))
        found = [(parent, i) for parent in (self.root, *self.root.children)
                 for i, c in enumerate(parent.children) if c.node.code == position.anchor]
        if len(found) != 1:
            self.error("unknown-anchor" if not found else "ambiguous-qy",
                       f"there is no MDC, ADRG or qy {position.anchor} to place it {position.where}" if not found
                       else f"{len(found)} rules are called {position.anchor}: place it relative to another one",
                       position.span or span)
            return None
        parent, i = found[0]
        return parent, i + (position.where == "after")

    def definition_index(self, definition) -> int | None:
        for i, st in enumerate(self.others):
            if type(st) is type(definition) and st.name == definition.name:
                return i
        return None

    # ---- operations ------------------------------------------------------------------------
    def apply(self, st) -> None:
        if isinstance(st, (ast.ReplaceQy, ast.RemoveGroup, ast.MoveGroup, ast.RenameGroup)) and (
                isinstance(st, ast.ReplaceQy) or st.kind == "qy"):
            self.apply_qy(st)
        elif (isinstance(st, (ast.RemoveGroup, ast.MoveGroup)) and st.kind in CHECKS.values()
              or isinstance(st, ast.AddGroup) and type(st.group) in CHECKS):
            self.apply_check(st)
        elif isinstance(st, ast.RefineDef):
            where = self.locate("adrg", st.adrg, st.span)
            if where:
                group = where[0].children[where[1]]
                group.node = _changed(group.node, st.span)
                group.children = [_Group(d) for d in st.drgs]
        elif isinstance(st, ast.ReplaceGroup):
            if st.name is None and st.cond is None:
                self.error("bad-overlay", f"`replace {st.kind} {st.code}` gives neither a name nor a condition", st.span,
                           f'write `replace {st.kind} {st.code} "new name"` and/or `... when CONDITION`')
                return
            where = self.locate(st.kind, st.code, st.span)
            if where:
                group = where[0].children[where[1]]
                changes = {"name": st.name} if st.name is not None else {}
                if st.cond is not None:
                    changes["cond"] = st.cond
                group.node = _changed(dataclasses.replace(group.node, **changes), st.span)
        elif isinstance(st, ast.AddGroup):
            kind = {ast.MdcDef: "mdc", ast.AdrgDef: "adrg", ast.DrgDef: "drg", ast.QyDef: "qy"}[type(st.group)]
            target = self.place(kind, st.position, st.span)
            if target and kind == "qy" and target[0] is not self.root and st.group.mdc is not None:
                self.error("bad-position", f"a qy rule inside an MDC reports that MDC: drop `mdc {st.group.mdc}`", st.span)
            elif target:
                target[0].children.insert(target[1], _tree(st.group))
        elif isinstance(st, ast.RemoveGroup):
            where = self.locate(st.kind, st.code, st.span)
            if where:
                del where[0].children[where[1]]
        elif isinstance(st, ast.MoveGroup):
            if st.position.anchor == st.code:
                self.error("bad-position", f"{st.code} cannot be placed relative to itself", st.span)
                return
            where = self.locate(st.kind, st.code, st.span)
            if where:
                group = where[0].children.pop(where[1])
                target = self.place(st.kind, st.position, st.span)
                if target is None:
                    where[0].children.insert(where[1], group)
                    return
                group.node = _changed(group.node, st.span)
                target[0].children.insert(target[1], group)
        elif isinstance(st, ast.RenameGroup):
            where = self.locate(st.kind, st.code, st.span)
            if where:
                group = where[0].children[where[1]]
                changes = {"code": st.new_code, **({"name": st.name} if st.name is not None else {})}
                group.node = _changed(dataclasses.replace(group.node, **changes), st.span)
        elif isinstance(st, ast.ReplaceDef) and isinstance(st.definition, READS):
            self.replace_read(st)
        elif isinstance(st, ast.ReplaceDef):
            definition = st.definition
            i = self.definition_index(definition)
            kind = {ast.SetDef: "set", ast.DefineDef: "define", ast.TableDef: "table", **CHECKS}[type(definition)]
            if i is None:
                self.error(f"unknown-{kind}", f"the base has no {kind} {definition.name!r} to replace", st.span,
                           f"declare a new one with `{kind} {definition.name} "
                           f"{'... when ...' if type(definition) in CHECKS else '= ...'}` (without `replace`)")
                return
            self.others[i] = dataclasses.replace(definition, changes=(st.span,) if st.span else ())
        elif isinstance(st, ast.PatchTable):
            i = self.definition_index(ast.TableDef(st.table, ""))
            if i is None:
                self.error("unknown-table", f"the base has no table {st.table!r} to patch", st.span)
                return
            table = self.others[i]
            self.others[i] = dataclasses.replace(table, patches=table.patches + (ast.TablePatch(st.file, st.span),),
                                                 changes=table.changes + ((st.span,) if st.span else ()))
        else:
            raise TypeError(f"not an overlay operation: {st!r}")

    def replace_read(self, st: ast.ReplaceDef) -> None:
        """`replace read ...`: the base's reading of each field named is dropped (a base statement
        left without fields goes), the new statement takes the place of the first one it replaces."""
        new = st.definition
        keys = read_keys(new)
        places = [i for i, other in enumerate(self.others) if isinstance(other, READS) and set(read_keys(other)) & set(keys)]
        missing = [key for key in keys if not any(key in read_keys(self.others[i]) for i in places)]
        if missing:
            text = " ".join(missing[0])
            self.error("unknown-read", f"the base has no `{text} ...` to replace (it reads that field the default way)",
                       st.span, f"state it without `replace`: `{statement_text(new)}`")
            return
        for i in reversed(places):  # all at or after places[0], where the new statement goes
            other = self.others[i]
            if isinstance(other, ast.ReadEmptyNumber) and set(other.fields) - set(new.fields):
                self.others[i] = dataclasses.replace(other, fields=tuple(f for f in other.fields if f not in new.fields))
            else:
                del self.others[i]
        self.others.insert(places[0], new)

    def check_index(self, kind: str, name: str) -> int | None:
        rule_type = next(t for t, k in CHECKS.items() if k == kind)
        return next((i for i, st in enumerate(self.others) if type(st) is rule_type and st.name == name), None)

    def place_check(self, kind: str, position: ast.Position, span) -> int | None:
        """Index in the statements for an invalid/warn check at `position` among the checks of its kind."""
        if position.where in ("before", "after"):
            i = self.check_index(kind, position.anchor)
            if i is None:
                self.error(f"unknown-{kind}", f"there is no {kind} check {position.anchor} to place it {position.where}",
                           position.span or span)
                return None
            return i + (position.where == "after")
        if position.anchor is not None:
            self.error("bad-position", f"{kind} checks are not inside anything: write `first` or `last`",
                       position.span or span)
            return None
        same = [i for i, st in enumerate(self.others) if CHECKS.get(type(st)) == kind]
        if not same:
            return len(self.others)
        return same[0] if position.where == "first" else same[-1] + 1

    def apply_check(self, st) -> None:
        if isinstance(st, ast.AddGroup):
            kind, rule = CHECKS[type(st.group)], st.group
            if any(type(o) in CHECKS and o.name == rule.name for o in self.others):
                self.error("duplicate-name", f"the base already has a check {rule.name!r}", st.span,
                           f"change it with `replace {kind} {rule.name} ...`")
                return
            i = self.place_check(kind, st.position, st.span)
            if i is not None:
                self.others.insert(i, rule)
            return
        i = self.check_index(st.kind, st.code)
        if i is None:
            self.error(f"unknown-{st.kind}", f"the base has no {st.kind} check {st.code!r}", st.span,
                       f"the base is {self.base.path}")
            return
        rule = self.others.pop(i)
        if isinstance(st, ast.RemoveGroup):
            return
        if st.position.anchor == st.code:
            self.error("bad-position", f"{st.code} cannot be placed relative to itself", st.span)
            target = None
        else:
            target = self.place_check(st.kind, st.position, st.span)
        if target is None:
            self.others.insert(i, rule)
        else:
            self.others.insert(target, _changed(rule, st.span))

    def apply_qy(self, st) -> None:
        code = st.qy.code if isinstance(st, ast.ReplaceQy) else st.code
        if isinstance(st, ast.MoveGroup) and st.position.anchor == code and st.position.where in ("before", "after"):
            self.error("bad-position", f"{code} cannot be placed relative to itself", st.span)
            return
        where = self.locate_qy(code, st.within, st.span)
        if where is None:
            return
        parent, i = where
        rule = parent.children[i]
        if isinstance(st, ast.ReplaceQy):
            if st.within is not None and st.qy.mdc is not None:
                self.error("bad-overlay", f"a qy rule inside an MDC reports that MDC ({st.within}): drop `mdc {st.qy.mdc}`",
                           st.span)
                return
            rule.node = _changed(dataclasses.replace(st.qy, changes=rule.node.changes), st.span)
        elif isinstance(st, ast.RemoveGroup):
            del parent.children[i]
        elif isinstance(st, ast.RenameGroup):
            changes = {"code": st.new_code, **({"name": st.name} if st.name is not None else {})}
            rule.node = _changed(dataclasses.replace(rule.node, **changes), st.span)
        else:
            parent.children.pop(i)
            target = self.place_qy(st.position, st.span)
            if target is None:
                parent.children.insert(i, rule)
                return
            if target[0] is not self.root and rule.node.mdc is not None:
                self.error("bad-position", f"qy {code} reports MDC {rule.node.mdc}: a rule inside an MDC reports that "
                           "MDC, so it cannot move in", st.span, f"first `replace qy {code} ...` without `mdc`")
                parent.children.insert(i, rule)
                return
            rule.node = _changed(rule.node, st.span)
            target[0].children.insert(target[1], rule)

    def merge(self) -> ast.Scheme:
        for st in self.overlay.statements:
            if isinstance(st, ast.OVERLAY_OPERATIONS):
                self.apply(st)
            elif isinstance(st, (ast.MdcDef, ast.QyDef)):
                self.root.children.append(_tree(st))
            elif isinstance(st, ast.SettingDef):
                earlier = [i for i, o in enumerate(self.others) if isinstance(o, ast.SettingDef) and o.name == st.name]
                if earlier:
                    self.others[earlier[0]] = st     # the overlay's value wins, at the base's place
                else:
                    self.others.append(st)
            else:
                self.others.append(st)
        mdcs = [c.build() for c in self.root.children]
        return ast.Scheme(self.overlay.header, tuple(self.others) + tuple(mdcs), path=self.overlay.path,
                          text=self.overlay.text)


def merge(base: ast.Scheme, overlay: ast.Scheme) -> tuple[ast.Scheme, list[Diagnostic]]:
    """The overlay applied to the base: (merged scheme, errors of operations on unknown targets)."""
    merger = _Merger(base, overlay)
    merged = merger.merge()
    return merged, merger.found
