"""The shipped screens measured on a synthetic year with planted, labelled anomalies (grouper.screen.plant).

The year: `synth history` with 100 hospitals, 2 years, 200,000 cases, seed 3; anomalies planted at 5
hospitals per kind; grouped with the demo scheme; screened with tables/screens/default.toml.

Targets (issue 23): each screen finds at least 95 % of the cases planted for it and flags fewer than
1 % of the clean cases (196,268 here). A provider screen finds every hospital where its kind was planted
(its clean side is its percentile: above the 80th percentile of peers, about a fifth of the units, by
design). `FIGURES` states each case screen's exact figures at this seed (docs/screens.md has them, and
those of three other seeds).

UPCODE_MCC was at 40.5 %: it compared an MCC case's cost and stay with the median of the group without
complications, which half of the very cases it looks for exceed (an upcoded case keeps the cost and
stay of its simpler group; the median is that group's middle). It now judges the way a reviewer would:
the hospitals whose MCC share stands out from their peers' (above Tukey's fence), then there the MCC
cases whose cost and stay lie within the normal range of the group without complications.
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
                "COST_SHIFT": "cost_shift", "UPCODE_MCC": "upcoded_mcc", "SHARED_ADDRESS": "shared_address",
                "TRANSFER_CHAIN": "transfer_chain"}
PROVIDER_SCREENS = {"MCC_SHARE": "upcoded_mcc", "READMIT_SHARE": "split_stay", "LOW_WEIGHT_SHARE": "low_weight_admission",
                    "ONE_DAY_SHARE": "low_weight_admission"}
CLEAN_CASES = 196_268
# rule: (planted found, planted, clean cases flagged) at seed 3
FIGURES = {"SPLIT_STAY": (205, 205, 1_883), "SHARED_PHONE": (204, 204, 0), "LOW_WEIGHT_ADMISSION": (458, 458, 573),
           "COST_SHIFT": (317, 317, 0), "UPCODE_MCC": (1_834, 1_847, 1_699), "SHARED_ADDRESS": (172, 172, 0),
           "TRANSFER_CHAIN": (216, 216, 0)}
# the case rules with nothing planted for them: clean cases flagged (SEX_DX's findings are the coded_inconsistent records)
UNPLANTED = {"SEX_DX": 0, "AGE_DX": 0, "LONG_STAY": 165, "COST_OUTLIER": 797, "CONTINUOUS_STAY": 0}


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
    recall, clean_rate, planted, clean_flagged = _figures(result, labels, rule, kind)
    assert labels.filter(pl.col("planted").is_null()).height == CLEAN_CASES
    assert (round(recall * planted), planted, clean_flagged) == FIGURES[rule]
    assert planted >= 150
    assert recall >= 0.95, f"{rule} found {recall:.1%} of {planted} planted {kind}"
    assert clean_rate < 0.01, f"{rule} flagged {clean_rate:.2%} of the clean cases"


def test_every_case_screen_flags_under_1_percent_of_clean_cases(year):
    result, labels = year
    clean = labels.filter(pl.col("planted").is_null()).select("id")
    case_rules = [r["rule"] for r in result.summary["rules"] if r["kind"] != "providers"]
    assert sorted(case_rules) == sorted([*FIGURES, *UNPLANTED])
    counts = dict(result.flags.join(clean, on="id", how="semi").group_by("rule").len().iter_rows())
    assert {rule: counts.get(rule, 0) for rule in UNPLANTED} == UNPLANTED
    rates = {rule: counts.get(rule, 0) / clean.height for rule in case_rules}
    assert all(rate < 0.01 for rate in rates.values()), rates


def test_the_mcc_screen_lists_cases_only_at_the_hospitals_whose_mcc_share_stands_out(year):
    result, labels = year
    sites = set(labels.filter(pl.col("planted") == "upcoded_mcc")["hospital"])
    assert set(result.flags.filter(pl.col("rule") == "UPCODE_MCC")["hospital"]) == sites


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
                                                   "low_weight_admission", "cost_shift", "shared_address", "transfer_chain",
                                                   "transfer_chain_first"}
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


def test_upcoding_and_transfer_chains_are_planted_as_in_practice_and_no_stay_leaves_its_year():
    scheme = load_scheme(None)
    history = synth_history(scheme, hospitals=20, years=1, cases=20_000, seed=4)
    planted = plant_anomalies(history, scheme, seed=4)
    up = planted.with_row_index("row").filter(pl.col("planted") == "upcoded_mcc")
    before = history[up["row"].to_list()]
    assert up.height >= 30
    # 虚增诊断: the record is the case's own (patient, sex, age, principal diagnosis, procedures, department), with
    # secondary diagnoses added after its own, and the case now groups into the MCC group of its ADRG
    for column in ("patient_id", "sex", "age", "proc", "dept", "cost", "los"):
        assert up[column].cast(pl.String).equals(before[column].cast(pl.String), null_equal=True), column
    own, now = before["dx"].cast(pl.String).to_list(), up["dx"].cast(pl.String).to_list()
    assert all(n.startswith(o + "|") and len(n.split("|")) > len(o.split("|")) for o, n in zip(own, now))
    groups = group_cases(planted, scheme)["drg"].gather(up["row"])
    old = group_cases(history, scheme)["drg"].gather(up["row"])
    assert groups.str.ends_with("1").all() and old.str.ends_with("5").all()
    assert (groups.str.slice(0, 3) == old.str.slice(0, 3)).all()
    # a transfer chain: the first stay, then the same patient at two other hospitals, each admitted 0-1 day after
    chains = (planted.filter(pl.col("planted").is_in(["transfer_chain_first", "transfer_chain"]))
              .sort("patient_id", "admission_date").group_by("patient_id", maintain_order=True)
              .agg("planted", pl.col("hospital").cast(pl.String), "admission_date", "discharge_date"))
    assert chains.height >= 10
    for row in chains.iter_rows(named=True):
        assert row["planted"] == ["transfer_chain_first", "transfer_chain", "transfer_chain"]
        assert len(set(row["hospital"])) == 3
        assert all(0 <= (a - d).days <= 1 for a, d in zip(row["admission_date"][1:], row["discharge_date"][:-1]))
    # every stay is discharged in the history's year (split stays, low-weight admissions, chains included)
    assert planted["discharge_date"].dt.year().unique().to_list() == [2024]
    assert ((planted["discharge_date"] - planted["admission_date"]).dt.total_days() == planted["los"]).all()
