from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from grouper.io import (
    CANONICAL_COLUMNS,
    InputError,
    cases_from_frame,
    iter_case_batches,
    read_cases,
    write_results,
)

CANONICAL_SCHEMA = {
    **{name: pl.String for name in CANONICAL_COLUMNS[:-2]},
    "dx": pl.List(pl.String),
    "proc": pl.List(pl.String),
}


def write_text(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def column(df: pl.DataFrame, name: str) -> list:
    return df.get_column(name).to_list()


# --- list shape ------------------------------------------------------------


def test_list_shape_csv_splits_on_pipe_and_comma(tmp_path):
    path = write_text(
        tmp_path / "cases.csv",
        "id,sex,age,dept,dx,proc,extra\n"
        "A1,1,48,04,N48.806|K22.901,58.3102|45.0203,x\n"
        "A2,2,79,,\"A54.401,M01.3*|B\",\"80.98,17.95\",y\n",
    )
    df = read_cases(path)
    assert df.schema == pl.Schema(CANONICAL_SCHEMA)
    assert column(df, "id") == ["A1", "A2"]
    assert column(df, "dept") == ["04", None]
    assert column(df, "dx") == [["N48.806", "K22.901"], ["A54.401", "M01.3*", "B"]]
    assert column(df, "proc") == [["58.3102", "45.0203"], ["80.98", "17.95"]]


@pytest.mark.parametrize(
    ("dx", "expected"),
    [
        ("", [""]),
        (None, [""]),
        ("|A", ["", "A"]),
        ("A|", ["A", ""]),
        ("A,,B", ["A", "", "B"]),
        (" a |B", [" a ", "B"]),  # items are not stripped or case-folded
    ],
)
def test_dx_split_rules(dx, expected):
    df = cases_from_frame(pl.DataFrame({"dx": [dx]}, schema={"dx": pl.String}))
    assert column(df, "dx") == [expected]


@pytest.mark.parametrize(
    ("proc", "expected"),
    [
        ("", []),
        (None, []),
        ("|", ["", ""]),
        ("P1,P2|P3", ["P1", "P2", "P3"]),
        ("|P1", ["", "P1"]),
    ],
)
def test_proc_split_rules(proc, expected):
    df = cases_from_frame(pl.DataFrame({"dx": ["A"], "proc": [proc]}, schema={"dx": pl.String, "proc": pl.String}))
    assert column(df, "proc") == [expected]


def test_split_rules_hold_for_csv_cells(tmp_path):
    path = write_text(tmp_path / "c.csv", 'id,dx,proc\n1,,\n2,"",""\n3,|A,|\n')
    df = read_cases(path)
    assert column(df, "dx") == [[""], [""], ["", "A"]]
    assert column(df, "proc") == [[], [], ["", ""]]


def test_missing_proc_column_gives_empty_lists():
    df = cases_from_frame(pl.DataFrame({"dx": ["A", "B"]}))
    assert column(df, "proc") == [[], []]


# --- encodings -------------------------------------------------------------

GBK_CSV = "病案号,性别,年龄,出院科别,诊断编码,手术操作编码\nB001,1,30,04,J18.900|I10.x00,\nB002,2,5,,K35.800,47.0901\n"


def test_gbk_csv_with_chinese_headers_is_detected(tmp_path):
    path = write_text(tmp_path / "gbk.csv", GBK_CSV, "gbk")
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # make sure the fixture really is not UTF-8
    df = read_cases(path)
    assert column(df, "id") == ["B001", "B002"]
    assert column(df, "dept") == ["04", None]
    assert column(df, "dx") == [["J18.900", "I10.x00"], ["K35.800"]]
    assert column(df, "proc") == [[], ["47.0901"]]
    assert_frame_equal(read_cases(path, encoding="gbk"), df)


def test_chinese_codes_in_gbk_cells_survive(tmp_path):
    path = write_text(tmp_path / "gbk.csv", "id,科室,dx\n1,内科,A\n", "gbk")
    assert column(read_cases(path), "dept") == ["内科"]


def test_forced_wrong_encoding_raises_input_error(tmp_path):
    path = write_text(tmp_path / "gbk.csv", GBK_CSV, "gbk")
    with pytest.raises(InputError, match="encoding|decode"):
        read_cases(path, encoding="utf-8")


def test_unknown_encoding_name_raises_input_error(tmp_path):
    path = write_text(tmp_path / "c.csv", "dx\nA\n")
    with pytest.raises(InputError, match="unknown encoding"):
        read_cases(path, encoding="no-such-codec")


def test_utf8_bom_is_removed_from_first_header(tmp_path):
    path = write_text(tmp_path / "bom.csv", "\ufeff病案号,dx\nX1,A01\n")
    df = read_cases(path)
    assert column(df, "id") == ["X1"]
    assert column(df, "dx") == [["A01"]]


def test_tsv_uses_tab_separator(tmp_path):
    path = write_text(tmp_path / "c.tsv", "id\tdx\tproc\n1\tA,B\tP\n")
    df = read_cases(path)
    assert column(df, "dx") == [["A", "B"]]
    assert column(df, "proc") == [["P"]]


def test_blank_lines_are_not_cases(tmp_path):
    path = write_text(tmp_path / "c.csv", "dx\r\nA\r\n\r\nB\r\n\r\n")
    df = read_cases(path)
    assert column(df, "dx") == [["A"], ["B"]]
    assert column(df, "id") == ["1", "2"]


# --- wide shape ------------------------------------------------------------


def test_wide_shape_principal_and_other_columns(tmp_path):
    header = "病案号,主要诊断编码,其他诊断编码1,其他诊断编码2,其他诊断编码3,主要手术操作编码,其他手术操作编码1,其他手术操作编码2"
    rows = [
        "1,A01,B01,,C01,P1,,P2",  # blank padding in the middle is dropped
        "2,,B02, ,,,Q1,",  # an empty principal diagnosis or procedure keeps its slot
        "3,,,,,,,",  # nothing at all
        "4,A04,,,,,,",
    ]
    path = write_text(tmp_path / "wide.csv", "\n".join([header, *rows]) + "\n")
    df = read_cases(path)
    assert column(df, "id") == ["1", "2", "3", "4"]
    assert column(df, "dx") == [["A01", "B01", "C01"], ["", "B02"], [""], ["A04"]]
    assert column(df, "proc") == [["P1", "P2"], ["", "Q1"], [], []]


def test_wide_shape_numbered_columns_sort_numerically():
    data = {f"诊断{i}": [f"D{i}"] for i in range(12, 0, -1)}  # columns deliberately out of order
    data |= {"手术1": [""], "手术2": ["P2"], "手术10": ["P10"], "手术3": [None]}
    data["诊断11"] = ["  "]  # padding
    df = cases_from_frame(pl.DataFrame(data))
    assert column(df, "dx") == [["D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9", "D10", "D12"]]
    assert column(df, "proc") == [["", "P2", "P10"]]  # 手术1 is the principal slot, blank


def test_wide_shape_dx_proc_prefixes():
    df = cases_from_frame(pl.DataFrame({"DX2": ["B"], "dx1": ["A"], "proc1": ["P"]}))
    assert column(df, "dx") == [["A", "B"]]
    assert column(df, "proc") == [["P"]]


def test_list_column_wins_over_wide_columns():
    df = cases_from_frame(pl.DataFrame({"dx": ["A|B"], "dx1": ["Z"]}))
    assert column(df, "dx") == [["A", "B"]]


def test_other_diagnoses_without_principal_raise():
    with pytest.raises(InputError, match="主要诊断编码"):
        cases_from_frame(pl.DataFrame({"其他诊断编码1": ["A"]}))
    with pytest.raises(InputError, match="主要手术操作编码"):
        cases_from_frame(pl.DataFrame({"主要诊断编码": ["A"], "其他手术操作编码1": ["P"]}))


# --- Parquet and Excel -----------------------------------------------------


def test_parquet_with_list_columns_and_numbers(tmp_path):
    frame = pl.DataFrame(
        {
            "id": [101, 102, 103],
            "age": [12.0, 0.5, None],
            "age_days": [None, 180, None],
            "dept": ["04", "4", None],
            "dx": [["A", "B"], None, []],
            "proc": [["P"], None, [None, "Q"]],
        }
    )
    path = tmp_path / "cases.parquet"
    frame.write_parquet(path)
    df = read_cases(path)
    assert df.schema == pl.Schema(CANONICAL_SCHEMA)
    assert column(df, "id") == ["101", "102", "103"]
    assert column(df, "age") == ["12", "0.5", None]
    assert column(df, "age_days") == [None, "180", None]
    assert column(df, "dept") == ["04", "4", None]
    assert column(df, "dx") == [["A", "B"], [""], [""]]
    assert column(df, "proc") == [["P"], [], ["", "Q"]]


def test_integral_floats_print_as_ints():
    df = cases_from_frame(pl.DataFrame({"los": [12.0, 3.5, -0.0, 1e20, float("nan")], "dx": ["A"] * 5}))
    assert column(df, "los") == ["12", "3.5", "0", "1e+20", "NaN"]


def test_excel_round_trip_keeps_leading_zeros_and_ints(tmp_path):
    frame = pl.DataFrame(
        {
            "病案号": [123456789012, 2, 3],
            "年龄": [12.0, 30.0, 1.5],
            "出院科别": ["04", None, "12"],
            "诊断编码": ["A01|B02", "C03", ""],
            "手术编码": ["P1", None, None],
        }
    )
    path = tmp_path / "cases.xlsx"
    frame.write_excel(path)
    df = read_cases(path)
    assert column(df, "id") == ["123456789012", "2", "3"]
    assert column(df, "age") == ["12", "30", "1.5"]
    assert column(df, "dept") == ["04", None, "12"]
    assert column(df, "dx") == [["A01", "B02"], ["C03"], [""]]
    assert column(df, "proc") == [["P1"], [], []]


def test_excel_sheet_by_name_and_number(tmp_path):
    import xlsxwriter

    path = tmp_path / "book.xlsx"
    with xlsxwriter.Workbook(path) as workbook:
        pl.DataFrame({"dx": ["FIRST"]}).write_excel(workbook, "One")
        pl.DataFrame({"dx": ["SECOND"]}).write_excel(workbook, "Two")
    assert column(read_cases(path), "dx") == [["FIRST"]]
    assert column(read_cases(path, sheet="Two"), "dx") == [["SECOND"]]
    assert column(read_cases(path, sheet=2), "dx") == [["SECOND"]]
    with pytest.raises(InputError, match="Nope"):
        read_cases(path, sheet="Nope")


# --- columns, ids, errors --------------------------------------------------


def test_missing_id_and_optional_columns():
    df = cases_from_frame(pl.DataFrame({"诊断": ["A", "B", "C"]}))
    assert column(df, "id") == ["1", "2", "3"]
    for name in ("sex", "age", "age_days", "weight", "dept", "los", "discharge"):
        assert column(df, name) == [None, None, None]


def test_scalars_are_stripped_and_empty_becomes_null():
    df = cases_from_frame(pl.DataFrame({"sex": [" 1 ", "", "\u3000"], "dx": ["A"] * 3}))
    assert column(df, "sex") == ["1", None, None]


def test_aliases_are_case_insensitive_and_accept_fullwidth_parentheses():
    df = cases_from_frame(
        pl.DataFrame({"SEX": ["2"], "年龄不足1周岁的年龄（天）": ["20"], "新生儿出生体重（克）": ["3000"], "DX": ["A"]})
    )
    assert column(df, "sex") == ["2"]
    assert column(df, "age_days") == ["20"]
    assert column(df, "weight") == ["3000"]


def test_user_column_mapping_wins_over_aliases():
    frame = pl.DataFrame({"id": ["x"], "编号": ["N1"], "codes": ["A|B"], "dx": ["Z"], "ops": ["P"]})
    df = cases_from_frame(frame, columns={"id": "编号", "dx": "codes", "proc": "ops"})
    assert column(df, "id") == ["N1"]
    assert column(df, "dx") == [["A", "B"]]
    assert column(df, "proc") == [["P"]]


def test_user_mapping_to_missing_header_raises():
    with pytest.raises(InputError, match="nope"):
        cases_from_frame(pl.DataFrame({"dx": ["A"]}), columns={"dept": "nope"})
    with pytest.raises(InputError, match="unknown canonical"):
        cases_from_frame(pl.DataFrame({"dx": ["A"]}), columns={"department": "dx"})


def test_no_diagnosis_column_raises_input_error(tmp_path):
    path = write_text(tmp_path / "c.csv", "id,sex,age\n1,1,30\n")
    with pytest.raises(InputError, match="no diagnosis column"):
        read_cases(path)


def test_unknown_extension_raises_input_error(tmp_path):
    path = write_text(tmp_path / "cases.json", "{}")
    with pytest.raises(InputError, match="unknown extension"):
        read_cases(path)


def test_missing_and_empty_files_raise_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_cases(tmp_path / "absent.csv")
    with pytest.raises(InputError, match="empty"):
        read_cases(write_text(tmp_path / "empty.csv", ""))


def test_header_only_csv_gives_empty_frame(tmp_path):
    df = read_cases(write_text(tmp_path / "c.csv", "id,dx\n"))
    assert df.height == 0
    assert df.schema == pl.Schema(CANONICAL_SCHEMA)


# --- writing ---------------------------------------------------------------

RESULTS = pl.DataFrame(
    {
        "id": ["1", "2"],
        "status": ["grouped", "invalid"],
        "drg": ["AB11", None],
        "dx": [["A", "B"], [""]],
    }
)


def test_write_results_csv_joins_lists_with_bom_by_default(tmp_path):
    path = tmp_path / "out.csv"
    write_results(RESULTS, path)
    # UTF-8 with BOM (Excel on Chinese Windows reads it as UTF-8); polars quotes an empty string ("")
    # to tell it apart from null (an empty field)
    assert path.read_bytes() == b'\xef\xbb\xbfid,status,drg,dx\n1,grouped,AB11,A|B\n2,invalid,,""\n'
    write_results(RESULTS, path, encoding="utf-8")
    assert path.read_bytes() == b'id,status,drg,dx\n1,grouped,AB11,A|B\n2,invalid,,""\n'


def test_write_results_parquet_keeps_lists(tmp_path):
    path = tmp_path / "out.parquet"
    write_results(RESULTS, path)
    assert_frame_equal(pl.read_parquet(path), RESULTS)


def test_write_results_xlsx(tmp_path):
    path = tmp_path / "out.xlsx"
    write_results(RESULTS, path)
    back = pl.read_excel(path, infer_schema_length=0)
    assert column(back, "id") == ["1", "2"]
    assert column(back, "dx") == ["A|B", None]


def test_write_results_unknown_extension(tmp_path):
    with pytest.raises(InputError, match="unknown extension"):
        write_results(RESULTS, tmp_path / "out.json")


# --- batches ---------------------------------------------------------------


def sample_cases(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "sex": [str(i % 2 + 1) for i in range(n)],
            "dept": ["04"] * n,
            "dx": [f"A{i:02d}|B" if i % 3 else "" for i in range(n)],
            "proc": ["P" if i % 2 else "" for i in range(n)],
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".xlsx"])
def test_iter_case_batches_matches_read_cases(tmp_path, suffix):
    path = tmp_path / f"cases{suffix}"
    frame = sample_cases(25)
    {".csv": frame.write_csv, ".parquet": frame.write_parquet, ".xlsx": frame.write_excel}[suffix](path)
    batches = list(iter_case_batches(path, batch_size=7))
    assert all(batch.height <= 7 for batch in batches)
    whole = read_cases(path)
    assert_frame_equal(pl.concat(batches), whole)
    assert column(whole, "id") == [str(i) for i in range(1, 26)]  # global row numbers


def test_iter_case_batches_gbk_csv(tmp_path):
    path = write_text(tmp_path / "gbk.csv", GBK_CSV, "gbk")
    batches = list(iter_case_batches(path, batch_size=1))
    assert len(batches) == 2
    assert_frame_equal(pl.concat(batches), read_cases(path))


def test_iter_case_batches_skips_blank_lines_like_read_cases(tmp_path):
    path = write_text(tmp_path / "c.csv", "dx\nA\n\nB\n\n")
    assert_frame_equal(pl.concat(list(iter_case_batches(path, batch_size=1))), read_cases(path))


def test_iter_case_batches_empty_input_yields_one_empty_frame(tmp_path):
    path = write_text(tmp_path / "c.csv", "id,dx\n")
    batches = list(iter_case_batches(path))
    assert len(batches) == 1
    assert batches[0].height == 0
    assert batches[0].schema == pl.Schema(CANONICAL_SCHEMA)


def test_iter_case_batches_raises_for_missing_dx(tmp_path):
    path = tmp_path / "c.parquet"
    pl.DataFrame({"id": ["1"]}).write_parquet(path)
    with pytest.raises(InputError, match="no diagnosis column"):
        next(iter_case_batches(path))


# --- console ---------------------------------------------------------------


def test_render_summary_lists_every_status_and_top_drgs():
    from rich.console import Console

    from grouper.console import progress, render_summary

    results = pl.DataFrame(
        {
            "id": ["1", "2", "3", "4"],
            "status": ["grouped", "grouped", "invalid", "grouped"],
            "mdc": ["A", "A", None, "B"],
            "adrg": ["AB1", "AB1", None, "BC1"],
            "drg": ["AB11", "AB11", None, "BC13"],
        }
    )
    console = Console(record=True, width=100)
    render_summary(results, console, top=1)
    text = console.export_text()
    for status in ("grouped", "no_adrg", "ungroupable", "invalid"):
        assert status in text
    assert "75.0%" in text
    assert "AB11" in text and "BC13" not in text
    assert text.index("no_adrg") < text.index("ungroupable") < text.index("invalid")

    with progress(10, "x", enabled=False) as bar:
        bar.advance(10)


def test_short_gbk_text_that_is_also_valid_utf8_is_read_as_gbk(tmp_path):
    # 住院 in GBK (D7 A1 D4 BA) is valid UTF-8 for two Hebrew/Armenian letters; Chinese UTF-8 text
    # always holds three-byte sequences, so these bytes are GBK.
    path = write_text(tmp_path / "gbk.csv", "id,dept,dx\n1,住院,A\n", "gbk")
    path.read_bytes().decode("utf-8")            # the fixture really is valid UTF-8
    assert column(read_cases(path), "dept") == ["住院"]
    assert column(pl.concat(list(iter_case_batches(path, batch_size=1))), "dept") == ["住院"]
    assert column(read_cases(path, encoding="utf-8"), "dept") == ["ס\u053a"]   # forced: read as told
    utf8 = write_text(tmp_path / "utf8.csv", "id,dept,dx\n1,住院,A\n")
    assert column(read_cases(utf8), "dept") == ["住院"]
