"""Read and validate a settlement policy file (TOML).

`load_policy(path)` parses the file (and the base files it `extends`), checks every key against
`grouper.settle.schema.SCHEMA` and the rules between keys, and returns a `Policy`: the merged
values with every default filled in, normalised (numbers as Decimal, money as integer fen,
per-level tables as {level: value}). Every problem is collected and raised once as a
`PolicyError` whose diagnostics point at the file, line and column of the offending key.
"""
from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from ..errors import Diagnostic, InputError, PolicyError, Span, with_source
from . import schema as S
from .tomlpos import key_positions, position_of


@dataclass(frozen=True)
class Policy:
    """A validated policy. `values` is the full key tree with defaults; `files` the policy files, base first."""

    values: dict
    files: tuple[Path, ...]

    def __getitem__(self, key: str):
        return self.values[key]

    @property
    def name(self) -> str:
        return self.values["policy"]["name"]

    @property
    def method(self) -> str:
        """How money is computed: "points" or "rate". A DIP policy (`method = "dip"`) pays by points."""
        method = self.values["policy"]["method"]
        return "points" if method == "dip" else method

    @property
    def is_dip(self) -> bool:
        """Base points come from a DIP pack (grouper.dip.settle), not from a weights table."""
        return self.values["policy"]["method"] == "dip"

    @property
    def path(self) -> Path:
        return self.files[-1]


@dataclass
class _Layer:
    path: Path
    text: str
    data: dict
    positions: dict


class _Collector:
    """Diagnostics with positions: a key path is located in the layer that wrote it (the last one)."""

    def __init__(self, layers: list[_Layer]):
        self.layers = layers
        self.found: list[Diagnostic] = []

    def layer_of(self, path: tuple) -> _Layer:
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


def _read_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[_Layer]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:  # e.g. saved as GBK: located like any other policy error
        data = path.read_bytes()
        line = data[:exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PolicyError([with_source(Diagnostic(
            "encoding", "error", f"not UTF-8 text (byte 0x{data[exc.start]:02x}); a policy file is UTF-8",
            Span(str(path), line, column, line, column + 1), "save it as UTF-8 (e.g. in Notepad: 另存为 → 编码 UTF-8)"),
            data.decode("utf-8", errors="replace"))]) from None
    except OSError as exc:
        if not seen:  # the file named on the command line: a missing input, exit 3 like any other
            problem = "no such policy file" if not path.exists() else f"cannot read the policy file ({exc.strerror or exc})"
            raise InputError(f"{path}: {problem}") from None
        raise PolicyError([Diagnostic("unreadable-policy", "error", f"cannot read policy file {path}: {exc.strerror or exc}",
                                      Span(str(path), 1, 1))]) from None
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        line, column = getattr(exc, "lineno", None), getattr(exc, "colno", None)
        if line is None:  # Python < 3.14 keeps the position only in the message: "... (at line 3, column 7)"
            import re

            found = re.search(r"at line (\d+), column (\d+)", str(exc))
            line, column = (int(found[1]), int(found[2])) if found else (1, 1)
        message = str(getattr(exc, "msg", exc)).split(" (at line")[0]
        raise PolicyError([with_source(Diagnostic("syntax", "error", f"not valid TOML: {message}",
                                                  Span(str(path), line, column, line, column + 1)), text)]) from None
    layer = _Layer(path, text, data, key_positions(text))
    base = data.get("policy", {}).get("extends") if isinstance(data.get("policy"), dict) else None
    if not isinstance(base, str):
        return [layer]
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        collector = _Collector([layer])
        collector.error("cycle", ("policy", "extends"), f"`policy.extends` = {base!r} makes the policy extend itself")
        raise PolicyError(collector.found)
    if not base_path.exists():
        collector = _Collector([layer])
        collector.error("bad-value", ("policy", "extends"), f"`policy.extends`: no policy file {base_path}")
        raise PolicyError(collector.found)
    return [*_read_layers(base_path, (*seen, path.resolve())), layer]


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def load_policy(path: str | Path) -> Policy:
    """Parse, merge (`policy.extends`), validate and normalise a policy file; raises PolicyError."""
    layers = _read_layers(Path(path))
    merged: dict = {}
    for layer in layers:
        merged = _merge(merged, layer.data)
    merged.get("policy", {}).pop("extends", None) if isinstance(merged.get("policy"), dict) else None
    collector = _Collector(layers)
    values = _check_section(S.SCHEMA, merged, (), collector)
    if not collector.found:
        _check_relations(values, collector)
    if not collector.found:
        _resolve_files(values, collector)
    if collector.found:
        raise PolicyError(collector.found)
    return Policy(values, tuple(layer.path for layer in layers))


# -- key by key -----------------------------------------------------------------------------

MAX_MONEY = 10**13   # yuan: no budget or amount is that large (and fen stay far inside Int64)
MAX_NUMBER = 10**9   # any other number (scale, rates, days): larger is a typing slip, refused


def _decimals(number: Decimal) -> int:
    return max(0, -number.normalize().as_tuple().exponent)


def spec_decimals(spec: S.Spec) -> int:
    """How many decimals a number key may have: its `decimals`, or six (the engine's unit)."""
    return spec.decimals if spec.decimals is not None else 6


def _type_name(value) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a {type(value).__name__}"


def _suggest(name: str, known) -> str | None:
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"did you mean `{close[0]}`?" if close else None


def _check_section(section: S.Section, data, path: tuple, out: _Collector) -> dict:
    if not isinstance(data, dict):
        out.error("wrong-type", path, f"`{S.dotted(path)}` must be a table, not {_type_name(data)}")
        data = {}
    for key in data:
        if key not in section.keys:
            where = f"in [{S.dotted(path)}]" if path else "at the top level"
            out.error("unknown-key", (*path, key), f"unknown key `{S.dotted((*path, key))}` {where}",
                      _suggest(key, section.keys) or f"known keys: {', '.join(section.keys)}")
    values = {}
    for name, node in section.keys.items():
        sub = (*path, name)
        if isinstance(node, S.Section):
            if node.required and name not in data:
                out.error("missing-key", sub, f"missing table [{S.dotted(sub)}]")
            values[name] = _check_section(node, data.get(name, {}), sub, out)
        elif isinstance(node, S.Bands):
            values[name] = _check_bands(node, data.get(name, []), sub, out)
        elif name in data:
            values[name] = _check_value(node, data[name], sub, out)
        elif node.default is S.REQUIRED:
            out.error("missing-key", sub, f"missing key `{S.dotted(sub)}`: {node.doc}")
            values[name] = None
        else:
            values[name] = _normalise_default(node)
    return values


def _check_bands(bands: S.Bands, data, path: tuple, out: _Collector) -> list[dict]:
    if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
        out.error("wrong-type", path, f"`{S.dotted(path)}` must be an array of tables ([[{S.dotted(path)}]])")
        return []
    return [_check_section(S.Section(bands.doc, bands.keys), item, (*path, i), out) for i, item in enumerate(data)]


def _normalise_default(spec: S.Spec):
    value = spec.default
    if spec.by == "level" and value is not None:
        return dict(value) if isinstance(value, dict) else {"default": value}
    if spec.kind in ("codes", "list") and value is not None:
        return list(value)
    return value


def _scalar(spec: S.Spec, value, path: tuple, out: _Collector):
    """Check one scalar against its spec; returns the normalised value (None after an error)."""
    name = f"`{S.dotted(path)}`"
    kind = spec.kind
    if kind in ("str", "path", "choice"):
        if not isinstance(value, str):
            out.error("wrong-type", path, f"{name} must be a string, not {_type_name(value)}")
            return None
        if kind == "choice" and value not in spec.choices:
            out.error("bad-value", path, f"{name} = {value!r} is not one of: {', '.join(spec.choices)}", _suggest(value, spec.choices))
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
            if _decimals(number) > 2:
                out.error("bad-value", path, f"{name} = {value} has more than two decimals (money is yuan to the fen)")
                return None
            return int(number * 100)  # fen, exactly
        if abs(number) >= MAX_NUMBER:
            out.error("bad-value", path, f"{name} = {value} is not a plausible value (it must be below {MAX_NUMBER:,})")
            return None
        if kind == "number" and _decimals(number) > spec_decimals(spec):
            out.error("bad-value", path, f"{name} = {value} has more than {spec_decimals(spec)} decimals "
                                         "(settlement works with exact decimals to that precision)")
            return None
        low_ok = spec.low is None or (number > Decimal(str(spec.low)) if spec.low_open else number >= Decimal(str(spec.low)))
        high_ok = spec.high is None or (number < Decimal(str(spec.high)) if spec.high_open else number <= Decimal(str(spec.high)))
        if not (low_ok and high_ok):
            out.error("bad-value", path, f"{name} = {value} is out of range: it must be {S.range_text(spec)}")
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
            number = _scalar(S.Spec("number", "", low=0.0, low_open=True), per_day, (*path, code), out)
            if number is not None:
                table[str(code)] = number
        return table
    raise AssertionError(kind)


def _level_key(key: str, path: tuple, out: _Collector):
    if key == "default":
        return key
    if key.isdigit():
        return int(key)
    out.error("unknown-key", (*path, key), f"`{S.dotted((*path, key))}`: a hospital level is 1, 2, 3 (or another integer) or `default`")
    return None


INSURANCE_WORDS = ("employee", "resident", "all")


def _insurance_key(key: str, path: tuple, out: _Collector) -> bool:
    """Insurance keys: employee, resident, all, or a code of digits as the input gives it (e.g. 320)."""
    if key in INSURANCE_WORDS or key.isdigit():
        return True
    out.error("unknown-key", (*path, key), f"`{S.dotted((*path, key))}`: an insurance type is employee, resident, "
              "all, or a numeric code as written in the input", _suggest(key, INSURANCE_WORDS))
    return False


def _check_value(spec: S.Spec, value, path: tuple, out: _Collector):
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
        by_level = S.Spec(spec.kind, spec.doc, low=spec.low, high=spec.high, low_open=spec.low_open, by="level",
                          decimals=spec.decimals)
        if not isinstance(value, dict):
            return {"all": _check_value(by_level, value, path, out)}
        if all(k.isdigit() or k == "default" for k in value):  # levels only: every insurance type
            return {"all": _check_value(by_level, value, path, out)}
        return {str(key): _check_value(by_level, item, (*path, key), out) for key, item in value.items()
                if _insurance_key(str(key), path, out)}
    raise AssertionError(spec.by)


# -- between keys ---------------------------------------------------------------------------

def level_value(table: dict, level):
    """The value for a hospital level: its own entry, else `default`, else None."""
    return table.get(level, table.get("default"))


def _check_relations(v: dict, out: _Collector) -> None:
    method = v["policy"]["method"]
    if method in ("points", "dip") and not v["budget"]["annual"]:
        out.error("missing-key", ("budget", "annual"), "the points method needs `budget.annual` (the budget that the point value shares out)")
    if method == "rate" and not v["rate"]["base_rate"]:
        out.error("missing-key", ("rate", "base_rate"), "the rate method needs `rate.base_rate` (yuan per unit of RW)")
    if method == "rate" and v["points"]["budget_point_value"] is not None:
        out.error("bad-value", ("points", "budget_point_value"), "`points.budget_point_value` applies to the points method only")
    if v["budget"]["annual"] and "all" in v["budget"]["annual"] and len(v["budget"]["annual"]) > 1:
        out.error("bad-value", ("budget", "annual", "all"), "`budget.annual.all` pools every insurance type: it cannot be combined with other pools")
    high, low = v["cases"]["high"]["threshold"], v["cases"]["low"]["threshold"]
    for level in sorted({*high, *low}, key=str):
        h, lo = level_value(high, level), level_value(low, level)
        if h is not None and lo is not None and lo >= h:
            key = level if level in low else "default"
            out.error("bad-value", ("cases", "low", "threshold", *( () if key == "default" and "default" not in low else (str(key),))),
                      f"the low threshold {lo} is not below the high threshold {h} for level {level}")
    per_day = v["cases"]["per_diem"]["per_day"]
    if method == "rate" and isinstance(per_day, dict):
        for code, amount in per_day.items():
            if _decimals(amount) > 2:
                out.error("bad-value", ("cases", "per_diem", "per_day", code),
                          f"`cases.per_diem.per_day.{code}` = {amount}: under the rate method per_day is yuan per day, "
                          "at most two decimals")
    outliers = v["cases"]["outliers"]
    if outliers == "fixed_loss":
        if v["cases"]["high"]["fixed_loss"] is None:
            out.error("missing-key", ("cases", "high", "fixed_loss"), "`cases.outliers = \"fixed_loss\"` needs `cases.high.fixed_loss` (yuan)")
        if v["ratio"]["reference"] != "standard":
            out.error("bad-value", ("ratio", "reference"), "`cases.outliers = \"fixed_loss\"` compares the cost with the payment "
                                                           "standard: set `ratio.reference = \"standard\"`")
    elif v["cases"]["high"]["fixed_loss"] is not None:
        out.error("bad-value", ("cases", "high", "fixed_loss"), "`cases.high.fixed_loss` applies only to cases.outliers = \"fixed_loss\"")
    if v["cases"]["high"]["formula"] != "excess_cost" and outliers != "fixed_loss" and v["cases"]["high"]["marginal"] != Decimal(1):
        out.error("bad-value", ("cases", "high", "marginal"), "`cases.high.marginal` applies only to formula = \"excess_cost\" or outliers = \"fixed_loss\"")
    ex = v["cases"]["exclusions"]
    if ex["los_at_most"] is not None and ex["los_at_least"] is not None and ex["los_at_most"] >= ex["los_at_least"]:
        out.error("bad-value", ("cases", "exclusions", "los_at_least"),
                  f"`los_at_least` = {ex['los_at_least']} must be above `los_at_most` = {ex['los_at_most']} (else every stay is excluded)")
    for kind in ("surplus", "deficit"):
        bands = v["sharing"][kind]
        previous = Decimal(0)
        for i, band in enumerate(bands):
            upto = band["upto"]
            if upto is None and i != len(bands) - 1:
                out.error("bad-value", ("sharing", kind, i), f"only the last [[sharing.{kind}]] band may leave `upto` out")
            elif upto is not None and upto <= previous:
                out.error("bad-value", ("sharing", kind, i, "upto"), f"`upto` = {upto} must be above the previous band's end ({previous})")
            previous = upto if upto is not None else previous


def _policy_dir(out: _Collector, path: tuple) -> Path:
    return out.layer_of(path).path.parent


def _read_csv(out: _Collector, path: tuple, file: str, columns: tuple[str, ...]) -> pl.DataFrame | None:
    where = _policy_dir(out, path) / file
    try:
        frame = pl.read_csv(where, infer_schema=False)
    except (OSError, pl.exceptions.PolarsError) as exc:
        out.error("bad-value", path, f"`{S.dotted(path)}`: cannot read {where}: {exc}")
        return None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        out.error("bad-value", path, f"`{S.dotted(path)}`: {where} has no column {', '.join(missing)} (it has {', '.join(frame.columns)})")
        return None
    return frame


def _numbers(out: _Collector, path: tuple, frame: pl.DataFrame, key: str, column: str) -> dict[str, Decimal] | None:
    table = {}
    for code, text in frame.select(key, column).iter_rows():
        try:
            number = Decimal(str(text).strip())
            if not number.is_finite() or number <= 0 or number >= MAX_NUMBER or _decimals(number) > 6:
                raise ValueError
        except (ValueError, ArithmeticError):
            out.error("bad-value", path, f"`{S.dotted(path)}`: {key} {code}: {column} {text!r} is not a positive number "
                                            "of at most six decimals")
            return None
        if str(code) in table:
            out.error("bad-value", path, f"`{S.dotted(path)}`: {key} {code} is listed twice in the file: one row per {key}")
            return None
        table[str(code)] = number
    return table


def _resolve_files(v: dict, out: _Collector) -> None:
    """Read the CSV files the policy names, relative to the file that names them."""
    coef = v["coefficients"]
    for key, column in (("hospitals", "hospital"), ("drgs", "drg")):
        if coef[key] is not None:
            path = ("coefficients", key)
            frame = _read_csv(out, path, coef[key], (column, "coefficient"))
            coef[key] = None if frame is None else _numbers(out, path, frame, column, "coefficient")
    for path in (("basic_groups", "drgs"), ("cases", "exclusions", "drgs"), ("readmission", "exceptions")):
        holder = v
        for part in path[:-1]:
            holder = holder[part]
        if isinstance(holder[path[-1]], str):
            frame = _read_csv(out, path, holder[path[-1]], ("drg",))
            holder[path[-1]] = None if frame is None else frame["drg"].drop_nulls().to_list()
    per_diem = v["cases"]["per_diem"]
    if isinstance(per_diem["per_day"], str):
        path = ("cases", "per_diem", "per_day")
        frame = _read_csv(out, path, per_diem["per_day"], ("drg", "per_day"))
        per_diem["per_day"] = None if frame is None else _numbers(out, path, frame, "drg", "per_day")
