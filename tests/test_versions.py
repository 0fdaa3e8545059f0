"""Version-aware grouping (a dated list of packs) and the crosswalk between two schemes."""
import polars as pl
import pytest

from grouper.cli import main
from grouper.errors import InputError
from grouper.io import read_cases
from grouper.pipeline import group_frame
from grouper.versions import crosswalk, group_by_date, load_schedule


@pytest.fixture(scope="module")
def history(chs_tables, tmp_path_factory):
    """2,000 golden 1.1 cases discharged over 2024-2025 (every 7th without a date, a few before 2019)."""
    cases = pl.read_csv(chs_tables / "golden" / "cases.csv", infer_schema=False).head(2000)
    days = pl.int_range(0, cases.height, eager=True) % 700
    dates = (pl.lit("2024-01-01").str.to_date() + pl.duration(days=days)).alias("discharge_date")
    cases = cases.with_columns(pl.select(dates).to_series().cast(pl.String))
    cases = cases.with_columns(
        pl.when(pl.int_range(0, cases.height) % 7 == 3).then(None)
        .when(pl.int_range(0, cases.height) % 101 == 5).then(pl.lit("2018/6/1"))
        .otherwise(pl.col("discharge_date")).alias("discharge_date"))
    path = tmp_path_factory.mktemp("history") / "history.csv"
    cases.write_csv(path)
    return path


@pytest.fixture(scope="module")
def schedule(chs_pack, chs20_pack, tmp_path_factory):
    path = tmp_path_factory.mktemp("schedule") / "schemes.csv"
    path.write_text(f"from,pack\n2025-01-01,{chs20_pack}\n2019-10-01,{chs_pack}\n", encoding="utf-8")
    return load_schedule(path)


def test_each_case_is_grouped_by_the_scheme_in_force(history, schedule):
    results = pl.concat(list(group_by_date(history, schedule, batch_size=700)))
    raw = pl.read_csv(history, infer_schema=False)
    assert results["id"].to_list() == raw["id"].to_list()
    dates = raw["discharge_date"].str.to_date("%Y-%m-%d", strict=False)
    cases = read_cases(history)
    for start, end, version, period in (("2019-10-01", "2025-01-01", "1.1", schedule.periods[0]),
                                        ("2025-01-01", "2100-01-01", "2.0", schedule.periods[1])):
        mask = (dates >= pl.lit(start).str.to_date()) & (dates < pl.lit(end).str.to_date())
        mask = pl.select(mask.fill_null(False)).to_series()
        got = results.filter(mask)
        assert set(got["scheme_version"]) == {version} and set(got["scheme"]) == {"CHS-DRG"}
        want = group_frame(period.scheme.plan, cases.filter(mask))
        assert got.select("id", "status", "mdc", "adrg", "drg").equals(want.select("id", "status", "mdc", "adrg", "drg"))
    outside = results.filter(pl.col("scheme").is_null())
    assert outside.height == raw.filter(pl.col("discharge_date").is_null() | pl.col("discharge_date").str.starts_with("2018")).height
    assert set(outside["status"]) == {"invalid"} and set(outside["reason"]) == {"no_scheme_in_force"}
    assert "qy" in set(results["status"])          # 2.0 is active after the switch


def test_cli_group_by_date(history, schedule, chs_pack, chs20_pack, tmp_path, capsys):
    plan = tmp_path / "schemes.csv"
    plan.write_text(f"from,pack\n2019-10-01,{chs_pack}\n2025-01-01,{chs20_pack}\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert main(["group", str(history), "-o", str(out), "--by-date", str(plan)]) == 0
    written = pl.read_csv(out, infer_schema=False)
    assert written.height == 2000 and written.columns[-2:] == ["scheme", "scheme_version"]
    assert "grouped by discharge date" in capsys.readouterr().err


def test_bad_schedules_are_reported(tmp_path, chs_pack, chs_tables):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"from,pack\n2025-13-01,{chs_pack}\n", encoding="utf-8")
    with pytest.raises(InputError, match="is not a date"):
        load_schedule(bad)
    bad.write_text("start,scheme\n", encoding="utf-8")
    with pytest.raises(InputError, match="columns from,pack"):
        load_schedule(bad)
    ok = tmp_path / "ok.csv"
    ok.write_text(f"from,pack\n2019-10-01,{chs_pack}\n", encoding="utf-8")
    with pytest.raises(InputError, match="discharge date"):   # the golden cases have no discharge date
        list(group_by_date(chs_tables / "golden" / "cases.csv", load_schedule(ok)))


def test_crosswalk_counts_and_shares(history, chs_scheme, chs20_scheme):
    table = crosswalk(history, chs_scheme, chs20_scheme, batch_size=900)
    assert table["cases"].sum() == 2000
    shares = table.group_by("from_group").agg(pl.col("share").sum(), pl.col("cases").sum(), pl.col("from_cases").first())
    assert (shares["cases"] == shares["from_cases"]).all()
    assert ((shares["share"] - 1).abs() < 0.001).all()
    # each pair is what the two schemes give separately
    cases = read_cases(history)
    a, b = group_frame(chs_scheme.plan, cases), group_frame(chs20_scheme.plan, cases)
    label = lambda r: pl.when(pl.col("drg").is_not_null()).then(pl.col("drg")).otherwise(pl.format("({})", pl.col("status")))  # noqa: E731
    pairs = pl.DataFrame({"from_group": a.select(label(a)).to_series(), "to_group": b.select(label(b)).to_series()})
    want = pairs.group_by("from_group", "to_group").len("cases").sort("from_group", "to_group")
    got = table.select("from_group", "to_group", pl.col("cases").cast(pl.UInt32)).sort("from_group", "to_group")
    assert got.equals(want)
    assert table["from_weight"].null_count() == table.height      # 1.1 carries no weights
    grouped = table.filter(pl.col("to_group").str.contains(r"^[A-Z]{2}\d{2}$") & pl.col("to_weight").is_not_null())
    assert grouped.height > 0 and grouped["weight_change"].null_count() == grouped.height


def test_crosswalk_weight_change_when_both_carry_weights(chs20_scheme, chs20_tables, tmp_path):
    cases = pl.read_csv(chs20_tables / "golden" / "cases.csv", infer_schema=False).head(1500)
    table = crosswalk(cases, chs20_scheme, chs20_scheme)
    assert (table["from_group"] == table["to_group"]).all() and (table["share"] == 1.0).all()
    weighted = table.filter(pl.col("from_weight").is_not_null())
    assert weighted.height > 100 and (weighted["weight_change"] == 0).all()


def test_cli_crosswalk(history, chs_pack, chs20_pack, tmp_path, capsys):
    out = tmp_path / "crosswalk.csv"
    assert main(["crosswalk", str(history), "--from", str(chs_pack), "--to", str(chs20_pack), "-o", str(out)]) == 0
    assert pl.read_csv(out)["cases"].sum() == 2000
    assert "CHS-DRG 1.1 → CHS-DRG 2.0" in capsys.readouterr().err
    assert main(["crosswalk", str(history), "--from", str(chs_pack), "--to", str(chs20_pack), "-o", str(history)]) == 2
