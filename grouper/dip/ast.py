"""Typed AST of a DIP scheme (`grammars/dip.lark`). Tables, headers and set expressions are the
scheme language's own nodes (`grouper.lang.ast`); only the `dip { ... }` settings are new."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from ..errors import Span
from ..lang.ast import Header, SetRef, TableDef, TableFilter

LEVELS = ("core", "primary", "comprehensive")   # 核心病种, 基层病种, 综合病种
DEFAULT_TIE_BREAK_LEVELS = ("core",)


def default_precedence(treatments: tuple[str, ...] | list[str]) -> tuple[tuple[str, str], ...]:
    """domain.md §3.3 step 6, for any treatment order (first = 保守治疗, last = the highest): for each
    non-conservative type from the highest down, core then primary; then comprehensive of those
    types from the highest down; then the conservative type: core, primary, comprehensive.
    With the four national types: 核心相关手术 > 基层相关手术 > 核心治疗性操作 > 基层治疗性操作 >
    核心诊断性操作 > 基层诊断性操作 > 综合相关手术 > 综合治疗性操作 > 综合诊断性操作 > 核心保守 > 基层保守 > 综合保守."""
    higher = list(reversed(treatments[1:]))
    return (*((level, t) for t in higher for level in ("core", "primary")),
            *(("comprehensive", t) for t in higher),
            *((level, treatments[0]) for level in LEVELS))


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Setting:
    """One line of the dip block: `name` is dx_length, qualifying, treatment_column,
    treatment_order, exclude, auxiliary, auxiliary_lists, precedence, tie_break_levels,
    reference_cost, point_value, or a level name (core / primary / comprehensive)."""

    name: str
    value: object          # int, SetRef/TableFilter, (table, column), tuple of treatment names,
                           # tuple of (level, treatment), tuple of levels, column name, decimal text
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

    @property
    def tie_break_levels(self) -> tuple[str, ...]:
        """Levels whose matching rows are narrowed to one by the tie-breaks before the precedence
        (default: core only, as Node-DIP's chooseCoreGroupByMatchQuantity / ByAbsoluteFee)."""
        s = self.setting("tie_break_levels")
        return s.value if s else DEFAULT_TIE_BREAK_LEVELS

    @property
    def point_value(self) -> Decimal | None:
        """Yuan per point (`point value`), the reference cost of a row without a cost column."""
        s = self.setting("point_value")
        return Decimal(s.value) if s else None

    def precedence(self, treatments: list[str]) -> tuple[tuple[str, str], ...]:
        """Every (level, treatment type) class, best first: the `precedence` line, then the classes
        it does not list in the default order (`default_precedence`)."""
        s = self.setting("precedence")
        listed = tuple(dict.fromkeys(s.value)) if s else ()
        return listed + tuple(c for c in default_precedence(treatments) if c not in listed)

    def level(self, name: str) -> SetRef | TableFilter | None:
        s = self.setting(name)
        return s.value if s else None
