"""Scheme versions: grouping a history with the scheme in force at each discharge date, and the
crosswalk between two schemes (where the cases of each source DRG land).

Entry functions: `load_schedule` (a dated list of packs), `group_by_date` / `group_file_by_date`
(version-aware grouping), `crosswalk` (two schemes over the same cases).
"""
from .._lazy import lazy_names

__all__ = ["Schedule", "crosswalk", "group_by_date", "group_file_by_date", "load_schedule"]

# Loaded on first use: the command line builds its parser from grouper.versions.commands, and
# `grouper group` needs neither module (each loads Polars, the scheme loader and the scheme's AST).
_LAZY = {"crosswalk": ".crosswalk", "Schedule": ".dated", "group_by_date": ".dated",
         "group_file_by_date": ".dated", "load_schedule": ".dated"}

__getattr__ = lazy_names(__name__, globals(), _LAZY)
