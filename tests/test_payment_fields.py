"""Settlement fields: reading (Chinese headers, money in fen, dates, levels, insurance), validation
reasons per field, carry-through into grouped files and the grouped-file reader."""
import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

import grouper
from grouper import reasons
from grouper.cli import main
from grouper.errors import InputError
from grouper.fields import SETTLEMENT_REASONS, money_fen, parse_date, typed_fields
from grouper.grouped import GROUPED_SCHEMA, read_grouped

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tables" / "demo"
HEADER = ("id,性别,年龄,住院天数,离院方式,诊断编码,手术操作编码,定点医疗机构编码,医疗机构等级,险种类型,"
          "医疗总费用,统筹基金支付,入院日期,出院日期,个人编码,特例单议\n")
GOOD = '1,1,40,5,1,J18.900,,H001,三级甲等,310,"¥1,234.50",800,2024/1/5,2024年1月10日,P1,否\n'


def money(values, dtype=pl.String, integers="yuan"):
    return pl.select(money_fen(pl.Series(values, dtype=dtype), dtype, integers)).to_series().to_list()


def test_money_text_is_yuan_to_exact_fen():
    assert money(["¥1,234.50", "1234.5", "1234", "-0.05", "1 234.00元", "￥0.10", "1234.500", "+7.1"]) == [
        123450, 123450, 123400, -5, 123400, 10, 123450, 710]


def test_money_text_that_is_not_an_amount_is_null():
    assert money(["12.345", "abc", "1.2.3", "", None, "12,34.5.6", "1e5"]) == [None] * 7


def test_money_columns_by_dtype():
    assert money([123450, None], pl.Int64, "fen") == [123450, None]     # integers in a grouped file are fen
    assert money([1234, None], pl.Int64) == [123400, None]              # in a raw export, whole yuan (it was fen)
    assert money([1234.5, 0.1 + 0.2, -2.5], pl.Float64) == [123450, 30, -250]  # floats are yuan, to the fen
    # half up from the decimal form: 1234.565 is 1234.5649999… in binary (×100 + 0.5 floored gave 123456)
    assert money([1234.565, -5.005, 0.125], pl.Float64) == [123457, -501, 13]


def test_a_decimal_comma_is_not_a_thousands_separator():
    # "1234,50" was read as 123,450.00 yuan
    assert money(["1234,50", "1234,5", "1,234", "1,234,567.8", "1，234.50", "12,34", "1,23,456"]) == [
        123450, 123450, 123400, 123456780, 123450, 1234, None]


def test_dates_in_the_common_spellings():
    values = ["2024-01-05", "2024/1/5", "2024.01.05", "2024年1月5日", "20240105", "20240105143000",
              "2024-01-05 08:30:00", "45296", "2024-02-30", "05/01/2024", "abc", None]
    out = pl.select(parse_date(pl.Series(values), pl.String)).to_series().to_list()
    day = dt.date(2024, 1, 5)
    assert out == [day] * 8 + [None] * 4


def test_levels_insurance_and_flags():
    frame = pl.DataFrame({
        "hospital_level": ["三级", "三级甲等", "3", "二级", "2级", "一级", "1", "未定级", None],
        "insurance": ["310", "390", "职工基本医疗保险", "城乡居民", "employee", "resident", "320", "", None],
        "special_review": ["1", "是", "true", "Y", "0", "否", "no", "maybe", None],
    })
    typed = typed_fields(frame)
    assert typed["hospital_level"].to_list() == [3, 3, 3, 2, 2, 1, 1, None, None]
    assert typed["insurance"].to_list() == ["employee", "resident", "employee", "resident", "employee", "resident",
                                            "320", None, None]
    assert typed["special_review"].to_list() == [True, True, True, True, False, False, False, False, False]
    assert typed["_bad_special_review"].to_list() == [False] * 7 + [True, False]
    assert typed["_bad_hospital_level"].to_list() == [False] * 7 + [True, False]


# one minimal bad value per settlement reason: (column, value, expected detail)
MINIMAL = {
    "malformed_hospital_level": ("医疗机构等级", "未定级", "未定级"),
    "malformed_cost": ("医疗总费用", "12.345", "12.345"),
    "malformed_fund_paid": ("统筹基金支付", "八百", "八百"),
    "malformed_admission_date": ("入院日期", "2024-13-01", "2024-13-01"),
    "malformed_discharge_date": ("出院日期", "tomorrow", "tomorrow"),
    "malformed_special_review": ("特例单议", "maybe", "maybe"),
    "implausible_cost": ("医疗总费用", "-5", "-5.00"),
    "implausible_dates": ("出院日期", "2024-01-04", "2024-01-04 < 2024-01-05"),
}


def case_with(column: str, value: str) -> pl.DataFrame:
    good = pl.read_csv((HEADER + GOOD).encode(), infer_schema=False)
    return good.with_columns(pl.lit(value).alias(column))


def test_every_settlement_reason_is_in_the_catalogue_and_has_a_case():
    assert set(MINIMAL) == set(SETTLEMENT_REASONS)
    assert all(reasons.CATALOGUE[code].level == "warning" for code in SETTLEMENT_REASONS)


def test_a_clean_case_carries_every_field_typed():
    results, problems = grouper.group(case_with("id", "1"), carry=True, problems=True)
    assert problems.height == 0
    row = results.row(0, named=True)
    assert row == {"id": "1", "status": "grouped", "mdc": "MDCE", "adrg": "ES3", "drg": "ES35", "reason": None,
                   "warnings": [], "hospital": "H001", "hospital_level": 3, "insurance": "employee", "cost": 123450,
                   "fund_paid": 80000, "admission_date": dt.date(2024, 1, 5), "discharge_date": dt.date(2024, 1, 10),
                   "patient_id": "P1", "special_review": False, "sex": 1, "age": 40, "age_days": None, "los": 5,
                   "discharge": 1, "dept": None}
    assert dict(results.schema) == GROUPED_SCHEMA


@pytest.mark.parametrize("code", list(MINIMAL))
def test_a_bad_settlement_value_is_a_warning_with_its_reason(code):
    column, value, detail = MINIMAL[code]
    results, problems = grouper.group(case_with(column, value), carry=True, problems=True)
    assert results.height == 1
    assert problems.select("reason", "level", "detail").rows() == [(code, "warning", detail)]
    assert problems["id"].to_list() == ["1"]
    row = results.row(0, named=True)
    assert (row["status"], row["drg"], row["warnings"]) == ("grouped", "ES35", [code])


def test_a_scheme_can_make_a_settlement_check_an_error(tmp_path):
    pack = tmp_path / "strict"
    shutil.copytree(DEMO, pack)
    with (pack / "scheme.grp").open("a", encoding="utf-8") as fh:
        fh.write("\nvalidate malformed_cost = error\nvalidate implausible_dates = off\n")
    bad = pl.concat([case_with("医疗总费用", "abc"), case_with("出院日期", "2024-01-01").with_columns(pl.lit("2").alias("id"))])
    results = grouper.group(bad, str(pack), carry=True)
    assert results.select("status", "drg", "reason", "warnings").rows() == [
        ("invalid", None, "malformed_cost", []), ("grouped", "ES35", None, [])]


def test_an_invalid_case_keeps_its_first_reason():
    bad = case_with("医疗总费用", "abc").with_columns(pl.lit("x").alias("年龄"))
    row = grouper.group(bad, carry=True).row(0, named=True)
    assert (row["status"], row["reason"], row["warnings"]) == ("invalid", "malformed_age", ["malformed_cost"])


def test_settlement_fields_by_column_mapping_and_absent_fields():
    frame = pl.DataFrame({"dx": ["J18.900"], "sex": ["1"], "age": ["40"], "总金额": ["10"]})
    results = grouper.group(frame, carry=True, columns={"cost": "总金额"})
    assert results.row(0, named=True)["cost"] == 1000
    assert results["hospital"].to_list() == [None] and results["special_review"].to_list() == [False]
    with pytest.raises(InputError, match="given for 'cost'"):
        grouper.group(frame, carry=True, columns={"cost": "费用"})


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_grouped_files_round_trip_exactly(tmp_path, suffix):
    src = tmp_path / "cases.csv"
    rows = [GOOD] + [case_with(c, v).write_csv(include_header=False) for c, v, _ in MINIMAL.values()]
    src.write_text(HEADER + "".join(rows), encoding="utf-8")
    out = tmp_path / f"grouped{suffix}"
    assert main(["group", str(src), "-o", str(out), "--carry", "-q"]) == 0
    back = read_grouped(out)
    assert back.height == len(rows)
    assert back.equals(grouper.group(src, carry=True))
    if suffix == ".csv":
        assert pl.read_csv(out, infer_schema=False)["cost"].to_list()[0] == "1234.50"


def test_read_grouped_selects_columns_and_several_files(tmp_path):
    grouped = grouper.group(case_with("id", "1"), carry=True)
    grouped.write_parquet(tmp_path / "a.parquet")
    two = read_grouped([tmp_path / "a.parquet", tmp_path / "a.parquet"], columns=["drg", "cost"])
    assert two.rows() == [("ES35", 123450)] * 2


def test_read_grouped_refuses_a_file_that_is_not_grouped(tmp_path):
    with pytest.raises(InputError, match="not a grouped file"):
        read_grouped(DEMO / "discharges.csv")


def test_a_grouped_parquet_missing_every_field_left_to_parse_keeps_its_rows(tmp_path):
    # hospital is already typed (taken as is); cost and special_review are absent: they come back
    # null and false on every row, not a one-row frame that cannot sit beside the others.
    path = tmp_path / "grouped.parquet"
    pl.DataFrame({"id": ["1", "2", "3"], "status": ["grouped"] * 3, "drg": ["A", "B", "C"],
                  "hospital": ["H1", "H1", "H2"]}).write_parquet(path)
    frame = read_grouped(path, columns=["id", "status", "drg", "hospital", "cost", "special_review"])
    assert frame.height == 3
    assert frame["hospital"].to_list() == ["H1", "H1", "H2"]
    assert frame["cost"].null_count() == 3 and frame["special_review"].to_list() == [False] * 3
    assert typed_fields(pl.DataFrame({"other": ["x", "y"]})).height == 2


def test_fields_parsed_through_distinct_values_as_row_by_row():
    """A large frame's settlement fields are parsed once per distinct value and gathered back; the
    result must be what the row-by-row rules give (frames under 1024 rows take that path)."""
    import random

    from grouper.fields import CARRIED_COLUMNS, typed_fields

    rng = random.Random(4)
    spellings = ["", " ", "3", "三级", "二级甲等", "1", "30", "x", None, "2024-01-05", "2024/1/5", "20240105", "45000",
                 "12.0", " 7 ", "-3", "+4", "男", "女", "M", "310", "390", "职工", "居民", "是", "否", "true", "1,234.50",
                 "1234,5", "¥12", "12.345", "99999999999"]
    frame = pl.DataFrame({c: [rng.choice(spellings) for _ in range(3000)] for c in CARRIED_COLUMNS},
                         schema={c: pl.String for c in CARRIED_COLUMNS})
    frame = frame.with_columns(pl.Series("hospital_level", [rng.choice([1, 2, 3, 30, 0, None]) for _ in range(3000)]))
    whole = typed_fields(frame)
    by_rows = pl.concat([typed_fields(frame.slice(start, 1000)) for start in range(0, 3000, 1000)])
    assert whole.equals(by_rows) and whole.height == 3000
