"""`grouper calibrate dip`: core groups at the threshold edges, hand-computed scores, year weights,
CV, the core share, and the built pack grouping its own history."""
import datetime as dt
from fractions import Fraction
from pathlib import Path

import polars as pl
import pytest

from grouper.dip import group_dip, load_dip_scheme
from grouper.dip.calibrate import CalibrationParams, calibrate_dip
from grouper.errors import InputError

PROCS = Path(__file__).parent / "fixtures" / "dip" / "proc_types.csv"


def history(rows) -> pl.DataFrame:
    """rows: (pdx, procs, cost in yuan, discharge year)."""
    return pl.DataFrame({
        "id": [str(i) for i in range(len(rows))],
        "dx": [[r[0]] for r in rows],
        "proc": [list(r[1]) for r in rows],
        "cost": [r[2] * 100 for r in rows],
        "discharge_date": [dt.date(r[3], 6, 30) for r in rows],
    }, schema={"id": pl.String, "dx": pl.List(pl.String), "proc": pl.List(pl.String), "cost": pl.Int64,
               "discharge_date": pl.Date})


SMALL = [
    ("K80.100", ["51.2300"], 10000, 2025), ("K80.100", ["51.2300", "88.0100"], 12000, 2025),
    ("K80.100", ["51.2300"], 14000, 2025),
    ("K80.100", [], 4000, 2025), ("K80.100", ["99.0400"], 5000, 2025), ("K80.100", [], 6000, 2025),
    ("K80.200", ["51.2300"], 20000, 2025),
    ("J18.900", [], 3000, 2025), ("J18.900", [], 5000, 2025),
]


def test_scores_by_hand(tmp_path):
    catalogue, summary = calibrate_dip(history(SMALL), PROCS, tmp_path / "pack", CalibrationParams(min_cases=3))
    rows = {r["code"]: r for r in catalogue.iter_rows(named=True)}
    assert set(rows) == {"K80.1-001", "K80.1-002", "K80-Z3", "J18-Z0"}
    assert (rows["K80.1-001"]["procs"], rows["K80.1-002"]["procs"]) == ("", "51.2300")   # 88.0100 is not qualifying
    overall = Fraction(79000, 9)                                     # mean of the 9 costs, yuan
    for code, mean in (("K80.1-002", 12000), ("K80.1-001", 5000), ("K80-Z3", 20000), ("J18-Z0", 4000)):
        expected = round(float(Fraction(mean) / overall * 1000), 4)
        assert rows[code]["score"] == pytest.approx(expected, abs=1e-9), code
        assert rows[code]["mean_fen"] == mean * 100
    assert rows["K80.1-002"]["score"] == 1367.0886                  # 12000 × 9 / 79000 × 1000
    assert rows["K80.1-002"]["cv"] == round((8 / 3) ** 0.5 * 1000 / 12000, 4) == 0.1361
    assert rows["K80.1-002"]["n"] == 3 and rows["J18-Z0"]["n"] == 2
    assert summary["core_share"] == pytest.approx(6 / 9)
    # the written pack is readable, checks clean, and prices its own history the same way
    pack = load_dip_scheme(tmp_path / "pack")
    assert pack.diagnostics == []
    grouped = group_dip(history(SMALL), pack)
    assert grouped["dip"].to_list() == ["K80.1-002"] * 3 + ["K80.1-001"] * 3 + ["K80-Z3", "J18-Z0", "J18-Z0"]
    text = (tmp_path / "pack" / "catalogue.csv").read_text(encoding="utf-8")
    assert "K80.1-002,K80.1 51.2300,K80.1,51.2300,,1367.0886,3,12000.00," in text


def test_scale_100(tmp_path):
    catalogue, _ = calibrate_dip(history(SMALL), PROCS, tmp_path / "p", CalibrationParams(min_cases=3, scale=100))
    assert catalogue.filter(pl.col("code") == "K80.1-002")["score"][0] == 136.7089
    with pytest.raises(InputError):
        calibrate_dip(history(SMALL), PROCS, tmp_path / "q", CalibrationParams(scale=10))


def test_year_weights(tmp_path):
    rows = [("K80.100", ["51.2300"], 1000, 2023), ("K80.100", ["51.2300"], 2000, 2024),
            ("K80.100", ["51.2300"], 7000, 2025), ("J18.900", [], 1000, 2025)]
    catalogue, summary = calibrate_dip(history(rows), PROCS, tmp_path / "p",
                                       CalibrationParams(min_cases=3, year_weights=(1, 2, 7)))
    got = {r["code"]: r for r in catalogue.iter_rows(named=True)}
    # group mean (1000×1 + 2000×2 + 7000×7) / 10 = 5400; overall (54000 + 7000) / 17
    assert got["K80.1-001"]["mean_fen"] == 540000
    assert got["K80.1-001"]["score"] == round(5400 / (61000 / 17) * 1000, 4)
    assert summary["overall_mean_fen"] == pytest.approx(6100000 / 17)
    # two years get the last two weights; more years than weights is an error
    _, two = calibrate_dip(history(rows[1:]), PROCS, tmp_path / "q", CalibrationParams(min_cases=2, year_weights=(1, 2, 7)))
    assert two["overall_mean_fen"] == pytest.approx((2000 * 2 + 7000 * 7 + 1000 * 7) * 100 / 16)
    with pytest.raises(InputError, match="3 years"):
        calibrate_dip(history(rows), PROCS, tmp_path / "r", CalibrationParams(year_weights=(3, 7)))


@pytest.mark.parametrize("count,core", [(14, False), (15, True), (16, True)])
def test_threshold_edges(tmp_path, count, core):
    rows = [("K80.100", ["51.2300"], 10000 + i, 2025) for i in range(count)]
    rows += [("K80.100", [], 4000, 2025)] * 20
    catalogue, summary = calibrate_dip(history(rows), PROCS, tmp_path / "p", CalibrationParams())   # default N = 15
    surgical = catalogue.filter(pl.col("procs") == "51.2300")
    assert surgical.height == (1 if core else 0)
    if core:
        assert surgical["n"][0] == count and summary["core_share"] == 1.0
    else:
        # the rare combination is pooled into the comprehensive group K80 × 相关手术
        assert catalogue.filter(pl.col("code") == "K80-Z3")["n"].to_list() == [count]
        assert summary["core_share"] == pytest.approx(20 / (20 + count))


DEMO = Path(__file__).resolve().parents[1] / "tables" / "dip-demo"


def test_demo_pack_is_built_by_the_commands(tmp_path):
    """tables/dip-demo is exactly what `grouper synth history` + `grouper calibrate dip` write (README quick start)."""
    from grouper.cli import main

    history = tmp_path / "history.parquet"
    assert main(["synth", "history", "--scheme", str(DEMO.parent / "demo"), "--hospitals", "10", "--years", "3",
                 "--end-year", "2024", "--cases", "20000", "--seed", "11", "-o", str(history), "-q"]) == 0
    assert main(["calibrate", "dip", str(history), "--procedures", str(DEMO / "proc_types.csv"),
                 "-o", str(tmp_path / "pack"), "--year-weights", "1:2:7", "--years", "2022:2024",
                 "--name", "DIP 示例", "--version", "synthetic", "--auxiliary", str(DEMO / "aux.csv"),
                 "--auxiliary-lists", str(DEMO / "aux_lists.csv"), "--calibrate-auxiliary", "-q"]) == 0
    for name in ("scheme.dip", "catalogue.csv", "proc_types.csv", "aux.csv", "aux_lists.csv"):
        assert (tmp_path / "pack" / name).read_text(encoding="utf-8") == (DEMO / name).read_text(encoding="utf-8"), name


def test_calibrate_cli_usage_errors(tmp_path, capsys):
    from grouper.cli import main

    src = tmp_path / "h.csv"
    src.write_text("id,dx,proc,cost,discharge_date\n1,K80.100,51.2300,100.00,2024-01-02\n", encoding="utf-8")
    base = ["calibrate", "dip", str(src), "--procedures", str(PROCS), "-o", str(tmp_path / "p")]
    assert main(base + ["--year-weights", "1:x"]) == 2
    assert main(base + ["--years", "2024"]) == 2
    assert main(base + ["-o", str(src)]) == 2                     # would overwrite its own input
    assert main(base + ["--min-cases", "1", "-q"]) == 0
    assert load_dip_scheme(tmp_path / "p").rows["core"][0].score == 1000.0
    capsys.readouterr()


MINI = Path(__file__).parent / "fixtures" / "dip" / "mini"


@pytest.mark.parametrize("min_cases,factor,source", [(4, 1.5, "history"), (5, 1.05, "table")])
def test_auxiliary_factors_from_history(tmp_path, min_cases, factor, source):
    rows = [("J18.900", [], 1000, 2025)] * 4 + [("J18.900", [], 3000, 2025)] * 4
    frame = history(rows).with_columns(pl.Series("los", ["2"] * 4 + ["10"] * 4))
    params = CalibrationParams(min_cases=3, auxiliary=str(MINI / "aux.csv"), auxiliary_lists=str(MINI / "aux_lists.csv"),
                               calibrate_auxiliary=True, auxiliary_min_cases=min_cases)
    calibrate_dip(frame, PROCS, tmp_path / "p", params)
    aux = pl.read_csv(tmp_path / "p" / "aux.csv", infer_schema=False)
    row = aux.filter(pl.col("code") == "I-B").row(0, named=True)
    # group mean 2000; the LOS > 3 cases cost 3000 each: 4 × 3000 ÷ (4 × 2000) = 1.5
    assert (float(row["factor"]), row["n"], row["factor_source"]) == (factor, "4", source)
    assert aux.filter(pl.col("code") == "III")["factor_source"].to_list() == ["table"]   # no case: table factor
    pack = load_dip_scheme(tmp_path / "p")
    assert group_dip(frame, pack)["aux_factor"].to_list() == [1.0] * 4 + [factor] * 4


def test_the_procedure_table_is_read_as_published(tmp_path):
    """The same reader as `import dip --procedures`: GBK, Chinese headers, 介入治疗 counted as 相关手术
    (domain.md §3.2); the pack keeps the table in UTF-8 with its canonical columns."""
    published = pl.read_csv(PROCS, infer_schema=False).rename(
        {"code": "手术操作编码", "treatment": "手术操作类型"}).with_columns(
        pl.col("手术操作类型").replace("相关手术", "介入治疗"))
    table = tmp_path / "手术操作类型.csv"
    table.write_bytes(published.write_csv().encode("gbk"))
    catalogue, _ = calibrate_dip(history(SMALL), table, tmp_path / "pack", CalibrationParams(min_cases=3))
    expected, _ = calibrate_dip(history(SMALL), PROCS, tmp_path / "expected", CalibrationParams(min_cases=3))
    assert catalogue.equals(expected)
    written = pl.read_csv(tmp_path / "pack" / "proc_types.csv", infer_schema=False)
    assert written.columns == ["code", "name", "treatment", "qualifying", "type"]
    assert set(written["treatment"].drop_nulls()) <= {"保守治疗", "诊断性操作", "治疗性操作", "相关手术"}
    assert "介入治疗" in written["type"].to_list()


def test_an_unknown_treatment_type_is_refused_with_its_line(tmp_path):
    table = tmp_path / "types.csv"
    table.write_text("code,treatment,qualifying\n51.2300,手术,1\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"types.csv:2: 51.2300: unknown type '手术'"):
        calibrate_dip(history(SMALL), table, tmp_path / "pack", CalibrationParams(min_cases=3))
