"""The shipped screens measured on a synthetic year with planted, labelled anomalies (grouper.screen.plant).

The year: `synth history` with 100 hospitals, 2 years, 200,000 cases, seed 3; anomalies planted at 5
hospitals per kind; grouped with the demo scheme; screened with tables/screens/default.toml.

Targets (issue 23): each screen finds at least 95 % of the cases planted for it and flags fewer than
1 % of the clean cases. A provider screen finds every hospital where its kind was planted (its clean
side is its percentile: above the 80th percentile of peers, about a fifth of the units, by design).

The per-case MCC screen is the exception, stated here with its figures: an upcoded case keeps the cost
and stay of its simpler group, and the synthetic costs of a group and of its MCC group overlap (log-sd
0.38-0.50 against a log-distance of 0.64), so no cost-and-stay threshold separates them case by case:
at the shipped setting (cost and stay at most the simpler group's median, judged in the hospitals above
the 80th percentile of MCC capture, the PEPPER way) it finds 40.5 % of the upcoded cases while flagging
0.39 % of the clean ones (every case at 1.0/1.0: 40.5 % and 2.0 %; at 1.5/1.5 within hospitals: 74 % and
1.05 %). Upcoding is found where it is found in practice, at the provider: MCC_SHARE flags every
upcoding hospital.
"""
from __future__ import annotations

import polars as pl
import pytest

from grouper.payment._common import group_cases
from grouper.payment.history import synth_history
from grouper.scheme import load_scheme
from grouper.screen.plant import plant_anomalies
from grouper.screen.run import screen
from grouper.screen.screens import load_screens

CASE_SCREENS = {"SPLIT_STAY": "split_stay", "SHARED_PHONE": "shared_phone", "LOW_WEIGHT_ADMISSION": "low_weight_admission",
                "COST_SHIFT": "cost_shift"}
PROVIDER_SCREENS = {"MCC_SHARE": "upcoded_mcc", "READMIT_SHARE": "split_stay", "LOW_WEIGHT_SHARE": "low_weight_admission",
                    "ONE_DAY_SHARE": "low_weight_admission"}
UPCODE_RECALL_FLOOR = 0.38   # measured 0.405 at this seed (clean 0.39 %); see the module doc


@pytest.fixture(scope="module")
def year():
    scheme = load_scheme(None)
    history = synth_history(scheme, hospitals=100, years=2, cases=200_000, seed=3)
    planted = plant_anomalies(history, scheme, seed=3)
    grouped = group_cases(planted, scheme, carry=True)
    frame = pl.concat([grouped, planted.select(pl.col("doctor", "phone", "address").cast(pl.String))], how="horizontal")
    result = screen(frame, load_screens(), key=b"k" * 32)
    labels = pl.DataFrame({"id": planted["id"], "hospital": planted["hospital"].cast(pl.String), "planted": planted["planted"]})
    return result, labels


def _figures(result, labels, rule: str, kind: str) -> tuple[float, float, int, int]:
    flagged = set(result.flags.filter(pl.col("rule") == rule)["id"])
    planted = set(labels.filter(pl.col("planted") == kind)["id"])
    clean = set(labels.filter(pl.col("planted").is_null())["id"])
    return len(flagged & planted) / len(planted), len(flagged & clean) / len(clean), len(planted), len(flagged & clean)


@pytest.mark.parametrize("rule, kind", CASE_SCREENS.items())
def test_each_case_screen_finds_95_percent_of_its_planted_cases_and_under_1_percent_of_clean_ones(year, rule, kind):
    result, labels = year
    recall, clean_rate, planted, _ = _figures(result, labels, rule, kind)
    assert planted >= 150
    assert recall >= 0.95, f"{rule} found {recall:.1%} of {planted} planted {kind}"
    assert clean_rate < 0.01, f"{rule} flagged {clean_rate:.2%} of the clean cases"


def test_every_case_screen_flags_under_1_percent_of_clean_cases(year):
    result, labels = year
    clean = labels.filter(pl.col("planted").is_null()).select("id")
    case_rules = [r["rule"] for r in result.summary["rules"] if r["kind"] != "providers"]
    assert len(case_rules) == 12
    counts = dict(result.flags.join(clean, on="id", how="semi").group_by("rule").len().iter_rows())
    rates = {rule: counts.get(rule, 0) / clean.height for rule in case_rules}
    assert all(rate < 0.01 for rate in rates.values()), rates


def test_the_per_case_mcc_screen_figures(year):
    result, labels = year
    recall, clean_rate, planted, _ = _figures(result, labels, "UPCODE_MCC", "upcoded_mcc")
    assert planted >= 1000
    assert recall >= UPCODE_RECALL_FLOOR, recall
    assert clean_rate < 0.01


@pytest.mark.parametrize("rule, kind", PROVIDER_SCREENS.items())
def test_each_provider_screen_finds_every_hospital_where_its_kind_was_planted(year, rule, kind):
    result, labels = year
    sites = set(labels.filter(pl.col("planted") == kind)["hospital"])
    flagged = result.providers.filter((pl.col("rule") == rule) & pl.col("flagged"))
    assert len(sites) == 5
    assert sites <= set(flagged["hospital"]), f"{rule} missed {sites - set(flagged['hospital'])}"
    # the rest of what is flagged is the percentile's share of the clean hospitals (about 20 of 100)
    assert flagged.height <= 25


def test_findings_attribute_to_department_and_doctor(year):
    result, labels = year
    assert result.departments.height and result.doctors.height and result.scores is not None
    top = result.hospitals.row(0, named=True)
    assert top["rank"] == 1 and top["at_stake"] == result.hospitals["at_stake"].max()


def test_planting_is_seeded_labelled_and_the_same_hospitals_in_every_chunk():
    scheme = load_scheme(None)
    history = synth_history(scheme, hospitals=20, years=1, cases=20_000, seed=4)
    first = plant_anomalies(history, scheme, seed=4)
    assert first.equals(plant_anomalies(history, scheme, seed=4))
    assert first.height == history.height and first["id"].equals(history["id"])
    labels = first["planted"].value_counts()
    assert set(labels["planted"].drop_nulls()) >= {"upcoded_mcc", "split_stay", "split_stay_first", "shared_phone",
                                                   "low_weight_admission", "cost_shift"}
    # chunk by chunk (as `synth history --plant-anomalies` writes): each kind at the same hospitals
    halves = [plant_anomalies(history.slice(0, 10_000), scheme, seed=4, chunk=0),
              plant_anomalies(history.slice(10_000), scheme, seed=4, chunk=1)]
    for kind in ("upcoded_mcc", "cost_shift", "shared_phone"):
        sites = [set(h.filter(pl.col("planted") == kind)["hospital"].cast(pl.String)) for h in halves]
        whole = set(first.filter(pl.col("planted") == kind)["hospital"].cast(pl.String))
        assert whole and sites[0] <= whole and sites[1] <= whole   # a half may hold too few cases for a phone group
        assert kind == "shared_phone" or sites[0] == sites[1] == whole
    # one phone per clean patient; the second part of a split stay is the first part's patient, same hospital
    clean = first.filter(pl.col("planted").is_null())
    assert clean.group_by("phone").agg(pl.col("patient_id").n_unique()).filter(pl.col("patient_id") > 1).height == 0
    second = first.filter(pl.col("planted") == "split_stay").select("patient_id", "hospital", "admission_date")
    firsts = first.filter(pl.col("planted") == "split_stay_first").select("patient_id", "hospital", "discharge_date")
    pairs = second.join(firsts, on=["patient_id", "hospital"])
    assert pairs.height >= second.height
    gap = (pairs["admission_date"] - pairs["discharge_date"]).dt.total_days()
    assert gap.min() >= 0 and gap.max() <= 3


def test_synth_history_plants_when_asked_only(tmp_path):
    from grouper.cli import main

    plain, planted = tmp_path / "a.csv", tmp_path / "b.csv"
    assert main(["synth", "history", "--hospitals", "5", "--years", "1", "--cases", "2000", "-o", str(plain), "-q"]) == 0
    assert main(["synth", "history", "--hospitals", "5", "--years", "1", "--cases", "2000", "-o", str(planted), "-q",
                 "--plant-anomalies"]) == 0
    a, b = pl.read_csv(plain, infer_schema=False), pl.read_csv(planted, infer_schema=False)
    assert "planted" not in a.columns and {"doctor", "phone", "address", "planted"} <= set(b.columns)
    assert a.height == b.height == 2000
