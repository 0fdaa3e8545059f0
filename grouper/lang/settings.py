"""Scheme settings (`setting NAME = VALUE`): engine behaviours that differ between schemes.

Each setting has a fixed set of values and a default; the default is what a scheme gets when it
does not state the setting. `check` rejects unknown names and values; the compiler turns the
resolved values into the plan (ir.Plan.settings and the kernel's behaviour flags); explain and
the batch trace show the ones that decided a result.
"""
from __future__ import annotations

from dataclasses import dataclass

from . import ast


@dataclass(frozen=True)
class Setting:
    values: tuple[str, ...]
    default: str
    meaning: str


SETTINGS: dict[str, Setting] = {
    "adrg_without_drg": Setting(
        ("next_adrg", "no_drg"), "next_adrg",
        "a case whose ADRG condition holds but none of whose DRGs does: `next_adrg` counts the ADRG as not "
        "matched and tries the next one; `no_drg` ends grouping with status no_drg (MDC and ADRG filled, no DRG)"),
    "second_attempt": Setting(
        ("off", "later_procedures", "later_procedure_alone"), "off",
        "a case left without a group (no_adrg, no_drg, ungroupable): `later_procedures` groups it again with "
        "each later procedure in turn as the principal procedure (moved to the front, the others kept), "
        "`later_procedure_alone` with each later procedure as the only procedure; the first grouped result wins"),
    "ungrouped_mdc": Setting(
        ("first_attempt", "last_entered"), "first_attempt",
        "a case no attempt groups: `first_attempt` reports the first attempt's result; `last_entered` reports "
        "no_adrg with the last MDC entered over all attempts (first, then each second attempt in order), "
        "ungroupable when no attempt entered one (a no_drg first result is kept)"),
}


def resolved(scheme: ast.Scheme) -> dict[str, str]:
    """Every known setting's value in this scheme: the last `setting` line of that name, else the default."""
    values = {name: s.default for name, s in SETTINGS.items()}
    for st in scheme.of_type(ast.SettingDef):
        if st.name in values:
            values[st.name] = str(st.value)
    return values
