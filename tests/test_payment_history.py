"""The synthetic cost history: seeded, chunk-independent, groupable, and realistic in the ways the
payment layer needs (severity, surgery, level, inflation, LOS, deaths, tail, readmissions)."""
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import grouper
from grouper.grouped import read_grouped
from grouper.payment.history import HistoryGenerator, synth_history, write_history
from grouper.scheme import load_scheme

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tables" / "demo"


@pytest.fixture(scope="module")
def demo():
    return load_scheme(DEMO)


@pytest.fixture(scope="module")
def grouped(demo):
    history = synth_history(demo, hospitals=12, years=3, cases=60_000, seed=3)
    return history, grouper.group(history, demo, carry=True)


def test_seeded_and_independent_of_chunking(demo):
    gen = HistoryGenerator(demo, hospitals_n=5, years=2, cases=3000, seed=7)
    whole = gen.frame(0, 3000)
    assert whole.equals(pl.concat([gen.frame(0, 1000), gen.frame(1000, 2500), gen.frame(2500, 3000)]))
    assert whole.equals(synth_history(demo, hospitals=5, years=2, cases=3000, seed=7))
    assert not whole.equals(synth_history(demo, hospitals=5, years=2, cases=3000, seed=8))


def test_every_case_groups_into_the_schemes_drgs(demo, grouped):
    history, results = grouped
    assert results.height == history.height
    assert results["status"].unique().to_list() == ["grouped"]
    assert set(results["drg"]) <= set(demo.plan.drg_codes)
    assert results["drg"].n_unique() >= 20  # most of the demo's 33 DRGs appear


def test_costs_grow_with_severity_surgery_and_level(grouped):
    _, g = grouped
    by_drg = g.group_by("adrg", "drg").agg(pl.col("cost").median().alias("median"))
    # within an ADRG, MCC (…1) above no CC (…5)
    pairs = by_drg.with_columns(pl.col("drg").str.slice(-1).alias("sev")).pivot("sev", index="adrg", values="median")
    both = pairs.drop_nulls(["1", "5"])
    assert both.height >= 3 and (both["1"] > both["5"]).all()
    # level 3 costs more than level 1 for the same DRG
    lv = g.group_by("drg", "hospital_level").agg(pl.col("cost").median()).pivot("hospital_level", index="drg",
                                                                                values="cost").drop_nulls()
    assert (lv["3"] > lv["1"]).mean() > 0.9


def test_inflation_los_deaths_tail_and_readmissions(grouped):
    history, g = grouped
    year = g.with_columns(pl.col("discharge_date").dt.year().alias("year"))
    by_year = (year.with_columns((pl.col("cost") / pl.col("cost").mean().over("drg")).alias("rel"))
               .filter(pl.col("year") <= 2024).group_by("year").agg(pl.col("rel").mean()).sort("year"))
    assert by_year["rel"].is_sorted() and by_year.height == 3
    assert g.select(pl.corr(pl.col("cost").log(), pl.col("los").cast(pl.Float64).log())).item() > 0.3
    deaths = g.group_by(pl.col("drg").str.slice(-1).alias("sev")).agg((pl.col("discharge") == 5).mean().alias("d"))
    death = dict(deaths.rows())
    assert death["1"] > 3 * death["5"]
    ratio = g.select((pl.col("cost") / pl.col("cost").median().over("drg")).alias("r"))["r"]
    assert 0.01 < (ratio > 3).mean() < 0.05 and ratio.max() > 10          # heavy right tail
    assert g["special_review"].sum() > 0
    readmitted = history.filter(pl.col("patient_id").is_duplicated())
    assert 0.01 < readmitted.height / history.height < 0.06
    assert (g["admission_date"] <= g["discharge_date"]).all()
    assert (g["fund_paid"] <= g["cost"]).all() and g["cost"].min() > 0


def test_a_case_source_is_resampled(demo):
    history = synth_history(demo, hospitals=3, years=1, cases=2000, seed=1, source=DEMO / "discharges.csv")
    source = grouper.read_cases(DEMO / "discharges.csv")
    assert set(history["dx"].cast(pl.String)) <= set(source["dx"].list.join("|"))


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_written_history_reads_back_with_the_same_money(demo, tmp_path, suffix):
    path = tmp_path / f"h{suffix}"
    assert write_history(path, demo, hospitals=4, years=2, cases=5000, seed=2, chunk_rows=1500) == 5000
    frame = synth_history(demo, hospitals=4, years=2, cases=5000, seed=2)
    out = tmp_path / "g.parquet"
    grouper.group_file(path, out, demo, carry=True)
    back = read_grouped(out)
    assert back["cost"].to_list() == frame["cost"].to_list()
    assert back["discharge_date"].equals(frame["discharge_date"])
    assert np.array_equal(back["los"].to_numpy(), frame["los"].to_numpy())


def test_the_demo_history_is_what_the_command_writes(tmp_path):
    from grouper.cli import main

    out = tmp_path / "history.csv"
    assert main(["synth", "history", "--hospitals", "5", "--years", "2", "--cases", "2000", "--seed", "1",
                 "-o", str(out), "-q"]) == 0
    assert out.read_bytes() == (DEMO / "history.csv").read_bytes()
    assert out.stat().st_size < 400_000


def test_readme_quick_start_runs_on_the_demo_history(tmp_path):
    """synth → group --carry → calibrate → metrics, as in the README (on the shipped small history)."""
    from grouper.cli import main

    grouped = tmp_path / "grouped.parquet"
    assert main(["group", str(DEMO / "history.csv"), "-o", str(grouped), "--carry", "-q"]) == 0
    assert main(["calibrate", "weights", str(grouped), "-o", str(tmp_path / "weights.csv"), "--year-weights", "1:2:7",
                 "--report", str(tmp_path / "homogeneity"), "-q"]) == 0
    assert main(["metrics", str(grouped), "--weights", str(tmp_path / "weights.csv"), "-o",
                 str(tmp_path / "metrics.csv"), "-q"]) == 0
    metrics = pl.read_csv(tmp_path / "metrics.csv")
    assert metrics.filter(pl.col("dept").is_null())["hospital"].to_list() == ["H001", "H002", "H003", "H004", "H005"]


def test_readmissions_stay_inside_the_history_years():
    """A readmission after the last year would add a stray year that `--year-weights 1:2:7` then
    takes as the latest (it used to: ~140 discharges in 2025 for a 2022–2024 history)."""
    from grouper.payment.history import HistoryGenerator
    from grouper.scheme import load_scheme

    gen = HistoryGenerator(load_scheme(None), hospitals_n=5, years=3, cases=50_000, seed=3, end_year=2024)
    frame = gen.frame(0, 50_000)
    years = frame["discharge_date"].dt.year()
    assert years.min() == 2022 and years.max() == 2024
    assert frame["patient_id"].n_unique() < frame.height      # readmissions are still there


@pytest.mark.parametrize("pack", ["demo", "national 2.0"])
def test_the_history_looks_like_a_hospitals_year(pack, demo, request):
    """Issue 17: no diagnosis of the other sex (12 % female_dx_on_male before), no 23 % 新生儿科, and
    sex, age and department agree with each case's MDC."""
    scheme = demo if pack == "demo" else load_scheme(request.getfixturevalue("chs20_pack"))
    history = synth_history(scheme, hospitals=10, years=1, cases=20_000, seed=0)
    results, problems = grouper.group(history, scheme, problems=True)
    assert problems.height == 0                                   # not one validation finding
    assert results["status"].unique().to_list() == ["grouped"]
    cases = pl.concat([history.select(pl.col("sex", "dept").cast(pl.String), pl.col("age").cast(pl.String)
                                      .cast(pl.Int64)), results.select("mdc", "adrg")], how="horizontal")
    depts = cases["dept"].value_counts(normalize=True)
    share = dict(depts.rows())
    assert share.get("新生儿科", 0) < 0.07
    assert max(share.values()) < (0.35 if pack == "demo" else 0.15)   # the demo has 6 MDCs, the nation 26
    mdc = pl.col("mdc").str.slice(3, 1)
    assert cases.filter(mdc.is_in(["O", "N"]))["sex"].unique().to_list() in ([], ["2"])
    assert cases.filter(mdc == "M")["sex"].unique().to_list() in ([], ["1"])
    assert cases.filter(mdc == "O")["age"].is_between(15, 50).all()
    assert (cases.filter(mdc == "P")["age"] == 0).all() and (cases.filter(mdc != "P")["dept"] != "新生儿科").all()
    children = cases.filter(pl.col("age").is_between(1, 14) & (pl.col("adrg").str.slice(1, 1) > "J"))
    assert (children["dept"] == "儿科").all()
    if pack != "demo":
        assert depts.height >= 20 and 0.4 < (cases["sex"] == "1").mean() < 0.6
        assert 0.2 < (cases["age"] >= 65).mean() < 0.45


def test_a_pack_with_one_department_builds_its_history():
    # tests/fixtures/packs/mini names one department: most trial cases have none, and a column whose
    # first values are missing was read as Python objects and refused (internal error, exit 70).
    mini = load_scheme(ROOT / "tests" / "fixtures" / "packs" / "mini")
    history = synth_history(mini, hospitals=3, years=1, cases=2_000, seed=1)
    assert history.height == 2_000
    assert history["dept"].null_count() < history.height
