"""The regional 细分组 table layout (shared/regional-layouts.md): a table set marked by `scheme.csv`
with `layout = regional`. It is the 1.1 layout plus grouper-wide behaviours (`scheme.csv`), the
MDC entry `main_or_proc_plus` with `mdc_proc.csv`, regional ADRG rule kinds (read by
chs_drg._Importer.adrg_rule) and DRG split kinds with their own parameter columns.

Not to be confused with the project's older regional columns (regional.py: `age_min`/`age_max`,
an inclusive `los_max`, `;`-separated lists, `settings.csv`): under this layout `los_max` is
exclusive, `dept` is one department and `procs` is `|`-separated, and each column is read only by
the split kind that names it.
"""
from __future__ import annotations

from pathlib import Path

from ..lang import ast
from .tables import ImportError_, _rows

SCHEME_TABLE = "scheme.csv"
MDC_PROC_TABLE = "mdc_proc.csv"
# scheme.csv keys and their values (None: any text); every key must be present once.
SCHEME_KEYS: dict[str, tuple[str, ...] | None] = {
    "variant": None,
    "layout": ("regional",),
    "sex_check": ("int_or_cn", "str_1_2"),
    "retry": ("none", "secondary_procs"),
    "adrg_without_drg": ("adrg_code", "next_adrg"),
    "qy": ("off",),
}
# drg.csv split kinds → the parameter columns each reads (a filled cell of another column is reported).
SPLIT_PARAMETERS: dict[str, tuple[str, ...]] = {
    "none": (), "mcc": (), "cc_or_mcc": (), "los": ("los_min", "los_max"), "age_le": ("age",),
    "age_le_cc_or_mcc": ("age",), "age_lt": ("age",), "dept_eq": ("dept",), "procs_all": ("procs",),
}
PARAMETER_COLUMNS = ("age", "los_min", "los_max", "dept", "procs")
# adrg.csv parameter columns each rule kind reads (kinds not listed read none).
_NEONATE = ("max_age_days",)
RULE_PARAMETERS: dict[str, tuple[str, ...]] = {
    "pdx_tags": ("tags",), "pproc_neonate": _NEONATE, "pdx_neonate": _NEONATE, "pdx_not_neonate": _NEONATE,
    "pdx_neonate_medical": _NEONATE, "anydx_neonate_weight": (*_NEONATE, "weight_min_g", "weight_max_g"),
    "pdx_neonate_weight_medical": (*_NEONATE, "weight_min_g", "weight_max_g"),
}


def _error(message: str) -> Exception:
    return ImportError_(message)


def read_scheme_table(table_dir: Path) -> dict[str, str] | None:
    """The settings of `scheme.csv` (None when the set has none), every key and value checked."""
    path = table_dir / SCHEME_TABLE
    if not path.is_file():
        return None
    rows = _rows(path)
    if rows and not {"key", "value"} <= set(rows[0]):
        raise _error(f"{SCHEME_TABLE}: the columns are key,value, not {','.join(rows[0])}")
    values: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        key, value = row["key"], row["value"]
        if key not in SCHEME_KEYS:
            raise _error(f"{SCHEME_TABLE} line {line}: unknown key {key!r} (the keys are {', '.join(SCHEME_KEYS)})")
        if key in values:
            raise _error(f"{SCHEME_TABLE} line {line}: key {key!r} is given twice")
        allowed = SCHEME_KEYS[key]
        if allowed is not None and value not in allowed:
            raise _error(f"{SCHEME_TABLE} line {line}: {key} = {value!r} is not one of {', '.join(allowed)}")
        if allowed is None and not value:
            raise _error(f"{SCHEME_TABLE} line {line}: {key} is empty")
        values[key] = value
    missing = [k for k in SCHEME_KEYS if k not in values]
    if missing:
        raise _error(f"{SCHEME_TABLE}: missing key(s) {', '.join(missing)}")
    return values


def settings_statements(values: dict[str, str]) -> list[ast.Statement]:
    """scheme.csv's behaviours as the engine's own settings (regional-layouts.md §2, §7.1)."""
    out: list[ast.Statement] = []
    if values["sex_check"] == "str_1_2":          # the raw string: only "1" and "2" pass
        out.append(ast.ReadSex((("1", "male"), ("2", "female"))))
    else:   # int_or_cn: digits as a number; 男/女 pass the check (chs_drg input_rules) but equal neither 1 nor 2
        out.append(ast.ReadSex((("男", "other"), ("女", "other")), digits=True))
    if values["adrg_without_drg"] == "adrg_code":  # a matched ADRG without a DRG ends grouping: no_drg
        out.append(ast.SettingDef("adrg_without_drg", "no_drg"))
    if values["retry"] == "secondary_procs":       # each later procedure alone; no_adrg names the last MDC entered
        out += [ast.SettingDef("second_attempt", "later_procedure_alone"),
                ast.SettingDef("ungrouped_mdc", "last_entered")]
    return out


def _whole(row: dict[str, str], column: str) -> int:
    text = row.get(column) or ""
    if not text.lstrip("-").isdigit():
        raise _error(f"drg.csv: DRG {row['drg']} (split {row['split']}) needs a whole number in {column}, "
                     f"not {text!r}")
    return int(text)


def split_condition(row: dict[str, str], problems: list[str]) -> ast.Cond | None:
    """The condition of a drg.csv row's split kind with its parameter columns (None: unconditional).
    Parameter cells the kind does not read are added to `problems` (the unused-row report)."""
    kind, drg = row["split"], row["drg"]
    if kind not in SPLIT_PARAMETERS:
        raise _error(f"drg.csv: DRG {drg} has an unknown split {kind!r}")
    for column in PARAMETER_COLUMNS:
        if row.get(column) and column not in SPLIT_PARAMETERS[kind]:
            problems.append(f"drg.csv: DRG {drg} has {column} = {row[column]!r}, which its split {kind!r} does not read")
    if kind == "none":
        return None
    if kind in ("mcc", "cc_or_mcc"):
        return ast.DefineRef(kind)
    if kind == "los":   # at least los_min days, below los_max (exclusive); a missing LOS fails
        bounds = [ast.FieldCmp("los", op, _whole(row, column)) for column, op in (("los_min", ">="), ("los_max", "<"))
                  if row.get(column)]
        if not bounds:
            raise _error(f"drg.csv: DRG {drg} (split los) has neither los_min nor los_max")
        return bounds[0] if len(bounds) == 1 else ast.AllOf(tuple(bounds))
    if kind == "age_le":
        return ast.FieldCmp("age", "<=", _whole(row, "age"))
    if kind == "age_lt":
        return ast.FieldCmp("age", "<", _whole(row, "age"))
    if kind == "age_le_cc_or_mcc":
        return ast.AllOf((ast.FieldCmp("age", "<=", _whole(row, "age")), ast.DefineRef("cc_or_mcc")))
    if kind == "dept_eq":
        if not row.get("dept"):
            raise _error(f"drg.csv: DRG {drg} (split dept_eq) has an empty dept")
        return ast.FieldCmp("dept", "=", row["dept"])
    codes = [c for c in (row.get("procs") or "").split("|") if c]   # procs_all: each code somewhere
    if not codes:
        raise _error(f"drg.csv: DRG {drg} (split procs_all) has an empty procs")
    items = tuple(ast.ManyIn("any", "proc", ast.InlineSet((code,))) for code in dict.fromkeys(codes))
    return items[0] if len(items) == 1 else ast.AllOf(items)


def reachable_problems(drgs: list[dict[str, str]]) -> list[str]:
    """`reachable` cells (drgs of one ADRG in seq order) that disagree with the split order: 0 exactly
    when an earlier DRG of the ADRG has split none."""
    problems, unconditional_before = [], False
    for row in drgs:
        want = "0" if unconditional_before else "1"
        if "reachable" in row and row["reachable"] != want:
            problems.append(f"drg.csv: DRG {row['drg']} has reachable = {row['reachable']!r}, but the split order "
                            f"makes it {want}")
        unconditional_before |= row["split"] == "none"
    return problems


def rule_parameter_problems(row: dict[str, str]) -> list[str]:
    """adrg.csv parameter cells filled for a rule kind that does not read them."""
    reads = RULE_PARAMETERS.get(row["rule"], ())
    where = f"ADRG {row['adrg']}" + (f" part {row['part']}" if row.get("part") else "") + f" ({row['mdc']} seq {row['seq']})"
    return [f"adrg.csv: {where} has {column} = {row[column]!r}, which its rule {row['rule']!r} does not read"
            for column in ("tags", "max_age_days", "weight_min_g", "weight_max_g")
            if row.get(column) and column not in reads]
