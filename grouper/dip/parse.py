"""DIP scheme text → `DipScheme`. Same error reporting as the scheme language (file:line:col, caret)."""
from __future__ import annotations

import functools
from pathlib import Path

import lark
from lark import v_args

from ..errors import SchemeError, with_source
from ..lang import ast as lang_ast
from ..lang.parse import _Builder as SchemeBuilder
from ..lang.parse import _string, _syntax_diagnostic, read_source
from ..package_data import data_dir
from .ast import DipScheme, Setting


@functools.cache
def grammar() -> lark.Lark:
    grammars = data_dir("grammars")   # dip.lark imports rules of scheme.lark beside it
    return lark.Lark((grammars / "dip.lark").read_text(encoding="utf-8"), parser="lalr", import_paths=[str(grammars)],
                     propagate_positions=True, maybe_placeholders=True)


def parse_file(path: str | Path) -> DipScheme:
    path = Path(path)
    return parse_text(read_source(path), str(path))  # UTF-8, BOM or not; else an `encoding` diagnostic


def parse_text(text: str, path: str = "<string>") -> DipScheme:
    try:
        tree = grammar().parse(text)
    except lark.UnexpectedInput as exc:
        raise SchemeError([with_source(_syntax_diagnostic(exc, path), text)]) from None
    header, *statements = _Builder(path).transform(tree).children
    tables = tuple(s for s in statements if isinstance(s, lang_ast.TableDef))
    blocks = [s for s in statements if isinstance(s, tuple)]
    settings = tuple(s for block, _ in blocks for s in block)
    block_span = blocks[0][1] if blocks else None
    return DipScheme(header, tables, settings, block_span, path=path, text=text)


@v_args(meta=True)
class _Builder(SchemeBuilder):
    """The scheme language's builder (tables, set expressions, filters) plus the dip block."""

    def header(self, meta, c):
        return lang_ast.Header(_string(c[0]), _string(c[1]), None, self._s(meta))

    def dip_block(self, meta, c):
        return (tuple(c), self._s(meta))

    def dx_length(self, meta, c):
        return Setting("dx_length", int(c[0]), self._s(meta))

    def qualifying(self, meta, c):
        return Setting("qualifying", c[0], self._s(meta))

    def exclude(self, meta, c):
        return Setting("exclude", c[0], self._s(meta))

    def auxiliary(self, meta, c):
        return Setting("auxiliary", c[0], self._s(meta))

    def auxiliary_lists(self, meta, c):
        return Setting("auxiliary_lists", str(c[0]), self._s(meta))

    def treatment_column(self, meta, c):
        return Setting("treatment_column", (str(c[0]), str(c[1])), self._s(meta))

    def treatment_order(self, meta, c):
        return Setting("treatment_order", tuple(_string(t) for t in c), self._s(meta))

    def precedence(self, meta, c):
        return Setting("precedence", tuple(c), self._s(meta))

    def prec_item(self, meta, c):
        return (str(c[0]), _string(c[1]))

    def tie_break_levels(self, meta, c):
        return Setting("tie_break_levels", tuple(str(t) for t in c if t is not None), self._s(meta))

    def reference_cost(self, meta, c):
        return Setting("reference_cost", str(c[0]), self._s(meta))

    def point_value(self, meta, c):
        return Setting("point_value", str(c[0]), self._s(meta))   # text: Decimal(...) when used

    def level(self, meta, c):
        return Setting(str(c[0]), c[1], self._s(meta))
