"""`grouper screen`: the screens file (refused at file:line with a hint), missing fields (rule skipped
with a warning naming the field), rows never dropped, keyed hashing, money, scores, the outputs."""
from __future__ import annotations

import json
import os
import re
import stat
from datetime import date

import polars as pl
import pytest

from grouper.cli import main
from grouper.screen.privacy import keyed_hash
from grouper.screen.run import screen
from grouper.screen.screens import ScreensError, default_screens_path, load_screens
from screen_helpers import cases, many, rule, screens_file

KEY = b"k" * 32


# ---- the screens file ------------------------------------------------------------------------------

def test_the_shipped_screens_file_is_valid_and_every_rule_has_a_source():
    screens = load_screens()
    assert screens.path == default_screens_path()
    codes = [r.code for r in screens.rules]
    assert len(codes) == len(set(codes)) >= 15
    assert all(r.source.strip() for r in screens.rules)
    kinds = {r.spec.kind for r in screens.rules}
    assert kinds == {"case", "stays", "providers"}
    assert screens.scores["pause_at"] == 9 and screens.scores["stop_at"] == 12


def _errors(path) -> list:
    with pytest.raises(ScreensError) as info:
        load_screens(path)
    return info.value.diagnostics


def test_unknown_logic_parameter_key_and_wrong_type_are_refused_at_file_line_with_a_hint(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[screens]\nname = "x"\n\n'
                    '[[rule]]\ncode = "A"\nname = "a"\nlogic = "readmision"\nlevel = "疑似"\nsource = "s"\n\n'
                    '[[rule]]\ncode = "B"\nname = "b"\nlogic = "readmission"\nlevel = "疑似"\nsource = "s"\n'
                    'evidnce = ["x"]\nparams = { days = "15", sam = "adrg" }\n', encoding="utf-8")
    found = {(d.code, d.span.line): d for d in _errors(path)}
    assert found[("bad-value", 7)].hint == "did you mean `readmission`?"            # unknown rule logic
    assert found[("unknown-key", 17)].hint == "did you mean `evidence`?"            # unknown key
    assert found[("unknown-key", 18)].hint == "did you mean `same`?"                # unknown parameter
    assert "must be an integer, not a string" in found[("wrong-type", 18)].message   # wrong-type threshold
    assert str(found[("wrong-type", 18)].span) == f"{path}:18:12"


def test_unknown_evidence_field_bad_level_and_duplicate_codes(tmp_path):
    path = screens_file(tmp_path / "s.toml",
                        rule("A", "long_stay", "min_los = 60") + 'evidence = ["los", "phone_number"]\n',
                        rule("A", "long_stay", level="违法"))
    messages = [d.render() for d in _errors(path)]
    assert any("`phone_number` is not evidence" in m for m in messages)
    assert any("'违法' is not one of: 疑似, 违规" in m for m in messages)
    assert any("rule code 'A' is used twice" in m for m in messages)


def test_threshold_out_of_range_and_score_thresholds_out_of_order(tmp_path):
    path = screens_file(tmp_path / "s.toml", rule("A", "provider_share", 'area = "mcc", percentile = 100'))
    assert any("out of range" in d.message for d in _errors(path))
    path = screens_file(tmp_path / "t.toml", rule("A", "long_stay"), scores="[scores]\npause_at = 14\n")
    assert any("warn_at <= pause_at <= stop_at" in d.message for d in _errors(path))
    path = screens_file(tmp_path / "u.toml", rule("A", "mcc_upcoding", "alternative_suffixes = []"))
    assert any("`alternative_suffixes` names no group" in d.message for d in _errors(path))
    path = screens_file(tmp_path / "v.toml", rule("A", "mcc_upcoding", "fence = -1, normal_range = -0.5"))
    assert sum("out of range" in d.message for d in _errors(path)) == 2


def test_cli_refuses_a_bad_screens_file_before_reading_data(tmp_path, capsys):
    path = screens_file(tmp_path / "s.toml", rule("A", "long_stay", "min_los = 6.5"))
    code = main(["screen", str(tmp_path / "nothing.parquet"), "--screens", path, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 1
    assert re.search(r"s\.toml:\d+:\d+: error\[wrong-type\]: `rule\.0\.params\.min_los` must be an integer", err)
    assert not (tmp_path / "out").exists()


# ---- missing fields, rows never dropped --------------------------------------------------------

def test_a_missing_field_skips_the_rule_with_a_warning_naming_it(tmp_path, capsys):
    frame = cases(*many(3)).drop("phone")
    path = screens_file(tmp_path / "s.toml", rule("PHONE", "shared_contact", 'field = "phone"'), rule("LONG", "long_stay"))
    frame.write_parquet(tmp_path / "g.parquet")
    assert main(["screen", str(tmp_path / "g.parquet"), "--screens", path, "-o", str(tmp_path / "out"), "-q"]) == 0
    err = capsys.readouterr().err
    assert "rule PHONE skipped" in err and "`phone`" in err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["skipped"] == [{"rule": "PHONE", "reason": summary["warnings"][0], "fields": ["phone"]}]
    assert [r["rule"] for r in summary["rules"]] == ["LONG"]


def test_cases_a_rule_cannot_judge_are_listed_with_the_reason(tmp_path):
    frame = cases({"los": None, "discharge_date": date(2024, 1, 3)}, {"los": 70}, {})
    result = screen(frame, load_screens(screens_file(tmp_path / "s.toml", rule("LONG", "long_stay"))), key=KEY)
    assert result.flags["id"].to_list() == ["C2"]
    assert result.unscreened.rows() == [("C1", "LONG", "missing los")]
    assert result.summary["rules"][0] | {} == {"rule": "LONG", "kind": "case", "level": "疑似", "findings": 1,
                                               "screened": 2, "not_screened": 1}


# ---- personal fields ---------------------------------------------------------------------------

def test_personal_fields_never_leave_in_clear(tmp_path):
    frame = cases(*many(5, phone="13912345678", address="某路1号"))
    path = screens_file(tmp_path / "s.toml", rule("PHONE", "shared_contact", 'field = "phone"'),
                        rule("ADDR", "shared_contact", 'field = "address"'))
    frame.write_parquet(tmp_path / "g.parquet")
    out = tmp_path / "out"
    assert main(["screen", str(tmp_path / "g.parquet"), "--screens", path, "-o", str(out), "-q", "--format", "csv"]) == 0
    text = "".join(p.read_text(encoding="utf-8") for p in out.iterdir() if p.suffix in (".csv", ".json"))
    assert "13912345678" not in text and "某路1号" not in text and "P1," not in text
    key = (out / "screen.key").read_bytes()
    assert len(key) == 32 and stat.S_IMODE(os.stat(out / "screen.key").st_mode) == 0o600
    flags = pl.read_csv(out / "flags.csv")
    assert flags["patient"][0] == keyed_hash(pl.Series(["P1"]), key)[0]


def test_a_supplied_key_gives_the_same_hashes_run_after_run(tmp_path):
    (tmp_path / "key").write_bytes(b"a regional secret key, 32 bytes!")
    frame = cases(*many(5, phone="13912345678"))
    frame.write_parquet(tmp_path / "g.parquet")
    path = screens_file(tmp_path / "s.toml", rule("PHONE", "shared_contact", 'field = "phone"'))
    hashes = []
    for run in ("a", "b"):
        args = ["screen", str(tmp_path / "g.parquet"), "--screens", path, "-o", str(tmp_path / run), "-q",
                "--key", str(tmp_path / "key")]
        assert main(args) == 0
        assert not (tmp_path / run / "screen.key").exists()
        hashes.append(pl.read_parquet(tmp_path / run / "flags.parquet")["evidence"].to_list())
    assert hashes[0] == hashes[1]
    other = keyed_hash(pl.Series(["13912345678"]), b"another key of at least 16 bytes")[0]
    assert other not in hashes[0][0]


def test_a_short_key_is_refused(tmp_path, capsys):
    (tmp_path / "key").write_bytes(b"short")
    cases(*many(2)).write_parquet(tmp_path / "g.parquet")
    assert main(["screen", str(tmp_path / "g.parquet"), "-o", str(tmp_path / "o"), "--key", str(tmp_path / "key")]) == 3
    assert "too short" in capsys.readouterr().err


# ---- money, rankings, scores -------------------------------------------------------------------

def test_money_rankings_and_scores(tmp_path):
    frame = cases(*many(3, drg="XA15", cost=100_000, los=5, doctor="D1", hospital="H1"),
                  *many(2, drg="XA11", cost=90_000, los=4, fund_paid=100_000, doctor="D2", hospital="H2"),
                  {"los": 70, "doctor": "D2", "hospital": "H2"})
    screens = load_screens(screens_file(
        tmp_path / "s.toml", rule("UP", "mcc_upcoding", 'min_group_cases = 3, within = "none"'), rule("LONG", "long_stay", level="违规"),
        scores="[scores]\nviolation_points = 3\nsuspect_points = 1\nwarn_at = 2\npause_at = 4\nstop_at = 6\n"))
    weights = pl.DataFrame({"drg": ["XA11", "XA15"], "weight": [2.0, 1.0]})
    result = screen(frame, screens, key=KEY, weights=weights)
    money = result.money.select("rule", "findings", "paid", "alternative", "at_stake").rows()
    assert money == [("UP", 2, 200_000, 100_000, 100_000), ("LONG", 1, 80_000, 0, 0)]
    assert result.hospitals.select("rank", "hospital", "flagged_cases", "at_stake").rows() == [
        (1, "H2", 3, 100_000), (2, "H1", 0, 0)]
    assert result.scores.select("doctor", "points", "status").rows() == [("D2", 5, "暂停 pause")]


def test_settled_payment_is_what_a_case_was_paid(tmp_path):
    frame = cases(*many(3, drg="XA15", cost=100_000, los=5), {"drg": "XA11", "cost": 90_000, "los": 4})
    screens = load_screens(screens_file(tmp_path / "s.toml", rule("UP", "mcc_upcoding", 'min_group_cases = 3, within = "none"')))
    payment = pl.Series([1, 2, 3, 400_000])
    result = screen(frame, screens, key=KEY, weights=pl.DataFrame({"drg": ["XA11", "XA15"], "weight": [2.0, 1.0]}),
                    payment=payment)
    assert result.flags.select("paid", "alternative", "at_stake").row(0) == (400_000, 200_000, 200_000)


def test_cli_end_to_end_on_a_planted_history_with_the_cases_beside(tmp_path, capsys):
    history, grouped, out = tmp_path / "h.parquet", tmp_path / "g.parquet", tmp_path / "out"
    assert main(["synth", "history", "--hospitals", "10", "--years", "2", "--cases", "20000", "--plant-anomalies",
                 "-o", str(history), "-q"]) == 0
    assert {"doctor", "phone", "address", "planted"} <= set(pl.read_parquet_schema(history))
    assert main(["group", str(history), "-o", str(grouped), "--carry", "-q"]) == 0
    assert main(["screen", str(grouped), "--cases", str(history), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "SPLIT_STAY" in err and "screens →" in err
    names = {p.name for p in out.iterdir()}
    assert {"flags.parquet", "unscreened.parquet", "providers.csv", "money.csv", "hospitals.csv", "departments.csv",
            "doctors.csv", "scores.csv", "summary.json", "screen.key"} <= names
    flags = pl.read_parquet(out / "flags.parquet")
    assert flags.height and set(flags["rule"]) >= {"SPLIT_STAY", "SHARED_PHONE", "COST_SHIFT"}
    # the grouped file alone has no doctor, phone or address: those rules are skipped, named
    assert main(["screen", str(grouped), "-o", str(tmp_path / "alone"), "-q"]) == 0
    summary = json.loads((tmp_path / "alone" / "summary.json").read_text(encoding="utf-8"))
    assert {s["rule"] for s in summary["skipped"]} == {"SHARED_PHONE", "SHARED_ADDRESS", "DOCTOR_MCC_SHARE"}


def test_cases_file_that_does_not_line_up_is_refused(tmp_path, capsys):
    cases(*many(3)).drop("doctor", "phone", "address").write_parquet(tmp_path / "g.parquet")
    cases(*many(2)).write_parquet(tmp_path / "c.parquet")
    code = main(["screen", str(tmp_path / "g.parquet"), "--cases", str(tmp_path / "c.parquet"), "-o", str(tmp_path / "o")])
    assert code == 3 and "does not line up" in capsys.readouterr().err


def test_policy_needs_weights(tmp_path, capsys):
    cases(*many(3)).write_parquet(tmp_path / "g.parquet")
    code = main(["screen", str(tmp_path / "g.parquet"), "--policy", "p.toml", "-o", str(tmp_path / "o")])
    assert code == 2 and "--policy needs --weights" in capsys.readouterr().err


def test_identical_input_gives_identical_outputs(tmp_path):
    (tmp_path / "key").write_bytes(b"x" * 32)
    frame = cases(*many(5, phone="1"), *many(3, drg="XA15", cost=100_000), {"drg": "XA11", "cost": 1, "los": 1})
    frame.write_parquet(tmp_path / "g.parquet")
    for run in ("a", "b"):
        assert main(["screen", str(tmp_path / "g.parquet"), "-o", str(tmp_path / run), "-q", "--key", str(tmp_path / "key"),
                     "--format", "csv"]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir()) and "flags.csv" in names
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_docs_document_every_shipped_rule_with_its_source_and_parameters():
    import tomllib

    from conftest import ROOT
    from grouper.screen.schema import LOGICS

    text = (ROOT / "docs" / "screens.md").read_text(encoding="utf-8")
    raw = tomllib.loads(default_screens_path().read_text(encoding="utf-8"))
    for item in raw["rule"]:
        row = next((line for line in text.splitlines() if line.startswith(f"| `{item['code']}` |")), None)
        assert row is not None, f"{item['code']} is not in docs/screens.md"
        assert item["source"] in row and f"`{item['logic']}`" in row
        for name, value in item.get("params", {}).items():
            assert f"`{name} = " in row, (item["code"], name)
    for name, logic in LOGICS.items():
        assert f"- **`{name}`**" in text
        for param in logic.params:
            assert f"  - `{param}` (" in text, (name, param)


def test_raw_cases_are_grouped_here_with_their_own_extra_fields(tmp_path):
    history = tmp_path / "h.csv"
    assert main(["synth", "history", "--hospitals", "6", "--years", "1", "--cases", "3000", "--plant-anomalies",
                 "-o", str(history), "-q"]) == 0
    assert main(["screen", str(history), "-o", str(tmp_path / "out"), "-q", "--format", "csv"]) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert summary["cases"] == 3000 and summary["skipped"] == []   # doctor, phone, address: from the same file
    assert {"SHARED_PHONE", "DOCTOR_MCC_SHARE"} <= {r["rule"] for r in summary["rules"]}
    flags = pl.read_csv(tmp_path / "out" / "flags.csv", infer_schema=False)
    planted = pl.read_csv(history, infer_schema=False).filter(pl.col("planted") == "cost_shift")["id"]
    assert len(planted) and set(planted) <= set(flags.filter(pl.col("rule") == "COST_SHIFT")["id"])
