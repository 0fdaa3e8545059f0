"""Typed AST of the scheme language. Class names mirror the grammar rules in grammars/scheme.lark.

Every node carries a `span` (excluded from equality, so a re-parsed printout compares equal).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Span


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


# ---- set expressions -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Filter:
    column: str
    op: str  # "=" or "!="
    value: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class SetRef:
    """A named set, or a table's whole key column."""

    name: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class TableFilter:
    table: str
    filters: tuple[Filter, ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class InlineSet:
    codes: tuple[str, ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class PrefixSet:
    """prefix "P07.", ...: every code starting with one of the prefixes, known to the scheme or not."""

    prefixes: tuple[str, ...]
    span: Span | None = _span()


SetExpr = SetRef | TableFilter | InlineSet | PrefixSet


# ---- conditions ------------------------------------------------------------------------
# Scopes a condition can look at. One-item scopes: pdx (principal diagnosis), pproc
# (principal procedure). Many-item scopes: every diagnosis / procedure, or only the secondary ones.
ONE_SCOPES = ("pdx", "pproc")
MANY_SCOPES = ("dx", "proc", "secondary dx", "secondary proc")
FIELDS = ("sex", "age", "age_days", "weight", "los", "discharge", "dept")


@dataclass(frozen=True, slots=True)
class Always:
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class DefineRef:
    name: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple["Cond", ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple["Cond", ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Negation:
    item: "Cond"
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class OneIn:
    scope: str  # "pdx" | "pproc"
    set: SetExpr
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Unless:
    """An item does not count when item_table.item_column(item) = pdx_table.pdx_column(pdx)."""

    item_table: str
    item_column: str
    pdx_table: str
    pdx_column: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class ManyIn:
    quant: str  # "any" | "no"
    scope: str  # one of MANY_SCOPES
    set: SetExpr
    unless: Unless | None = None
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class CountLabels:
    """count distinct COLUMN of SCOPE in TABLE[...] OP VALUE"""

    column: str
    scope: str
    set: SetExpr
    op: str
    value: int
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class CountItems:
    """count SCOPE OP VALUE: the number of items of a scope (every item, known or not, empty included)."""

    scope: str
    op: str
    value: int
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class Tag:
    value: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class TagAny:
    items: tuple["TagExpr", ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class TagAll:
    items: tuple["TagExpr", ...]
    span: Span | None = _span()


TagExpr = Tag | TagAny | TagAll


@dataclass(frozen=True, slots=True)
class TagsMatch:
    """COLUMN of SCOPE in TABLE[...] matches TAGEXPR — the set of labels present satisfies the expression."""

    column: str
    scope: str
    set: SetExpr
    expr: TagExpr
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class FieldCmp:
    field: str
    op: str
    value: int | str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class FieldRange:
    """FIELD in LO..HI, both ends inclusive."""

    field: str
    low: int
    high: int
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class FieldIn:
    field: str
    values: tuple[int | str, ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class FieldPresence:
    field: str
    present: bool
    span: Span | None = _span()


Cond = (
    Always | DefineRef | AnyOf | AllOf | Negation | OneIn | ManyIn | CountLabels | CountItems | TagsMatch
    | FieldCmp | FieldRange | FieldIn | FieldPresence
)


# ---- statements ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Header:
    name: str
    version: str
    extends: str | None = None  # the base pack of an overlay, relative to this file
    span: Span | None = _span()


def _changes() -> tuple:
    return field(default=(), compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class TablePatch:
    """Rows removed (op `-`) and added (op `+`) by an overlay's `patch table NAME with "file.csv"`."""

    file: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class TableDef:
    name: str
    file: str
    key: str | None = None  # column holding the codes; None means "code"
    span: Span | None = _span()
    patches: tuple[TablePatch, ...] = ()      # applied in order when the table is read
    changes: tuple[Span, ...] = _changes()    # overlay statements that changed it (shown by explain)

    @property
    def key_column(self) -> str:
        return self.key or "code"


@dataclass(frozen=True, slots=True)
class DictionaryDef:
    kind: str  # "dx" | "proc"
    table: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class SetDef:
    name: str
    expr: SetExpr
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()


@dataclass(frozen=True, slots=True)
class DefineDef:
    name: str
    cond: Cond
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()


@dataclass(frozen=True, slots=True)
class InvalidDef:
    name: str
    message: str | None
    cond: Cond
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()


@dataclass(frozen=True, slots=True)
class WarnDef:
    name: str
    message: str | None
    cond: Cond
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()


@dataclass(frozen=True, slots=True)
class ValidateDef:
    reason: str
    level: str  # "error" | "warning" | "off"
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class MapDef:
    kind: str  # "dx" | "proc"
    table: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class WeightsDef:
    table: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class DrgDef:
    code: str
    name: str | None
    cond: Cond | None
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()


@dataclass(frozen=True, slots=True)
class AdrgDef:
    code: str
    name: str | None
    cond: Cond
    drgs: tuple[DrgDef, ...]
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()


@dataclass(frozen=True, slots=True)
class RefineDef:
    """In an overlay: the new DRGs of an ADRG of the base scheme."""

    adrg: str
    drgs: tuple[DrgDef, ...]
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class QyDef:
    """An ambiguous group (歧义组 QY): when `cond` holds the case ends with status qy and `code`.

    Inside an MDC block it is tried in its place among the ADRGs and reports that MDC; at the top
    level it is tried in its place among the MDCs and reports `mdc` (None: no MDC).
    """

    code: str
    name: str | None
    mdc: str | None
    cond: Cond
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()


@dataclass(frozen=True, slots=True)
class MdcDef:
    code: str
    name: str | None
    cond: Cond
    items: tuple[AdrgDef | QyDef, ...]  # try order
    span: Span | None = _span()
    changes: tuple[Span, ...] = _changes()

    @property
    def adrgs(self) -> tuple[AdrgDef, ...]:
        return tuple(a for a in self.items if isinstance(a, AdrgDef))

    @property
    def qys(self) -> tuple[QyDef, ...]:
        return tuple(q for q in self.items if isinstance(q, QyDef))


@dataclass(frozen=True, slots=True)
class ReadSex:
    """read sex [digits,] "1" as male, ...: the only accepted spellings of sex (code → 1 male / 2 female,
    or "other": accepted, equal to neither); with `digits`, a string of digits 0-9 is read as its number too."""

    spellings: tuple[tuple[str, str], ...]  # (text, "male" | "female" | "other")
    span: Span | None = _span()
    digits: bool = False


@dataclass(frozen=True, slots=True)
class ReadEmptyNumber:
    """read empty age, ... as N: an empty numeric field counts as N (an unreadable one stays missing)."""

    fields: tuple[str, ...]
    value: int
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class ReadEmptyList:
    """read empty dx as none: an empty dx field is an empty list (default: one empty code, [""])."""

    scope: str  # "dx" | "proc"
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class SettingDef:
    """setting NAME = VALUE: an engine behaviour (grouper/lang/settings.py lists them)."""

    name: str
    value: str | int
    span: Span | None = _span()


# ---- overlay operations (consumed by lang/overlay.py; an error anywhere else) -------------------
GroupDef = MdcDef | AdrgDef | DrgDef


@dataclass(frozen=True, slots=True)
class Position:
    """Where an added or moved group goes: before/after a sibling, or first/last among a parent's children."""

    where: str               # "before" | "after" | "first" | "last"
    anchor: str | None       # the sibling (before/after) or the parent (first/last; None for an MDC)
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class ReplaceDef:
    """replace set/define/table: a new definition under a base name."""

    definition: "SetDef | DefineDef | TableDef | InvalidDef | WarnDef | ReadSex | ReadEmptyNumber | ReadEmptyList"
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class ReplaceGroup:
    """replace mdc/adrg/drg CODE ["name"] [when COND]: new name and/or condition, same place and children."""

    kind: str  # "mdc" | "adrg" | "drg"
    code: str
    name: str | None
    cond: Cond | None
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class PatchTable:
    table: str
    file: str
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class AddGroup:
    group: GroupDef | QyDef | InvalidDef | WarnDef
    position: Position
    span: Span | None = _span()


@dataclass(frozen=True, slots=True)
class RemoveGroup:
    kind: str                # "mdc" | "adrg" | "drg" | "qy" | "invalid" | "warn"
    code: str
    span: Span | None = _span()
    within: str | None = None  # qy only: the MDC holding the rule (None: the top-level rule)


@dataclass(frozen=True, slots=True)
class MoveGroup:
    kind: str
    code: str
    position: Position
    span: Span | None = _span()
    within: str | None = None  # qy only, as in RemoveGroup


@dataclass(frozen=True, slots=True)
class RenameGroup:
    kind: str
    code: str
    new_code: str
    name: str | None
    span: Span | None = _span()
    within: str | None = None  # qy only, as in RemoveGroup


@dataclass(frozen=True, slots=True)
class ReplaceQy:
    """replace qy CODE [in MDC] ...: the rule restated whole (name, reported MDC, condition), same place."""

    qy: QyDef
    within: str | None = None  # the MDC holding the rule (None: the top-level rule)
    span: Span | None = _span()


OVERLAY_OPERATIONS = (RefineDef, ReplaceDef, ReplaceGroup, PatchTable, AddGroup, RemoveGroup, MoveGroup, RenameGroup,
                      ReplaceQy)


Statement = (TableDef | DictionaryDef | SetDef | DefineDef | InvalidDef | WarnDef | ValidateDef | MapDef
             | WeightsDef | RefineDef | ReadSex | ReadEmptyNumber | ReadEmptyList | QyDef | MdcDef | SettingDef
             | ReplaceDef | ReplaceGroup | PatchTable | AddGroup | RemoveGroup | MoveGroup | RenameGroup | ReplaceQy)


@dataclass(frozen=True, slots=True)
class Scheme:
    header: Header
    statements: tuple[Statement, ...]
    path: str = field(default="<string>", compare=False)
    text: str | None = field(default=None, compare=False, repr=False)

    def of_type(self, kind: type) -> list:
        return [s for s in self.statements if isinstance(s, kind)]

    @property
    def tables(self) -> list[TableDef]:
        return self.of_type(TableDef)

    @property
    def mdcs(self) -> list[MdcDef]:
        return self.of_type(MdcDef)
