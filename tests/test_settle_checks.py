"""Issue 16: every settlement ends with its own checks (console, summary.json, report), `--strict`,
and the report's money panels (budget / paid / undistributed, losers only, the change as a change,
DIP labelled as DIP)."""
from __future__ import annotations

import json

import polars as pl
import pytest

from grouper.cli import main
from grouper.report.html import render_report
from grouper.payment.settle_files import write_comparison, write_settlement
from grouper.payment.api import compare_policies, settle_cases
from settle_helpers import WEIGHTS, base_points_policy, cases, policy, write_policy


def _two_pools(tmp_path):
    tree = base_points_policy(budget={"annual": {"employee": "10000.00", "resident": "500.00"}, "reserve_share": 0.05})
    return settle_cases(cases({"cost": 100_000}, {"drg": "B11", "cost": 150_000}), policy(tmp_path, tree), WEIGHTS)


def test_every_pool_closes_to_the_fen_and_each_undistributed_fen_has_a_reason(tmp_path):
    s = _two_pools(tmp_path)
    pools = {p["pool"]: p for p in s.checks.pools}
    # employee: 10,000.00 − 500.00 reserve = 9,500.00 shared by points; resident: no case, 500.00 − 25.00 unpaid
    assert pools["employee"] == {"pool": "employee", "budget": 1_000_000, "paid": 950_000, "paid_outside": 0,
                                 "undistributed": {"reserve": 50_000}}
    assert pools["resident"]["undistributed"] == {"reserve": 2_500, "no_cases": 47_500}
    for p in s.checks.pools:
        assert p["paid"] + sum(p["undistributed"].values()) == p["budget"]
    assert s.checks.cases_by_type["normal"] == 2


def test_summary_json_carries_the_checks(tmp_path):
    s = _two_pools(tmp_path)
    write_settlement(s, tmp_path / "out", case_format="csv")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    checks = summary["checks"]
    assert {p["pool"] for p in checks["pools"]} == {"employee", "resident"}
    assert checks["cases_by_type"]["normal"] == 2 and checks["duplicate_ids"] == 0
    assert "no_cases" in checks["undistributed_reasons"]
    assert summary["warnings"] == checks["warnings"] and any("pool resident" in w for w in summary["warnings"])


def test_the_report_shows_budget_paid_undistributed(tmp_path):
    write_settlement(_two_pools(tmp_path), tmp_path / "out")
    page = render_report(tmp_path / "out")
    panel = page[page.index('<table id="money">'):]
    panel = panel[:panel.index("</table>")]
    assert "475.00: the pool has no case paid by points" in panel and "25.00: held back as 调剂金" in panel
    assert "generated" not in page  # no clock in the file unless SOURCE_DATE_EPOCH says so


def _cli_files(tmp_path, tree):
    grouped = tmp_path / "grouped.parquet"
    cases({"cost": 100_000}, {"drg": "B11", "cost": 150_000}).write_parquet(grouped)
    WEIGHTS.write_csv(tmp_path / "w.csv")
    return ["settle", str(grouped), "--policy", str(write_policy(tmp_path, tree)), "--weights", str(tmp_path / "w.csv")]


def test_strict_turns_warnings_into_exit_4(tmp_path, capsys):
    tree = base_points_policy(budget={"annual": {"employee": "10000.00", "resident": "500.00"}})
    argv = _cli_files(tmp_path, tree)
    assert main([*argv, "-o", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "Checks: budget, paid, undistributed" in err and "warning:" in err and "pool resident" in err
    assert main([*argv, "-o", str(tmp_path / "b"), "--strict", "-q"]) == 4
    assert (tmp_path / "b" / "summary.json").is_file()  # written all the same
    clean = base_points_policy(budget={"annual": {"all": "10000.00"}})
    assert main([*_cli_files(tmp_path, clean), "-o", str(tmp_path / "c"), "--strict", "-q"]) == 0


def _comparison(tmp_path):
    # B11 loses (level coefficient 0.5 only for it, via a group coefficient), A11 gains
    (tmp_path / "coef.csv").write_text("drg,coefficient\nB11,0.5\n", encoding="utf-8")
    base = policy(tmp_path, base_points_policy())
    change = policy(tmp_path, base_points_policy(coefficients={"drgs": "coef.csv"}))
    return compare_policies(cases({"cost": 100_000}, {"drg": "B11", "cost": 200_000, "hospital": "H2"}), base, change,
                            WEIGHTS)


def test_the_change_is_after_minus_before(tmp_path):
    c = _comparison(tmp_path)
    drgs = {r["drg"]: r for r in c.groups.iter_rows(named=True)}
    assert drgs["B11"]["payment_change"] == drgs["B11"]["payment_after"] - drgs["B11"]["payment_before"] < 0
    assert drgs["A11"]["payment_change"] > 0
    assert "points_change" in c.groups.columns  # two points policies at one scale: points are comparable


def test_the_losers_panel_shows_only_groups_that_lose(tmp_path):
    write_comparison(_comparison(tmp_path), tmp_path / "out")
    page = render_report(tmp_path / "out")
    chart = page[page.index('id="chart-impact-drg"'):]
    chart = chart[:chart.index("</figure>")]
    assert "B11" in chart and "A11" not in chart


def test_a_dip_report_speaks_of_dip_groups_not_drgs(tmp_path):
    from pathlib import Path

    from grouper.dip.settle import settle_dip

    root = Path(__file__).resolve().parents[1]
    demo, dip_policy = root / "tables" / "dip-demo", root / "tables" / "policies" / "dip-example.toml"
    s = settle_dip(demo / "discharges.csv", dip_policy, demo)
    write_settlement(s, tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text(encoding="utf-8"))
    assert (summary["method"], summary["payment"]) == ("dip", "points")
    page = render_report(tmp_path / "out")
    figures = "".join(page[i:page.index("</figcaption>", i)] for i in range(len(page)) if page.startswith("<figcaption>", i))
    assert "DRG" not in figures and "CMI" not in figures and "RW" not in figures
    assert "DIP (按病种分值付费)" in page and "DIP groups (病种)" in page


class _Row:
    def __init__(self, code, score, level="core"):
        self.code, self.score, self.level = code, score, level


class _Pack:
    """The parts of a loaded DIP pack that DipScores reads (no level tables: no means)."""

    def __init__(self, *rows):
        self.rows = {"core": rows}

        class _Ast:
            @staticmethod
            def level(_):
                return None

        self.ast = _Ast()


@pytest.mark.parametrize("score", [0, -5, float("nan"), float("inf"), 1e308])
def test_a_dip_score_that_cannot_be_paid_is_refused_at_settle(tmp_path, score):
    from grouper.dip.settle import DipScores
    from grouper.errors import InputError

    dip = policy(tmp_path, base_points_policy(policy={"name": "d", "method": "dip"}))
    with pytest.raises(InputError, match="group D2: score .* is not a positive number"):
        DipScores.from_pack(_Pack(_Row("D1", 100.5), _Row("D2", score)), dip)


def test_a_dip_group_listed_twice_is_refused_at_settle(tmp_path):
    from grouper.dip.settle import DipScores
    from grouper.errors import InputError

    dip = policy(tmp_path, base_points_policy(policy={"name": "d", "method": "dip"}))
    with pytest.raises(InputError, match="group D1 is listed twice"):
        DipScores.from_pack(_Pack(_Row("D1", 100.5), _Row("D1", 90)), dip)
    scores = DipScores.from_pack(_Pack(_Row("D1", "100.5")), dip)
    assert scores.catalogue["_score_micro"].to_list() == [100_500_000]


def test_a_refusal_is_a_clean_error_naming_the_file_line_and_field(tmp_path, capsys):
    grouped = tmp_path / "grouped.parquet"
    cases({"cost": 100_000}).write_parquet(grouped)
    (tmp_path / "w.csv").write_text("drg,weight,mean\nA11,1.0,1000\nB11,NaN,2000\n", encoding="utf-8")
    code = main(["settle", str(grouped), "--policy", str(write_policy(tmp_path, base_points_policy())),
                 "--weights", str(tmp_path / "w.csv"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err
    assert f"{tmp_path / 'w.csv'}, line 3, drg B11: weight 'NaN' is not a positive number" in err.replace("\n", "")
    assert not (tmp_path / "out").exists()
