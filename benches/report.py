"""Turn a pytest-benchmark JSON file into the README's Markdown tables.

    python benches/report.py [.benchmarks/latest.json]    # default: the last `pytest benches` run

`pytest benches` writes .benchmarks/latest.json and .benchmarks/report.md itself (conftest.py);
this script re-renders the tables from any saved JSON (e.g. an autosaved run in .benchmarks/).

Each benchmark puts its figure into extra_info (see conftest.record): value + unit, and for the
benchmarks that check a target of the issue: target, op, threshold, met.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

DEFAULT_JSON = Path(__file__).resolve().parents[1] / ".benchmarks" / "latest.json"


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "cases/s":
        return f"{value / 1e6:.2f} M cases/s" if value >= 1e6 else f"{value / 1e3:,.0f} k cases/s"
    if unit == "s":
        return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"
    if unit == "MiB":
        return f"{value / 1024:.2f} GiB" if value >= 1024 else f"{value:,.0f} MiB"
    if unit == "x":
        return f"{value:.2f}×"
    if unit == "%":
        return f"{value:.2f} %"
    return f"{value:g} {unit}"


def _threshold(info: dict) -> str:
    return f"{info['op'].replace('>=', '≥').replace('<=', '≤')} {fmt(info['threshold'], info['unit'])}"


def render(data: dict) -> str:
    benches = data.get("benchmarks", [])
    lines: list[str] = []

    targets = [b for b in benches if "target" in b.get("extra_info", {})]
    targets.sort(key=lambda b: (b["extra_info"].get("order", 99), b["name"]))
    if targets:
        lines += ["| target | median | met? |", "|---|---|---|"]
        for b in targets:
            info = b["extra_info"]
            value = fmt(info.get("value"), info["unit"])
            extra = f" ({info['note']})" if info.get("note") else ""
            lines.append(f"| {info['target']} {_threshold(info)} | {value}{extra} | "
                         f"{'yes' if info.get('met') else '**no**'} |")
        lines.append("")

    stages = [b for b in benches if b.get("group") == "stages"]
    stages.sort(key=lambda b: b["extra_info"].get("order", 99))
    if stages:
        total = sum(b["stats"]["median"] for b in stages if b["extra_info"].get("in_total", True))
        cases = stages[0]["extra_info"].get("cases", 1_000_000)
        lines += [f"Where the time goes, {cases:,} cases (median of each stage, one thread):", "",
                  "| stage | median | share |", "|---|---|---|"]
        for b in stages:
            info, median = b["extra_info"], b["stats"]["median"]
            share = f"{100 * median / total:.0f} %" if info.get("in_total", True) else "(not summed)"
            lines.append(f"| {info.get('stage', b['name'])} | {fmt(median, 's')} | {share} |")
        lines += [f"| **sum of the summed stages** | {fmt(total, 's')} | {cases / total:,.0f} cases/s |", ""]

    if benches:
        lines += ["All benchmarks (median of the rounds):", "",
                  "| benchmark | rounds | median | figure |", "|---|---|---|---|"]
        for b in sorted(benches, key=lambda b: b["fullname"]):
            info = b.get("extra_info", {})
            figure = fmt(info.get("value"), info["unit"]) if "unit" in info else ""
            if "peak_rss_mib" in info and info.get("unit") != "MiB":
                figure += f", peak RSS {fmt(info['peak_rss_mib'], 'MiB')}"
            lines.append(f"| {b['name']} | {b['stats']['rounds']} | {fmt(b['stats']['median'], 's')} | {figure} |")
        lines.append("")
    machine = data.get("machine_info", {})
    if machine:
        lines.append(f"Machine: {machine.get('cpu', {}).get('brand_raw', '?')}, "
                     f"{machine.get('cpu', {}).get('count', '?')} CPUs, Python {machine.get('python_version', '?')}; "
                     f"{data.get('datetime', '')}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else DEFAULT_JSON
    if not path.is_file():
        print(f"no benchmark JSON at {path}; run `pytest benches` first", file=sys.stderr)
        return 2
    sys.stdout.write(render(json.loads(path.read_text(encoding="utf-8"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
