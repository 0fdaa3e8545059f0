"""Read and validate a settlement policy file (TOML).

`load_policy(path)` parses the file (and the base files it `extends`), checks every key against
`grouper.payment.policy_schema.SCHEMA` and the rules between keys, and returns a `Policy`: the merged
values with every default filled in, normalised (numbers as Decimal, money as integer fen,
per-level tables as {level: value}). Every problem is collected and raised once as a
`PolicyError` whose diagnostics point at the file, line and column of the offending key.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import polars as pl

from ..errors import Diagnostic, InputError, PolicyError, Span, with_source
from . import policy_schema as S
from ..tomlcheck import MAX_NUMBER, Collector, Layer, check_section, decimal_places
from ..tomlpos import key_positions


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


def _read_layers(path: Path, seen: tuple[Path, ...] = ()) -> list[Layer]:
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
    layer = Layer(path, text, data, key_positions(text))
    base = data.get("policy", {}).get("extends") if isinstance(data.get("policy"), dict) else None
    if not isinstance(base, str):
        return [layer]
    base_path = (path.parent / base).resolve()
    if base_path in seen or base_path == path.resolve():
        collector = Collector([layer])
        collector.error("cycle", ("policy", "extends"), f"`policy.extends` = {base!r} makes the policy extend itself")
        raise PolicyError(collector.found)
    if not base_path.exists():
        collector = Collector([layer])
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
    collector = Collector(layers)
    values = check_section(S.SCHEMA, merged, (), collector)
    if not collector.found:
        _check_relations(values, collector)
    if not collector.found:
        _resolve_files(values, collector)
    if collector.found:
        raise PolicyError(collector.found)
    return Policy(values, tuple(layer.path for layer in layers))


# -- key by key -----------------------------------------------------------------------------

# -- between keys ---------------------------------------------------------------------------

def level_value(table: dict, level):
    """The value for a hospital level: its own entry, else `default`, else None."""
    return table.get(level, table.get("default"))


def _check_relations(v: dict, out: Collector) -> None:
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
            if decimal_places(amount) > 2:
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


def _policy_dir(out: Collector, path: tuple) -> Path:
    return out.layer_of(path).path.parent


def _read_csv(out: Collector, path: tuple, file: str, columns: tuple[str, ...]) -> pl.DataFrame | None:
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


def _numbers(out: Collector, path: tuple, frame: pl.DataFrame, key: str, column: str) -> dict[str, Decimal] | None:
    table = {}
    for code, text in frame.select(key, column).iter_rows():
        try:
            number = Decimal(str(text).strip())
            if not number.is_finite() or number <= 0 or number >= MAX_NUMBER or decimal_places(number) > 6:
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


def _resolve_files(v: dict, out: Collector) -> None:
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
