"""Typed AST of a DIP scheme (`grammars/dip.lark`). Tables, headers and set expressions are the
scheme language's own nodes (`grouper.lang.ast`); only the `dip { ... }` settings are new."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span
from ..lang.ast import Header, SetRef, TableDef, TableFilter

LEVELS = ("core", "primary", "comprehensive")   # try order: 核心病种 → 基层病种 → 综合病种


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Setting:
    """One line of the dip block: `name` is dx_length, qualifying, treatment_column,
    treatment_order, exclude, auxiliary, auxiliary_lists, or a level name (core / primary /
    comprehensive)."""

    name: str
    value: object          # int, SetRef/TableFilter, (table, column), or tuple of treatment names
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class DipScheme:
    header: Header
    tables: tuple[TableDef, ...]
    settings: tuple[Setting, ...]
    block_span: Span | None = _span()
    path: str = field(default="<string>", compare=False)
    text: str | None = field(default=None, compare=False, repr=False)

    def setting(self, name: str) -> Setting | None:
        return next((s for s in self.settings if s.name == name), None)

    @property
    def dx_length(self) -> int | None:
        s = self.setting("dx_length")
        return s.value if s else None

    @property
    def treatments(self) -> tuple[str, ...]:
        s = self.setting("treatment_order")
        return s.value if s else ()

    def level(self, name: str) -> SetRef | TableFilter | None:
        s = self.setting(name)
        return s.value if s else None
