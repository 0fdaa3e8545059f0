"""`grouper screen --policy --weights` (settled payments) and the report's supervision section."""
from __future__ import annotations

import polars as pl
import pytest

from grouper.cli import main
from test_policy import ROOT

POLICY = ROOT / "tables" / "policies" / "zhejiang-points.toml"


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("screen-report")
    history, grouped, weights = tmp / "h.parquet", tmp / "g.parquet", tmp / "w.csv"
    assert main(["synth", "history", "--hospitals", "8", "--years", "2", "--cases", "8000", "--seed", "2",
                 "--plant-anomalies", "-o", str(history), "-q"]) == 0
    assert main(["group", str(history), "-o", str(grouped), "--carry", "-q"]) == 0
    kept = pl.read_parquet(grouped).filter(pl.col("status") == "grouped")
    overall = kept["cost"].mean()
    (kept.group_by("drg").agg(pl.col("cost").mean().alias("m"))
     .select("drg", (pl.col("m") / overall).alias("weight")).sort("drg").write_csv(weights))
    assert main(["settle", str(grouped), "--policy", str(POLICY), "--weights", str(weights), "-o", str(tmp / "settled"),
                 "-q"]) == 0
    assert main(["screen", str(grouped), "--cases", str(history), "--policy", str(POLICY), "--weights", str(weights),
                 "-o", str(tmp / "screens"), "-q"]) == 0
    return tmp


def test_settled_payment_is_what_each_finding_was_paid(folders):
    flags = pl.read_parquet(folders / "screens" / "flags.parquet")
    settled = pl.read_parquet(folders / "settled" / "cases.parquet").select("id", "payment")
    joined = flags.join(settled, on="id", how="left")
    assert joined.height == flags.height > 0
    assert (joined["paid"] == joined["payment"]).all()


def test_report_has_a_supervision_section(folders, tmp_path):
    out = tmp_path / "r.html"
    assert main(["report", str(folders / "settled"), "-o", str(out), "--screens", str(folders / "screens")]) == 0
    text = out.read_text(encoding="utf-8")
    assert "Supervision (医保智能监管)" in text and 'id="screen-money"' in text and 'id="screen-hospitals"' in text
    assert "SPLIT_STAY" in text and "Doctor scores" in text
    history = pl.read_parquet(folders / "h.parquet", columns=["phone", "patient_id"])
    assert not any(phone in text for phone in history["phone"].unique().to_list()[:2000])


def test_report_refuses_a_folder_that_is_not_a_screens_folder(folders, tmp_path, capsys):
    code = main(["report", str(folders / "settled"), "-o", str(tmp_path / "r.html"), "--screens", str(folders / "settled")])
    assert code == 3 and "is not a screens folder" in capsys.readouterr().err
    assert not (tmp_path / "r.html").exists()
