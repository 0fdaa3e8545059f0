"""`grouper import dip`: a catalogue in the published layout → a pack; round trip: every row's own
example case lands in its own 病种; every row that cannot be imported is listed with its reason."""
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.dip import group_dip, load_dip_scheme
from grouper.dip.catalogue import parse_procs
from grouper.dip.importer import import_dip
from grouper.errors import InputError

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


# ---- the published forms (issue: read what regions publish) --------------------------------------
HEADER = "病种编码,病种名称,主要诊断编码,主要手术操作编码,相关手术操作编码,病种分值,病种类型\n"


def _catalogue(tmp_path, lines: list[str], name="目录.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_procedure_types_as_published(tmp_path):
    """The 医保 2.0 dictionary's header is `type`, with five types; 介入治疗 counts as 相关手术."""
    catalogue = _catalogue(tmp_path, ["K80.1001,胆囊切除,K80.1,51.2300,,1000,核心",
                                      "I21.0001,冠脉介入,I21.0,36.0700,,2600,核心",
                                      "I21Z3,心梗综合(相关手术),I21,,,2000,综合"])
    procedures = tmp_path / "icd9.csv"
    procedures.write_text("code,name,type\n51.2300,腹腔镜胆囊切除,相关手术\n36.0700,支架置入,介入治疗\n"
                          "88.0100,腹部CT,诊断性操作\n99.0400,输血,\n", encoding="utf-8")
    import_dip(catalogue, tmp_path / "pack", procedures=procedures)
    pack = load_dip_scheme(tmp_path / "pack", cache=False)
    types = dict(pack.store.frame("proc_types").select("code", "treatment").iter_rows())
    assert types == {"51.2300": "相关手术", "36.0700": "相关手术", "88.0100": "诊断性操作", "99.0400": ""}
    published = dict(pack.store.frame("proc_types").select("code", "type").iter_rows())
    assert published["36.0700"] == "介入治疗"
    cases = pl.DataFrame({"id": ["1", "2"], "dx": [["I21.000"], ["I21.900"]], "proc": [["36.0700"], ["36.0700"]]})
    out = group_dip(cases, pack)
    assert out.select("dip", "treatment").rows() == [("I21.0001", "相关手术"), ("I21Z3", "相关手术")]


def test_unknown_procedure_types_are_named_with_their_row(tmp_path):
    catalogue = _catalogue(tmp_path, ["K80.1001,胆囊切除,K80.1,51.2300,,1000,核心"])
    procedures = tmp_path / "icd9.csv"
    procedures.write_text("code,type\n51.2300,相关手术\n36.0700,介入\n45.2300,检查\n", encoding="utf-8")
    with pytest.raises(InputError) as exc:
        import_dip(catalogue, tmp_path / "pack", procedures=procedures)
    assert f"{procedures}:3: 36.0700: unknown type '介入'" in str(exc.value)
    assert f"{procedures}:4: 45.2300: unknown type '检查'" in str(exc.value)
    assert not (tmp_path / "pack").exists()
    procedures.write_text("编码,名称\n51.2300,x\n", encoding="utf-8")
    with pytest.raises(InputError, match="needs a code column .* and a type column"):
        import_dip(catalogue, tmp_path / "pack", procedures=procedures)


def test_related_cell_binds_slash_tighter(tmp_path):
    """`c/d+e` in the related cell means (c or d) and e: procs a → a+(c/d)+e."""
    catalogue = _catalogue(tmp_path, ["K80.1001,ERCP,K80.1,51.1000,51.8800/51.8500+51.8700,1400,核心",
                                      "K80.1002,胆囊切除,K80.1,51.2200/51.2300,51.4100,1500,核心",
                                      "K80.1003,腹腔镜,K80.1,51.2300,,1100,核心"])
    import_dip(catalogue, tmp_path / "pack")
    pack = load_dip_scheme(tmp_path / "pack", cache=False)
    got = {r.code: r.procs for r in pack.rows["core"]}
    assert got == {"K80.1001": "51.1000+(51.8800/51.8500)+51.8700", "K80.1002": "(51.2200/51.2300)+51.4100",
                   "K80.1003": "51.2300"}
    cases = pl.DataFrame({"id": ["1", "2", "3", "4"], "dx": [["K80.100"]] * 4,
                          "proc": [["51.1000", "51.8500", "51.8700"], ["51.1000", "51.8800"],
                                   ["51.2300", "51.4100"], ["51.1000", "51.8800", "51.8500"]]})
    assert group_dip(cases, pack)["dip"].to_list() == ["K80.1001", None, "K80.1002", None]


def test_chapter_ranges_category_keys_and_scores(tmp_path):
    catalogue = _catalogue(tmp_path, [
        "K80.1001,腹腔镜,K80.1,51.2300,,1100,核心",
        "AB-0,传染病综合(保守治疗),A00-B99,,,300,综合",
        "CD-3,肿瘤综合(相关手术),C00～D48,,,2000,综合",
        "XX-0,坏区间(保守治疗),A00-B9,,,300,综合",
        "K35-1,阑尾切除,K35,47.0900,,900,核心",
        "K63.5001,零分值,K63.5,45.4200,,0,核心",
        "K63.5002,负分值,K63.5,45.4300,,-3,核心",
        "K63.5003,非数,K63.5,45.4400,,NaN,核心",
        "K63.5004,无穷,K63.5,45.4500,,inf,核心",
        "K63.5005,离谱,K63.5,45.4600,,99999999,核心",
        "K63.5006,区间亚目,K63.5-K63.9,45.4700,,300,核心",
    ])
    _, dropped = import_dip(catalogue, tmp_path / "pack")
    reasons = {code: reason for _, code, reason in dropped.rows()}
    assert reasons["XX-0"].startswith("no diagnosis code can reach the key: chapter range 'A00-B9'")
    assert reasons["K35-1"].startswith("core key 'K35' is a 类目 (3 characters): DIP core keys are 亚目 × procedures "
                                       "(domain.md §3.2)")
    assert reasons["K63.5001"] == "score '0' is not positive (a 病种分值 is > 0)"
    assert reasons["K63.5002"] == "score '-3' is not positive (a 病种分值 is > 0)"
    assert reasons["K63.5003"] == "score 'NaN' is not a finite number"
    assert reasons["K63.5004"] == "score 'inf' is not a finite number"
    assert reasons["K63.5005"].startswith("score '99999999' is above 1,000,000")
    assert reasons["K63.5006"].startswith("a core key names one 亚目, not a range")
    assert [line for line, code, _ in dropped.rows() if code == "K63.5001"] == [7]
    pack = load_dip_scheme(tmp_path / "pack", cache=False)
    assert pack.diagnostics == []
    assert {r.code: r.dx for r in pack.rows["comprehensive"]} == {"AB-0": "A00-B99", "CD-3": "C00-D48"}
    cases = pl.DataFrame({"id": ["1", "2", "3", "4"], "dx": [["A15.000"], ["B99.x00"], ["D48.900"], ["E11.900"]],
                          "proc": [[], [], ["51.2300"], []]})
    assert group_dip(cases, pack)["dip"].to_list() == ["AB-0", "AB-0", "CD-3", None]


def test_duplicate_group_code_stops_the_import(tmp_path):
    catalogue = _catalogue(tmp_path, ["K80.1001,腹腔镜,K80.1,51.2300,,1100,核心",
                                      "K80.1002,开腹,K80.1,51.2200,,1300,核心",
                                      "K80.1001,重复,K80.1,51.2100,,1200,核心"])
    with pytest.raises(InputError, match=r"目录.csv:2, 4: 病种编码 K80.1001 is listed 2 times"):
        import_dip(catalogue, tmp_path / "pack")
    assert not (tmp_path / "pack").exists()
