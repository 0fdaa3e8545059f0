"""Regional variants as overlays: `extends` a base pack, `refine adrg` its DRG splits."""
import shutil
from pathlib import Path

import polars as pl
import pytest

from grouper.explain import explain_case
from grouper.pipeline import group_frame
from grouper.errors import SchemeError
from grouper.io import cases_from_frame
from grouper.lang.parse import parse_file, parse_text
from grouper.lang.printer import scheme_text
from grouper.scheme import check_scheme, load_scheme

PACKS = Path(__file__).parent / "fixtures" / "packs"


def cases(*rows):
    cols = ["id", "sex", "age", "los", "dx", "proc"]
    return cases_from_frame(pl.DataFrame([dict(zip(cols, r)) for r in rows], schema={c: pl.String for c in cols}))


@pytest.fixture
def packs(tmp_path, monkeypatch):
    monkeypatch.setenv("GROUPER_CACHE_DIR", str(tmp_path / "cache"))
    shutil.copytree(PACKS / "mini", tmp_path / "mini")
    shutil.copytree(PACKS / "mini-regional", tmp_path / "mini-regional")
    return tmp_path


def test_overlay_refines_drgs_and_keeps_the_rest():
    national, regional = load_scheme(PACKS / "mini"), load_scheme(PACKS / "mini-regional")
    assert (regional.plan.name, regional.plan.version) == ("mini 地方版", "2")
    assert regional.plan.adrg_codes == national.plan.adrg_codes            # the ADRG layer is the base's
    assert [d for d in regional.plan.drg_codes if d.startswith("GD")] == ["GD11", "GD12", "GD16"]
    batch = cases(("mcc", "1", "40", "20", "K35.800|J18.900", "47.0100"),
                  ("long", "1", "40", "20", "K35.800", "47.0100"),
                  ("short", "1", "40", "3", "K35.800", "47.0100"),
                  ("gall", "1", "50", "14", "K80.100x001", "51.2300"))
    assert group_frame(national.plan, batch)["drg"].to_list() == ["GD11", "GD15", "GD15", "HC12"]
    regional_results = group_frame(regional.plan, batch)
    assert regional_results["drg"].to_list() == ["GD11", "GD12", "GD16", "HC12"]
    # the overlay's own tables (weights) are read from its folder, the base's from the base pack
    assert regional.plan.drg_weights[regional.plan.drg_codes.index("GD12")] == 1.2
    assert group_frame(regional.plan, cases(("x", "1", "40", "70", "K35.800", "")))["warnings"].to_list() == [["long_stay"]]


def test_explain_points_into_both_files():
    e = explain_case(load_scheme(PACKS / "mini-regional"), cases(("long", "1", "40", "20", "K35.800", "47.0100")))
    gd1 = next(a for s in e.steps if s.code == "MDCG" for a in s.children if a.code == "GD1")
    assert gd1.source.endswith("mini/scheme.grp:24")
    assert gd1.children[-1].code == "GD12" and gd1.children[-1].source.endswith("mini-regional/scheme.grp:10")


def test_overlay_round_trips_through_the_printer():
    overlay = parse_file(PACKS / "mini-regional" / "scheme.grp")
    assert overlay.header.extends == "../mini"
    assert parse_text(scheme_text(overlay)) == overlay


def test_unknown_adrg_and_duplicate_table_are_reported_in_the_overlay(packs):
    path = packs / "mini-regional" / "scheme.grp"
    path.write_text(path.read_text(encoding="utf-8").replace("refine adrg GD1", "refine adrg GX9")
                    + 'table codes = "weights.csv"\n', encoding="utf-8")
    scheme, found = check_scheme(packs / "mini-regional")
    errors = [(d.code, Path(d.span.file).parent.name, d.span.line) for d in found if d.severity == "error"]
    assert ("unknown-adrg", "mini-regional", 8) in errors
    assert ("duplicate-name", "mini-regional", 15) in errors
    assert all(d.source_line for d in found if d.span)


def test_refinement_is_checked_like_any_drg_list(packs):
    path = packs / "mini-regional" / "scheme.grp"
    path.write_text(path.read_text(encoding="utf-8").replace('  drg GD16 "appendectomy, other"\n', ""),
                    encoding="utf-8")
    _, found = check_scheme(packs / "mini-regional")
    assert [d.code for d in found if d.severity == "error"] == ["no-default-drg"]


def test_missing_base_and_cycles(packs):
    path = packs / "mini-regional" / "scheme.grp"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('extends "../mini"', 'extends "../nowhere"'), encoding="utf-8")
    with pytest.raises(SchemeError) as info:
        load_scheme(packs / "mini-regional")
    assert [(d.code, d.span.line) for d in info.value.diagnostics] == [("missing-base", 2)]
    path.write_text(text.replace('extends "../mini"', 'extends "."'), encoding="utf-8")
    _, found = check_scheme(packs / "mini-regional")
    assert [d.code for d in found] == ["cycle"]


def test_a_changed_base_invalidates_the_overlay_cache(packs):
    before = load_scheme(packs / "mini-regional")
    cc = packs / "mini" / "cc.csv"
    cc.write_text(cc.read_text(encoding="utf-8").replace("J18.900,MCC,T1", "J18.900,CC,T1"), encoding="utf-8")
    after = load_scheme(packs / "mini-regional")
    row = cases(("mcc", "1", "40", "3", "K35.800|J18.900", "47.0100"))
    assert group_frame(before.plan, row)["drg"].item() == "GD11"
    assert group_frame(after.plan, row)["drg"].item() == "GD16"
