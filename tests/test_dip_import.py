"""`grouper import dip`: a catalogue in the published layout → a pack; round trip: every row's own
example case lands in its own 病种; every row that cannot be imported is listed with its reason."""
from pathlib import Path

import polars as pl

from grouper.cli import main
from grouper.dip import group_dip, load_dip_scheme
from grouper.dip.catalogue import parse_procs
from grouper.dip.importer import import_dip

PUBLISHED = Path(__file__).parent / "fixtures" / "dip" / "published.csv"


def _example_cases(pack) -> tuple[pl.DataFrame, list[str]]:
    """One case per imported row: its diagnosis padded to a full code, the codes of its first
    alternative (a comprehensive row: a procedure of its treatment type or none)."""
    rows = [r for level in ("core", "primary", "comprehensive") for r in pack.rows.get(level, ())]
    by_type = {}
    for code, kind in pack.store.frame("proc_types").select("code", "treatment").iter_rows():
        by_type.setdefault(kind, code)
    dx, px = [], []
    for r in rows:
        dx.append([r.dx + "00" if len(r.dx) == 5 else r.dx + ".900"])
        if r.level == "comprehensive":
            px.append([] if r.treatment == "保守治疗" else [by_type[r.treatment]])
        else:
            px.append([term[0] for term in parse_procs(r.procs)[0]] if r.procs else [])
    cases = pl.DataFrame({"id": [r.code for r in rows], "dx": dx, "proc": px},
                         schema={"id": pl.String, "dx": pl.List(pl.String), "proc": pl.List(pl.String)})
    return cases, [r.code for r in rows]


def test_import_round_trip(tmp_path):
    path, dropped = import_dip(PUBLISHED, tmp_path / "pack")
    assert dropped.rows() == [
        (11, "C34Z2", "comprehensive row without a treatment type (治疗方式)"),
        (12, "K63.5001", "score '待定' is not a number"),
        (13, "K63.50002", "diagnosis 'K63.500' is not 5 characters long like the other core rows"),
        (14, "K63.5003", "several principal diagnoses in one row ('K63.5/K63.4'): one row per diagnosis"),
    ]
    pack = load_dip_scheme(tmp_path / "pack")
    assert pack.diagnostics == []
    got = {r.code: r for level in pack.rows.values() for r in level}
    assert got["K80.1002"].procs == "51.1000+51.8800"             # main + related (all of)
    assert got["K80.1003"].procs == "51.2200/51.2201"             # any of
    assert got["K35.8001"].procs == "47.0100/47.0900"             # '；' read as '/'
    assert got["I21.0001"].procs == "00.6600+36.0700"             # full-width ＋
    assert got["K80.1003"].score == 1300 and got["K80.1001"].score == 1150.5
    assert got["J18.9000"].level == "primary" and got["K80Z3"].treatment == "相关手术"
    cases, codes = _example_cases(pack)
    assert group_dip(cases, pack)["dip"].to_list() == codes       # every row's own example lands in its own group


def test_import_xlsx_and_cli(tmp_path, capsys):
    xlsx = tmp_path / "目录库.xlsx"
    pl.read_csv(PUBLISHED, infer_schema=False).write_excel(xlsx)
    assert main(["import", "dip", str(xlsx), "-o", str(tmp_path / "pack"), "--name", "某市 DIP"]) == 0
    err = capsys.readouterr().err
    assert "dropped K63.5001: score '待定' is not a number" in err and "4 row(s) dropped" in err
    assert main(["check", str(tmp_path / "pack")]) == 0
    pack = load_dip_scheme(tmp_path / "pack")
    assert pack.ast.header.name == "某市 DIP"
    cases, codes = _example_cases(pack)
    assert group_dip(cases, pack)["dip"].to_list() == codes
