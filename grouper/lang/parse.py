"""Scheme text → AST. Lark (LALR) parses; a Transformer builds the typed nodes of `ast.py`."""
from __future__ import annotations

import functools
from ..package_data import data_dir
from pathlib import Path

import lark
from lark import Transformer, v_args

from ..errors import Diagnostic, SchemeError, Span, with_source
from . import ast

_TERMINAL_NAMES = {
    "NAME": "a name", "STRING": 'a quoted string ("...")', "INT": "an integer", "LBRACE": "'{'",
    "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "EQUAL": "'='",
    "COMMA": "','", "CMP": "a comparison (=, !=, <, <=, >, >=)", "FIELD": "a case field",
    "WHEN": "'when'", "IN": "'in'", "$END": "end of file", "ONE": "'pdx'/'pproc'", "QUANT": "'any'/'no'",
    "MANY_SCOPE": "'dx'/'proc'", "PRESENCE": "'missing'/'present'", "SEX_WORD": "'male'/'female'/'other'", "READ_DIGITS": "'digits'",
    "FILTER_OP": "'='/'!='", "DOT": "'.'", "VBAR": "'|'", "AMPERSAND": "'&'",
}


@functools.cache
def grammar() -> lark.Lark:
    text = (data_dir("grammars") / "scheme.lark").read_text(encoding="utf-8")
    return lark.Lark(text, parser="lalr", propagate_positions=True, maybe_placeholders=True)


def parse_file(path: str | Path) -> ast.Scheme:
    path = Path(path)
    return parse_text(read_source(path), str(path))


def read_source(path: str | Path) -> str:
    """A scheme file's text: UTF-8, a leading byte-order mark (as Windows editors save) ignored.
    Any other encoding is a SchemeError at the first undecodable byte, never a traceback."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        good = data[:exc.start].decode("utf-8-sig", errors="replace")
        line = good.count("\n") + 1
        column = len(good) - (good.rfind("\n") + 1) + 1
        hint = "save it as UTF-8"
        try:
            data.decode("gb18030")
            hint += f" (it reads as GBK/GB18030: iconv -f GB18030 -t UTF-8 {path.name})"
        except UnicodeDecodeError:
            pass
        raise SchemeError([Diagnostic("encoding", "error", f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                                      Span(str(path), line, column), hint)]) from None


def parse_text(text: str, path: str = "<string>") -> ast.Scheme:
    try:
        tree = grammar().parse(text)
    except lark.UnexpectedInput as exc:
        raise SchemeError([with_source(_syntax_diagnostic(exc, path), text)]) from None
    too_deep = _too_deep(tree, path)
    if too_deep is not None:   # the transformer below recurses once per level
        raise SchemeError([with_source(too_deep, text)])
    builder = _Builder(path)
    try:
        header, *statements = builder.transform(tree).children
    except lark.exceptions.VisitError as exc:  # a callback rejected a value (e.g. a bad tag)
        orig = exc.orig_exc
        if isinstance(orig, SchemeError):
            raise SchemeError([with_source(d, text) for d in orig.diagnostics]) from None
        raise
    return ast.Scheme(header, tuple(statements), path=path, text=text)


# Levels of the parse tree a scheme may nest (real schemes use about a dozen; each pair of
# parentheses adds two): deeper text is an error at the place it goes too deep, never a RecursionError.
MAX_PARSE_DEPTH = 200


def _too_deep(tree: lark.Tree, path: str) -> Diagnostic | None:
    """A `too-deep` error at the first node nested deeper than MAX_PARSE_DEPTH (walked without recursion)."""
    stack = [(tree, 1, None)]
    while stack:
        node, depth, meta = stack.pop()
        meta = node.meta if not getattr(node.meta, "empty", True) else meta
        if depth > MAX_PARSE_DEPTH:
            line, column = (meta.line, meta.column) if meta is not None else (1, 1)
            return Diagnostic("too-deep", "error", f"this condition is nested too deeply (more than {MAX_PARSE_DEPTH} levels)",
                              Span(path, line, column, line, column + 1),
                              "name the inner part with `define NAME = condition` and use NAME instead")
        stack.extend((child, depth + 1, meta) for child in node.children if isinstance(child, lark.Tree))
    return None


def _syntax_diagnostic(exc: lark.UnexpectedInput, path: str) -> Diagnostic:
    span = Span(path, exc.line, exc.column, exc.line, exc.column + 1)
    if isinstance(exc, lark.UnexpectedToken):
        token = exc.token
        if token.type == "$END":
            message = "unexpected end of file"
        else:
            kind = {"NAME": "name ", "STRING": "string ", "INT": "number "}.get(token.type, "")
            message = f"unexpected {kind}{str(token)!r}"
            span = Span(path, token.line, token.column, token.end_line or token.line,
                        token.end_column or token.column + len(token))
        expected = sorted({_TERMINAL_NAMES.get(t, repr(t.lower())) for t in exc.expected if not t.startswith("__")})
        hint = "expected " + ", ".join(expected[:8]) + (" ..." if len(expected) > 8 else "") if expected else None
        if "AND" in exc.expected and token.type not in ("$END", "RBRACE"):
            hint = "a condition ends here: did you forget 'and'/'or' between two conditions, or the '{' of a block?"
    elif isinstance(exc, lark.UnexpectedCharacters):
        message = f"unexpected character {exc.char!r}"
        allowed = sorted(_TERMINAL_NAMES.get(t, t.lower()) for t in (exc.allowed or ()))
        hint = "expected " + ", ".join(allowed[:8]) if allowed else None
    else:
        message, hint = "unexpected end of file", "a block or statement is not finished (missing '}'?)"
    return Diagnostic("syntax", "error", message, span, hint)


def _span_of(path: str, meta) -> Span | None:
    if getattr(meta, "empty", True):
        return None
    return Span(path, meta.line, meta.column, meta.end_line, meta.end_column)


def _string(token) -> str:
    # STRING tokens keep their quotes; \" and \\ are the only escapes.
    return str(token)[1:-1].replace('\\"', '"').replace("\\\\", "\\")


@v_args(meta=True)
class _Builder(Transformer):
    def __init__(self, path: str):
        super().__init__(visit_tokens=False)
        self.path = path

    def _s(self, meta):
        return _span_of(self.path, meta)

    # statements
    def header(self, meta, c):
        return ast.Header(_string(c[0]), _string(c[1]), _string(c[2]) if c[2] is not None else None, self._s(meta))

    def table_def(self, meta, c):
        return ast.TableDef(str(c[0]), _string(c[1]), str(c[2]) if c[2] is not None else None, self._s(meta))

    def dictionary_def(self, meta, c):
        return ast.DictionaryDef(str(c[0]), str(c[1]), self._s(meta))

    def set_def(self, meta, c):
        return ast.SetDef(str(c[0]), c[1], self._s(meta))

    def define_def(self, meta, c):
        return ast.DefineDef(str(c[0]), c[1], self._s(meta))

    def invalid_def(self, meta, c):
        return ast.InvalidDef(str(c[0]), _string(c[1]) if c[1] is not None else None, c[2], self._s(meta))

    def warn_def(self, meta, c):
        return ast.WarnDef(str(c[0]), _string(c[1]) if c[1] is not None else None, c[2], self._s(meta))

    def validate_def(self, meta, c):
        return ast.ValidateDef(str(c[0]), str(c[1]), self._s(meta))

    def map_def(self, meta, c):
        return ast.MapDef(str(c[0]), str(c[1]), self._s(meta))

    def weights_def(self, meta, c):
        return ast.WeightsDef(str(c[0]), self._s(meta))

    def refine_def(self, meta, c):
        code, *drgs = c
        return ast.RefineDef(str(code), tuple(drgs), self._s(meta))

    def setting_def(self, meta, c):
        return ast.SettingDef(str(c[0]), _value(c[1]), self._s(meta))

    def replace_def(self, meta, c):
        return ast.ReplaceDef(c[0], self._s(meta))

    def replace_group(self, meta, c):
        kind, code, name, cond = c
        return ast.ReplaceGroup(kind, str(code), _string(name) if name is not None else None, cond, self._s(meta))

    def patch_table(self, meta, c):
        return ast.PatchTable(str(c[0]), _string(c[1]), self._s(meta))

    def add_group(self, meta, c):
        return ast.AddGroup(c[0], c[1], self._s(meta))

    def remove_group(self, meta, c):
        return ast.RemoveGroup(c[0], str(c[1]), self._s(meta))

    def move_group(self, meta, c):
        return ast.MoveGroup(c[0], str(c[1]), c[2], self._s(meta))

    def rename_group(self, meta, c):
        kind, code, new_code, name = c
        return ast.RenameGroup(kind, str(code), str(new_code), _string(name) if name is not None else None, self._s(meta))

    def replace_qy(self, meta, c):
        code, within, name, mdc, cond = c
        qy = ast.QyDef(str(code), _string(name) if name is not None else None,
                       str(mdc) if mdc is not None else None, cond, self._s(meta))
        return ast.ReplaceQy(qy, str(within) if within is not None else None, self._s(meta))

    def remove_qy(self, meta, c):
        return ast.RemoveGroup("qy", str(c[0]), self._s(meta), str(c[1]) if c[1] is not None else None)

    def move_qy(self, meta, c):
        return ast.MoveGroup("qy", str(c[0]), c[2], self._s(meta), str(c[1]) if c[1] is not None else None)

    def rename_qy(self, meta, c):
        code, within, new_code, name = c
        return ast.RenameGroup("qy", str(code), str(new_code), _string(name) if name is not None else None,
                               self._s(meta), str(within) if within is not None else None)

    def remove_rule(self, meta, c):
        return ast.RemoveGroup(c[0], str(c[1]), self._s(meta))

    def move_rule(self, meta, c):
        return ast.MoveGroup(c[0], str(c[1]), c[2], self._s(meta))

    def rule_kind(self, meta, c):
        return str(c[0])

    def group_kind(self, meta, c):
        return str(c[0])

    def before(self, meta, c):
        return ast.Position("before", str(c[0]), self._s(meta))

    def after(self, meta, c):
        return ast.Position("after", str(c[0]), self._s(meta))

    def first(self, meta, c):
        return ast.Position("first", str(c[0]) if c[0] is not None else None, self._s(meta))

    def last(self, meta, c):
        return ast.Position("last", str(c[0]) if c[0] is not None else None, self._s(meta))

    def mdc_def(self, meta, c):
        code, name, cond, *items = c
        return ast.MdcDef(str(code), _string(name) if name is not None else None, cond, tuple(items), self._s(meta))

    def qy_def(self, meta, c):
        code, name, mdc, cond = c
        return ast.QyDef(str(code), _string(name) if name is not None else None,
                         str(mdc) if mdc is not None else None, cond, self._s(meta))

    def read_sex(self, meta, c):
        field, *items = c
        if str(field) != "sex":
            raise SchemeError([Diagnostic("syntax", "error", f"`read {field} ...` spellings are only for sex",
                                          _span_of(self.path, meta), 'write e.g. read sex "1" as male, "2" as female')])
        digits = [item for item in items if isinstance(item, lark.Token) and item.type == "READ_DIGITS"]
        if len(digits) > 1 or (digits and items[0] is not digits[0]):
            raise SchemeError([Diagnostic("syntax", "error", "`digits` is written once, first: read sex digits, ...",
                                          _span_of(self.path, meta), 'e.g. read sex digits, "男" as other, "女" as other')])
        return ast.ReadSex(tuple(i for i in items if not isinstance(i, lark.Token)), self._s(meta), digits=bool(digits))

    def read_spelling(self, meta, c):
        return (_string(c[0]), str(c[1]))

    def read_empty_number(self, meta, c):
        *fields, value = c
        return ast.ReadEmptyNumber(tuple(str(f) for f in fields), int(value), self._s(meta))

    def read_empty_list(self, meta, c):
        return ast.ReadEmptyList(str(c[0]), self._s(meta))

    def adrg_def(self, meta, c):
        code, name, cond, *drgs = c
        return ast.AdrgDef(str(code), _string(name) if name is not None else None, cond, tuple(drgs), self._s(meta))

    def drg_def(self, meta, c):
        code, name, cond = c
        return ast.DrgDef(str(code), _string(name) if name is not None else None, cond, self._s(meta))

    # sets
    def set_ref(self, meta, c):
        return ast.SetRef(str(c[0]), self._s(meta))

    def table_filter(self, meta, c):
        return ast.TableFilter(str(c[0]), tuple(c[1:]), self._s(meta))

    def inline_set(self, meta, c):
        return ast.InlineSet(tuple(_string(t) for t in c if t is not None), self._s(meta))

    def prefix_set(self, meta, c):
        return ast.PrefixSet(tuple(_string(t) for t in c), self._s(meta))

    def filter(self, meta, c):
        return ast.Filter(str(c[0]), str(c[1]), _string(c[2]), self._s(meta))

    # conditions
    def any_of(self, meta, c):
        return c[0] if len(c) == 1 else ast.AnyOf(tuple(c), self._s(meta))

    def all_of(self, meta, c):
        return c[0] if len(c) == 1 else ast.AllOf(tuple(c), self._s(meta))

    def negation(self, meta, c):
        return ast.Negation(c[0], self._s(meta))

    def always(self, meta, c):
        return ast.Always(self._s(meta))

    def define_ref(self, meta, c):
        return ast.DefineRef(str(c[0]), self._s(meta))

    def one_in(self, meta, c):
        return ast.OneIn(str(c[0]), c[1], self._s(meta))

    def many(self, meta, c):
        return str(c[0])

    def secondary(self, meta, c):
        return f"secondary {c[0]}"

    def many_in(self, meta, c):
        quant, scope, set_expr, unless = c
        return ast.ManyIn(str(quant), scope, set_expr, unless, self._s(meta))

    def unless(self, meta, c):
        return ast.Unless(*(str(t) for t in c), span=self._s(meta))

    def count_labels(self, meta, c):
        column, scope, set_expr, op, value = c
        return ast.CountLabels(str(column), scope, set_expr, str(op), int(value), self._s(meta))

    def count_items(self, meta, c):
        scope, op, value = c
        return ast.CountItems(scope, str(op), int(value), self._s(meta))

    def tags_match(self, meta, c):
        column, scope, set_expr, expr = c
        return ast.TagsMatch(str(column), scope, set_expr, expr, self._s(meta))

    def tag_any(self, meta, c):
        return c[0] if len(c) == 1 else ast.TagAny(tuple(c), self._s(meta))

    def tag_all(self, meta, c):
        return c[0] if len(c) == 1 else ast.TagAll(tuple(c), self._s(meta))

    def tag(self, meta, c):
        tok = c[0]
        value = _string(tok) if tok.type == "STRING" else str(tok)
        return ast.Tag(value, self._s(meta))

    def field_cmp(self, meta, c):
        return ast.FieldCmp(str(c[0]), str(c[1]), _value(c[2]), self._s(meta))

    def field_range(self, meta, c):
        return ast.FieldRange(str(c[0]), int(c[1]), int(c[2]), self._s(meta))

    def field_in(self, meta, c):
        return ast.FieldIn(str(c[0]), tuple(_value(v) for v in c[1:]), self._s(meta))

    def field_presence(self, meta, c):
        return ast.FieldPresence(str(c[0]), str(c[1]) == "present", self._s(meta))


def _value(token) -> int | str:
    if token.type == "INT":
        return int(token)
    if token.type == "STRING":
        return _string(token)
    return str(token)  # male / female
