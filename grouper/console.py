"""Terminal output (progress bar, summary tables); the only module that imports rich."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from .reasons import STATUSES  # noqa: F401  (re-exported: the summary tables list them in this order)


class GrouperConsole(Console):
    """A Rich console whose tables never cut a number or a header: a table is printed as it is when
    every column fits at full width (only columns made to shorten, `no_wrap=True,
    overflow="ellipsis"`, may be shortened), and otherwise one record at a time, `header: value` lines (e.g. at 80 columns)."""

    def print(self, *objects, **kwargs) -> None:
        super().print(*(fit_table(o, self.width) if isinstance(o, Table) else o for o in objects), **kwargs)


ELLIPSIS_MIN = 12  # the narrowest a shortening column (e.g. a message) is made


def _cell_width(cell) -> int:
    from rich.cells import cell_len
    from rich.errors import MarkupError

    if isinstance(cell, str):
        try:
            cell = Text.from_markup(cell)
        except MarkupError:
            cell = Text(cell)
    if not isinstance(cell, Text):
        return 0
    return max((cell_len(line) for line in cell.plain.splitlines()), default=0)


def fit_table(table: Table, width: int):
    """`table` with its columns unwrapped when it fits in `width` (long headers broken after `_` or
    a space onto more lines if need be), else the same rows as records."""
    import copy
    import re

    table = copy.copy(table)   # the caller's table is left as it was
    table.columns = [copy.copy(column) for column in table.columns]
    needed, headers = 0, []   # (column, its header on several lines)
    for column in table.columns:
        if column.no_wrap and column.overflow == "ellipsis":   # made to shorten (e.g. a message)
            needed += ELLIPSIS_MIN
        else:
            column.no_wrap, column.overflow = True, "fold"
            cells = max([0, *(_cell_width(c) for c in column._cells)])
            header = column.header if isinstance(column.header, str) else None
            words = re.findall(r"[^_\s]+[_\s]*", header) if header else []
            fitted = max(cells, *(_cell_width(w.rstrip()) for w in words)) if words else \
                max(cells, _cell_width(column.header))
            if header and _cell_width(header) > fitted:
                headers.append((column, _wrapped(words, fitted)))
            needed += fitted
        needed += table.padding[1] + table.padding[3]
    needed += (len(table.columns) + 1) if table.box and table.show_edge else max(len(table.columns) - 1, 0)
    if needed > width:
        return _records(table)
    if needed + sum(_cell_width(c.header) - _cell_width(h) for c, h in headers) > width:
        for column, header in headers:
            column.header = header
    return table


def _wrapped(words: list[str], width: int) -> str:
    """Header words (each with its `_` or space) greedily on lines of at most `width` cells."""
    lines = [""]
    for word in words:
        if lines[-1] and _cell_width((lines[-1] + word).rstrip()) > width:
            lines.append("")
        lines[-1] += word
    return "\n".join(line.rstrip() for line in lines)


def _records(table: Table):
    """The rows of `table` as blocks of `header: value` lines under its title (values fold, never cut)."""
    from rich.console import Group

    columns = table.columns
    rows = len(columns[0]._cells) if columns else 0
    parts = [Text(str(table.title), style="bold")] if table.title else []
    for i in range(rows):
        record = Table.grid(padding=(0, 1))
        record.add_column(no_wrap=True, style="dim")
        record.add_column(overflow="fold")
        for column in columns:
            cell = column._cells[i]
            if cell == "" or (isinstance(cell, Text) and not cell.plain):
                continue
            record.add_row(f"{column.header}:" if isinstance(column.header, str) else column.header, cell)
        parts += [Text("─" * 3), record] if i else [record]
    return Group(*parts)


def stderr_console() -> Console:
    return GrouperConsole(stderr=True, highlight=False, soft_wrap=True)


def stdout_console() -> Console:
    return GrouperConsole(highlight=False, soft_wrap=False)


class _CasesPerSecondColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- cases/s" if speed is None else f"{speed:,.0f} cases/s")


class _CountColumn(ProgressColumn):
    """`12,345/100,000`, or `12,345/~100,000` while the total is an estimate, or `12,345` when unknown."""

    def render(self, task: Task) -> Text:
        done = f"{int(task.completed):,}"
        if task.total is None:
            return Text(done)
        about = "~" if task.fields.get("estimated") else ""
        return Text(f"{done}/{about}{int(task.total):,}")


class _PercentColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text("" if task.total is None else f"{min(task.percentage, 100):>3.0f}%")


class _ProgressTask:
    def __init__(self, bar: Progress, task_id) -> None:
        self._bar = bar
        self._task_id = task_id

    def advance(self, n: int = 1) -> None:
        self._bar.advance(self._task_id, n)
        task = self._task()
        if task.fields.get("estimated") and task.total is not None \
                and task.completed >= task.total:
            # an estimate (from the file size) that was too low: keep the bar short of the end
            self._bar.update(self._task_id, total=int(task.completed * 1.05) + 1)

    def _task(self) -> Task:
        return next(task for task in self._bar.tasks if task.id == self._task_id)

    def finish(self) -> None:
        """The count is final: the total is what was done (no longer an estimate)."""
        task = self._task()
        self._bar.update(self._task_id, total=task.completed, estimated=False)

    def describe(self, text: str) -> None:
        self._bar.update(self._task_id, description=text)


class _NoProgress:
    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass

    def describe(self, text: str) -> None:
        pass


@contextmanager
def progress(total: int | None, description: str, *, enabled: bool,
             estimated: bool = False) -> Iterator[_ProgressTask | _NoProgress]:
    """A progress bar on stderr: description, bar, percentage, `done/total` (with thousands separators;
    `~total` when `estimated`, e.g. from a CSV's size), cases/s, elapsed time. Yields an object with
    ``advance(n)``, ``describe(text)`` and ``finish()`` (no-ops when disabled)."""
    if not enabled:
        yield _NoProgress()
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        _PercentColumn(),
        _CountColumn(),
        _CasesPerSecondColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr_console()) as bar:
        yield _ProgressTask(bar, bar.add_task(description, total=total, estimated=estimated and total is not None))


@contextmanager
def stage(text: str, *, enabled: bool = True) -> Iterator[None]:
    """While a long stage without a count runs (reading a whole file, settling, drawing charts): a
    spinner, the stage's name and the elapsed time on stderr, gone when it ends; only on a terminal."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield
        return
    from rich.progress import SpinnerColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=True) as bar:
        bar.add_task(text, total=None)
        yield


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """`1 year`, `3 years`, `12,000 cases`: a count with thousands separators and its noun."""
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"


def _percent(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"


def summary_counts(results: pl.DataFrame) -> pl.DataFrame:
    """(status, drg, len) counts of a result frame; counts of several batches can be concatenated."""
    return results.group_by("status", "drg").len()


def render_summary(results: pl.DataFrame, console: Console, *, top: int = 10) -> None:
    """Print cases by status (all four statuses, in order) and the ``top`` most frequent DRGs.

    ``results`` is a result frame, or (status, drg, len) counts from ``summary_counts``.
    """
    counts_frame = results if "len" in results.columns else summary_counts(results)
    counts_frame = counts_frame.group_by("status", "drg").agg(pl.col("len").sum())
    total = int(counts_frame["len"].sum())
    counts = dict(counts_frame.group_by("status").agg(pl.col("len").sum()).iter_rows())
    # Unexpected statuses are shown after the known ones rather than silently dropped.
    statuses = [*STATUSES, *sorted(s for s in counts if s not in STATUSES and s is not None)]

    by_status = Table(title="Cases by status")
    by_status.add_column("Status")
    by_status.add_column("Cases", justify="right")
    by_status.add_column("%", justify="right")
    for status in statuses:
        count = counts.get(status, 0)
        by_status.add_row(status, f"{count:,}", _percent(count, total))
    by_status.add_section()
    by_status.add_row("total", f"{total:,}", _percent(total, total))
    console.print(by_status)

    top_drgs = (
        counts_frame.filter(pl.col("drg").is_not_null())
        .group_by("drg")
        .agg(pl.col("len").sum())
        .sort(["len", "drg"], descending=[True, False])
        .head(top)
    )
    by_drg = Table(title=f"Top {counted(top, 'DRG')}")
    by_drg.add_column("DRG")
    by_drg.add_column("Cases", justify="right")
    by_drg.add_column("%", justify="right")
    for drg, count in top_drgs.iter_rows():
        by_drg.add_row(drg, f"{count:,}", _percent(count, total))
    console.print(by_drg)


def print_diagnostics(diagnostics, console: Console) -> None:
    """Each diagnostic as plain text (file:line:col, source line, caret, hint); no markup."""
    for d in diagnostics:
        style = "bold red" if d.severity == "error" else "yellow"
        console.print(Text(d.render(), style=style), soft_wrap=True)


def render_explanation(explanation, console: Console, *, show_failed_checks: bool = True) -> None:
    """The decision path as a Rich tree: every rule tried, ✓/✗, the evidence, the file:line."""
    from rich.tree import Tree

    e = explanation
    title = Text(f"case {e.id}: ", style="bold")
    title.append(f"{e.status}", style="bold green" if e.status == "grouped" else "bold red")
    for label, value in (("MDC", e.mdc), ("ADRG", e.adrg), ("DRG", e.drg), ("reason", e.reason), ("RW", e.weight)):
        if value is not None:
            title.append(f"  {label} {value}")
    tree = Tree(title)
    if e.problems:
        found = tree.add(Text("validation", style="bold yellow"))
        for p in e.problems:
            detail = f" ({p['detail']})" if p["detail"] else ""
            found.add(Text(f"{p['level']} {p['reason']}: {p['message']}{detail}",
                           style="red" if p["level"] == "error" else "yellow"))

    def add_check(node, check, depth=0):
        mark = "✓" if check.holds else "✗"
        line = Text(f"{mark} {check.text}", style="green" if check.holds else "red")
        if check.detail:
            line.append(f"  — {check.detail}", style="dim")
        branch = node.add(line)
        if depth < 4:
            for child in check.children:
                add_check(branch, child, depth + 1)

    def add_step(node, step):
        mark = "✓" if step.matched else "✗"
        line = Text(f"{mark} {step.level} {step.code}", style="bold green" if step.matched else "red")
        if step.name:
            line.append(f" {step.name}")
        if step.source:
            line.append(f"  ({step.source})", style="dim")
        branch = node.add(line)
        if step.why is not None and (step.matched or show_failed_checks):
            add_check(branch, step.why)
        for child in step.children:
            add_step(branch, child)

    for step in e.steps:
        if step.level == "invalid" and not step.matched:
            continue  # passed input checks are noise; a failed one is shown
        add_step(tree, step)
    console.print(tree)


def render_what_if(rows, console: Console) -> None:
    table = Table(title="What if")
    for column in ("change", "status", "MDC", "ADRG", "DRG", "RW", ""):
        table.add_column(column)
    for r in rows:
        weight = "" if r.weight is None else f"{r.weight:g}"
        table.add_row(r.changes, r.status, r.mdc or "", r.adrg or "", r.drg or "", weight,
                      "changed" if r.changed else "", style="bold" if r.changed else None)
    console.print(table)


def render_quality_report(counts: pl.DataFrame, console: Console, *, top: int = 10) -> None:
    """Print the validation problems by reason and the ``top`` departments with the most problem cases.

    ``counts`` is the summary of ``grouper.validate.QualityReport.frame()`` (scope, dept, reason,
    level, cases, total, percent, message_zh, message_en).
    """
    any_reason = "(any)"
    overall = counts.filter(pl.col("scope") == "all")
    total = int(overall["total"].max() or 0) if overall.height else 0
    with_problems = int(overall.filter(pl.col("reason") == any_reason)["cases"].sum())
    reasons = overall.filter(pl.col("reason") != any_reason).sort(
        [pl.col("level") != "error", "cases", "reason"], descending=[False, True, False])
    if reasons.height == 0:
        console.print(f"Quality report: no problems in {total:,} cases")
        return

    by_reason = Table(title="Quality report (病案质控): problems by reason")
    # The counts keep their width; the message takes what is left of the line (cut with …).
    width = max(len(any_reason), *(len(r) for r in reasons["reason"].to_list()))
    by_reason.add_column("Reason", min_width=width, no_wrap=True)
    by_reason.add_column("Level", min_width=7, no_wrap=True)
    by_reason.add_column("Cases", justify="right", min_width=len(f"{total:,}"), no_wrap=True)
    by_reason.add_column("%", justify="right", min_width=6, no_wrap=True)
    by_reason.add_column("Message", no_wrap=True, overflow="ellipsis")
    for row in reasons.iter_rows(named=True):
        level_style = "red" if row["level"] == "error" else "yellow"
        message = row["message_zh"] or row["message_en"] or ""
        by_reason.add_row(row["reason"], Text(row["level"] or "", style=level_style), f"{row['cases']:,}",
                          _percent(row["cases"], total), message)
    by_reason.add_section()
    by_reason.add_row(any_reason, "", f"{with_problems:,}", _percent(with_problems, total), "")
    console.print(by_reason)

    depts = counts.filter(pl.col("scope") == "dept")
    if depts.height == 0:
        return
    worst = (depts.filter(pl.col("reason") != any_reason)
             .sort(["cases", "reason"], descending=[True, False])
             .group_by("dept", maintain_order=True).first()
             .select("dept", pl.col("reason").alias("most_frequent"), pl.col("cases").alias("most_cases")))
    ranked = (depts.filter((pl.col("reason") == any_reason) & (pl.col("cases") > 0))
              .join(worst, on="dept", how="left", nulls_equal=True)
              .sort(["cases", "dept"], descending=[True, False], nulls_last=True)
              .head(top))
    if ranked.height == 0:
        return
    by_dept = Table(title="Departments with the most cases with a problem")
    by_dept.add_column("Department")
    by_dept.add_column("Cases", justify="right")
    by_dept.add_column("With a problem", justify="right")
    by_dept.add_column("%", justify="right")
    by_dept.add_column("Most frequent problem")
    for row in ranked.iter_rows(named=True):
        frequent = f"{row['most_frequent']} ({row['most_cases']:,})" if row["most_frequent"] else ""
        by_dept.add_row(row["dept"] if row["dept"] is not None else "(none)", f"{row['total']:,}",
                        f"{row['cases']:,}", _percent(row["cases"], row["total"]), frequent)
    console.print(by_dept)


def render_unreadable_lines(counts: pl.DataFrame, shown: list[str], console: Console) -> None:
    """Name the CSV lines that could not be read against the header (each is one invalid row with
    reason malformed_line); ``shown`` holds the first few, ``counts`` the quality-report summary."""
    lines = counts.filter((pl.col("scope") == "all") & (pl.col("reason") == "malformed_line"))
    total = int(lines["cases"].sum()) if lines.height else 0
    if not total:
        return
    console.print(Text(f"{total:,} line(s) could not be read against the header; each is one row with status "
                       f"invalid, reason malformed_line:", style="yellow"))
    for line in shown:
        console.print(Text(f"  {line}"), soft_wrap=True)
    if total > len(shown):
        console.print(f"  ... and {total - len(shown):,} more: the rows with reason malformed_line in the output")


def render_rejected_values(counts: pl.DataFrame, console: Console) -> None:
    """The values a scheme rejected (scope "value" of the quality-report summary), most frequent
    first, e.g. `malformed_sex: "男" 2,000 cases, "女" 1,500` — what a `read` line must accept."""
    values = counts.filter(pl.col("scope") == "value")
    for (reason,), rows in values.group_by("reason", maintain_order=True):
        shown = ", ".join(f"{row['value']!r} {row['cases']:,}" for row in rows.iter_rows(named=True))
        console.print(Text(f"rejected values, {reason} (value cases): {shown}", style="yellow"), soft_wrap=True)


def render_unused_columns(unused, console: Console) -> None:
    """The input columns that fed nothing (grouper.io's on_unused; the quality report's scope "input")."""
    unused = list(unused)
    if unused:
        console.print(Text(f"input columns not used ({len(unused)}): {', '.join(unused)}"), soft_wrap=True)


EXCEL_SLOW_ROWS = 200_000  # above this an Excel sheet takes tens of seconds to write (about a minute per million rows)


def scheme_line(scheme: dict[str, str]) -> str:
    """Which rules a run used (``LoadedScheme.describe()``), for stderr."""
    return (f"scheme: {scheme['name']} {scheme['version']} from {scheme['path']} "
            f"(content hash {scheme['content_hash'][:16]})")


def output_stage_text(stage: str, output, rows: int) -> str:
    """The progress bar's text while the output is finished, e.g. `writing results.xlsx`: the name
    the user gave, not the temporary file written first (every format is written batch by batch,
    so this last step is short)."""
    return f"{stage} {Path(output).name}"


def render_done(rows: int, output, report, seconds: float, console: Console, *, kernel: str | None = None) -> None:
    """The last summary line: cases, outputs, elapsed time and throughput (and which `kernel` ran:
    grouper.engine.kernel.kernel_description); a hint when Excel is the wrong choice for the size."""
    rate = f", {rows / seconds:,.0f} cases/s" if seconds > 0 else ""
    console.print(f"{rows:,} cases → {output}" + (f"; quality report → {report}" if report else "")
                  + f" in {seconds:.1f} s{rate}" + (f" ({kernel})" if kernel else ""), markup=False)
    if str(output).lower().endswith(".xlsx") and rows >= EXCEL_SLOW_ROWS:
        console.print(f"note: Excel is slow to write and to open at {rows:,} rows (a sheet holds at most 1,048,575); "
                      ".parquet or .csv suit this size", style="yellow", markup=False)


def trace_notes(wanted, traced: list[str]) -> list[str]:
    """--trace ids that matched no case, or several."""
    seen: dict[str, int] = {}
    for case_id in traced:
        seen[case_id] = seen.get(case_id, 0) + 1
    notes = [f"--trace {case_id}: no case has this id" for case_id in dict.fromkeys(wanted) if case_id not in seen]
    notes += [f"--trace {case_id}: {seen[case_id]} cases have this id; each is traced"
              for case_id in dict.fromkeys(wanted) if seen.get(case_id, 0) > 1]
    return notes
