"""Hand-made grouped cases and one-rule screens files for the screen tests."""
from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from grouper.grouped import GROUPED_SCHEMA

DEFAULTS = {"status": "grouped", "mdc": "MDCX", "adrg": "XA1", "drg": "XA15", "reason": None, "warnings": [],
            "hospital": "H1", "hospital_level": 3, "insurance": "employee", "cost": 100_000, "fund_paid": 80_000,
            "admission_date": date(2024, 1, 1), "discharge_date": None, "patient_id": None, "special_review": False,
            "sex": 1, "age": 50, "age_days": None, "los": 5, "discharge": 1, "dept": "内科", "doctor": "D1",
            "phone": None, "address": None}
EXTRA = {"doctor": pl.String, "phone": pl.String, "address": pl.String}


def cases(*rows: dict) -> pl.DataFrame:
    """A grouped frame: each row is DEFAULTS with its overrides; id C1, C2, ...; patient P<n> unless given;
    discharge_date = admission_date + los unless given; drg's ADRG is drg[:-1] unless adrg is given."""
    out = []
    for i, row in enumerate(rows, start=1):
        case = dict(DEFAULTS, id=f"C{i}", **row)
        case["patient_id"] = case["patient_id"] or f"P{i}"
        if "adrg" not in row and case["drg"]:
            case["adrg"] = case["drg"][:-1]
        if case["discharge_date"] is None and case["admission_date"] is not None and case["los"] is not None:
            case["discharge_date"] = case["admission_date"] + timedelta(days=case["los"])
        out.append(case)
    schema = {**GROUPED_SCHEMA, **EXTRA}
    return pl.DataFrame(out, schema=schema)


def many(n: int, **row) -> list[dict]:
    return [dict(row) for _ in range(n)]


def screens_file(path, *rules: str, scores: str = "") -> str:
    """A screens file with these [[rule]] bodies (TOML text without the header)."""
    text = '[screens]\nname = "test"\n' + scores + "".join(f"\n[[rule]]\n{body.strip()}\n" for body in rules)
    path.write_text(text, encoding="utf-8")
    return str(path)


def rule(code: str, logic: str, params: str = "", level: str = "疑似") -> str:
    return (f'code = "{code}"\nname = "{code}"\nlogic = "{logic}"\nlevel = "{level}"\nsource = "test"\n'
            + (f"params = {{ {params} }}\n" if params else ""))
