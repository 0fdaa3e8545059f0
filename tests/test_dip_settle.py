"""DIP settlement through the settle engine (`method = "dip"`): hand-computed points for every DIP
case type, the primary-care factor, the auxiliary factor, the extreme-case review flag, Σ payments =
distributable budget, the comparison and the CLI on the demo pack."""
import datetime as dt
import shutil
from pathlib import Path

import polars as pl
import pytest

from grouper.cli import main
from grouper.dip import load_dip_scheme
from grouper.dip.settle import settle_dip

MINI = Path(__file__).parent / "fixtures" / "dip" / "mini"
ROOT = Path(__file__).resolve().parents[1]

POLICY = '''
[policy]
name = "DIP test"
method = "dip"

[dip]
primary_coefficient = 0.9
extreme = 5.0

[points]
scale = 1000

[budget]
reserve_share = 0.0
fee_for_service_inside = false

[budget.annual]
employee = 525_110.00

[coefficients]
level = { 3 = 1.0, 2 = 0.8 }

[ratio]
reference = "group_mean"

[cases.high]
threshold = 2.0
inclusive = true
formula = "excess_ratio_coefficient"

[cases.low]
threshold = 0.5
inclusive = true
formula = "ratio"

[cases.incomplete]
discharge = []

[cases.special_review]
cap = 1.0
pay = "standard"
'''


@pytest.fixture(scope="module")
def pack(tmp_path_factory):
    """The mini pack with group mean costs (yuan) in its catalogue: mean = score × 10."""
    folder = tmp_path_factory.mktemp("dip") / "pack"
    shutil.copytree(MINI, folder)
    catalogue = pl.read_csv(folder / "catalogue.csv", infer_schema=False)
    catalogue.with_columns((pl.col("score").cast(pl.Float64) * 10).map_elements(lambda m: f"{m:.2f}", return_dtype=pl.String)
                           .alias("mean")).write_csv(folder / "catalogue.csv")
    return load_dip_scheme(folder)


def _cases(rows) -> pl.DataFrame:
    """rows: (pdx, procs, hospital, level, cost yuan, los)."""
    n = len(rows)
    return pl.DataFrame({
        "id": [f"c{i + 1}" for i in range(n)], "dx": [[r[0]] for r in rows], "proc": [r[1] for r in rows],
        "hospital": [r[2] for r in rows], "hospital_level": [str(r[3]) for r in rows],
        "insurance": ["310"] * n, "cost": [f"{r[4]:.2f}" for r in rows], "los": [str(r[5]) for r in rows],
        "discharge": ["1"] * n, "discharge_date": ["2025-03-01"] * n,
    }, schema_overrides={"dx": pl.List(pl.String), "proc": pl.List(pl.String)})


CASES = [
    ("K80.100", ["51.2300"], "H1", 3, 11500, 3),    # ratio 1 → normal: 1150 × 1.0
    ("K80.100", ["51.2300"], "H2", 2, 5000, 3),     # ratio 0.4348 ≤ 0.5 → low: 1150 × 0.8 × 5000/11500 = 400
    ("K35.800", ["47.0100"], "H1", 3, 30000, 3),    # ratio 3 ≥ 2 → high: 1000 × 1.0 × (1 + 3 − 2) = 2000
    ("J18.900", [], "H2", 2, 3800, 3),              # primary: 380 × 0.9 (not the level's 0.8) = 342
    ("J18.900", [], "H1", 3, 3990, 5),              # aux I-B 1.05: 380 × 1.05 × 0.9 = 359.1
    ("K35.800", ["47.0100"], "H2", 2, 60000, 3),    # ratio 6 > 5 → 特例单议, paid at standard: 1000 × 0.8 = 800
]


def test_points_by_hand(pack, tmp_path):
    policy = tmp_path / "dip.toml"
    policy.write_text(POLICY, encoding="utf-8")
    s = settle_dip(_cases(CASES), policy, pack)
    out = s.cases
    assert out["dip"].to_list() == ["K80.1-1", "K80.1-1", "K35.8-1", "J18.9-0", "J18.9-0", "K35.8-1"]
    assert out["case_type"].to_list() == ["normal", "low", "high", "normal", "normal", "special_review"]
    assert out["points"].to_list() == pytest.approx([1150, 400, 2000, 342, 359.1, 800])
    assert out["coefficient"].to_list() == pytest.approx([1.0, 0.8, 1.0, 0.9, 0.9, 0.8])
    assert out["base_points"].to_list() == pytest.approx([1150, 1150, 1000, 380, 399.0, 1000])
    # Σ points = 5051.1; distributable 525,110.00 yuan → 结算点值 = 103.9595... yuan/point, Σ payments exact
    pools = s.pools.row(0, named=True)
    assert pools["points"] == pytest.approx(5051.1)
    assert pools["settlement_point_value"] == pytest.approx(525_110 / 5051.1)
    assert out["payment"].sum() == 52_511_000
    assert s.hospitals["hospital"].to_list() == ["H1", "H2"]


def test_without_auxiliary_and_primary_factor(pack, tmp_path):
    policy = tmp_path / "dip.toml"
    policy.write_text(POLICY.replace("primary_coefficient = 0.9\n", "").replace("extreme = 5.0", "auxiliary = false"),
                      encoding="utf-8")
    out = settle_dip(_cases(CASES), policy, pack).cases
    # primary groups take the level coefficient; no auxiliary factor; the 6× case is an ordinary high case
    assert out["points"].to_list() == pytest.approx([1150, 400, 2000, 380 * 0.8, 380, 1000 * 0.8 * (1 + 6 - 2)])
    assert out["case_type"][5] == "high"


def test_compare_and_cli_on_the_demo_pack(tmp_path, capsys):
    demo, policy = ROOT / "tables" / "dip-demo", ROOT / "tables" / "policies" / "dip-example.toml"
    reform = tmp_path / "reform.toml"
    reform.write_text(f'[policy]\nname = "reform"\nmethod = "dip"\nextends = "{policy}"\n\n[coefficients]\n'
                      'level = { 3 = 1.0, 2 = 1.0, 1 = 1.0 }\n', encoding="utf-8")
    out = tmp_path / "settled"
    assert main(["settle", str(demo / "discharges.csv"), "--policy", str(policy), "--scheme", str(demo),
                 "-o", str(out), "--compare", str(reform), "-q"]) == 0
    cases = pl.read_parquet(out / "cases.parquet")
    assert cases.height == 40 and "dip" in cases.columns
    hospitals = pl.read_csv(out / "compare_hospitals.csv")
    assert hospitals.height == 4
    groups = pl.read_csv(out / "compare_drgs.csv")       # the per-group tables keep their names; the column is dip
    assert groups.height > 10 and groups.columns[0] == "dip"
    assert pl.read_csv(out / "drgs.csv").columns[0] == "dip"
    # a DRG policy without weights is a usage error; a DIP policy needs a DIP pack's cases
    assert main(["settle", str(demo / "discharges.csv"), "--policy", str(ROOT / "tables" / "policies" / "zhejiang-points.toml"),
                 "-o", str(tmp_path / "x")]) == 2
    capsys.readouterr()


def test_dip_grouped_file_round_trip(pack, tmp_path):
    """`grouper group --scheme DIPPACK --carry` writes a DIP grouped file that settle reads back with the same result."""
    src = tmp_path / "cases.parquet"
    frame = _cases(CASES).with_columns(pl.col("dx").list.join("|"), pl.col("proc").list.join("|"))
    frame.write_csv(src.with_suffix(".csv"))
    for suffix in (".csv", ".parquet"):
        grouped = tmp_path / f"grouped{suffix}"
        assert main(["group", str(src.with_suffix(".csv")), "-o", str(grouped), "--scheme", str(pack.path.parent),
                     "--carry", "-q"]) == 0
        policy = tmp_path / "dip.toml"
        policy.write_text(POLICY, encoding="utf-8")
        from_file = settle_dip(grouped, policy, pack).cases
        direct = settle_dip(_cases(CASES), policy, pack).cases
        assert from_file.select("dip", "case_type", "points", "payment").equals(direct.select("dip", "case_type", "points", "payment"))


def test_report_of_a_dip_settlement(tmp_path):
    """The HTML report (grouper/report, pay2's) renders a DIP settlement folder: charts and tables."""
    demo, policy = ROOT / "tables" / "dip-demo", ROOT / "tables" / "policies" / "dip-example.toml"
    out = tmp_path / "settled"
    assert main(["settle", str(demo / "discharges.csv"), "--policy", str(policy), "--scheme", str(demo),
                 "-o", str(out), "-q"]) == 0
    assert main(["report", str(out), "-o", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert html.count("<svg") >= 3 and "K35" in html and "DIP 示例" in html
