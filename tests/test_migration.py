"""What a switch of scheme version costs (`grouper migration`): a year grouped under two versions,
weights calibrated for each, settled under one policy, compared per hospital and per group."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from grouper.cli import main
from grouper.payment.settle_files import COMPARE_MONEY, read_table

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "tables" / "policies" / "zhejiang-points.toml"


def one_year(golden: Path, folder: Path, seed: int = 3) -> Path:
    """The golden cases as one year of a region: 12 hospitals of three levels, costs that grow with
    the number of diagnoses and procedures (so both versions' weights have something to find),
    admission and discharge dates in 2025."""
    cases = pl.read_csv(golden / "golden" / "cases.csv", infer_schema=False)
    rng = np.random.default_rng(seed)
    n = cases.height
    items = (cases["dx"].fill_null("").str.count_matches(r"\|") + 2 * cases["proc"].fill_null("").str.count_matches(r"[^|]+"))
    cost = np.round(np.exp(np.log(3000 + 1500 * items.to_numpy()) + rng.normal(0, 0.4, n)), 2)
    hospital = rng.integers(0, 12, n)
    admission = rng.integers(0, 330, n)
    los = np.clip(rng.poisson(6, n), 1, 60)
    start = np.datetime64("2025-01-01")
    year = cases.with_columns(
        pl.Series("hospital", [f"H{h:02d}" for h in hospital]),
        pl.Series("hospital_level", [("三级", "二级", "一级")[h % 3] for h in hospital]),
        pl.Series("insurance", np.where(rng.random(n) < 0.6, "310", "390")),
        pl.Series("cost", [f"{c:.2f}" for c in cost]),
        pl.Series("los", los.astype(str)),
        pl.Series("admission_date", (start + admission).astype(str)),
        pl.Series("discharge_date", (start + admission + los).astype(str)),
        pl.Series("patient_id", [f"P{i}" for i in rng.integers(0, n // 2, n)]))
    path = folder / f"{golden.name}-year.csv"
    year.write_csv(path)
    return path


@pytest.fixture(scope="module")
def year11(chs_tables, tmp_path_factory):
    return one_year(chs_tables, tmp_path_factory.mktemp("year"))


def test_migration_1_1_to_2_0(year11, chs_pack, chs20_pack, tmp_path, capsys):
    from grouper.report.html import render_report
    from grouper.payment.api import settle_cases
    from grouper.versions.migration import migration_impact

    out = tmp_path / "switch"
    assert main(["migration", str(year11), "--from", str(chs_pack), "--to", str(chs20_pack), "--policy", str(POLICY),
                 "-o", str(out), "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert "CHS-DRG 1.1 → CHS-DRG 2.0: 20,000 cases" in err and "CMI" in err and "win" in err
    # the layout of a policy comparison, plus the version switch's own tables
    assert {"summary.json", "hospitals.csv", "compare_hospitals.csv", "compare_drgs.csv", "change", "migration.json",
            "source_groups.csv", "weights_from.csv", "weights_to.csv"} <= {p.name for p in out.iterdir()}
    summary = json.loads((out / "migration.json").read_text(encoding="utf-8"))
    assert summary["from"] == "CHS-DRG 1.1" and summary["to"] == "CHS-DRG 2.0" and summary["cases"] == 20_000
    hospitals = read_table(out / "compare_hospitals.csv", COMPARE_MONEY)
    assert hospitals.height == 12
    assert summary["winners"] + summary["losers"] + summary["unchanged"] == 12
    assert summary["winners"] == (hospitals["payment_change"] > 0).sum() and summary["losers"] > 0
    assert {"cmi_before", "cmi_after", "cmi_change", "outcome"} <= set(hospitals.columns)
    # each side is exactly a settlement of that version's grouping under the policy with its calibrated weights
    migration = migration_impact(year11, chs_pack, chs20_pack, POLICY)
    assert migration.summary() == summary
    for side, pack, weights in ((migration.comparison.base, chs_pack, migration.weights_from),
                                (migration.comparison.change, chs20_pack, migration.weights_to)):
        from grouper.api import group

        grouped = group(year11, pack, carry=True)
        again = settle_cases(grouped, POLICY, weights.select("drg", "weight", "mean"))
        assert again.hospitals.equals(side.hospitals)   # settled side by side with the other version = alone
        assert again.cases.equals(side.cases) and again.groups.equals(side.groups) and again.pools.equals(side.pools)
        assert grouped["drg"].to_list() == side.cases["drg"].to_list()
    # money is conserved per hospital: the deltas are the differences of the two settlements
    h = migration.hospitals
    assert (h["payment_after"] - h["payment_before"] == h["payment_change"]).all()
    assert h["cmi_change"].round(6).to_list() == (h["cmi_after"] - h["cmi_before"]).round(6).to_list()
    # per source group: every case counted once, the payments add up to the totals
    groups = read_table(out / "source_groups.csv", COMPARE_MONEY)
    assert groups["cases"].sum() == 20_000
    assert groups["payment_before"].sum() == int(migration.comparison.base.cases["payment"].sum())
    assert groups["payment_after"].sum() == int(migration.comparison.change.cases["payment"].sum())
    assert "(no_adrg)" in groups["from_group"].to_list()
    # the report shows it with the policy comparisons
    page = render_report(out)
    assert "Version switch CHS-DRG 1.1 → CHS-DRG 2.0" in page and "Impact of" in page and "cmi_change" in page


def test_migration_refuses_a_dip_policy_and_writes_nothing(year11, chs_pack, chs20_pack, tmp_path, capsys):
    out = tmp_path / "switch"
    code = main(["migration", str(year11), "--from", str(chs_pack), "--to", str(chs20_pack),
                 "--policy", str(ROOT / "tables" / "policies" / "dip-example.toml"), "-o", str(out)])
    assert code == 2 and "DIP" in capsys.readouterr().err and not out.exists()


def test_migration_2_0_to_3_0(chs20_tables, chs20_pack, tmp_path):
    """2.0 → 3.0 draft on the 2.0 golden cases as a year: every case settled under both versions."""
    from conftest import SHARED_ROOT, shared_or_skip
    from grouper.importers.chs_drg import import_chs_drg
    from grouper.versions.migration import migration_impact

    pack30 = import_chs_drg(shared_or_skip(SHARED_ROOT / "chs-drg-3.0-draft"), tmp_path / "chs30").parent
    year = one_year(chs20_tables, tmp_path)
    migration = migration_impact(year, chs20_pack, pack30, POLICY)
    s = migration.summary()
    assert (s["from"], s["to"], s["cases"]) == ("CHS-DRG 2.0", "CHS-DRG 3.0", 20_000)
    assert s["winners"] + s["losers"] + s["unchanged"] == migration.hospitals.height == 12
    assert migration.source_groups["cases"].sum() == 20_000
    sources = migration.source_groups["from_group"].to_list()
    assert "(invalid)" in sources and any(g.endswith("QY") for g in sources)   # a qy case keeps its QY code
    assert migration.weights_to.height > 700            # 3.0 has 815 DRGs; the year reaches most of them


def test_migration_carries_each_versions_settlement_levels(year11, chs_pack, tmp_path):
    """The year is read and its settlement fields typed once for both versions, but each version
    applies its own levels: a scheme raising malformed_cost to error makes those cases invalid under
    that version only, exactly as grouping the year with that scheme (`group(..., carry=True)`) does."""
    import shutil

    from grouper.api import group
    from grouper.versions.migration import migration_impact

    year = pl.read_csv(year11, infer_schema=False).with_columns(
        pl.when(pl.int_range(pl.len()) % 97 == 0).then(pl.lit("abc")).otherwise(pl.col("cost")).alias("cost"))
    path = tmp_path / "year.csv"
    year.write_csv(path)
    strict = tmp_path / "strict"
    shutil.copytree(chs_pack, strict)
    with (strict / "scheme.grp").open("a", encoding="utf-8") as fh:
        fh.write("\nvalidate malformed_cost = error\n")
    migration = migration_impact(path, chs_pack, strict, POLICY)
    for side, pack in ((migration.comparison.base, chs_pack), (migration.comparison.change, strict)):
        grouped = group(path, pack, carry=True)
        assert side.cases.height == grouped.height == 20_000
        assert side.cases["status"].to_list() == grouped["status"].to_list()
        assert side.cases["drg"].to_list() == grouped["drg"].to_list()
    invalid = [(side.cases["status"] == "invalid").sum() for side in (migration.comparison.base, migration.comparison.change)]
    assert invalid[1] - invalid[0] >= 200        # the 207 bad costs, minus those invalid already


def test_migration_folder_is_the_same_bytes_every_time(year11, chs_pack, chs20_pack, tmp_path):
    """Both versions are settled side by side and both settlements written at once (threads): the
    folder must not depend on which thread finishes first. Two runs, at 1 and 4 Polars threads of
    the grouping, give byte-identical folders, and the change folder is exactly `grouper settle`'s
    folder for that settlement written alone."""
    from grouper.payment.settle_files import write_settlement
    from grouper.versions.migration import migration_impact, write_migration

    def files(folder: Path) -> dict[str, bytes]:
        return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    runs = []
    for threads in (1, 4):
        migration = migration_impact(year11, chs_pack, chs20_pack, POLICY, threads=threads)
        runs.append(files(write_migration(migration, tmp_path / f"run{threads}")))
    assert runs[0] == runs[1] and "change/cases.parquet" in runs[0]
    alone = files(write_settlement(migration.comparison.change, tmp_path / "alone"))
    assert alone == {name[len("change/"):]: data for name, data in runs[1].items() if name.startswith("change/")}
