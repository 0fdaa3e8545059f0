"""Scheme versions: grouping a history with the scheme in force at each discharge date, and the
crosswalk between two schemes (where the cases of each source DRG land).

Entry functions: `load_schedule` (a dated list of packs), `group_by_date` / `group_file_by_date`
(version-aware grouping), `crosswalk` (two schemes over the same cases).
"""
__all__ = ["Schedule", "crosswalk", "group_by_date", "group_file_by_date", "load_schedule"]

# Loaded on first use: the command line builds its parser from grouper.versions.commands, and
# `grouper group` needs neither module (each loads Polars, the scheme loader and the scheme's AST).
_LAZY = {"crosswalk": ".crosswalk", "Schedule": ".dated", "group_by_date": ".dated",
         "group_file_by_date": ".dated", "load_schedule": ".dated"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
