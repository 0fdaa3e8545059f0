"""AST → canonical scheme text. The importer writes schemes with it; parse(print(x)) == x."""
from __future__ import annotations

import re

from . import ast

INDENT = "  "
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
WRAP = 100  # conditions longer than this are broken before each top-level and/or


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_text(expr: ast.SetExpr) -> str:
    if isinstance(expr, ast.SetRef):
        return expr.name
    if isinstance(expr, ast.TableFilter):
        return f"{expr.table}[" + ", ".join(f"{f.column} {f.op} {quote(f.value)}" for f in expr.filters) + "]"
    if isinstance(expr, ast.PrefixSet):
        return "prefix " + ", ".join(quote(p) for p in expr.prefixes)
    return "{" + ", ".join(quote(c) for c in expr.codes) + "}"


def _value(value, field: str) -> str:
    if isinstance(value, int):
        return str(value)
    return value if value in ("male", "female") or (field == "sex" and value == "other") else quote(value)


def _tag_text(expr: ast.TagExpr, parent: str | None = None) -> str:
    if isinstance(expr, ast.Tag):
        return expr.value if expr.value.lstrip("-").isdigit() else quote(expr.value)
    if isinstance(expr, ast.TagAll):
        text = " & ".join(_tag_text(i, "&") for i in expr.items)
        return f"({text})" if parent == "|" else text  # redundant, but reads better: 1 | (2 & 3)
    text = " | ".join(_tag_text(i, "|") for i in expr.items)
    return f"({text})" if parent == "&" else text


def cond_text(cond: ast.Cond, parent: str | None = None) -> str:
    """One-line text of a condition; parentheses only where precedence needs them."""
    if isinstance(cond, ast.Always):
        return "true"
    if isinstance(cond, ast.DefineRef):
        return cond.name
    if isinstance(cond, ast.AnyOf):
        text = " or ".join(cond_text(i, "or") for i in cond.items)
        return f"({text})" if parent in ("and", "not") else text
    if isinstance(cond, ast.AllOf):
        text = " and ".join(cond_text(i, "and") for i in cond.items)
        return f"({text})" if parent == "not" else text
    if isinstance(cond, ast.Negation):
        return "not " + cond_text(cond.item, "not")
    if isinstance(cond, ast.OneIn):
        return f"{cond.scope} in {set_text(cond.set)}"
    if isinstance(cond, ast.ManyIn):
        text = f"{cond.quant} {cond.scope} in {set_text(cond.set)}"
        if cond.unless:
            u = cond.unless
            text += f" unless {u.item_table}.{u.item_column} = {u.pdx_table}.{u.pdx_column}(pdx)"
        return text
    if isinstance(cond, ast.CountLabels):
        return f"count distinct {cond.column} of {cond.scope} in {set_text(cond.set)} {cond.op} {cond.value}"
    if isinstance(cond, ast.CountItems):
        return f"count {cond.scope} {cond.op} {cond.value}"
    if isinstance(cond, ast.TagsMatch):
        return f"{cond.column} of {cond.scope} in {set_text(cond.set)} matches {_tag_text(cond.expr)}"
    if isinstance(cond, ast.FieldCmp):
        return f"{cond.field} {cond.op} {_value(cond.value, cond.field)}"
    if isinstance(cond, ast.FieldRange):
        return f"{cond.field} in {cond.low}..{cond.high}"
    if isinstance(cond, ast.FieldIn):
        return f"{cond.field} in (" + ", ".join(_value(v, cond.field) for v in cond.values) + ")"
    if isinstance(cond, ast.FieldPresence):
        return f"{cond.field} is {'present' if cond.present else 'missing'}"
    raise TypeError(f"not a condition: {cond!r}")


def _when(cond: ast.Cond, indent: str) -> str:
    text = cond_text(cond)
    if len(text) + len(indent) <= WRAP or not isinstance(cond, (ast.AllOf, ast.AnyOf)):
        return f"when {text}"
    joiner = "and" if isinstance(cond, ast.AllOf) else "or"
    parts = [cond_text(i, joiner) for i in cond.items]
    return "when " + f"\n{indent}{INDENT}   {joiner} ".join(parts)


def _named(keyword: str, code: str, name: str | None) -> str:
    return f"{keyword} {code}" + (f" {quote(name)}" if name is not None else "")


def _drg_lines(drgs: tuple[ast.DrgDef, ...], indent: str) -> list[str]:
    lines = []
    for drg in drgs:
        when = f" {_when(drg.cond, indent)}" if drg.cond is not None else ""
        lines.append(f"{indent}{_named('drg', drg.code, drg.name)}{when}")
    return lines


def _position_text(position: ast.Position) -> str:
    if position.where in ("before", "after"):
        return f"{position.where} {position.anchor}"
    return position.where + (f" in {position.anchor}" if position.anchor else "")


def _target(st) -> str:
    """`KIND CODE` of a remove/move/rename; a qy rule inside an MDC adds `in MDC`."""
    return f"{st.kind} {st.code}" + (f" in {st.within}" if st.within else "")


def _qy_line(qy: ast.QyDef, indent: str, within: str | None = None) -> str:
    mdc = f" mdc {qy.mdc}" if qy.mdc is not None else ""
    code = qy.code + (f" in {within}" if within else "")   # `replace qy CODE in MDC ...`
    return f"{indent}{_named('qy', code, qy.name)}{mdc} {_when(qy.cond, indent)}"


def _group_lines(node: ast.GroupDef | ast.QyDef, indent: str, comments: dict) -> list[str]:
    """An MDC, ADRG, DRG or qy definition with its children, as text lines."""
    if isinstance(node, ast.DrgDef):
        return _drg_lines((node,), indent)
    if isinstance(node, ast.QyDef):  # comments for qy rules are keyed by the node (one code, several rules)
        return ([f"{indent}# {comments[node]}"] if node in comments else []) + [_qy_line(node, indent)]
    lines = [f"{indent}# {comments[node.code]}"] if node.code in comments else []
    if isinstance(node, ast.AdrgDef):
        lines.append(f"{indent}{_named('adrg', node.code, node.name)} {_when(node.cond, indent)} {{")
        lines.extend(_drg_lines(node.drgs, indent + INDENT))
    else:
        lines.append(f"{indent}{_named('mdc', node.code, node.name)} {_when(node.cond, indent)} {{")
        for item in node.items:
            lines.extend(_group_lines(item, indent + INDENT, comments))
    lines.append(f"{indent}}}")
    return lines


def statement_lines(st: ast.Statement, comments: dict | None = None) -> list[str]:
    """One statement as canonical text lines (the last line of a block ends with its `}`)."""
    comments = comments or {}
    if isinstance(st, ast.TableDef):
        return [f"table {st.name} = {quote(st.file)}" + (f" key {st.key}" if st.key else "")]
    if isinstance(st, ast.DictionaryDef):
        return [f"dictionary {st.kind} = {st.table}"]
    if isinstance(st, ast.SetDef):
        return [f"set {st.name} = {set_text(st.expr)}"]
    if isinstance(st, ast.DefineDef):
        return [f"define {st.name} = {cond_text(st.cond)}"]
    if isinstance(st, (ast.InvalidDef, ast.WarnDef)):
        keyword = "invalid" if isinstance(st, ast.InvalidDef) else "warn"
        message = f" {quote(st.message)}" if st.message is not None else ""
        return [f"{keyword} {st.name}{message} {_when(st.cond, '')}"]
    if isinstance(st, ast.ValidateDef):
        return [f"validate {st.reason} = {st.level}"]
    if isinstance(st, ast.MapDef):
        return [f"map {st.kind} = {st.table}"]
    if isinstance(st, ast.WeightsDef):
        return [f"weights = {st.table}"]
    if isinstance(st, ast.SettingDef):
        value = st.value if isinstance(st.value, int) or _NAME.fullmatch(st.value) else quote(st.value)
        return [f"setting {st.name} = {value}"]
    if isinstance(st, ast.RefineDef):
        return [f"refine adrg {st.adrg} {{", *_drg_lines(st.drgs, INDENT), "}"]
    if isinstance(st, ast.ReadSex):
        return ["read sex " + ", ".join([*(["digits"] if st.digits else []),
                                          *(f"{quote(text)} as {sex}" for text, sex in st.spellings)])]
    if isinstance(st, ast.ReadEmptyNumber):
        return [f"read empty {', '.join(st.fields)} as {st.value}"]
    if isinstance(st, ast.ReadEmptyList):
        return [f"read empty {st.scope} as none"]
    if isinstance(st, (ast.MdcDef, ast.QyDef)):
        return _group_lines(st, "", comments)
    if isinstance(st, ast.ReplaceDef):
        lines = statement_lines(st.definition)
        return ["replace " + lines[0], *lines[1:]]
    if isinstance(st, ast.ReplaceGroup):
        name = f" {quote(st.name)}" if st.name is not None else ""
        when = f" {_when(st.cond, '')}" if st.cond is not None else ""
        return [f"replace {st.kind} {st.code}{name}{when}"]
    if isinstance(st, ast.PatchTable):
        return [f"patch table {st.table} with {quote(st.file)}"]
    if isinstance(st, ast.AddGroup):
        checks = (ast.InvalidDef, ast.WarnDef)
        lines = statement_lines(st.group) if isinstance(st.group, checks) else _group_lines(st.group, "", comments)
        lines[0] = "add " + lines[0]
        lines[-1] += f" {_position_text(st.position)}"
        return lines
    if isinstance(st, ast.ReplaceQy):
        return ["replace " + _qy_line(st.qy, "", within=st.within)]
    if isinstance(st, ast.RemoveGroup):
        return [f"remove {_target(st)}"]
    if isinstance(st, ast.MoveGroup):
        return [f"move {_target(st)} {_position_text(st.position)}"]
    if isinstance(st, ast.RenameGroup):
        return [f"rename {_target(st)} to {st.new_code}" + (f" {quote(st.name)}" if st.name is not None else "")]
    raise TypeError(f"not a statement: {st!r}")


def scheme_text(scheme: ast.Scheme, comments: dict | None = None) -> str:
    """Canonical text; `comments` maps a group code (for a qy rule: the QyDef node) to a comment
    line written above it."""
    comments = comments or {}
    extends = f" extends {quote(scheme.header.extends)}" if scheme.header.extends else ""
    out = [f"scheme {quote(scheme.header.name)} version {quote(scheme.header.version)}{extends}", ""]
    previous = None
    reads = (ast.ReadSex, ast.ReadEmptyNumber, ast.ReadEmptyList)
    for st in scheme.statements:
        same_kind = type(st) is type(previous) or (isinstance(st, reads) and isinstance(previous, reads))
        if previous is not None and (not same_kind or isinstance(st, (ast.MdcDef, ast.AddGroup))
                                     or isinstance(previous, ast.MdcDef)):
            out.append("")
        previous = st
        out.extend(statement_lines(st, comments))
    return "\n".join(out) + "\n"
