"""Relative weights and homogeneity: hand-computed examples for every formula, and the properties."""
import datetime as dt
import math
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.outputs import OUTPUT_MARKER
from grouper.errors import InputError
from grouper.payment.api import calibrate_weights, homogeneity, load_grouped, parse_year_weights
from grouper.payment.history import synth_history

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tables" / "demo"


def cases(spec, **extra) -> pl.DataFrame:
    """spec: {drg: [yuan, ...]} → grouped rows (ADRG = drg minus its last character)."""
    rows = []
    for drg, costs in spec.items():
        for cost in costs:
            rows.append({"status": "grouped", "mdc": "MDC" + drg[0], "adrg": drg[:-1], "drg": drg,
                         "cost": round(cost * 100), "los": 5, "discharge": 1, "age": 50,
                         "discharge_date": dt.date(2024, 6, 1), "insurance": "employee", **extra})
    return pl.DataFrame(rows, schema_overrides={"los": pl.Int32, "discharge": pl.Int32, "age": pl.Int32})


def rw(calibration) -> dict:
    return dict(calibration.weights.select("drg", "rw_own").iter_rows())


SKEWED = {"A1": [100, 200, 300, 400, 10000], "A5": [50, 60, 70]}


def test_rw_with_iqr_fences():
    # A1: Q1 200, Q3 400, IQR 200 → keep 100..700 → [100, 200, 300, 400], mean 250, one trimmed
    # A5: Q1 55, Q3 65 → keep 50..80 → all, mean 60;  M = (1000 + 180) / 7
    c = calibrate_weights(cases(SKEWED), min_cases=3, decimals=None)
    m = 1180 / 7
    assert rw(c) == pytest.approx({"A1": 250 / m, "A5": 60 / m})
    row = c.weights.row(0, named=True)
    assert (row["n"], row["n_trimmed"], row["n_kept"], row["mean"], row["median"], row["trimmed_mean"]) == (
        5, 1, 4, 2200.0, 300.0, 250.0)
    assert row["cv"] == pytest.approx(math.sqrt(12500) / 250)       # population SD of 100..400
    assert row["points"] == pytest.approx(100 * 250 / m)
    assert c.overall_mean == {"all": pytest.approx(m)}


def test_rw_with_other_iqr_multipliers():
    # A1 with 1.5/1.5: lower fence 200 - 300 = -100 → same cases; A5: 40..80 → all
    c = calibrate_weights(cases(SKEWED), min_cases=3, iqr_low=1.5, decimals=None)
    assert rw(c) == pytest.approx({"A1": 250 * 7 / 1180, "A5": 60 * 7 / 1180})
    # upper 0: A1 keeps 100..400 (fence exactly 400), A5 keeps 50..65 → [50, 60], mean 55; M = (1000 + 110) / 6
    c = calibrate_weights(cases(SKEWED), min_cases=2, iqr_high=0.0, decimals=None)
    assert rw(c) == pytest.approx({"A1": 250 * 6 / 1110, "A5": 55 * 6 / 1110})


def test_rw_with_percentiles():
    # 25th..75th: A1 200..400 → [200, 300, 400] mean 300; A5 55..65 → [60]; M = 960 / 4 = 240
    c = calibrate_weights(cases(SKEWED), trim="percentile", pct_low=25, pct_high=75, min_cases=1, decimals=None)
    assert rw(c) == pytest.approx({"A1": 1.25, "A5": 0.25})


def test_rw_with_log_mean_and_sd():
    # k = 1: A1 drops 10000 (|9.21 - 6.16| > 1.78); A5 drops 50 (|3.912 - 4.085| = 0.1729 > SD 0.1684)
    c = calibrate_weights(cases(SKEWED), trim="logsd", sd_k=1, min_cases=1, decimals=None)
    m = (1000 + 130) / 6
    assert rw(c) == pytest.approx({"A1": 250 / m, "A5": 65 / m})


def test_rw_without_trimming():
    c = calibrate_weights(cases(SKEWED), trim="none", min_cases=1, decimals=None)
    m = 11180 / 8
    assert rw(c) == pytest.approx({"A1": 2200 / m, "A5": 60 / m})


def year_cases() -> pl.DataFrame:
    frame = pl.concat([cases({"X1": [100], "Y1": [300]}).with_columns(pl.lit(dt.date(2023, 3, 1)).alias("discharge_date")),
                       cases({"X1": [200], "Y1": [300]}),
                       cases({"X1": [9999]}).with_columns(pl.lit(dt.date(2022, 3, 1)).alias("discharge_date"))])
    return frame


@pytest.mark.parametrize("years", [(1, 3), {2023: 1, 2024: 3}, "1:3", "2023=1, 2024=3"])
def test_multi_year_weighting(years):
    # X1: (100·1 + 200·3) / 4 = 175; Y1: 300; M = (100 + 600 + 300 + 900) / 8 = 237.5; 2022 gets weight 0
    years = parse_year_weights(years) if isinstance(years, str) else years
    c = calibrate_weights(year_cases(), trim="none", min_cases=1, year_weights=years, decimals=None)
    assert rw(c) == pytest.approx({"X1": 175 / 237.5, "Y1": 300 / 237.5})
    assert dict(c.excluded.iter_rows()) == {"old_year": 1}


def test_bad_year_weights():
    with pytest.raises(InputError, match="1:2:7"):
        parse_year_weights("1;2;7")


def test_thin_groups_take_the_adrg_pooled_mean():
    # A1 4×100, A3 1×400 (thin: ADRG A pooled (400 + 400) / 5 = 160), B5 3×200, C1 1×500 (ADRG thin too)
    c = calibrate_weights(cases({"A1": [100] * 4, "A3": [400], "B5": [200] * 3, "C1": [500]}), trim="none",
                          min_cases=3, decimals=None)
    m = 1900 / 9
    w = {row["drg"]: row for row in c.weights.iter_rows(named=True)}
    assert {d: w[d]["weight"] for d in w} == pytest.approx({"A1": 100 / m, "A3": 160 / m, "B5": 200 / m, "C1": 500 / m})
    assert {d: w[d]["basis"] for d in w} == {"A1": "own", "A3": "adrg", "B5": "own", "C1": "thin"}
    assert {d: w[d]["stable"] for d in w} == {"A1": True, "A3": False, "B5": True, "C1": False}
    assert w["A3"]["rw_own"] == pytest.approx(400 / m)


def test_exclusions_are_counted_by_reason():
    frame = pl.concat([
        cases({"A1": [100, 200]}),
        cases({"A1": [100]}, los=61),
        cases({"A1": [4.99]}),
        cases({"A1": [100]}).with_columns(pl.lit(None, pl.Int64).alias("cost")),
        cases({"A1": [100]}).with_columns(pl.lit("no_adrg").alias("status")),
        cases({"A1": [100]}, los=1),
    ], how="vertical_relaxed")
    c = calibrate_weights(frame, trim="none", min_cases=1, min_los=2)
    assert dict(c.excluded.iter_rows()) == {"long_stay": 1, "low_cost": 1, "no_cost": 1, "not_grouped": 1,
                                            "short_stay": 1}
    assert c.weights["n"].to_list() == [2] and c.cases == 7


def test_cv_stability_flag():
    c = calibrate_weights(cases({"A1": [10, 10, 10, 1000], "B1": [100, 100, 100, 100]}), trim="none",
                          min_cases=1, max_cv=1.0)
    w = {row["drg"]: row for row in c.weights.iter_rows(named=True)}
    # A1: mean 257.5, population SD = sqrt(3·247.5² + 742.5²) / 2 = 428.69… → CV 1.665 > 1
    assert w["A1"]["cv"] == round(math.sqrt((3 * 247.5 ** 2 + 742.5 ** 2) / 4) / 257.5, 4)
    assert (w["A1"]["stable"], w["B1"]["stable"], w["B1"]["cv"]) == (False, True, 0.0)


def test_low_risk_groups_by_log_mortality_z():
    # 30 cases each; deaths 0, 1, 2, 10; ln rates of the positive ones: z = -0.845, -0.259, 1.104
    frames = []
    for drg, deaths in (("A1", 0), ("B1", 1), ("C1", 2), ("D1", 10)):
        frames.append(cases({drg: [100] * 30}).with_columns(
            pl.Series("discharge", [5] * deaths + [1] * (30 - deaths), dtype=pl.Int32)))
    frames.append(cases({"E1": [100] * 29}))
    c = calibrate_weights(pl.concat(frames), trim="none")
    risk = dict(c.weights.select("drg", "risk").iter_rows())
    assert risk == {"A1": "low", "B1": "mid_low", "C1": "mid_low", "D1": "high", "E1": None}
    c = calibrate_weights(pl.concat(frames), trim="none", risk_z=-0.5)
    assert dict(c.weights.select("drg", "risk").iter_rows())["B1"] == "low"


def test_per_insurance_type():
    frame = pl.concat([cases({"A1": [100, 100], "B1": [300, 300]}),
                       cases({"A1": [100, 100], "B1": [100, 100]}, insurance="resident")])
    c = calibrate_weights(frame, trim="none", min_cases=1, by_insurance=True, decimals=None)
    got = {(i, d): w for i, d, w in c.weights.select("insurance", "drg", "weight").iter_rows()}
    assert got == pytest.approx({("employee", "A1"): 0.5, ("employee", "B1"): 1.5,
                                 ("resident", "A1"): 1.0, ("resident", "B1"): 1.0})
    assert c.overall_mean == {"employee": 200.0, "resident": 100.0}


# ---- homogeneity ---------------------------------------------------------------------------------

def test_riv_merge_and_split_by_hand():
    frame = cases({"A1": [100, 300], "A3": [500, 700]}).with_columns(pl.Series("los", [2, 5, 5, 5], dtype=pl.Int32))
    report = homogeneity(frame, trim="none", min_cases=1)
    # overall mean 400: SST = 300² + 100² + 100² + 300² = 200 000; SSW = 4·100² = 40 000
    summary = dict(report.summary.iter_rows())
    assert summary["riv"] == pytest.approx(0.8) and summary["riv_untrimmed"] == pytest.approx(0.8)
    assert report.riv.filter(pl.col("scope") == "adrg")["riv"].to_list() == pytest.approx([0.8])
    merge = report.merges.row(0, named=True)
    assert (merge["drg_a"], merge["drg_b"]) == ("A1", "A3")
    assert merge["riv_loss"] == pytest.approx(2 * 2 / 4 * 400 ** 2 / 200_000)
    best = report.splits.filter((pl.col("drg") == "A1") & (pl.col("variable") == "los")).row(0, named=True)
    assert (best["threshold"], best["cases_low"], best["cases_high"]) == (5.0, 1, 1)
    assert best["riv_gain"] == pytest.approx(1 * 1 / 2 * 200 ** 2 / 200_000)
    assert report.drgs["cv"].to_list() == pytest.approx([0.5, 100 / 600])


def test_share_of_cases_in_groups_with_cv_over_one():
    frame = cases({"A1": [10, 10, 10, 1000], "B1": [100] * 6})
    summary = dict(homogeneity(frame, trim="none", min_cases=1).summary.iter_rows())
    assert summary["share_cases_cv_over_1"] == pytest.approx(0.4) and summary["drgs_cv_over_1"] == 1


# ---- properties on a synthetic history -----------------------------------------------------------

@pytest.fixture(scope="module")
def history():
    return load_grouped(synth_history(DEMO, hospitals=8, years=3, cases=30_000, seed=5), DEMO)


def test_weights_do_not_change_when_the_history_is_shuffled(history):
    for options in ({}, {"trim": "percentile"}, {"trim": "logsd", "year_weights": (1, 2, 7)}):
        a = calibrate_weights(history, **options).weights
        b = calibrate_weights(history.sample(fraction=1.0, shuffle=True, seed=1), **options).weights
        # the published (4-decimal) weights and every count and flag are identical; the unrounded
        # floats may differ in the last bits (summation order)
        floats = [c for c, t in a.schema.items() if t == pl.Float64 and c not in ("weight", "points")]
        assert a.drop(floats).equals(b.drop(floats))
        for column in floats:
            assert a[column].to_list() == pytest.approx(b[column].to_list(), rel=1e-12, nan_ok=True)


@pytest.mark.parametrize("options", [{}, {"year_weights": (1, 2, 7)}, {"trim": "none", "by_insurance": True}])
def test_the_weighted_mean_rw_is_one(history, options):
    c = calibrate_weights(history, decimals=None, **options)
    scope = ["insurance"] if options.get("by_insurance") else []
    # W_g = Σ w over the kept cases of g (w = year weight, 1 without): Σ W_g·rw_own_g / Σ W_g = 1 per scope
    frame = c.weights
    if "year_weights" in options:
        from grouper.payment.weights import WeightOptions, prepare

        kept = prepare(history, WeightOptions(year_weights=(1, 2, 7))).rows.filter(pl.col("kept"))
        frame = frame.join(kept.group_by("drg").agg(pl.col("w").sum().alias("W")), on="drg")
    else:
        frame = frame.with_columns(pl.col("n_kept").cast(pl.Float64).alias("W"))
    for _, part in (frame.group_by(scope) if scope else [((), frame)]):
        assert (part["W"] * part["rw_own"]).sum() / part["W"].sum() == pytest.approx(1.0, abs=1e-12)


def test_cli_writes_a_table_that_a_scheme_accepts(tmp_path):
    import shutil

    from grouper.explain import explain_case
    from grouper.io import read_cases
    from grouper.scheme import load_scheme

    source = tmp_path / "history.parquet"
    assert main(["synth", "history", "--hospitals", "4", "--cases", "20000", "-o", str(source), "-q"]) == 0
    out = tmp_path / "weights.csv"
    assert main(["calibrate", "weights", str(source), "-o", str(out), "--report", str(tmp_path / "rep"),
                 "--year-weights", "1:2:7", "--trim", "percentile", "-q"]) == 0
    assert sorted(p.name for p in (tmp_path / "rep").iterdir() if p.name != OUTPUT_MARKER) == [
        "drgs.csv", "merges.csv", "riv.csv", "splits.csv", "summary.csv"]
    pack = tmp_path / "pack"
    shutil.copytree(DEMO, pack)
    shutil.copyfile(out, pack / "drg_weights.csv")
    table = dict(pl.read_csv(out).select("drg", "weight").iter_rows())
    scheme = load_scheme(pack)
    case = read_cases(DEMO / "discharges.csv").filter(pl.col("id") == "G02")
    explained = explain_case(scheme, case)
    assert explained.weight == table[explained.drg]
    assert main(["calibrate", "weights", str(source), "-o", str(tmp_path / "w.csv"), "--by-insurance", "-q"]) == 0
    assert (tmp_path / "w-employee.csv").is_file() and (tmp_path / "w-resident.csv").is_file()


@pytest.fixture(scope="module")
def small_history(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("history") / "history.parquet"
    assert main(["synth", "history", "--hospitals", "2", "--cases", "2000", "-o", str(path), "-q"]) == 0
    return path


@pytest.mark.parametrize("report", ["rep", "rep/", "./rep//"])
def test_cli_names_the_report_folder_once(small_history, tmp_path, monkeypatch, capsys, report):
    monkeypatch.chdir(tmp_path)
    assert main(["calibrate", "weights", str(small_history), "-o", "w.csv", "--report", report]) == 0
    assert (tmp_path / "rep" / "summary.csv").is_file()
    assert "weights → w.csv, rep/\n" in capsys.readouterr().err


def test_cli_option_errors_are_usage_errors(tmp_path, capsys):
    history = tmp_path / "h.csv"
    history.write_text("id,dx,sex,age,cost\n1,J18.900,1,40,100.00\n", encoding="utf-8")
    base = ["calibrate", "weights", str(history), "-o", str(tmp_path / "w.csv"), "-q"]
    assert main(base + ["--iqr", "1"]) == 2
    assert main(base + ["--year-weights", "1,2"]) == 2
    assert main(base + ["--trim", "percentile", "--percentiles", "90,10"]) == 2
    assert main(base + ["-o", str(history)]) == 2                     # would overwrite its input
    assert main(base + ["--min-cases", "1"]) == 0
    assert "error" in capsys.readouterr().err


def test_a_cost_exactly_on_the_lower_iqr_fence_is_kept():
    # n = 2: Q1 = 4,489.46 + ¼ × 1,330.38 = 4,822.055, Q3 = 5,487.245, IQR = 665.19, lower fence =
    # 4,822.055 − 0.5 × 665.19 = 4,489.46 exactly: the cheaper case is kept (floats lost it: n_kept 1)
    c = calibrate_weights(cases({"A1": [4489.46, 5819.84]}), min_cases=1, decimals=None)
    row = c.weights.row(0, named=True)
    assert (row["n"], row["n_kept"], row["trimmed_mean"]) == (2, 2, 5154.65)


def test_a_half_fen_median_is_rounded_half_up():
    # (4,748.43 + 4,748.44) ÷ 2 = 4,748.435 → 4,748.44 (from a float it came out 4,748.43)
    c = calibrate_weights(cases({"A1": [4748.43, 4748.44]}), min_cases=1)
    assert c.weights["median"].to_list() == [4748.44]


def test_percentile_fences_are_exact():
    # 40 cases 1..40 yuan: the 2.5th percentile is 1 + 39 × 0.025 = 1.975 yuan, the 97.5th 39.025:
    # 1 and 40 are trimmed, 2..39 kept
    c = calibrate_weights(cases({"A1": list(range(1, 41))}), trim="percentile", min_cases=1, min_cost=0)
    assert c.weights["n_kept"].to_list() == [38]


def test_ratios_are_written_to_their_stated_precision():
    c = calibrate_weights(cases(SKEWED), min_cases=3)
    row = c.weights.row(0, named=True)
    assert row["cv"] == round(math.sqrt(12500) / 250, 4) and row["rw_own"] == round(250 / (1180 / 7), 6)


def test_values_sorted_within_groups_as_a_two_key_sort():
    """The exact quantiles sort costs by (group, cost) with one sort of a combined key; it must be the
    lexsort's order, for any values (negative, wide) and when the combined key would overflow."""
    import numpy as np

    from grouper.payment.weights import _sorted_within_groups

    rng = np.random.default_rng(0)
    for _ in range(300):
        n = int(rng.integers(0, 60))
        gid = rng.integers(0, 7, n)
        values = rng.integers(-10**12, 10**12, n) if rng.random() < 0.5 else rng.integers(-5, 5, n)
        assert np.array_equal(_sorted_within_groups(values, gid, 7), values[np.lexsort((values, gid))])
    wide = np.array([2**62, -2**62, 5, 5])
    gid = np.array([1, 0, 1, 0])
    assert np.array_equal(_sorted_within_groups(wide, gid, 2), wide[np.lexsort((wide, gid))])
