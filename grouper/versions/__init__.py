"""Scheme versions: grouping a history with the scheme in force at each discharge date, and the
crosswalk between two schemes (where the cases of each source DRG land).

Entry functions: `load_schedule` (a dated list of packs), `group_by_date` / `group_file_by_date`
(version-aware grouping), `crosswalk` (two schemes over the same cases).
"""
from .crosswalk import crosswalk
from .dated import Schedule, group_by_date, group_file_by_date, load_schedule

__all__ = ["Schedule", "crosswalk", "group_by_date", "group_file_by_date", "load_schedule"]
