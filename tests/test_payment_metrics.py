"""Hospital indicators: a hand-computed example for every formula, and the split-files property."""
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.errors import InputError
from grouper.payment.api import calibrate_weights, hospital_metrics, load_grouped, synth_history

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tables" / "demo"

# hospital, dept, status, drg, cost (yuan), los, discharge
ROWS = [
    ("H1", "S", "grouped", "X1", 200, 4, 1),
    ("H1", "S", "grouped", "X1", 400, 6, 1),
    ("H1", "M", "grouped", "Y1", 100, 2, 5),
    ("H1", "M", "no_adrg", None, 50, 3, 1),
    ("H1", "S", "grouped", "X1", 1000, 61, 1),   # excluded: LOS > 60
    ("H2", None, "grouped", "X1", 300, 5, 1),
    ("H2", None, "grouped", "Y1", 300, 4, 1),
]
WEIGHTS = pl.DataFrame({"drg": ["X1", "Y1"], "weight": [2.0, 0.5], "risk": ["high", "low"],
                        "mean": [250.0, 250.0], "los_mean": [4.0, 4.0]})


def grouped() -> pl.DataFrame:
    frame = pl.DataFrame(ROWS, schema=["hospital", "dept", "status", "drg", "cost", "los", "discharge"], orient="row")
    return frame.with_columns(pl.col("cost") * 100, pl.col("los", "discharge").cast(pl.Int32))


def row(metrics: pl.DataFrame, hospital: str, dept: str | None = None) -> dict:
    found = metrics.filter((pl.col("hospital") == hospital) & (pl.col("dept").eq_missing(dept)))
    assert found.height == 1
    return found.row(0, named=True)


def test_every_indicator_by_hand():
    m = hospital_metrics(grouped(), WEIGHTS)
    h1 = row(m, "H1")
    assert (h1["cases"], h1["excluded"], h1["grouped"], h1["drg_count"], h1["weighted_cases"]) == (5, 1, 3, 2, 3)
    assert h1["grouping_rate"] == pytest.approx(3 / 4)                # grouped ÷ (cases − excluded)
    assert h1["total_weight"] == pytest.approx(4.5)
    assert h1["cmi"] == pytest.approx(4.5 / 3)
    # benchmarks over every weighted case: X1 cost (200+400+300)/3 = 300, LOS 5; Y1 cost 200, LOS 3
    assert h1["cost_index"] == pytest.approx((200 / 300 + 400 / 300 + 100 / 200) / 3)
    assert h1["time_index"] == pytest.approx((4 / 5 + 6 / 5 + 2 / 3) / 3)
    assert (h1["low_risk_cases"], h1["low_risk_deaths"], h1["low_risk_mortality"]) == (1, 1, 1.0)
    assert h1["rw2_share"] == pytest.approx(2 / 3)
    assert h1["cost_per_weight"] == pytest.approx(700 / 4.5)
    assert h1["los_per_weight"] == pytest.approx(12 / 4.5)
    h2 = row(m, "H2")
    assert h2["cmi"] == pytest.approx(2.5 / 2)
    assert h2["cost_index"] == pytest.approx((300 / 300 + 300 / 200) / 2)
    assert h2["time_index"] == pytest.approx((5 / 5 + 4 / 3) / 2)
    assert (h2["low_risk_cases"], h2["low_risk_mortality"]) == (1, 0.0)


def test_department_rows():
    m = hospital_metrics(grouped(), WEIGHTS)
    assert m.select("hospital", "dept").rows() == [("H1", None), ("H1", "M"), ("H1", "S"), ("H2", None)]
    surgery = row(m, "H1", "S")
    assert (surgery["cases"], surgery["excluded"], surgery["cmi"]) == (3, 1, 2.0)
    medicine = row(m, "H1", "M")
    assert medicine["grouping_rate"] == pytest.approx(0.5) and medicine["cmi"] == pytest.approx(0.5)
    assert hospital_metrics(grouped(), WEIGHTS, by_dept=False).height == 2


def test_benchmark_from_the_weights_table():
    h1 = row(hospital_metrics(grouped(), WEIGHTS, benchmark="weights"), "H1")
    assert h1["cost_index"] == pytest.approx((200 + 400 + 100) / 250 / 3)
    assert h1["time_index"] == pytest.approx((4 + 6 + 2) / 4 / 3)


def test_low_risk_groups_from_the_cases_without_a_risk_column():
    # 30 cases per DRG: X1 no deaths → low (rate 0); Y1 3 deaths → the only positive rate, z null → unclassified
    frame = pl.DataFrame({"hospital": "H", "dept": None, "status": "grouped", "drg": ["X1"] * 30 + ["Y1"] * 30,
                          "cost": 10_000, "los": 3, "discharge": [1] * 30 + [5] * 3 + [1] * 27})
    m = hospital_metrics(frame, {"X1": 1.0, "Y1": 2.0})
    assert (m["low_risk_cases"].item(), m["low_risk_deaths"].item()) == (30, 0)


def test_weights_table_errors():
    with pytest.raises(InputError, match="drg and weight"):
        hospital_metrics(grouped(), pl.DataFrame({"drg": ["X1"]}))
    with pytest.raises(InputError, match="twice"):
        hospital_metrics(grouped(), pl.DataFrame({"drg": ["X1", "X1"], "weight": [1.0, 2.0]}))
    with pytest.raises(InputError, match="mean and los_mean"):
        hospital_metrics(grouped(), {"X1": 1.0}, benchmark="weights")


def test_cmi_is_unchanged_when_cases_are_split_across_files(tmp_path):
    history = load_grouped(synth_history(DEMO, hospitals=6, years=2, cases=20_000, seed=9), DEMO)
    weights = calibrate_weights(history).weights
    whole = hospital_metrics(history, weights)
    shuffled = history.sample(fraction=1.0, shuffle=True, seed=3)
    shuffled.head(7000).write_parquet(tmp_path / "a.parquet")
    shuffled.tail(13000).write_parquet(tmp_path / "b.parquet")
    split = hospital_metrics(load_grouped([tmp_path / "a.parquet", tmp_path / "b.parquet"]), weights)
    columns = ["hospital", "dept", "cases", "weighted_cases", "drg_count"]
    assert whole.select(columns).equals(split.select(columns))
    assert whole["cmi"].to_list() == pytest.approx(split["cmi"].to_list(), rel=1e-12)
    assert whole["cost_index"].to_list() == pytest.approx(split["cost_index"].to_list(), rel=1e-12)
    # each file on its own: the hospital's CMI is the weight-sum over the case-sum of the parts
    parts = [hospital_metrics(shuffled.head(7000), weights), hospital_metrics(shuffled.tail(13000), weights)]
    combined = (pl.concat(parts).filter(pl.col("dept").is_null()).group_by("hospital")
                .agg((pl.col("total_weight").sum() / pl.col("weighted_cases").sum()).alias("cmi")).sort("hospital"))
    assert combined["cmi"].to_list() == pytest.approx(whole.filter(pl.col("dept").is_null())["cmi"].to_list())


def test_cli_metrics_with_the_scheme_weights(tmp_path):
    history = tmp_path / "h.csv"
    assert main(["synth", "history", "--hospitals", "3", "--cases", "3000", "-o", str(history), "-q"]) == 0
    grouped_path = tmp_path / "g.csv"
    assert main(["group", str(history), "-o", str(grouped_path), "--carry", "-q"]) == 0
    out = tmp_path / "m.csv"
    assert main(["metrics", str(grouped_path), "-o", str(out), "-q"]) == 0  # the demo scheme's weights
    m = pl.read_csv(out)
    assert m.filter(pl.col("dept").is_null()).height == 3 and m["cmi"].min() > 0
    weights = tmp_path / "w.csv"
    assert main(["calibrate", "weights", str(history), "-o", str(weights), "-q"]) == 0  # raw cases: grouped here
    assert main(["metrics", str(history), "--weights", str(weights), "-o", str(out), "--benchmark", "weights",
                 "-q"]) == 0
    assert main(["metrics", str(history), "--weights", str(weights), "-o", str(history)]) != 0  # would overwrite input


def test_written_files_round_money_and_ratios_to_their_stated_precision(tmp_path):
    """metrics.csv, weights.csv and hospitals.csv showed floats such as 1429.3466999999998."""
    import re

    from grouper.cli import main as cli

    root = Path(__file__).resolve().parents[1]
    grouped = tmp_path / "g.parquet"
    assert cli(["group", str(root / "tables" / "demo" / "history.csv"), "-o", str(grouped), "--carry", "-q"]) == 0
    assert cli(["metrics", str(grouped), "-o", str(tmp_path / "metrics.csv"), "-q"]) == 0
    assert cli(["calibrate", "weights", str(grouped), "-o", str(tmp_path / "weights.csv"), "-q"]) == 0
    assert cli(["settle", str(grouped), "--policy", str(root / "tables" / "policies" / "zhejiang-points.toml"),
                "--weights", str(tmp_path / "weights.csv"), "-o", str(tmp_path / "s"), "-q"]) == 0
    for path, most in ((tmp_path / "metrics.csv", 4), (tmp_path / "weights.csv", 6), (tmp_path / "s" / "hospitals.csv", 6)):
        decimals = [len(d) for d in re.findall(r"\d\.(\d+)", path.read_text(encoding="utf-8"))]
        assert decimals and max(decimals) <= most, path.name


def test_drg_codes_of_the_weights_table_are_read_stripped_as_checked():
    # the check reads " X1 " as X1; the indicators used to join the raw text and lose its weight
    padded = WEIGHTS.with_columns(pl.Series("drg", [" X1 ", "Y1\t"]))
    assert hospital_metrics(grouped(), padded).equals(hospital_metrics(grouped(), WEIGHTS))
