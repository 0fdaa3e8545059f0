"""Policy files: the shipped examples load; every wrong key is reported at its file and line."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from grouper.errors import PolicyError
from grouper.payment import policy_schema as schema
from grouper.payment.policy import load_policy
from grouper.tomlpos import key_positions

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "tables" / "policies").glob("*.toml"))


def errors_of(path: Path):
    with pytest.raises(PolicyError) as caught:
        load_policy(path)
    return caught.value.errors


def write(tmp_path: Path, text: str, name: str = "p.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MINIMAL = '[policy]\nname = "x"\nmethod = "points"\n\n[budget]\nannual = { all = 100.00 }\n'


def test_examples_load():
    assert len(EXAMPLES) == 3
    methods = sorted(load_policy(p)["policy"]["method"] for p in EXAMPLES)
    assert methods == ["dip", "points", "rate"]        # dip-example.toml: the DIP demo's policy (grouper/dip)


def test_defaults_are_filled(tmp_path):
    p = load_policy(write(tmp_path, MINIMAL))
    assert p["cases"]["high"]["threshold"] == {3: 3, 2: 2, 1: 2}
    assert p["budget"]["reserve_share"] == schema.Decimal("0.05")
    assert p["budget"]["annual"] == {"all": 10_000}  # fen


def test_unknown_key_names_key_line_and_suggests(tmp_path):
    text = MINIMAL + "\n[cases.high]\nthresold = 3\n"
    (error,) = errors_of(write(tmp_path, text))
    assert error.code == "unknown-key"
    assert "`cases.high.thresold`" in error.message and error.span.line == 9 and error.span.column == 1
    assert "threshold" in error.hint
    assert "thresold = 3" in error.render() and "^" in error.render()


@pytest.mark.parametrize("extra, code, line, key", [
    ('reserve_share = "5%"', "wrong-type", 7, "budget.reserve_share"),
    ("reserve_share = 1.5", "bad-value", 7, "budget.reserve_share"),
    ("reserve_share = true", "wrong-type", 7, "budget.reserve_share"),
    ("fee_for_service_inside = 1", "wrong-type", 7, "budget.fee_for_service_inside"),
])
def test_wrong_type_and_impossible_value(tmp_path, extra, code, line, key):
    (error,) = errors_of(write(tmp_path, MINIMAL + extra + "\n"))
    assert (error.code, error.span.line) == (code, line) and f"`{key}`" in error.message


@pytest.mark.parametrize("text, code, key", [
    ('[policy]\nname = "x"\nmethod = "point"\n[budget]\nannual = 1.00\n', "bad-value", "policy.method"),
    ('[policy]\nname = "x"\nmethod = "points"\n[budget]\nannual = 1.001\n', "bad-value", "budget.annual"),
    ('[policy]\nname = "x"\nmethod = "points"\n[budget]\nannual = -1.00\n', "bad-value", "budget.annual"),
    ('[policy]\nname = "x"\nmethod = "points"\n', "missing-key", "budget.annual"),
    ('[policy]\nname = "x"\nmethod = "rate"\n', "missing-key", "rate.base_rate"),
    ('[policy]\nmethod = "rate"\n[rate]\nbase_rate = 1\n', "missing-key", "policy.name"),
])
def test_value_errors(tmp_path, text, code, key):
    errors = errors_of(write(tmp_path, text))
    assert any(e.code == code and key in e.message for e in errors), [e.render() for e in errors]


def test_low_threshold_must_be_below_high(tmp_path):
    text = MINIMAL + "[cases.high]\nthreshold = { 3 = 3.0, 2 = 2.0 }\n[cases.low]\nthreshold = { 3 = 0.4, 2 = 2.5 }\n"
    (error,) = errors_of(write(tmp_path, text))
    assert error.code == "bad-value" and "level 2" in error.message and error.span.line == 10


def test_bands_must_rise_and_only_the_last_may_be_open(tmp_path):
    text = MINIMAL + "[[sharing.surplus]]\nretain = 1.0\n[[sharing.surplus]]\nupto = 0.1\nretain = 0.5\n"
    (error,) = errors_of(write(tmp_path, text))
    assert "only the last" in error.message and error.span.line == 7


def test_missing_csv_file_is_reported_at_its_key(tmp_path):
    (error,) = errors_of(write(tmp_path, MINIMAL + '[coefficients]\nhospitals = "nope.csv"\n'))
    assert "`coefficients.hospitals`" in error.message and error.span.line == 8


def test_csv_values_are_checked(tmp_path):
    (tmp_path / "h.csv").write_text("hospital,coefficient\nH1,abc\n")
    (error,) = errors_of(write(tmp_path, MINIMAL + '[coefficients]\nhospitals = "h.csv"\n'))
    assert "H1" in error.message and "'abc'" in error.message


def test_syntax_error_has_a_line(tmp_path):
    (error,) = errors_of(write(tmp_path, MINIMAL + "[cases\n"))
    assert error.code == "syntax" and error.span.line == 7


def test_extends_overrides_and_reports_the_right_file(tmp_path):
    write(tmp_path, MINIMAL + "[cases.high]\nthreshold = 3\n", "base.toml")
    reform = write(tmp_path, '[policy]\nextends = "base.toml"\nname = "reform"\n[cases.high]\nthreshold = 4\n', "reform.toml")
    p = load_policy(reform)
    assert (p.name, p["cases"]["high"]["threshold"], p["budget"]["annual"]) == ("reform", {"default": 4}, {"all": 10_000})
    assert [f.name for f in p.files] == ["base.toml", "reform.toml"]
    write(tmp_path, '[policy]\nextends = "base.toml"\n[cases.low]\nthreshold = "x"\n', "bad.toml")
    (error,) = errors_of(tmp_path / "bad.toml")
    assert error.span.file.endswith("bad.toml") and error.span.line == 4
    write(tmp_path, '[policy]\nextends = "loop.toml"\n', "loop.toml")
    assert errors_of(tmp_path / "loop.toml")[0].code == "cycle"


def test_key_positions_cover_every_form():
    text = ('a = 1  # c\n"q.k" = { x = 1, y = [ { z = 2 },\n  { z = 3 } ] }\n[t . u]\nv.w = """x\n"""\n'
            "[[arr]]\nk = 1\n[[arr]]\nk = '2'\n[arr.sub]\nm = 1979-05-27 07:32:00\nn = 1\n")
    pos = key_positions(text)
    assert pos[("a",)] == (1, 1) and pos[("q.k", "x")] == (2, 11) and pos[("q.k", "y", 1, "z")] == (3, 5)
    assert pos[("t", "u", "v", "w")] == (5, 3) and pos[("arr", 0, "k")] == (8, 1) and pos[("arr", 1, "k")] == (10, 1)
    assert pos[("arr", 1, "sub", "m")] == (12, 1) and pos[("arr", 1, "sub", "n")] == (13, 1)


def _key_lines(text: str):
    """(line number, dotted table, key, value) of every `key = value` line of a policy file."""
    table = ""
    for number, line in enumerate(text.splitlines(), 1):
        header = re.match(r"\s*\[\[?([^\]]+)\]\]?", line)
        if header:
            table = header[1].strip()
            continue
        found = re.match(r"\s*([A-Za-z_][\w-]*)\s*=\s*(.*?)\s*(#.*)?$", line)
        if found:
            yield number, table, found[1], found[2]


CASES = [(path, n, table, key, value) for path in EXAMPLES for n, table, key, value in _key_lines(path.read_text(encoding="utf-8"))]


@pytest.mark.parametrize("path, number, table, key, value", CASES,
                         ids=[f"{c[0].stem}:{c[1]}:{c[3]}" for c in CASES])
def test_any_single_wrong_key_is_named_at_its_line(tmp_path, path, number, table, key, value):
    """Misspell each key of the shipped examples in turn, then give it a value of the wrong type."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for csv in path.parent.glob("*.csv"):
        (tmp_path / csv.name).write_bytes(csv.read_bytes())
    misspelt = list(lines)
    misspelt[number - 1] = lines[number - 1].replace(key, key + "x", 1)
    errors = errors_of(write(tmp_path, "\n".join(misspelt) + "\n"))
    assert any(e.span.line == number and f"{key}x`" in e.message for e in errors), [e.render() for e in errors]
    wrong = "7" if value.startswith('"') else '"oops"'
    retyped = list(lines)
    retyped[number - 1] = lines[number - 1].replace(value, wrong, 1)
    errors = errors_of(write(tmp_path, "\n".join(retyped) + "\n"))
    assert any(e.span.line == number and f"{key}`" in e.message for e in errors), [e.render() for e in errors]


def test_docs_document_every_key():
    readme = (ROOT / "docs" / "settlement.md").read_text(encoding="utf-8")
    missing = [schema.dotted(p) for p, _ in schema.walk() if f"`{schema.dotted(p)}`" not in readme]
    assert not missing
