"""The DIP grouping order of domain.md §3.3 on a hand-made catalogue: precedence across every pair
of levels (both ways), every tie-break step (most `+` terms, most matched procedures with repeats
counted, the cost gap, file order), the tie-break levels and precedence settings, chapter-range
comprehensive keys, bracketed choices `a+(c/d)+e`. Every case runs through the reference
interpreter, the compiled kernel and the Python twin, which must agree."""
from decimal import Decimal
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from grouper.dip import _kernel_py, explain_dip, group_dip, load_dip_scheme
from grouper.dip.reference import Reference, reference_group
from grouper.dip.run import KERNEL, group_dip_frame
from grouper.dip.scheme import check_dip_scheme

SCHEME = '''scheme "order" version "1"
table proc_types = "proc_types.csv"
table catalogue  = "catalogue.csv"
dip {{
  diagnosis length 5
  qualifying = proc_types[qualifying = "1"]
  treatment = proc_types.treatment
  treatments "保守治疗" < "诊断性操作" < "治疗性操作" < "相关手术"
  core = catalogue[level = "core"]
  primary = catalogue[level = "primary"]
  comprehensive = catalogue[level = "comprehensive"]
  reference cost = mean
  point value 100
{extra}}}
'''
PROCS = """code,treatment,qualifying
S1,相关手术,1
S2,相关手术,1
S3,相关手术,1
T1,治疗性操作,1
T2,治疗性操作,1
D1,诊断性操作,1
X1,,1
NS,相关手术,0
NT,治疗性操作,0
ND,诊断性操作,0
"""
CATALOGUE = """level,code,dx,procs,treatment,score,mean
core,a1-core-S,A01.1,S1,,100,
primary,a1-prim-S,A01.1,S1,,100,
core,a2-core-T,A01.2,T1,,100,
primary,a2-prim-S,A01.2,S1,,100,
core,a3-core-T,A01.3,T1,,100,
primary,a3-prim-T,A01.3,T1,,100,
core,a4-core-D,A01.4,D1,,100,
primary,a4-prim-T,A01.4,T1,,100,
core,a5-core-D,A01.5,D1,,100,
core,a6-core-0,A01.6,,,100,
primary,a7-prim-D,A01.7,D1,,100,
primary,a8-prim-0,A01.8,,,100,
core,a9-core-0,A01.9,,,100,
primary,a9-prim-0,A01.9,,,100,
primary,a21-prim-0,A02.1,,,100,
core,a31-core-X,A03.1,X1,,100,
core,b1-S,B01.1,S1,,100,
core,b1-TD,B01.1,T1+D1,,100,
core,b2-S1,B01.2,S1,,100,
core,b2-S1S2,B01.2,S1/S2,,100,
core,b3-S1,B01.3,S1,,100,
core,b3-S2,B01.3,S2,,100,
core,b4-cheap,B01.4,S1,,100,
core,b4-dear,B01.4,S1/S3,,200,
core,b5-mean,B01.5,S1,,100,30000
core,b5-points,B01.5,S1/S3,,200,
primary,c1-TD,C01.1,T1+D1,,100,
primary,c1-S,C01.1,S1,,100,
core,d1,D01.1,S1+(T1/T2)+D1,,100,
comprehensive,z-A01-S,A01,,相关手术,100,
comprehensive,z-A01-T,A01,,治疗性操作,100,
comprehensive,z-A01-D,A01,,诊断性操作,100,
comprehensive,z-A01-0,A01,,保守治疗,100,
comprehensive,z-A02-0,A02,,保守治疗,100,
comprehensive,z-A03-S,A03,,相关手术,100,
comprehensive,e-range,E00-E49,,保守治疗,100,
comprehensive,e-prefix,E2,,保守治疗,100,
comprehensive,j-range,J00-J99,,治疗性操作,100,
"""


def write_pack(folder: Path, extra: str = "", catalogue: str = CATALOGUE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scheme.dip").write_text(SCHEME.format(extra=extra), encoding="utf-8")
    (folder / "proc_types.csv").write_text(PROCS, encoding="utf-8")
    (folder / "catalogue.csv").write_text(catalogue, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    return load_dip_scheme(write_pack(tmp_path_factory.mktemp("order") / "pack"), cache=False)


def cases(rows) -> pl.DataFrame:
    """rows: (diagnoses, procedures, cost in yuan or None)."""
    return pl.DataFrame({"id": [str(i) for i in range(len(rows))], "dx": [list(r[0]) for r in rows],
                         "proc": [list(r[1]) for r in rows], "cost": [r[2] for r in rows]},
                        schema={"id": pl.String, "dx": pl.List(pl.String), "proc": pl.List(pl.String),
                                "cost": pl.String})


def all_engines(loaded, frame: pl.DataFrame, point_value=None) -> pl.DataFrame:
    """The reference result; the compiled kernel and the Python twin must give the same."""
    expected = reference_group(loaded, frame, point_value)
    plan = loaded.plan if point_value is None else loaded.plan.with_point_value(Decimal(point_value))
    for kernel in (KERNEL, _kernel_py):
        assert group_dip_frame(plan, frame, kernel=kernel, threads=1).equals(expected), kernel
    return expected


def group_one(loaded, dx, procs, cost=None, point_value=None) -> str | None:
    return all_engines(loaded, cases([(dx, procs, cost)]), point_value)["dip"][0]


# ---- step 6: precedence across levels, by treatment type first, then level -------------------------
PRECEDENCE = [
    # (dx, procs, expected, why)
    ("A01.100", ["S1"], "a1-core-S", "core 相关手术 > primary 相关手术"),
    ("A01.200", ["S1", "T1"], "a2-prim-S", "primary 相关手术 > core 治疗性操作 (a core row no longer always wins)"),
    ("A01.300", ["T1"], "a3-core-T", "core 治疗性操作 > primary 治疗性操作"),
    ("A01.400", ["D1", "T1"], "a4-prim-T", "primary 治疗性操作 > core 诊断性操作"),
    ("A01.500", ["D1", "NS"], "a5-core-D", "core 诊断性操作 > comprehensive 相关手术"),
    ("A01.600", ["NS"], "z-A01-S", "comprehensive 相关手术 > core 保守"),
    ("A01.600", ["ND"], "z-A01-D", "comprehensive 诊断性操作 > core 保守"),
    ("A01.700", ["D1", "NS"], "a7-prim-D", "primary 诊断性操作 > comprehensive 相关手术"),
    ("A01.800", ["NT"], "z-A01-T", "comprehensive 治疗性操作 > primary 保守"),
    ("A01.900", [], "a9-core-0", "core 保守 > primary 保守 > comprehensive 保守"),
    ("A02.100", [], "a21-prim-0", "primary 保守 > comprehensive 保守"),
    ("A01.600", [], "a6-core-0", "core 保守 > comprehensive 保守"),
    ("A03.100", ["X1", "NS"], "z-A03-S", "a core row matched by an untyped procedure is class core 保守"),
]


@pytest.mark.parametrize("dx,procs,expected,why", PRECEDENCE, ids=[p[3] for p in PRECEDENCE])
def test_precedence_across_levels(pack, dx, procs, expected, why):
    assert group_one(pack, [dx], procs) == expected


def test_precedence_is_a_setting(tmp_path):
    """A region's order is data: 宜昌 ranks 综合相关手术 first (Node-DIP region.420500.ts)."""
    loaded = load_dip_scheme(write_pack(tmp_path / "p", '  precedence comprehensive "相关手术" > core "相关手术"\n'),
                             cache=False)
    assert group_one(loaded, ["A01.100"], ["S1"]) == "z-A01-S"
    assert group_one(loaded, ["A01.200"], ["S1", "T1"]) == "z-A01-S"
    assert group_one(loaded, ["A01.300"], ["T1"]) == "a3-core-T"      # unlisted classes keep the default order
    bad = write_pack(tmp_path / "bad", '  precedence core "手术" > core "相关手术" > core "相关手术"\n')
    _, _, found = check_dip_scheme(bad)
    assert sorted(d.code for d in found) == ["bad-value", "unknown-treatment"]


# ---- step 5: tie-breaks within the core level ---------------------------------------------------
TIE_BREAKS = [
    # (dx, procs, cost, expected, why)
    ("B01.100", ["S1", "T1", "D1"], None, "b1-TD", "most + terms, before the treatment type"),
    ("B01.200", ["S1", "S2"], None, "b2-S1S2", "most matched procedures"),
    ("B01.300", ["S2", "S2", "S1"], None, "b3-S2", "repeated procedures count as often as they occur"),
    ("B01.300", ["S1", "S2"], None, "b3-S1", "file order when everything ties"),
    ("B01.400", ["S1"], "18000", "b4-dear", "smallest cost gap: 20,000 (200 × 100) is nearer 18,000"),
    ("B01.400", ["S1"], "12000", "b4-cheap", "smallest cost gap: 10,000 is nearer 12,000"),
    ("B01.400", ["S1"], "15000", "b4-cheap", "equal gaps: file order"),
    ("B01.400", ["S1"], None, "b4-cheap", "no case cost: the cost step does not decide"),
    ("B01.500", ["S1"], "26000", "b5-mean", "the catalogue's mean (30,000) wins over score × point value"),
    ("C01.100", ["S1", "T1", "D1"], None, "c1-S", "primary rows are not narrowed by default: the class decides"),
    ("D01.100", ["S1", "T2", "D1"], None, "d1", "a+(c/d)+e: one of the bracketed choices"),
]


@pytest.mark.parametrize("dx,procs,cost,expected,why", TIE_BREAKS, ids=[t[4] for t in TIE_BREAKS])
def test_tie_breaks(pack, dx, procs, cost, expected, why):
    assert group_one(pack, [dx], procs, cost) == expected


def test_point_value_is_a_run_parameter(pack):
    assert group_one(pack, ["B01.400"], ["S1"], "9000") == "b4-cheap"                     # 10,000 vs 20,000
    assert group_one(pack, ["B01.400"], ["S1"], "9000", point_value="50") == "b4-dear"     # 5,000 vs 10,000
    frame = cases([(["B01.400"], ["S1"], "9000")])
    assert group_dip(frame, pack, point_value="50")["dip"].to_list() == ["b4-dear"]


def test_tie_break_levels_setting(tmp_path):
    loaded = load_dip_scheme(write_pack(tmp_path / "p", "  tie breaks core primary\n"), cache=False)
    assert group_one(loaded, ["C01.100"], ["S1", "T1", "D1"]) == "c1-TD"


def test_bracketed_choices_need_every_term(pack):
    out = all_engines(pack, cases([(["D01.100"], ["S1", "T1", "D1"], None), (["D01.100"], ["S1", "D1"], None),
                                   (["D01.100"], ["T1", "T2", "D1"], None)]))
    assert out["dip"].to_list() == ["d1", None, None]


# ---- step 3: comprehensive keys: prefixes, then chapter ranges ------------------------------------
def test_chapter_ranges(pack):
    """A range holds a diagnosis whose first 3 characters are an ICD-10 category (letter, digit,
    digit or capital) between its ends; a listed prefix of any length is tried first."""
    out = all_engines(pack, cases([(["E10.100"], [], None), (["E20.000"], [], None), (["E10.100"], ["NS"], None),
                                   (["E50.000"], [], None), (["E4"], [], None), (["J45.000"], ["NT"], None),
                                   (["E49.900"], [], None), (["E00.000"], [], None), (["E1x.100"], [], None),
                                   (["E0A.000"], [], None)]))
    assert out["dip"].to_list() == ["e-range", "e-prefix", None, None, None, "j-range", "e-range", "e-range", None,
                                    "e-range"]
    assert out["reason"].to_list() == [None, None, "no_comprehensive_treatment", "no_comprehensive_category",
                                       "no_comprehensive_category", None, None, None, "no_comprehensive_category",
                                       None]


# ---- the kernels agree with the reference on many generated cases --------------------------------
def test_kernels_agree_on_generated_cases(pack):
    rng = np.random.default_rng(19)
    dxs = ["A01.100", "A01.200", "A01.300", "A01.400", "A01.500", "A01.600", "A01.700", "A01.800", "A01.900",
           "A02.100", "A03.100", "B01.100", "B01.200", "B01.300", "B01.400", "B01.500", "C01.100", "D01.100",
           "E10.100", "E20.000", "E50.000", "J45.000", "A0", "", "Z99.000"]
    pxs = ["S1", "S2", "S3", "T1", "T2", "D1", "X1", "NS", "NT", "ND", "??"]
    costs = [None, "", "9000", "12000", "15000", "18000", "26000", "1,234.50", "abc", "-5"]
    rows = [([dxs[i]], [pxs[j] for j in rng.integers(0, len(pxs), rng.integers(0, 5))], costs[k])
            for i, k in zip(rng.integers(0, len(dxs), 5000), rng.integers(0, len(costs), 5000))]
    out = all_engines(pack, cases(rows))
    assert out["dip"].n_unique() > 30
    all_engines(pack, cases(rows[:1000]), point_value="37.5")


# ---- explain shows each step -------------------------------------------------------------------------
def test_explain_shows_every_step(pack):
    d = Reference(pack).decide(["A01.200"], ["S1", "T1"])
    assert [(p + 1, c.row.code, c.kind) for p, c in sorted(d.contenders, key=lambda pc: pc[0])] == [
        (2, "a2-prim-S", "相关手术"), (3, "a2-core-T", "治疗性操作"), (7, "z-A01-S", "相关手术")]
    assert d.decided_by.startswith("precedence: primary 相关手术 is class 2 of 12, before core 治疗性操作 (a2-core-T")
    d = Reference(pack).decide(["B01.400"], ["S1"], cost=1_800_000)
    assert [c.gap for c in d.candidates["core"]] == [800_000, 200_000]
    assert d.leads["core"][1] == "smallest cost gap (2,000.00 yuan vs 8,000.00 yuan for b4-cheap)"
    d = Reference(pack).decide(["B01.300"], ["S2", "S2", "S1"])
    assert d.leads["core"][1] == "most matched procedures (2 vs 1 for b3-S1)"
    frame = cases([(["B01.400"], ["S1"], "18000")])
    assert explain_dip(pack, frame).decided_by.endswith("within core: smallest cost gap (2,000.00 yuan vs 8,000.00 "
                                                        "yuan for b4-cheap)")


def test_explain_cli_prints_each_step(pack, capsys, tmp_path):
    import json

    from grouper.cli import main

    src = tmp_path / "cases.csv"
    src.write_text("id,dx,proc,cost\n1,B01.400,S1,18000\n", encoding="utf-8")
    assert main(["explain", "--scheme", str(pack.path.parent), "--cases", str(src), "--id", "1"]) == 0
    text = capsys.readouterr().out
    for step in ("1. core (核心病种) candidates", "2. primary (基层病种) candidates", "3. comprehensive",
                 "5. tie-breaks within core: b4-dear — smallest cost gap", "6. precedence between the candidates",
                 "cost gap 2,000.00"):
        assert step in text, step
    assert main(["explain", "--scheme", str(pack.path.parent), "--cases", str(src), "--id", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["dip"] == "b4-dear" and data["cost_fen"] == 1_800_000
    assert data["tie_breaks"]["core"]["decided_by"].startswith("smallest cost gap")
    assert [c["gap_fen"] for c in data["candidates"]["core"]] == [800_000, 200_000]


def test_plan_cache_keeps_the_order_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_pack(tmp_path / "p", "  tie breaks core primary\n")
    built = load_dip_scheme(folder, cache=True)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1            # the entry was written
    again = load_dip_scheme(folder, cache=True)
    assert again.plan.point_value == "100" and list(again.plan.tie_break) == [1, 1, 0]
    assert (again.plan.row_cost == built.plan.row_cost).all() and (again.plan.range_table == built.plan.range_table).all()
    frame = cases([(["C01.100"], ["S1", "T1", "D1"], None), (["B01.400"], ["S1"], "18000"), (["E10.100"], [], None)])
    assert group_dip_frame(again.plan, frame)["dip"].to_list() == ["c1-TD", "b4-dear", "e-range"]
