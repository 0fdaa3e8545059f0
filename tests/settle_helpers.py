"""Hand-built inputs for settlement tests: cases with the contract's columns, weights, policy files."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl

from grouper.payment.policy import load_policy

WEIGHTS = pl.DataFrame({
    "drg": ["A11", "A13", "B11", "GZ14"],
    "weight": [1.0, 1.5, 2.0, 0.5],
    "mean": [1000.0, 1500.0, 2000.0, 500.0],  # yuan
})

CASE_DEFAULTS = {
    "id": None, "status": "grouped", "adrg": None, "drg": "A11", "hospital": "H1", "hospital_level": 3,
    "insurance": "employee", "cost": 100_000, "los": 5, "discharge": "1", "special_review": False,
    "patient_id": None, "admission_date": dt.date(2025, 1, 1), "discharge_date": dt.date(2025, 1, 6),
}
CASE_SCHEMA = {"id": pl.String, "status": pl.String, "adrg": pl.String, "drg": pl.String, "hospital": pl.String,
               "hospital_level": pl.Int8, "insurance": pl.String, "cost": pl.Int64, "los": pl.Int32,
               "discharge": pl.String, "special_review": pl.Boolean, "patient_id": pl.String,
               "admission_date": pl.Date, "discharge_date": pl.Date}


def cases(*rows: dict) -> pl.DataFrame:
    """A case frame; each row overrides CASE_DEFAULTS (cost in fen); ids default to c1, c2, ..."""
    full = []
    for n, row in enumerate(rows, 1):
        case = {**CASE_DEFAULTS, **row}
        case["id"] = case["id"] or f"c{n}"
        if case["adrg"] is None and case["drg"]:
            case["adrg"] = case["drg"][:-1]
        full.append(case)
    return pl.DataFrame(full, schema=CASE_SCHEMA)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + " }"
    raise TypeError(value)


def toml_text(tree: dict) -> str:
    """A small TOML writer for test policies: nested tables, arrays of tables, inline leaf tables."""
    lines: list[str] = []

    def section(prefix: str, table: dict) -> None:
        if prefix:
            lines.append(f"[{prefix}]")
        nested = []
        for k, v in table.items():
            if isinstance(v, dict) and not _is_leaf_table(k) or _is_table_array(v):
                nested.append((k, v))
            else:
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v in nested:
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                section(name, v)
            else:
                for item in v:
                    lines.append(f"[[{name}]]")
                    lines.extend(f"{ik} = {_toml_value(iv)}" for ik, iv in item.items())

    section("", tree)
    return "\n".join(lines) + "\n"


_LEAF_TABLES = {"threshold", "level", "annual", "base_rate", "per_day", "employee", "resident", "all"}


def _is_leaf_table(key: str) -> bool:
    return key in _LEAF_TABLES


def _is_table_array(value) -> bool:
    return isinstance(value, list) and value and all(isinstance(v, dict) for v in value)


def base_points_policy(**overrides) -> dict:
    """A points-method policy with simple numbers: one pool of 10,000.00 yuan, no reserve."""
    tree = {
        "policy": {"name": "test points", "method": "points"},
        "points": {"scale": 100},
        "budget": {"reserve_share": 0, "annual": {"all": "10000.00"}},
        "cases": {"incomplete": {"discharge": []}},
    }
    return _merge(tree, overrides)


def base_rate_policy(**overrides) -> dict:
    tree = {
        "policy": {"name": "test rate", "method": "rate"},
        "rate": {"base_rate": {"employee": {"3": 10000, "2": 8000, "1": 6000}, "resident": {"3": 9000, "2": 7000, "1": 5000}}},
        "ratio": {"reference": "standard"},
        "cases": {"incomplete": {"discharge": []}},
    }
    return _merge(tree, overrides)


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and not _is_leaf_table(k) else v
    return out


def write_policy(tmp: Path, tree: dict, name: str = "policy.toml") -> Path:
    path = tmp / name
    path.write_text(_unquote_money(toml_text(tree)), encoding="utf-8")
    return path


def _unquote_money(text: str) -> str:
    # money is written as a quoted "123.45" in the trees above so that it stays exact; TOML wants a bare number
    import re

    return re.sub(r'"(-?\d+\.\d{2})"', r"\1", text)


def policy(tmp: Path, tree: dict):
    return load_policy(write_policy(tmp, tree))


def assert_priced_alike(cases: pl.DataFrame, policy, source, point_value=None) -> int:
    """The settle engine's one-case pricer (CasePricer, the 预结算 of `grouper serve`) gives every case
    of `cases` exactly the row `price_cases` gives it, and refuses (None) what `price_cases` refuses.
    Returns how many cases were compared."""
    from grouper.errors import InputError
    from grouper.payment import settle as engine

    pricer = engine.CasePricer(policy, source, point_value=point_value, columns=cases.columns,
                               discharge_type=cases.schema.get("discharge", pl.String))
    rows = None
    try:
        prepared = engine.prepare(cases)
        if prepared.schema["discharge"] != pricer.discharge_type:  # prepare casts a text discharge code as it is
            pricer.discharge_type = prepared.schema["discharge"]
        rows = prepared.drop("row").to_dicts()
        wanted = engine.price_cases(cases, policy, source, point_value=point_value)
    except InputError:
        assert rows is None or pricer.price_all(rows) is None, "price_cases refuses what the one-case pricer prices"
        return 0
    priced = pricer.price_all(rows)
    assert priced is not None, "the one-case pricer refuses what price_cases prices"
    for n, (got, want) in enumerate(zip(priced, wanted.iter_rows(named=True))):
        got = {k: v for k, v in got.items() if k in want}
        assert got == want, (n, rows[n], {k: (got[k], want[k]) for k in want if got[k] != want[k]})
    return len(priced)
