"""`grouper report`: one self-contained HTML file for a settlement folder (opens offline).

Charts are drawn with matplotlib into static SVG and written inline, so the page needs no
script library, no network and no fonts of its own: its size depends on the number of
hospitals and DRGs, not on the number of cases (the per-case table is read only for the
cost-ratio histogram and the case-type shares, two columns). Tables sort on a click on their
header (a few lines of inline JavaScript). Text in the SVGs stays text (`svg.fonttype = none`),
so the browser draws it with its own fonts.
"""
from __future__ import annotations

import html
import io
import json
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..fields import fen_text
from ..payment.settle import CASE_TYPES
from ..payment.settle_files import COMPARE_MONEY, MONEY, read_table

WAN, WAN_LABEL = 1_000_000, "万元"  # money charts in 万元 (fen ÷ 1,000,000)
CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "Microsoft YaHei", "SimHei",
             "PingFang SC")
# Case types as the charts show them (settlement's names: grouper.payment.settle.CASE_TYPES).
CASE_TYPE_LABELS = {"normal": "正常病例", "high": "高倍率病例", "low": "低倍率病例", "incomplete": "未完成治疗",
                    "per_diem": "按床日", "special_review": "特例单议", "excluded": "除外病例",
                    "ungrouped": "未入组", "invalid": "无效病例"}
RATIO_BINS = 60
RATIO_MAX = 6.0  # the histogram's last bin collects every ratio above
METHOD_NAMES = {"points": "points (DRG 点数法)", "rate": "rate (DRG 费率法)", "dip": "DIP (按病种分值付费)"}


def _read_settlement(folder: Path) -> dict:
    if not (folder / "summary.json").is_file():
        raise InputError(f"{folder} is not a settlement folder (no summary.json): write one with `grouper settle ... -o {folder}`")
    try:
        summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (ValueError, OSError) as exc:  # not JSON, not UTF-8 (ValueError both), unreadable
        raise InputError(f"{folder / 'summary.json'} cannot be read as a settlement summary ({exc}): "
                         f"write the folder again with `grouper settle ... -o {folder}`") from None
    if not isinstance(summary, dict):
        raise InputError(f"{folder / 'summary.json'} is not a settlement summary (a JSON object)")
    data = {"summary": summary,
            "hospitals": read_table(folder / "hospitals.csv", MONEY["hospitals"]),
            "groups": read_table(folder / "drgs.csv", MONEY["groups"]),
            "pools": read_table(folder / "pools.csv", MONEY["pools"])}
    cases = next((p for p in (folder / "cases.parquet", folder / "cases.csv") if p.is_file()), None)
    if cases is None:
        raise InputError(f"{folder} has no cases.parquet or cases.csv")
    if cases.suffix == ".parquet":
        lazy = pl.scan_parquet(cases)
    else:   # written in UTF-8 (with or without BOM) or GBK: see grouper.writers
        from ..io import _as_utf8

        lazy = pl.read_csv(_as_utf8(cases.read_bytes(), None, cases), columns=["case_type", "cost_ratio"],
                           schema_overrides={"cost_ratio": pl.Float64}).lazy()
    data["types"] = lazy.group_by("case_type").agg(pl.len().alias("cases")).collect()
    ratio = pl.col("cost_ratio")
    width = RATIO_MAX / RATIO_BINS
    data["ratio_bins"] = (lazy.filter(ratio.is_not_null() & ratio.is_finite())
                          .select((ratio.clip(0, RATIO_MAX - width / 2) / width).floor().cast(pl.Int32).alias("bin"))
                          .group_by("bin").len().collect())
    if (folder / "compare_hospitals.csv").is_file():
        data["compare"] = {"hospitals": read_table(folder / "compare_hospitals.csv", COMPARE_MONEY),
                           "groups": read_table(folder / "compare_drgs.csv", COMPARE_MONEY)}
    return data


# -- charts ---------------------------------------------------------------------------------

def _pyplot():
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    import warnings

    # Chart text is Chinese. It stays text in the SVG (fonttype none) and the page's stylesheet
    # gives it the browser's CJK fonts; matplotlib only measures it, with a CJK font when the
    # machine has one, else DejaVu (bundled; its missing-glyph warnings are noise here).
    warnings.filterwarnings("ignore", message="Glyph .* missing from", category=UserWarning)
    plt.rcParams.update({"svg.fonttype": "none", "font.size": 9, "axes.spines.top": False, "axes.spines.right": False,
                         "font.family": "sans-serif", "font.sans-serif": [*CJK_FONTS, "DejaVu Sans"],
                         "axes.unicode_minus": False,   # a plain '-' (CJK fonts often lack U+2212)
                         "svg.hashsalt": "grouper"})  # stable ids: the same data gives the same file
    import logging

    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)  # "font family not found" is expected
    return plt


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _bar(plt, labels, values, *, xlabel, color="#4c78a8", horizontal=False, signed=False, height=3.2):
    """A bar chart without a title of its own: the figure's caption names it (shown once)."""
    fig, ax = plt.subplots(figsize=(7.2, height))
    colors = [("#e45756" if v < 0 else "#54a24b") for v in values] if signed else color
    if horizontal:
        ax.barh(labels, values, color=colors)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
    else:
        ax.bar(labels, values, color=colors)
        ax.set_ylabel(xlabel)
        ax.tick_params(axis="x", labelrotation=90, labelsize=7)
    if signed:
        (ax.axvline if horizontal else ax.axhline)(0, color="#333", linewidth=0.8)
    return _svg(fig)


def _words(data: dict) -> dict[str, str]:
    """What the charts call a group, its weight and the case mix: DRG, RW, CMI — or, for a DIP
    settlement, 病种, score (÷ points.scale) and mean score per case."""
    if data["summary"].get("method") == "dip" or "dip" in data["groups"].columns:
        return {"group": "DIP group", "groups": "DIP groups (病种)", "weight": "score ÷ points.scale",
                "mix": "mean score per case (÷ points.scale)", "mix_zh": "次均分值"}
    return {"group": "DRG", "groups": "DRGs", "weight": "relative weight (RW)", "mix": "CMI", "mix_zh": "病例组合指数"}


def _charts(data: dict) -> list[tuple[str, str, str]]:
    """(id, heading, svg) per chart; the heading is the chart's only title."""
    plt = _pyplot()
    words = _words(data)
    charts = []
    h = data["hospitals"].sort("cmi", descending=True, nulls_last=True)
    charts.append(("cmi", f"各医院{words['mix_zh']} ({words['mix']} by hospital)", _bar(
        plt, [str(x) for x in h["hospital"]], h["cmi"].fill_null(0).to_list(), xlabel=f"{words['mix_zh']} {words['mix']}")))

    bins = dict(data["ratio_bins"].iter_rows())
    width = RATIO_MAX / RATIO_BINS
    fig, ax = plt.subplots(figsize=(7.2, 3.2))
    ax.bar([i * width for i in range(RATIO_BINS)], [bins.get(i, 0) for i in range(RATIO_BINS)], width=width, align="edge",
           color="#4c78a8")
    ax.set_xlabel(f"费用倍率 (费用 ÷ 标准费用; 最后一栏含所有 ≥ {RATIO_MAX - width:g} 的病例)")
    ax.set_ylabel("病例数")
    charts.append(("ratio", "费用倍率分布 (cost-ratio distribution)", _svg(fig)))

    types = dict(data["types"].iter_rows())
    total = sum(types.values()) or 1
    shown = [t for t in CASE_TYPES if types.get(t)]
    charts.append(("types", "病例类型占比 (case types)", _bar(
        plt, [CASE_TYPE_LABELS.get(t, t) for t in shown], [100 * types[t] / total for t in shown], xlabel="占病例 %",
        horizontal=True, height=2.6)))

    key = data["groups"].columns[0]
    g = data["groups"].filter(pl.col("surplus") < 0).sort("surplus").head(15)
    charts.append(("deficit", f"亏损最多的{'病种' if key == 'dip' else '病组'} (支付 − 费用; top {words['groups']} by deficit)", _bar(
        plt, [str(x) for x in g[key]], [v / WAN for v in g["surplus"]],
        xlabel=f"结余 ({WAN_LABEL})", horizontal=True, signed=True, height=3.6)))

    g = data["groups"].filter(pl.col("rw").is_not_null() & pl.col("mean_cost").is_not_null())
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    sizes = [max(4.0, min(200.0, c / max(1, g["cases"].max() or 1) * 200)) for c in g["cases"]]
    ax.scatter(g["rw"].to_list(), [v / 100 for v in g["mean_cost"]], s=sizes, alpha=0.6, color="#4c78a8")
    ax.set_xlabel("分值 (score ÷ points.scale)" if key == "dip" else "相对权重 (RW)")
    ax.set_ylabel("本年次均费用 (元)")
    charts.append(("weight", f"{'分值' if key == 'dip' else '权重'}与次均费用, 每点一个{'病种' if key == 'dip' else '病组'}, "
                             f"点的大小为病例数 ({words['weight'].split(' (')[0]} vs mean cost)", _svg(fig)))

    if "compare" in data:
        c = data["compare"]["hospitals"].sort("payment_change")
        charts.append(("impact", "政策调整对各医院支付的影响 (分担后; impact per hospital)", _bar(
            plt, [str(x) for x in c["hospital"]], [v / WAN for v in c["payment_change"].fill_null(0)],
            xlabel=f"支付变化 ({WAN_LABEL})", signed=True)))
        # only the groups that lose: a group whose payment rises is no loss, however few losers there are
        d = data["compare"]["groups"].filter(pl.col("payment_change") < 0).sort("payment_change").head(15)
        key = d.columns[0]
        charts.append(("impact-drg", f"支付减少最多的 15 个{'病种' if key == 'dip' else '病组'} "
                                     f"({words['groups']} losing most under the change)", _bar(
            plt, [str(x) for x in d[key]], [v / WAN for v in d["payment_change"]],
            xlabel=f"支付变化 ({WAN_LABEL})", horizontal=True, signed=True, height=3.6)))
    return charts


def _money_panel(summary: dict) -> str:
    """Budget, paid and undistributed per pool, each undistributed amount with its reason (summary.json checks)."""
    checks = summary.get("checks") or {}
    pools, reasons = checks.get("pools") or [], checks.get("undistributed_reasons") or {}
    if not pools:
        return ""
    rows = []
    for p in pools:
        undistributed = p.get("undistributed") or {}
        why = "; ".join(f"{fen_text(v)}: {reasons.get(k, k)}" for k, v in undistributed.items()) or "—"
        cells = [html.escape(str(p["pool"])),
                 *[_cell(p.get(k), True) for k in ("budget", "paid", "paid_outside")],
                 _cell(sum(undistributed.values()) if p.get("budget") is not None else None, True)]
        rows.append("<tr><td>" + cells[0] + "</td>" + "".join(cells[1:]) + f"<td>{html.escape(why)}</td></tr>")
    head = "".join(f"<th>{h}</th>" for h in ("pool", "budget", "paid from it", "paid outside the budget",
                                              "undistributed", "why"))
    return (f'<h2>Budget, paid, undistributed (预算、支付、未分配)</h2><div class="scroll"><table id="money">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'
            f'<p class="meta">{checks.get("cases", 0):,} cases; {100 * (checks.get("excluded_share") or 0):.1f}% excluded '
            f'(paid by item); {(checks.get("cases_without_weight") or {}).get("cases", 0):,} without a weight.</p>')


# -- tables ---------------------------------------------------------------------------------

def _cell(value, money: bool) -> str:
    if value is None:
        return '<td data-v="">—</td>'
    if money:
        return f'<td class="n" data-v="{value}">{fen_text(value)}</td>'
    if isinstance(value, float):
        return f'<td class="n" data-v="{value!r}">{value:,.4f}</td>'
    if isinstance(value, int):
        return f'<td class="n" data-v="{value}">{value:,}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(frame: pl.DataFrame, money: tuple[str, ...], table_id: str) -> str:
    head = "".join(f'<th title="click to sort">{html.escape(c)}</th>' for c in frame.columns)
    rows = []
    for row in frame.iter_rows():
        rows.append("<tr>" + "".join(_cell(v, c in money) for c, v in zip(frame.columns, row)) + "</tr>")
    return (f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var down = th.dataset.dir !== 'down';
      table.querySelectorAll('th').forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = down ? 'down' : 'up';
      rows.sort(function (a, b) {
        var x = a.cells[col], y = b.cells[col];
        var p = x.dataset.v !== undefined ? parseFloat(x.dataset.v) : NaN;
        var q = y.dataset.v !== undefined ? parseFloat(y.dataset.v) : NaN;
        var r = (!isNaN(p) && !isNaN(q)) ? p - q : (isNaN(p) - isNaN(q)) || x.textContent.localeCompare(y.textContent);
        return down ? -r : r;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""

STYLE = """
body { font-family: system-ui, "Noto Sans CJK SC", "Microsoft YaHei", sans-serif; margin: 24px auto; max-width: 1180px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; }
.meta { color: #666; font-size: 13px; } .warning { background: #fff4e5; border-left: 4px solid #e8a33d; padding: 6px 10px; } .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(540px, 1fr)); gap: 12px; }
figure { margin: 0; border: 1px solid #eee; padding: 8px; } figure svg { width: 100%; height: auto; }
figcaption { font-weight: 600; font-size: 14px; margin-bottom: 4px; }
.scroll { max-height: 480px; overflow: auto; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 12px; width: 100%; }
th, td { padding: 3px 6px; border-bottom: 1px solid #f0f0f0; white-space: nowrap; }
th { position: sticky; top: 0; background: #f7f7f7; cursor: pointer; text-align: left; }
th[data-dir=down]::after { content: " ▼"; } th[data-dir=up]::after { content: " ▲"; } td.n { text-align: right; }
.kpi { display: flex; gap: 24px; flex-wrap: wrap; } .kpi div { background: #f7f7f7; padding: 8px 12px; }
.kpi b { display: block; font-size: 18px; }
figure svg text { font-family: system-ui, "Noto Sans CJK SC", "Microsoft YaHei", "PingFang SC", sans-serif !important; }
/* Printing (or saving as PDF) shows every row and every column: no scrolling boxes, a landscape
   page, small type, headers that wrap and repeat on each page, rows not split across pages. */
@page { size: A4 landscape; margin: 10mm; }
@media print {
  body { max-width: none; margin: 0; }
  .scroll { max-height: none; overflow: visible; border: none; }
  table { font-size: 7px; width: auto; table-layout: auto; }
  th { position: static; white-space: normal; overflow-wrap: anywhere; cursor: auto; }   /* headers wrap to fit the page */
  th, td { padding: 1px 3px; }
  thead { display: table-header-group; }
  tr, figure { break-inside: avoid; }
  .grid { display: block; } figure { margin-bottom: 8px; }
  th[data-dir]::after { content: none; }
}
"""


def _generated() -> str:
    """When the report was made, only if SOURCE_DATE_EPOCH says so: the same folder gives the same bytes."""
    from ..writers import source_date_epoch

    when = source_date_epoch()
    return "" if when is None else f"generated {when:%Y-%m-%d %H:%M} UTC "


def render_report(folder: str | Path, screens: str | Path | None = None) -> str:
    """The report of a settlement folder as one HTML string; with `screens` (a `grouper screen` folder),
    a supervision section too (grouper.report.supervision)."""
    folder = Path(folder)
    data = _read_settlement(folder)
    summary, hospitals, pools = data["summary"], data["hospitals"], data["pools"]
    charts = _charts(data)
    total_cases = summary.get("cases", 0)
    kpis = [("cases", f"{total_cases:,}"), ("hospitals", f"{hospitals.height:,}"),
            ("payment (yuan)", fen_text(int(hospitals["final_payment"].sum() or 0))),
            ("cost (yuan)", fen_text(int(hospitals["cost"].sum() or 0))),
            ("surplus after sharing (yuan)", fen_text(int(hospitals["surplus_after_sharing"].sum() or 0)))]
    for row in pools.iter_rows(named=True):
        if row["settlement_point_value"] is not None:
            kpis.append((f"结算点值 {row['pool']}", f"{row['settlement_point_value']:.6f}"))
    parts = [
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(summary['policy'])}: settlement report</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(summary['policy'])} — settlement report (结算报告)</h1>",
        f"<p class=\"meta\">method: {html.escape(METHOD_NAMES.get(summary['method'], summary['method']))} · policy files: "
        f"{html.escape(', '.join(Path(p).name for p in summary.get('policy_files', [])))} · "
        f"{_generated()}by grouper from {html.escape(folder.name)}</p>",
        '<div class="kpi">' + "".join(f"<div>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in kpis) + "</div>",
        *[f'<p class="warning">Warning: {html.escape(w)}</p>' for w in summary.get("warnings", [])],
        _money_panel(summary),
        "<h2>Charts</h2><div class=\"grid\">",
        *[f'<figure class="chart" id="chart-{cid}"><figcaption>{html.escape(title)}</figcaption>{svg}</figure>'
          for cid, title, svg in charts],
        "</div>",
        "<h2>Pools and point values (预算点值 / 结算点值)</h2>", _table(pools, MONEY["pools"], "pools"),
        "<h2>Hospitals (清算)</h2>", _table(hospitals, MONEY["hospitals"], "hospitals"),
        f"<h2>{_words(data)['groups']}</h2>", _table(data["groups"], MONEY["groups"], "drgs"),
    ]
    if "compare" in data:
        change = summary.get("compare", {}).get("policy", "the change")
        parts += [f"<h2>Impact of {html.escape(change)}: hospitals</h2>",
                  _table(data["compare"]["hospitals"], COMPARE_MONEY, "impact-hospitals"),
                  f"<h2>Impact: {_words(data)['groups']}</h2>", _table(data["compare"]["groups"], COMPARE_MONEY, "impact-drgs")]
    parts += _migration_section(folder)
    if screens is not None:
        from .supervision import supervision_section

        parts.append(supervision_section(screens, _table))
    parts.append(f"<script>{SORT_SCRIPT}</script></body></html>")
    return "\n".join(parts)


def _migration_section(folder: Path) -> list[str]:
    """A version switch (`grouper migration`): its key figures and the per-source-group table.
    The hospital and group impact tables above already hold the comparison (CMI and outcome columns included)."""
    if not (folder / "migration.json").is_file():
        return []
    m = json.loads((folder / "migration.json").read_text(encoding="utf-8"))
    cmi = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    kpis = [("versions", f"{m['from']} → {m['to']}"), ("CMI", f"{cmi(m['cmi_from'])} → {cmi(m['cmi_to'])}"),
            ("payment (yuan)", f"{fen_text(m['payment_from'])} → {fen_text(m['payment_to'])}"),
            ("hospitals winning / losing", f"{m['winners']} / {m['losers']}")]
    groups = read_table(folder / "source_groups.csv", COMPARE_MONEY)
    return [f"<h2>Version switch {html.escape(m['from'])} → {html.escape(m['to'])} (版本切换测算)</h2>",
            '<div class="kpi">' + "".join(f"<div>{html.escape(k)}<b>{html.escape(v)}</b></div>" for k, v in kpis) + "</div>",
            "<h2>Per group of the old version: payment under each version, where its cases went</h2>",
            _table(groups, COMPARE_MONEY, "migration-groups")]


def write_report(folder: str | Path, output: str | Path, screens: str | Path | None = None) -> Path:
    """Write the report of a settlement folder (and of a screens folder, if given) to `output` (.html), atomically."""
    from ..outputs import atomic_output

    output = Path(output)
    if output.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"cannot write {output}: the report is an .html file")
    text = render_report(folder, screens)
    with atomic_output(output) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return output
