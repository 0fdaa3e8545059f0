"""Checking a TOML file against a schema, with every mistake at file:line:column: the machinery
that policy files (grouper.payment.policy) and screens files (grouper.screen.screens) share.

A schema is data: `Section`s of `Spec` leaves (and `Bands`, arrays of tables). `check_section`
walks a parsed file against it (unknown keys with a `suggest`ion, missing keys, wrong types,
impossible values), normalising each value (numbers as Decimal, money as integer fen, per-level and
per-insurance tables), and collects every problem in a `Collector`, which locates a key path in
the file (`Layer`) that wrote it (positions from grouper.tomlpos).
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .errors import Diagnostic, Span, with_source
from .tomlpos import position_of

REQUIRED = object()


@dataclass(frozen=True)
class Spec:
    """A leaf key. `kind` is one of: str, choice, number, int, bool, money, codes (a list or a CSV path), list, per_day, path."""

    kind: str
    doc: str
    default: Any = None  # None: optional without a value; REQUIRED: must be given
    choices: tuple = ()
    low: float | None = None  # inclusive bounds unless *_open
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    by: str | None = None  # "level" or "insurance": a single value, or a table keyed by level / insurance type
    decimals: int | None = None  # at most this many decimals (numbers: six unless set)


@dataclass(frozen=True)
class Section:
    doc: str
    keys: dict[str, "Spec | Section | Bands"]
    required: bool = False


@dataclass(frozen=True)
class Bands:
    """An array of tables (`[[sharing.surplus]]`), each with the same keys."""

    doc: str
    keys: dict[str, Spec] = field(default_factory=dict)


@dataclass
class Layer:
    path: Path
    text: str
    data: dict
    positions: dict


class Collector:
    """Diagnostics with positions: a key path is located in the layer that wrote it (the last one)."""

    def __init__(self, layers: list[Layer]):
        self.layers = layers
        self.found: list[Diagnostic] = []

    def layer_of(self, path: tuple) -> Layer:
        for layer in reversed(self.layers):
            if _has(layer.data, path):
                return layer
        # a default or a missing key: report it where its nearest written ancestor is, in the last file
        for layer in reversed(self.layers):
            for cut in range(len(path) - 1, 0, -1):
                if _has(layer.data, path[:cut]):
                    return layer
        return self.layers[-1]

    def error(self, code: str, path: tuple, message: str, hint: str | None = None) -> None:
        layer = self.layer_of(path)
        line, column = position_of(layer.positions, path)
        name = str(path[-1]) if path else ""
        span = Span(str(layer.path), line, column, line, column + max(len(name), 1))
        self.found.append(with_source(Diagnostic(code, "error", message, span, hint), layer.text))


def _has(data, path: tuple) -> bool:
    for part in path:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return False
    return True


MAX_MONEY = 10**13   # yuan: no budget or amount is that large (and fen stay far inside Int64)
MAX_NUMBER = 10**9   # any other number (scale, rates, days): larger is a typing slip, refused


def decimal_places(number: Decimal) -> int:
    """How many decimals a number needs, trailing zeros not counted (1.50 → 1, 2 → 0)."""
    return max(0, -number.normalize().as_tuple().exponent)


def spec_decimals(spec: Spec) -> int:
    """How many decimals a number key may have: its `decimals`, or six (the engine's unit)."""
    return spec.decimals if spec.decimals is not None else 6


# bool before int: a TOML boolean is a Python int too
_TYPE_NAMES = ((bool, "a boolean"), (int, "an integer"), (Decimal, "a number"), (str, "a string"),
               (list, "an array"), (dict, "a table"))


def _type_name(value) -> str:
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return f"a {type(value).__name__}"


def suggest(name: str, known) -> str | None:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def check_section(section: Section, data, path: tuple, out: Collector) -> dict:
    if not isinstance(data, dict):
        out.error("wrong-type", path, f"`{dotted(path)}` must be a table, not {_type_name(data)}")
        data = {}
    for key in data:
        if key not in section.keys:
            where = f"in [{dotted(path)}]" if path else "at the top level"
            out.error("unknown-key", (*path, key), f"unknown key `{dotted((*path, key))}` {where}",
                      suggest(key, section.keys) or f"known keys: {', '.join(section.keys)}")
    values = {}
    for name, node in section.keys.items():
        sub = (*path, name)
        if isinstance(node, Section):
            if node.required and name not in data:
                out.error("missing-key", sub, f"missing table [{dotted(sub)}]")
            values[name] = check_section(node, data.get(name, {}), sub, out)
        elif isinstance(node, Bands):
            values[name] = _check_bands(node, data.get(name, []), sub, out)
        elif name in data:
            values[name] = _check_value(node, data[name], sub, out)
        elif node.default is REQUIRED:
            out.error("missing-key", sub, f"missing key `{dotted(sub)}`: {node.doc}")
            values[name] = None
        else:
            values[name] = _normalise_default(node)
    return values


def _check_bands(bands: Bands, data, path: tuple, out: Collector) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        out.error("wrong-type", path, f"`{dotted(path)}` must be an array of tables ([[{dotted(path)}]])")
        return []
    return [check_section(Section(bands.doc, bands.keys), item, (*path, i), out) for i, item in enumerate(data)]


def _normalise_default(spec: Spec):
    value = spec.default
    if spec.by == "level" and value is not None:
        return dict(value) if isinstance(value, dict) else {"default": value}
    if spec.kind in ("codes", "list") and value is not None:
        return list(value)
    return value


def _scalar(spec: Spec, value, path: tuple, out: Collector):
    """Check one scalar against its spec; returns the normalised value (None after an error)."""
    name = f"`{dotted(path)}`"
    kind = spec.kind
    if kind in ("str", "path", "choice"):
        if not isinstance(value, str):
            out.error("wrong-type", path, f"{name} must be a string, not {_type_name(value)}")
            return None
        if kind == "choice" and value not in spec.choices:
            out.error("bad-value", path, f"{name} = {value!r} is not one of: {', '.join(spec.choices)}", suggest(value, spec.choices))
            return None
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            out.error("wrong-type", path, f"{name} must be true or false, not {_type_name(value)}")
            return None
        return value
    if kind in ("number", "int", "money"):
        if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
            out.error("wrong-type", path, f"{name} must be {'an integer' if kind == 'int' else 'a number'}, not {_type_name(value)}")
            return None
        if kind == "int" and not isinstance(value, int):
            out.error("wrong-type", path, f"{name} must be an integer, not {value}")
            return None
        number = Decimal(value)
        if not number.is_finite():
            out.error("bad-value", path, f"{name} must be finite, not {value}")
            return None
        if kind == "money":
            if number < 0:
                out.error("bad-value", path, f"{name} = {value} yuan cannot be negative")
                return None
            if number >= MAX_MONEY:
                out.error("bad-value", path, f"{name} = {value} yuan is not a plausible amount (it must be below {MAX_MONEY:,} yuan)")
                return None
            if decimal_places(number) > 2:
                out.error("bad-value", path, f"{name} = {value} has more than two decimals (money is yuan to the fen)")
                return None
            return int(number * 100)  # fen, exactly
        if abs(number) >= MAX_NUMBER:
            out.error("bad-value", path, f"{name} = {value} is not a plausible value (it must be below {MAX_NUMBER:,})")
            return None
        if kind == "number" and decimal_places(number) > spec_decimals(spec):
            out.error("bad-value", path, f"{name} = {value} has more than {spec_decimals(spec)} decimals "
                                         "(settlement works with exact decimals to that precision)")
            return None
        low_ok = spec.low is None or (number > Decimal(str(spec.low)) if spec.low_open else number >= Decimal(str(spec.low)))
        high_ok = spec.high is None or (number < Decimal(str(spec.high)) if spec.high_open else number <= Decimal(str(spec.high)))
        if not (low_ok and high_ok):
            out.error("bad-value", path, f"{name} = {value} is out of range: it must be {range_text(spec)}")
            return None
        return value if kind == "int" else number
    if kind in ("codes", "list"):
        if kind == "codes" and isinstance(value, str):
            return value  # a CSV path, read in _resolve_files
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
            wanted = "a list of codes or a CSV path" if kind == "codes" else "a list of codes"
            out.error("wrong-type", path, f"{name} must be {wanted}, not {_type_name(value)}")
            return None
        return [str(v) for v in value]
    if kind == "per_day":
        if isinstance(value, str):
            return value
        if not isinstance(value, dict):
            out.error("wrong-type", path, f"{name} must be a table of group = value, or a CSV path, not {_type_name(value)}")
            return None
        table = {}
        for code, per_day in value.items():
            number = _scalar(Spec("number", "", low=0.0, low_open=True), per_day, (*path, code), out)
            if number is not None:
                table[str(code)] = number
        return table
    raise AssertionError(kind)


def _level_key(key: str, path: tuple, out: Collector):
    if key == "default":
        return key
    if key.isdigit():
        return int(key)
    out.error("unknown-key", (*path, key), f"`{dotted((*path, key))}`: a hospital level is 1, 2, 3 (or another integer) or `default`")
    return None


INSURANCE_WORDS = ("employee", "resident", "all")


def _insurance_key(key: str, path: tuple, out: Collector) -> bool:
    """Insurance keys: employee, resident, all, or a code of digits as the input gives it (e.g. 320)."""
    if key in INSURANCE_WORDS or key.isdigit():
        return True
    out.error("unknown-key", (*path, key), f"`{dotted((*path, key))}`: an insurance type is employee, resident, "
              "all, or a numeric code as written in the input", suggest(key, INSURANCE_WORDS))
    return False


def _check_value(spec: Spec, value, path: tuple, out: Collector):
    if spec.by is None:
        return _scalar(spec, value, path, out)
    if spec.by == "level":
        if not isinstance(value, dict):
            number = _scalar(spec, value, path, out)
            return None if number is None else {"default": number}
        table = {}
        for key, item in value.items():
            level = _level_key(key, path, out)
            number = _scalar(spec, item, (*path, key), out)
            if level is not None and number is not None:
                table[level] = number
        return table
    if spec.by == "insurance":
        if not isinstance(value, dict):
            number = _scalar(spec, value, path, out)
            return None if number is None else {"all": number}
        return {str(key): _scalar(spec, item, (*path, key), out) for key, item in value.items()
                if _insurance_key(str(key), path, out)}
    if spec.by == "insurance/level":
        by_level = Spec(spec.kind, spec.doc, low=spec.low, high=spec.high, low_open=spec.low_open, by="level",
                          decimals=spec.decimals)
        if not isinstance(value, dict):
            return {"all": _check_value(by_level, value, path, out)}
        if all(k.isdigit() or k == "default" for k in value):  # levels only: every insurance type
            return {"all": _check_value(by_level, value, path, out)}
        return {str(key): _check_value(by_level, item, (*path, key), out) for key, item in value.items()
                if _insurance_key(str(key), path, out)}
    raise AssertionError(spec.by)


def dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path).replace(".[].", "[].")


def range_text(spec: Spec) -> str:
    """The allowed range of a number, e.g. `≥ 0, < 1`."""
    low = "" if spec.low is None else f"{'>' if spec.low_open else '≥'} {spec.low:g}"
    high = "" if spec.high is None else f"{'<' if spec.high_open else '≤'} {spec.high:g}"
    return ", ".join(x for x in (low, high) if x)
