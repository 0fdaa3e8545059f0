"""Load a DIP pack: parse → check → compile. A DIP pack is a folder holding `scheme.dip` plus the
CSV tables it names (or the .dip file itself)."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from ..package_data import data_dir
from pathlib import Path

from ..errors import Diagnostic, InputError, SchemeError, warn_demo_scheme
from ..lang.tables import TableStore
from ..plancache import Classes, cache_enabled, cached
from ..scheme import _with_sources, pack_fingerprint
from .ast import DipScheme
from .catalogue import Row
from .check import check
from .plan import DipPlan, compile_dip
from .files import DIP_FILE

DEMO_PACK = "dip-demo"


@dataclass
class LoadedDip:
    path: Path
    ast: DipScheme
    store: TableStore
    rows: dict[str, list[Row]]
    plan: DipPlan
    diagnostics: list[Diagnostic]  # warnings (errors raise)


def dip_scheme_path(pack: str | Path | None) -> Path:
    if pack is None:
        warn_demo_scheme()
        return data_dir("tables") / DEMO_PACK / DIP_FILE
    path = Path(pack)
    if path.is_dir():
        path = path / DIP_FILE
    if not path.is_file():  # exit 3, like a missing case file
        raise InputError(f"no DIP scheme file at {path}: give a pack folder holding {DIP_FILE}, or the .dip file itself")
    return path


def _parse_and_check(path: Path) -> tuple[DipScheme, TableStore, dict[str, list[Row]], list[Diagnostic]]:
    from .parse import parse_file   # lark: loaded only when a pack is parsed (not from the plan cache)

    try:
        scheme = parse_file(path)
    except SchemeError as exc:
        raise SchemeError(_with_sources(exc.diagnostics)) from None
    store = TableStore(path.parent, list(scheme.tables))
    rows, found = check(scheme, store)
    return scheme, store, rows, _with_sources(found)


def check_dip_scheme(pack: str | Path | None) -> tuple[DipScheme | None, dict[str, list[Row]], list[Diagnostic]]:
    """Parse and check without compiling; every diagnostic, errors included."""
    path = dip_scheme_path(pack)
    try:
        scheme, _, rows, found = _parse_and_check(path)
    except SchemeError as exc:
        return None, {}, exc.diagnostics
    return scheme, rows, found


def load_dip_scheme(pack: str | Path | None = None, *, cache: bool | None = None) -> LoadedDip:
    """Parse, check and compile a DIP pack; raise SchemeError if the check finds errors.

    With `cache` (default: on unless GROUPER_NO_CACHE is set) the compiled pack comes from the plan
    cache (grouper/plancache.py) while none of the pack's files changes, like a DRG pack's.
    """
    path = dip_scheme_path(pack)
    if not cache_enabled(cache):
        scheme, store, rows, found = _checked(path)
        return LoadedDip(path, scheme, store, rows, compile_dip(scheme, store, rows), found)
    compiled = cached(pack_fingerprint(path), _cached_classes(), CompiledDip, lambda: _compile(path))
    store = TableStore(path.parent, list(compiled.ast.tables))   # tables are read again only when asked for
    rows = {level: [r for r in compiled.plan.rows if r.level == level] for level in compiled.levels}
    return LoadedDip(path, compiled.ast, store, rows, compiled.plan, compiled.diagnostics)


@dataclass
class CompiledDip:
    """What the plan cache keeps of a loaded DIP pack: all but the tables (read lazily) and the rows
    by level, which are the plan's rows (each row stored once) of `levels`."""

    ast: DipScheme
    levels: tuple[str, ...]
    plan: DipPlan
    diagnostics: list[Diagnostic]


def _checked(path: Path) -> tuple[DipScheme, TableStore, dict[str, list[Row]], list[Diagnostic]]:
    scheme, store, rows, found = _parse_and_check(path)
    if any(d.severity == "error" for d in found):
        raise SchemeError(found)
    return scheme, store, rows, found


def _compile(path: Path) -> CompiledDip:
    scheme, store, rows, found = _checked(path)
    return CompiledDip(scheme, tuple(rows), compile_dip(scheme, store, rows), found)


@functools.cache
def _cached_classes() -> Classes:
    """What a plan cache entry of a DIP pack may hold."""
    from .. import errors
    from ..lang import ast as lang_ast
    from . import ast, auxiliary, catalogue, plan

    return Classes([ast, auxiliary, catalogue, plan, errors, lang_ast], extra=[CompiledDip])
