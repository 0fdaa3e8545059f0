"""DIP (按病种分值付费): the DIP scheme language, batch grouping, explain, catalogue import and
calibration. One entry function per stage:

- `load_dip_scheme(pack)` parse → check → compile (`check_dip_scheme` without compiling)
- `group_dip(cases, scheme)` / `group_dip_file(input, output, scheme)` batch grouping
- `explain_dip(scheme, case_row)`, `dip_what_if(scheme, case_row, scenarios)` one case
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path

import polars as pl

from .._lazy import lazy_names
from ..pipeline import DEFAULT_BATCH_SIZE as BATCH_SIZE
from .files import is_dip_pack

__all__ = ["LoadedDip", "check_dip_scheme", "dip_what_if", "explain_dip", "explain_dip_json", "group_dip", "group_dip_file",
           "is_dip_pack", "load_dip_scheme"]

# Imported on first use: `grouper group` with a DRG pack asks `is_dip_pack` and needs none of them
# (grouper.dip.scheme alone loads the DIP language, the table store and the scheme language's AST).
_LAZY = {"dip_what_if": ".reference", "explain_dip": ".reference", "explain_dip_json": ".reference",
         "group_dip_frame": ".run", "LoadedDip": ".scheme", "check_dip_scheme": ".scheme",
         "load_dip_scheme": ".scheme"}

__getattr__ = lazy_names(__name__, globals(), _LAZY)


def _loaded(scheme) -> "LoadedDip":
    from .scheme import LoadedDip, load_dip_scheme

    return scheme if isinstance(scheme, LoadedDip) else load_dip_scheme(scheme)


def _plan(scheme, point_value: Decimal | str | None):
    """The pack's plan; with `point_value` (yuan per point, a run's parameter), the reference costs
    of the cost step computed with it instead of the pack's `point value`."""
    plan = _loaded(scheme).plan
    return plan if point_value is None else plan.with_point_value(Decimal(str(point_value)))


def group_dip(cases: pl.DataFrame | str | Path, scheme: LoadedDip | str | Path | None = None, *,
              columns: Mapping[str, str] | None = None, encoding: str | None = None,
              threads: int | None = None, sheet: str | int | None = None, skip_rows: int = 0,
              point_value: Decimal | str | None = None) -> pl.DataFrame:
    """Group every case with a DIP pack: id, status, dip, dip_level, treatment, score, reason —
    one row per input row, in order. `cases` is a file or a frame in either input shape (reading
    options: see grouper.io.read_cases); its `cost` column (when the pack has reference costs)
    feeds the cost step."""
    from ..pipeline import case_batches
    from .run import group_dip_frame

    plan = _plan(scheme, point_value)
    batches = case_batches(cases, batch_size=BATCH_SIZE, columns=columns, encoding=encoding, sheet=sheet,
                           skip_rows=skip_rows, settlement=plan.cost_step)
    return pl.concat([group_dip_frame(plan, b, threads=threads) for b in batches], rechunk=True)


def group_dip_file(input_path: str | Path, output_path: str | Path, scheme: LoadedDip | str | Path | None = None, *,
                   batch_size: int = BATCH_SIZE, columns: Mapping[str, str] | None = None,
                   encoding: str | None = None, threads: int | None = None,
                   on_batch: Callable[[pl.DataFrame], None] | None = None, carry: bool = False,
                   sheet: str | int | None = None, skip_rows: int = 0, on_unused=None,
                   point_value: Decimal | str | None = None) -> int:
    """Group a file into an output file batch by batch (bounded memory); returns the row count.
    `sheet` and `skip_rows` read the input as grouper.io.read_cases does.

    `carry=True` writes a DIP grouped file: the results followed by the typed settlement fields
    (CSV/Excel: money as yuan with two decimals), the input of `grouper settle` under a DIP policy.
    `on_unused(headers)` is told the input columns that feed nothing (see grouper.io)."""
    from .. import io
    from ..fields import for_text_output
    from ..pipeline import case_batches
    from .run import group_dip_frame
    from .settle import dip_grouped

    plan = _plan(scheme, point_value)
    rows = 0
    with io.ResultSink(output_path) as sink:
        for cases in case_batches(input_path, batch_size=batch_size, encoding=encoding, columns=columns,
                                  settlement=carry or plan.cost_step, sheet=sheet, skip_rows=skip_rows,
                                  on_unused=on_unused):
            results = group_dip_frame(plan, cases, threads=threads)
            if carry:
                results = dip_grouped(results, cases)
                if sink.suffix in (".csv", ".xlsx"):
                    results = for_text_output(results)
            sink.write(results)
            rows += results.height
            if on_batch is not None:
                on_batch(results)
    return rows
