"""`grouper report`: one offline HTML file; every chart renders in headless Chromium without errors."""
from __future__ import annotations

import os
import re

import polars as pl
import pytest

from grouper.cli import main
from grouper.report.html import render_report
from grouper.payment.settle_files import write_comparison
from grouper.payment.api import compare_policies
from headless import Page, chromium_path
from test_policy import ROOT

POLICIES = ROOT / "tables" / "policies"


@pytest.fixture(scope="module")
def settlement_folder(tmp_path_factory):
    import grouper
    from grouper.payment.history import synth_history

    folder = tmp_path_factory.mktemp("report")
    grouped = grouper.group(synth_history(hospitals=6, years=1, cases=1500, seed=5), carry=True)
    kept = grouped.filter(pl.col("status") == "grouped")
    overall = kept["cost"].mean()
    weights = (kept.group_by("drg").agg(pl.col("cost").mean().alias("m"))
               .select("drg", (pl.col("m") / overall).alias("weight"), (pl.col("m") / 100).alias("mean")))
    comparison = compare_policies(grouped, POLICIES / "zhejiang-points.toml", POLICIES / "rate-region.toml", weights)
    write_comparison(comparison, folder / "settlement")
    return folder / "settlement"


def test_report_is_self_contained(settlement_folder, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", str(settlement_folder), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and text.count('<figure class="chart"') == 7
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)  # nothing to fetch
    assert "<link" not in text and "@import" not in text and not re.search(r"url\((?!#)", text)  # only in-page refs
    assert out.stat().st_size < 1_000_000
    for table in ("pools", "hospitals", "drgs", "impact-hospitals", "impact-drgs"):
        assert f'id="{table}"' in text


def test_report_without_comparison_has_no_impact_chart(settlement_folder):
    text = render_report(settlement_folder / "change")
    assert text.count('<figure class="chart"') == 5 and "impact" not in text


def test_report_shows_the_settlement_warnings(settlement_folder, tmp_path):
    import html
    import json
    import shutil

    folder = tmp_path / "warned"
    shutil.copytree(settlement_folder / "change", folder)
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    page = render_report(folder)  # whatever the settlement warned of (e.g. a rate policy over its budget) is shown
    assert all(f'<p class="warning">Warning: {html.escape(w)}</p>' in page for w in summary["warnings"])
    summary["warnings"] = []
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    assert "<p class=\"warning\">" not in render_report(folder)
    summary["warnings"] = ["pool all: nothing is left to share by points <test>"]
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    assert '<p class="warning">Warning: pool all: nothing is left to share by points &lt;test&gt;</p>' in render_report(folder)


def test_report_needs_a_settlement_folder(tmp_path, capsys):
    assert main(["report", str(tmp_path), "-o", str(tmp_path / "r.html")]) == 3
    assert "summary.json" in capsys.readouterr().err


CHART_CHECK = """
Array.from(document.querySelectorAll('figure.chart')).map(function (f) {
  var svg = f.querySelector('svg'); var box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
  return {id: f.id, width: box.width, height: box.height,
          marks: svg ? svg.querySelectorAll('path, rect, use, circle').length : 0,
          text: svg ? svg.querySelectorAll('text').length : 0};
})
"""


def test_report_renders_in_headless_chromium(settlement_folder, tmp_path):
    if chromium_path() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium not installed")
    out = tmp_path / "report.html"
    out.write_text(render_report(settlement_folder), encoding="utf-8")
    with Page(out.as_uri()) as page:
        charts = page.evaluate(CHART_CHECK)
        assert len(charts) == 7
        for chart in charts:
            assert chart["width"] > 200 and chart["height"] > 100, chart
            assert chart["marks"] >= 5 and chart["text"] >= 3, chart
        first = "document.querySelector('#hospitals tbody tr td').textContent"
        before = page.evaluate(first)
        page.evaluate("document.querySelector('#hospitals th').click(); 0")
        after_down = page.evaluate(first)
        page.evaluate("document.querySelector('#hospitals th').click(); 0")
        assert page.evaluate(first) == before and after_down != before  # H006 first, then H001 again
        assert page.errors == []
