"""Issue 16, guardrails: what settle refuses, every command taking the same input refuses alike.

One weights-table check for every reader of a weights table (settle, group, metrics, screen,
serve), one exit code for a missing input file (a policy or screens file included), number options
refused when not finite or out of range, and a history without costs refused by `calibrate weights`.
The command lines themselves (exit codes, nothing written) are lines of tests/test_corpus.py.
"""
from __future__ import annotations

import math
from decimal import Decimal

import polars as pl
import pytest

from grouper.errors import InputError
from grouper.payment.api import hospital_metrics, load_grouped
from grouper.payment.weights import WeightOptions
from grouper.payment.settle import DrgWeights, checked_weights, read_weights

GROUPED = pl.DataFrame({"hospital": ["H1", "H1"], "dept": [None, None], "status": ["grouped", "grouped"],
                        "drg": ["X1", "Y1"], "cost": [100_000, 200_000], "los": [3, 5], "discharge": [1, 1]})


@pytest.mark.parametrize("weight", [float("nan"), float("inf"), 0.0, -1.0, None])
def test_metrics_refuses_the_weights_settle_refuses(weight):
    """hospital_metrics took NaN, inf, 0 and negative weights (a NaN CMI, exit 0)."""
    weights = pl.DataFrame({"drg": ["X1", "Y1"], "weight": [1.0, weight]}, schema={"drg": pl.String, "weight": pl.Float64})
    with pytest.raises(InputError, match=r"line 3, drg Y1: weight .* is not a positive number"):
        hospital_metrics(GROUPED, weights)
    with pytest.raises(InputError, match="drg Y1"):
        hospital_metrics(GROUPED, {"X1": 1.0, "Y1": weight})


def test_metrics_still_reads_good_weights_with_means_as_numbers():
    weights = pl.DataFrame({"drg": ["X1", "Y1"], "weight": ["1.5", "0.5"], "mean": ["1,000.00", "2000"],
                            "los_mean": ["3", "5"]})
    m = hospital_metrics(GROUPED, weights, benchmark="weights", by_dept=False)
    assert m["cmi"].item() == pytest.approx(1.0)
    assert m["cost_index"].item() == pytest.approx(1.0)


def test_a_decimal_comma_is_refused_not_read_as_a_thousands_separator():
    """`0,85` was read as 85 (a weight 100 times too large, accepted): a comma is a thousands
    separator only in groups of three."""
    table = pl.DataFrame({"drg": ["A1", "B1"], "weight": ["0,85", "1.0"]})
    with pytest.raises(InputError, match="line 2, drg A1: weight '0,85'"):
        checked_weights(table, "w.csv")
    with pytest.raises(InputError, match="drg A1: mean '1,2345'"):
        checked_weights(pl.DataFrame({"drg": ["A1"], "weight": ["1"], "mean": ["1,2345"]}), "w.csv")
    ok = DrgWeights(pl.DataFrame({"drg": ["A1"], "weight": ["1.0"], "mean": ["12,345.67"]}), Decimal(100)).table()
    assert ok["group_mean"].item() == 1_234_567


def test_the_one_reader_reads_parquet_and_gbk_weights_tables(tmp_path):
    frame = pl.DataFrame({"drg": ["甲1", "B1"], "weight": [1.25, 0.5]})
    frame.write_parquet(tmp_path / "w.parquet")
    (tmp_path / "w.csv").write_bytes("drg,weight\n甲1,1.25\nB1,0.5\n".encode("gbk"))
    for path in (tmp_path / "w.parquet", tmp_path / "w.csv"):
        table = checked_weights(read_weights(path), str(path))
        assert table["drg"].to_list() == ["甲1", "B1"]
        assert DrgWeights(table, Decimal(100), str(path)).table()["base_micro"].to_list() == [125_000_000, 50_000_000]
    with pytest.raises(InputError, match="nowhere.csv"):
        read_weights(tmp_path / "nowhere.csv")


@pytest.mark.parametrize("option, value", [("scale", 0.0), ("scale", -1.0), ("scale", math.nan), ("scale", math.inf),
                                           ("sd_k", 0.0), ("iqr_low", math.nan), ("iqr_high", -0.5),
                                           ("max_cv", math.nan), ("min_cost", -1), ("max_los", -1), ("decimals", -1)])
def test_weight_options_refuse_numbers_out_of_range(option, value):
    """WeightOptions(scale=0) calibrated every DRG to 0 points (exit 0); NaN trimmed every case."""
    with pytest.raises(InputError, match=option):
        WeightOptions(**{option: value})


def test_a_history_without_costs_is_refused_naming_the_file_and_field(tmp_path):
    """`calibrate weights` of a file without a cost column wrote an empty weights table (exit 0),
    and of a grouped Parquet file crashed (the reader could not add the missing column)."""
    (GROUPED.drop("cost").with_columns(pl.lit(None, pl.String).alias("mdc"))
     .write_parquet(tmp_path / "nocost.parquet"))
    frame = load_grouped(tmp_path / "nocost.parquet", fields=["status", "drg", "cost"])  # the reader: nulls, no crash
    assert frame["cost"].null_count() == frame.height == 2
    with pytest.raises(InputError, match=r"nocost.parquet has no cost column .* weights are calibrated from each case"):
        load_grouped(tmp_path / "nocost.parquet", fields=["status", "drg", "cost"],
                     required={"cost": "weights are calibrated from each case's cost"})
    assert load_grouped(GROUPED, required={"cost": "needed"}).height == 2


def test_a_missing_policy_or_screens_file_is_an_input_error_not_a_policy_error(tmp_path):
    """A missing --policy was exit 1 (a policy error at line 1) in `serve`, 3 in `settle`."""
    from grouper.screen.screens import load_screens
    from grouper.payment.policy import load_policy

    for load, name in ((load_policy, "policy"), (load_screens, "screens")):
        with pytest.raises(InputError, match=f"nope.toml: no such {name} file"):
            load(tmp_path / "nope.toml")
        with pytest.raises(InputError, match=f"cannot read the {name} file"):
            load(tmp_path)
