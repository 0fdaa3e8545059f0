"""Read and validate a screens file (TOML): `load_screens(path)` → `Screens`.

The checks are the settlement policy's (grouper.tomlcheck: the same collector, key walker and
messages, positions from grouper.tomlpos), so a mistake is reported at file:line:column
with the line, a caret and a hint. Every problem is collected and raised once as a `ScreensError`.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from ..errors import Diagnostic, InputError, SchemeError, Span, with_source
from ..tomlcheck import Collector, Layer, Section, check_section, suggest
from ..tomlpos import key_positions
from .schema import LOGICS, RULE_KEYS, SCHEMA, Logic



def default_screens_path() -> Path:
    """The shipped screens file (tables/screens/default.toml, installed as grouper.tables)."""
    from importlib import resources

    return Path(str(resources.files("grouper.tables").joinpath("screens", "default.toml")))


class ScreensError(SchemeError):
    """A screens file failed validation; `diagnostics` point at file:line:column (exit code 1, like a policy)."""


@dataclass(frozen=True)
class Rule:
    code: str
    name: str
    logic: str
    level: str
    stage: str
    source: str
    params: dict
    evidence: tuple[str, ...]
    enabled: bool = True

    @property
    def spec(self) -> Logic:
        return LOGICS[self.logic]


@dataclass(frozen=True)
class Screens:
    name: str
    rules: tuple[Rule, ...]
    scores: dict | None     # the 记分 schedule, None when the file has no [scores]
    path: Path
    values: dict

    def rule(self, code: str) -> Rule:
        return next(r for r in self.rules if r.code == code)


def _read(path: Path) -> Layer:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:  # a missing or unreadable input file: exit 3, like any other (not a screens error, 1)
        problem = "no such screens file" if not path.exists() else f"cannot read the screens file ({exc.strerror or exc})"
        raise InputError(f"{path}: {problem}") from None
    try:
        data = tomllib.loads(text, parse_float=Decimal)
    except tomllib.TOMLDecodeError as exc:
        import re

        found = re.search(r"at line (\d+), column (\d+)", str(exc))
        line, column = (int(found[1]), int(found[2])) if found else (1, 1)
        message = str(getattr(exc, "msg", exc)).split(" (at line")[0]
        raise ScreensError([with_source(Diagnostic("syntax", "error", f"not valid TOML: {message}",
                                                   Span(str(path), line, column, line, column + 1)), text)]) from None
    return Layer(path, text, data, key_positions(text))


def load_screens(path: str | Path | None = None) -> Screens:
    """Parse and validate a screens file (default: the shipped tables/screens/default.toml); raises ScreensError."""
    layer = _read(Path(path) if path is not None else default_screens_path())
    data = layer.data
    out = Collector([layer])
    values = check_section(Section(SCHEMA.doc, {k: v for k, v in SCHEMA.keys.items() if k != "rule"}),
                            {k: v for k, v in data.items() if k != "rule"}, (), out)
    raw_rules = data.get("rule", [])
    rules = []
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        out.error("wrong-type", ("rule",), "`rule` must be an array of tables ([[rule]])")
        raw_rules = []
    elif not raw_rules:
        out.error("missing-key", ("rule",), "the screens file has no [[rule]]")
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_rules):
        code = raw.get("code")
        if isinstance(code, str) and code in seen:
            out.error("bad-value", ("rule", i, "code"), f"rule code {code!r} is used twice (first in rule {seen[code] + 1})")
        elif isinstance(code, str):
            seen[code] = i
        rule = _check_rule(raw, i, out)
        if rule is not None:
            rules.append(rule)
    scores = values["scores"] if "scores" in data else None
    if scores and not out.found and not scores["warn_at"] <= scores["pause_at"] <= scores["stop_at"]:
        out.error("bad-value", ("scores",), "the score thresholds must grow: warn_at <= pause_at <= stop_at")
    if out.found:
        raise ScreensError(out.found)
    return Screens(values["screens"]["name"], tuple(rules), scores, layer.path, values)


def _check_rule(raw: dict, i: int, out: Collector) -> Rule | None:
    path = ("rule", i)
    logic = raw.get("logic")
    spec = LOGICS.get(logic) if isinstance(logic, str) else None
    keys = dict(RULE_KEYS)
    keys["params"] = Section("the logic's parameters", spec.params if spec else {})
    before = len(out.found)
    given = dict(raw)
    if spec is None:
        given.pop("params", None)  # the logic is unknown (reported below): its parameters cannot be checked
    values = check_section(Section("a rule", keys), given, path, out)
    if spec is None:
        return None
    evidence = values["evidence"]
    if evidence is not None:
        known = (*spec.evidence, "id", "drg", "cost", "los", "hospital", "dept", "doctor")
        for j, name in enumerate(evidence):
            if name not in known:
                out.error("unknown-field", (*path, "evidence", j), f"rule {values['code']!r}: `{name}` is not evidence that "
                          f"logic {logic!r} can show", suggest(name, known) or f"known: {', '.join(known)}")
        evidence = tuple(evidence)
    if logic == "mcc_upcoding" and len(out.found) == before and not values["params"]["alternative_suffixes"]:
        out.error("bad-value", (*path, "params", "alternative_suffixes"), f"rule {values['code']!r}: "
                  "`alternative_suffixes` names no group to compare the MCC cases with", 'e.g. ["5", "3"]')
    if len(out.found) > before:
        return None
    return Rule(values["code"], values["name"], logic, values["level"], values["stage"], values["source"],
                values["params"], evidence or spec.evidence, values["enabled"])
