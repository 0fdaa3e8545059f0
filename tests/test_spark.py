"""grouper on Spark (local[2]) and the Arrow-batch API: results equal the single-machine run exactly,
whatever the partitioning (same rows, same values, same money to the fen)."""
from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest

from conftest import ROOT
from grouper import api
from grouper.cli import main

if os.environ.get("CI", "").lower() != "true":  # CI installs the extra (.ci/run): there its absence fails
    pytest.importorskip("pyspark")

POLICIES = ROOT / "tables" / "policies"
DIP_DEMO = ROOT / "tables" / "dip-demo"


def _plain(frame: pl.DataFrame) -> pl.DataFrame:
    """The single-machine frame as Spark returns it: Enums as strings, unsigned integers signed."""
    signed = {pl.UInt8: pl.Int16, pl.UInt16: pl.Int32, pl.UInt32: pl.Int64, pl.UInt64: pl.Int64}
    return frame.with_columns(
        pl.col(c).cast(pl.String) if isinstance(t, (pl.Enum, pl.Categorical)) else pl.col(c).cast(signed[t])
        for c, t in frame.schema.items() if isinstance(t, (pl.Enum, pl.Categorical)) or t in signed)


def _collect(df) -> pl.DataFrame:
    return pl.from_arrow(df.toArrow())


def _as_text(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.all().cast(pl.String))


# -- the Arrow-batch entry (no Spark) ------------------------------------------------------------

def _arrow_grouped(frame: pl.DataFrame, scheme, size: int, **options) -> pl.DataFrame:
    batches = frame.to_arrow().to_batches(max_chunksize=size)
    return pl.from_arrow(pa.Table.from_batches(list(api.group_arrow(batches, scheme, **options))))


def test_arrow_batches_group_as_one_frame(chs_scheme, chs_tables):
    raw = pl.read_csv(chs_tables / "golden" / "cases.csv", infer_schema=False)
    whole = api.group(raw, chs_scheme)
    for size in (997, 20_000):
        out = _arrow_grouped(raw, chs_scheme, size)
        assert out.columns == [*raw.columns, *whole.columns[1:]]
        assert out.select(raw.columns).equals(raw)
        assert out.select("id", *whole.columns[1:]).equals(whole)
    one_by_one = _arrow_grouped(raw.head(200), chs_scheme, 1, keep_input=False)
    assert one_by_one.equals(whole.head(200))


def test_arrow_grouper_schema_and_refusals():
    raw = pl.read_csv(ROOT / "tables" / "demo" / "discharges.csv", infer_schema=False)
    runner = api.arrow_grouper(None)
    assert runner.schema(raw.to_arrow().schema) == runner(raw.to_arrow().to_batches()[0]).schema
    empty = runner(pa.RecordBatch.from_pylist([], schema=raw.to_arrow().schema))
    assert empty.num_rows == 0 and empty.schema == runner.schema(raw.to_arrow().schema)
    clashing = raw.with_columns(pl.lit("x").alias("status"))
    with pytest.raises(ValueError, match="prefix"):
        next(api.group_arrow(clashing.to_arrow().to_batches(), None))
    out = next(api.group_arrow(clashing.to_arrow().to_batches(), None, prefix="g_"))
    assert {"status", "g_status", "g_drg"} <= set(out.schema.names)


def test_arrow_batches_of_a_dip_pack():
    raw = pl.read_csv(DIP_DEMO / "discharges.csv", infer_schema=False)
    from grouper.dip import group_dip

    whole = group_dip(raw, DIP_DEMO)
    assert _arrow_grouped(raw, DIP_DEMO, 33, keep_input=False).equals(whole)


# -- Spark ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spark():
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("grouper-tests")
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "4000")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_groups_the_golden_set_exactly(spark, chs_pack, chs_scheme, chs_tables):
    import grouper.spark as gs

    raw = pl.read_csv(chs_tables / "golden" / "cases.csv", infer_schema=False)
    # bad rows get the status and reason they get on the command line
    raw = pl.concat([raw, pl.DataFrame({"id": ["BAD1", "BAD2"], "sex": ["1", "9"], "age": ["abc", "40"]})],
                    how="diagonal_relaxed")
    single = api.group(raw, chs_scheme)
    expected = pl.read_csv(chs_tables / "golden" / "expected.csv", infer_schema=False)
    for partitions in (1, 3, 8):
        df = spark.createDataFrame(raw.to_arrow()).repartition(partitions)
        got = _collect(gs.group(df, chs_pack)).sort("id")
        assert got.height == raw.height
        assert got.select(single.columns).equals(single.sort("id"))
        assert got.select(raw.columns).equals(raw.sort("id"))
    golden = got.join(expected, on="id", suffix="_want")
    assert golden.height == 20_000
    assert all((golden[c].fill_null("") == golden[f"{c}_want"].fill_null("")).all() for c in ("status", "mdc", "adrg", "drg"))
    bad = got.filter(pl.col("id").is_in(["BAD1", "BAD2"])).select("id", "status", "reason").sort("id")
    assert bad.rows() == single.filter(pl.col("id").is_in(["BAD1", "BAD2"])).select("id", "status", "reason").sort("id").rows()
    assert bad["status"].to_list() == ["invalid", "invalid"]


def test_spark_group_needs_an_id(spark):
    import grouper.spark as gs

    df = spark.createDataFrame(pl.DataFrame({"dx": ["K35.800"], "sex": ["1"], "age": ["30"]}).to_arrow())
    with pytest.raises(ValueError, match="id column"):
        gs.group(df)


@pytest.fixture(scope="module")
def year(tmp_path_factory):
    """A synthetic grouped year (two years of history for the weights; the last settled)."""
    folder = tmp_path_factory.mktemp("spark-year")
    history, grouped, weights = folder / "h.parquet", folder / "g.parquet", folder / "w.csv"
    assert main(["synth", "history", "--hospitals", "8", "--years", "2", "--end-year", "2025", "--cases", "12000",
                 "--seed", "5", "-o", str(history), "-q"]) == 0
    assert main(["group", str(history), "-o", str(grouped), "--carry", "-q"]) == 0
    assert main(["calibrate", "weights", str(grouped), "-o", str(weights), "-q"]) == 0
    frame = pl.read_parquet(grouped)
    return frame.filter(pl.col("discharge_date").dt.year() == 2025), weights


def _same_settlement(spark_result, single, region=None):
    keys = {"cases": ["id"], "hospitals": ["hospital"], "groups": [], "pools": ["pool"]}
    for name in ("cases", "hospitals", "groups", "pools"):
        got = _collect(getattr(spark_result, name))
        if region is not None:
            got = got.drop(region)
        want = _plain(getattr(single, name))
        order = keys[name] or [want.columns[0]]
        assert got.columns == want.columns, name
        assert got.sort(order, nulls_last=True).equals(want.sort(order, nulls_last=True)), name


@pytest.mark.parametrize("policy", ["zhejiang-points.toml", "rate-region.toml"])
def test_spark_settles_a_year_exactly(spark, year, policy):
    import grouper.spark as gs
    from grouper.payment.api import settle_cases

    frame, weights = year
    single = settle_cases(frame, POLICIES / policy, weights)
    for partitions in (1, 5):
        df = spark.createDataFrame(frame.to_arrow()).repartition(partitions)
        result = gs.settle(df, POLICIES / policy, weights)
        _same_settlement(result, single)
        result.unpersist()


def test_spark_settles_each_region_under_its_own_policy(spark, year):
    import grouper.spark as gs
    from grouper.payment.api import settle_cases

    frame, weights = year
    frame = frame.with_columns(pl.when(pl.col("hospital") < "H005").then(pl.lit("杭州")).otherwise(pl.lit("金华"))
                               .alias("region"))
    policies = {"杭州": POLICIES / "zhejiang-points.toml", "金华": POLICIES / "rate-region.toml"}
    df = spark.createDataFrame(frame.to_arrow()).repartition(3)
    result = gs.settle(df, policies, weights, region="region")
    cases, hospitals_by_region = result.cases, result.hospitals
    for name, policy in policies.items():
        part = frame.filter(pl.col("region") == name).drop("region")
        single = settle_cases(part, policy, weights)
        got = _collect(cases.filter(cases.region == name)).drop("region").sort("id")
        assert got.equals(_plain(single.cases).sort("id"))
        hospitals = _collect(hospitals_by_region.filter(hospitals_by_region.region == name)).drop("region")
        assert hospitals.sort("hospital").equals(_plain(single.hospitals).sort("hospital"))
    with pytest.raises(ValueError, match="region"):
        gs.settle(df, policies, weights)


def test_spark_groups_and_settles_dip(spark):
    import grouper.spark as gs
    from grouper.dip import group_dip
    from grouper.dip.settle import settle_dip

    raw = pl.read_csv(DIP_DEMO / "discharges.csv", infer_schema=False)
    df = spark.createDataFrame(raw.to_arrow()).repartition(4)
    got = _collect(gs.group(df, DIP_DEMO, keep_input=False)).sort("id")
    assert got.equals(group_dip(raw, DIP_DEMO).sort("id"))
    grouped = _collect(gs.group(df, DIP_DEMO, carry=True, keep_input=False))
    policy = POLICIES / "dip-example.toml"
    result = gs.settle(spark.createDataFrame(grouped.to_arrow()).repartition(3), policy, scheme=DIP_DEMO)
    _same_settlement(result, settle_dip(raw, policy, DIP_DEMO))
