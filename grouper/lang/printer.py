"""AST → canonical scheme text. The importer writes schemes with it; parse(print(x)) == x."""
from __future__ import annotations

from . import ast

INDENT = "  "
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


def _value(value) -> str:
    if isinstance(value, int):
        return str(value)
    return value if value in ("male", "female") else quote(value)


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
        return f"{cond.field} {cond.op} {_value(cond.value)}"
    if isinstance(cond, ast.FieldRange):
        return f"{cond.field} in {cond.low}..{cond.high}"
    if isinstance(cond, ast.FieldIn):
        return f"{cond.field} in (" + ", ".join(_value(v) for v in cond.values) + ")"
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


def _qy_line(qy: ast.QyDef, indent: str) -> str:
    mdc = f" mdc {qy.mdc}" if qy.mdc is not None else ""
    return f"{indent}{_named('qy', qy.code, qy.name)}{mdc} {_when(qy.cond, indent)}"


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
        if previous is not None and (not same_kind or isinstance(st, ast.MdcDef) or isinstance(previous, ast.MdcDef)):
            out.append("")
        previous = st
        if isinstance(st, ast.TableDef):
            out.append(f"table {st.name} = {quote(st.file)}" + (f" key {st.key}" if st.key else ""))
        elif isinstance(st, ast.DictionaryDef):
            out.append(f"dictionary {st.kind} = {st.table}")
        elif isinstance(st, ast.SetDef):
            out.append(f"set {st.name} = {set_text(st.expr)}")
        elif isinstance(st, ast.DefineDef):
            out.append(f"define {st.name} = {cond_text(st.cond)}")
        elif isinstance(st, (ast.InvalidDef, ast.WarnDef)):
            keyword = "invalid" if isinstance(st, ast.InvalidDef) else "warn"
            message = f" {quote(st.message)}" if st.message is not None else ""
            out.append(f"{keyword} {st.name}{message} {_when(st.cond, '')}")
        elif isinstance(st, ast.ValidateDef):
            out.append(f"validate {st.reason} = {st.level}")
        elif isinstance(st, ast.MapDef):
            out.append(f"map {st.kind} = {st.table}")
        elif isinstance(st, ast.WeightsDef):
            out.append(f"weights = {st.table}")
        elif isinstance(st, ast.RefineDef):
            out.append(f"refine adrg {st.adrg} {{")
            out.extend(_drg_lines(st.drgs, INDENT))
            out.append("}")
        elif isinstance(st, ast.ReadSex):
            out.append("read sex " + ", ".join(f"{quote(text)} as {sex}" for text, sex in st.spellings))
        elif isinstance(st, ast.ReadEmptyNumber):
            out.append(f"read empty {', '.join(st.fields)} as {st.value}")
        elif isinstance(st, ast.ReadEmptyList):
            out.append(f"read empty {st.scope} as none")
        elif isinstance(st, ast.QyDef):
            if st in comments:
                out.append(f"# {comments[st]}")
            out.append(_qy_line(st, ""))
        elif isinstance(st, ast.MdcDef):
            if st.code in comments:
                out.append(f"# {comments[st.code]}")
            out.append(f"{_named('mdc', st.code, st.name)} {_when(st.cond, '')} {{")
            for adrg in st.items:
                if isinstance(adrg, ast.QyDef):
                    if adrg in comments:
                        out.append(f"{INDENT}# {comments[adrg]}")
                    out.append(_qy_line(adrg, INDENT))
                    continue
                if adrg.code in comments:
                    out.append(f"{INDENT}# {comments[adrg.code]}")
                out.append(f"{INDENT}{_named('adrg', adrg.code, adrg.name)} {_when(adrg.cond, INDENT)} {{")
                out.extend(_drg_lines(adrg.drgs, INDENT * 2))
                out.append(f"{INDENT}}}")
            out.append("}")
    return "\n".join(out) + "\n"
