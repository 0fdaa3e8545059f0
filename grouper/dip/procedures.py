"""The regional procedure table (手术操作类型表): each procedure code's treatment type and whether
it forms a DIP key. One reader for `grouper import dip --procedures` and `grouper calibrate dip
--procedures`: CSV (any encoding the project reads) or Excel, headers in English or Chinese
(PROCEDURE_HEADERS), published type names mapped to the four treatment types (介入治疗 → 相关手术,
domain.md §3.2); an unknown type stops the run with its file:line."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from .. import io
from ..errors import InputError

TREATMENTS = ("保守治疗", "诊断性操作", "治疗性操作", "相关手术")
TYPE_ALIASES = {"介入治疗": "相关手术"}     # domain.md §3.2: 介入治疗 is counted as 相关手术
PROCEDURE_HEADERS = {
    "code": ("code", "手术操作编码", "手术操作代码", "编码"),
    "type": ("type", "treatment", "手术操作类型", "操作类型", "类别"),
    "qualifying": ("qualifying",),
    "name": ("name", "手术操作名称", "名称"),
}


def canonical_treatment(value: str) -> str:
    """A published treatment type → one of TREATMENTS (介入治疗 → 相关手术); other values unchanged."""
    return TYPE_ALIASES.get(value, value)


def _find_procedure_columns(path: Path, headers: list[str]) -> dict[str, str]:
    by_key = {h.strip().lower(): h for h in reversed(headers)}
    found = {f: next((by_key[n.lower()] for n in names if n.lower() in by_key), None)
             for f, names in PROCEDURE_HEADERS.items()}
    if found["code"] is None or found["type"] is None:
        raise InputError(f"{path}: the procedure table needs a code column ({', '.join(PROCEDURE_HEADERS['code'])}) "
                         f"and a type column ({', '.join(PROCEDURE_HEADERS['type'])}); it has {', '.join(headers)}")
    return found


def read_procedure_types(path: str | Path) -> list[dict]:
    """The procedure-type table (CSV or Excel): code, name ("" when the table has none), treatment
    (介入治疗 → 相关手术), qualifying ("1" when the table has no such column), type (as published). Any unknown type stops the import, each named with its line."""
    path = Path(path)
    raw = io._read_raw(path, encoding=None, sheet=None)
    cols = _find_procedure_columns(path, raw.columns)
    text = raw.select(io._as_text(pl.col(c), raw.schema[c]).alias(c) for c in raw.columns)
    out, unknown = [], []
    for i, rec in enumerate(text.iter_rows(named=True)):
        code = (rec[cols["code"]] or "").strip()
        published = (rec[cols["type"]] or "").strip()
        if not code:
            continue
        treatment = canonical_treatment(published)
        if treatment and treatment not in TREATMENTS:
            unknown.append(f"{path}:{i + 2}: {code}: unknown type {published!r}")
            continue
        qualifying = (rec[cols["qualifying"]] or "").strip() if cols["qualifying"] else ""
        name = (rec[cols["name"]] or "").strip() if cols["name"] else ""
        out.append({"code": code, "name": name, "treatment": treatment, "qualifying": qualifying or "1",
                    "type": published})
    if unknown:
        raise InputError(f"{len(unknown)} procedure type(s) are not one of {' / '.join((*TREATMENTS, *TYPE_ALIASES))}:\n"
                         + "\n".join(unknown[:20]) + (f"\n… and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
    return out


def procedure_table(path: str | Path) -> pl.DataFrame:
    """read_procedure_types as a frame: code, name, treatment, qualifying ("1"/"0"), type (as published)."""
    return pl.DataFrame(read_procedure_types(path), schema=dict.fromkeys(
        ("code", "name", "treatment", "qualifying", "type"), pl.String))
