"""Regional variants as overlays: `scheme "X" version "V" extends "BASE"`.

An overlay keeps the base scheme's MDC/ADRG layer (national and fixed, 国家统一ADRG) and changes
what a region changes: its DRG splits (`refine adrg CODE { drg ... }`), plus any tables, sets,
defines, input checks, warnings, weights or whole new MDCs it declares. Merging is a pure AST
step; every node keeps the span of the file it was written in.
"""
from __future__ import annotations

import dataclasses

from ..errors import Diagnostic
from . import ast


def merge(base: ast.Scheme, overlay: ast.Scheme) -> tuple[ast.Scheme, list[Diagnostic]]:
    """The overlay applied to the base: (merged scheme, errors for refinements of unknown ADRGs)."""
    found: list[Diagnostic] = []
    refines: dict[str, ast.RefineDef] = {}
    for st in overlay.of_type(ast.RefineDef):
        if st.adrg in refines:
            found.append(Diagnostic("duplicate-name", "error", f"ADRG {st.adrg} is refined twice "
                                    f"(first at {refines[st.adrg].span})", st.span))
        refines[st.adrg] = st
    known = {a.code for m in base.mdcs for a in m.adrgs}
    for code, st in refines.items():
        if code not in known:
            found.append(Diagnostic("unknown-adrg", "error", f"the base scheme has no ADRG {code} to refine", st.span,
                                    f"the base is {base.path}; refine one of its ADRGs or add a new `mdc` block"))
    statements = []
    for st in base.statements:
        if isinstance(st, ast.MdcDef):
            items = tuple(dataclasses.replace(a, drgs=refines[a.code].drgs)
                          if isinstance(a, ast.AdrgDef) and a.code in refines else a for a in st.items)
            st = dataclasses.replace(st, items=items)
        statements.append(st)
    statements += [st for st in overlay.statements if not isinstance(st, ast.RefineDef)]
    merged = ast.Scheme(overlay.header, tuple(statements), path=overlay.path, text=overlay.text)
    return merged, found
