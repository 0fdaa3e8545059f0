"""What every CHS-DRG importer shares, below them all: the import errors, reading a table's rows,
and the older regional columns of a national-layout table set (`drg.csv`'s los/age/dept/procs_all
columns and `settings.csv`; see regional.py's module doc). The national importer (chs_drg.py)
applies those columns; the regional overlay importer (regional.py) builds on the national one.
"""
from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from ..errors import GrouperError
from ..lang import ast
from ..lang.settings import SETTINGS

GROUPING_TABLES = ("mdc.csv", "mdc_dx.csv", "adrg.csv", "adrg_dx.csv", "adrg_proc.csv", "drg.csv",
                   "cc.csv", "cc_exclusion.csv", "or_proc.csv")


class ImportError_(GrouperError):
    """The table set does not have the expected layout."""


class UnusedRowsError(ImportError_):
    """Table rows that would not land in the pack (each one reported; see `import_chs_drg(allow_unused=)`)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        shown = "\n  ".join(problems[:50]) + ("\n  ..." if len(problems) > 50 else "")
        super().__init__(f"{len(problems)} table row group(s) would not be used by the pack (nothing written):\n  {shown}\n"
                         "fix the tables, or import anyway with --allow-unused (the rows are then reported as warnings)")


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise ImportError_(f"{path} not found: a CHS-DRG table set needs {', '.join(GROUPING_TABLES)}")
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


DRG_COLUMNS = ("los_min", "los_max", "age_min", "age_max", "dept", "procs_all")
SETTINGS_TABLE = "settings.csv"


def _codes(text: str) -> list[str]:
    return [c.strip() for c in text.split(";") if c.strip()]


def _band(field: str, low: str, high: str) -> list[ast.Cond]:
    if low and low == high:
        return [ast.FieldCmp(field, "=", int(low))]
    if low and high:
        return [ast.FieldRange(field, int(low), int(high))]
    if low:
        return [ast.FieldCmp(field, ">=", int(low))]
    if high:
        return [ast.FieldCmp(field, "<=", int(high))]
    return []


def drg_extra_condition(row: dict[str, str]) -> list[ast.Cond]:
    """The conditions of a drg.csv row's regional columns (empty when none is filled)."""
    get = lambda column: (row.get(column) or "").strip()  # noqa: E731
    conds = _band("los", get("los_min"), get("los_max")) + _band("age", get("age_min"), get("age_max"))
    depts = _codes(get("dept"))
    if depts:
        conds.append(ast.FieldCmp("dept", "=", depts[0]) if len(depts) == 1 else ast.FieldIn("dept", tuple(depts)))
    conds += [ast.ManyIn("any", "proc", ast.InlineSet((code,))) for code in _codes(get("procs_all"))]
    return conds


def with_regional_columns(table_dir: Path, scheme: ast.Scheme) -> ast.Scheme:
    """The imported scheme with the DRG conditions of the regional columns and the settings of settings.csv."""
    extra: dict[str, list[ast.Cond]] = {}
    for row in _rows(table_dir / "drg.csv"):
        conds = drg_extra_condition(row)
        if conds:
            extra[row["drg"]] = conds

    def drg(node: ast.DrgDef) -> ast.DrgDef:
        if node.code not in extra:
            return node
        items = ([node.cond] if node.cond is not None else []) + extra[node.code]
        return dataclasses.replace(node, cond=items[0] if len(items) == 1 else ast.AllOf(tuple(items)))

    settings: list[ast.Statement] = []
    if (table_dir / SETTINGS_TABLE).is_file():
        for row in _rows(table_dir / SETTINGS_TABLE):
            if row["setting"] == "read_sex":
                spellings = tuple(tuple(item.split(":", 1)) for item in _codes(row["value"]))
                if not spellings or any(len(s) != 2 or s[1] not in ("male", "female") for s in spellings):
                    raise ImportError_(f"{SETTINGS_TABLE}: read_sex is written like 1:male;2:female, not {row['value']!r}")
                settings.append(ast.ReadSex(spellings))
                continue
            known = SETTINGS.get(row["setting"])
            if known is None or row["value"] not in known.values:
                choices = ", ".join(f"{k} ({'/'.join(s.values)})" for k, s in SETTINGS.items())
                raise ImportError_(f"{SETTINGS_TABLE}: {row['setting']} = {row['value']} is not a setting ({choices})")
            settings.append(ast.SettingDef(row["setting"], row["value"]))
    statements = []
    for st in scheme.statements:
        if isinstance(st, ast.MdcDef):
            st = dataclasses.replace(st, items=tuple(dataclasses.replace(a, drgs=tuple(drg(d) for d in a.drgs))
                                                     if isinstance(a, ast.AdrgDef) else a for a in st.items))
        statements.append(st)
    first_mdc = next((i for i, st in enumerate(statements) if isinstance(st, ast.MdcDef)), len(statements))
    statements[first_mdc:first_mdc] = settings
    return dataclasses.replace(scheme, statements=tuple(statements))
