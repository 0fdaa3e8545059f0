"""The payment wing's Python API, one function per command, each returning Polars frames.

    from grouper.payment import api as pay
    history = pay.synth_history("tables/demo", hospitals=40, years=3, cases=300_000)
    grouped = pay.load_grouped(history)                     # or a path: grouped file, or raw cases grouped here
    calibration = pay.calibrate_weights(grouped, year_weights=(1, 2, 7))
    calibration.weights                                     # one row per DRG (drg, weight, points, n, ...)
    report = pay.homogeneity(grouped)                       # .summary, .riv, .drgs, .merges, .splits
    metrics = pay.hospital_metrics(grouped, calibration.weights)
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from ..errors import InputError
from ..grouped import is_grouped_file, read_grouped
from ._common import group_cases, loaded_scheme
from .history import synth_history, write_history
from .homogeneity import Homogeneity, homogeneity
from .metrics import MetricOptions, hospital_metrics, weights_table
from .impact import Comparison, compare
from .policy import Policy, load_policy
from .settle import BaseSource, DrgWeights, Settlement, settle
from .settle_files import load_cases
from .weights import Calibration, WeightOptions, calibrate_weights, parse_year_weights

__all__ = ["BaseSource", "Calibration", "Comparison", "DrgWeights", "Homogeneity", "MetricOptions", "Policy",
           "Settlement", "WeightOptions", "calibrate_weights", "compare", "compare_policies", "homogeneity",
           "hospital_metrics", "load_cases", "load_grouped", "load_policy", "parse_year_weights", "scheme_weights",
           "settle", "settle_cases", "synth_history", "weights_source", "weights_table", "write_history"]


def load_grouped(source: pl.DataFrame | str | Path | Sequence[str | Path], scheme=None, *,
                 encoding: str | None = None, columns=None, fields=None, required: dict[str, str] | None = None
                 ) -> pl.DataFrame:
    """A grouped frame from grouped files (read as they are), raw case files or a raw frame (grouped
    here with `scheme`, carrying the settlement fields). Several files are concatenated in order.
    `columns` maps input headers of raw files (as for `group`); `fields` keeps only these grouped
    columns (a grouped Parquet file then reads only them). `required` maps fields to why they are
    needed: a file (or frame) in which one has no value at all (no such column, or every value
    blank) is refused, naming the file and the field."""
    if isinstance(source, pl.DataFrame):
        frame = source if {"status", "drg"} <= set(source.columns) else \
            group_cases(source, scheme, carry=True, columns=columns)
        return _require(frame.select(fields) if fields is not None else frame, required, "the cases")
    paths = [source] if isinstance(source, (str, Path)) else list(source)
    frames = []
    loaded = None
    for path in paths:
        if is_grouped_file(path, encoding=encoding):
            frame = read_grouped(path, encoding=encoding, columns=fields)
        else:
            loaded = loaded or loaded_scheme(scheme)
            frame = group_cases(path, loaded, carry=True, encoding=encoding, columns=columns)
            frame = frame.select(fields) if fields is not None else frame
        frames.append(_require(frame, required, str(path)))
    return pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]


def _require(frame: pl.DataFrame, required: dict[str, str] | None, origin: str) -> pl.DataFrame:
    for field, why in (required or {}).items():
        if frame.height and (field not in frame.columns or frame[field].null_count() == frame.height):
            raise InputError(f"{origin} has no {field} column (or no case in it has a {field}): {why}; give cases "
                             f"with the field, grouped with `grouper group INPUT -o GROUPED --carry`")
    return frame


def scheme_weights(scheme) -> pl.DataFrame | None:
    """The scheme's own `weights = TABLE` as drg, weight (None when it declares none)."""
    plan = loaded_scheme(scheme).plan
    pairs = [(d, w) for d, w in zip(plan.drg_codes, plan.drg_weights or []) if w is not None]
    if not pairs:
        return None
    return pl.DataFrame(pairs, schema={"drg": pl.String, "weight": pl.Float64}, orient="row")


# Settlement (the stages policy → settle → impact): the Python API of `grouper settle`.
def _policy(policy: Policy | str | Path) -> Policy:
    return policy if isinstance(policy, Policy) else load_policy(policy)


def weights_source(weights: BaseSource | pl.DataFrame | str | Path, policy: Policy) -> BaseSource:
    """A base-points source for `policy`: a weights table (file or frame) becomes `DrgWeights`.

    Base points = RW × `points.scale` under the points method, RW under the rate method.
    """
    if not isinstance(weights, (pl.DataFrame, str, Path)):
        return weights
    scale = policy["points"]["scale"] if policy.method == "points" else 1
    los_column = policy["cases"]["transfer"]["mean_los"]
    if isinstance(weights, pl.DataFrame):
        return DrgWeights(weights, scale, los_column=los_column)
    return DrgWeights.read(weights, scale, los_column)


def settle_cases(cases: pl.DataFrame | str | Path, policy: Policy | str | Path,
                 weights: BaseSource | pl.DataFrame | str | Path, *, scheme=None, column: str = "drg") -> Settlement:
    """Settle grouped cases (a frame or file) or raw cases (grouped first with `scheme`) under a policy.

    Returns a `Settlement`: `.cases` (one row per input row, in order), `.hospitals`, `.groups`
    and `.pools` (budget and point values), as Polars frames with money in integer fen.
    """
    policy = _policy(policy)
    frame = cases if isinstance(cases, pl.DataFrame) else load_cases(cases, scheme)
    return settle(frame, policy, weights_source(weights, policy), column=column)


def compare_policies(cases: pl.DataFrame | str | Path, policy: Policy | str | Path, policy2: Policy | str | Path,
                     weights: BaseSource | pl.DataFrame | str | Path,
                     weights2: BaseSource | pl.DataFrame | str | Path | None = None, *, scheme=None,
                     column: str = "drg") -> Comparison:
    """Settle the same cases under (policy, weights) and (policy2, weights2 or weights); see `compare`."""
    frame = cases if isinstance(cases, pl.DataFrame) else load_cases(cases, scheme)
    base = settle_cases(frame, policy, weights, column=column)
    change = settle_cases(frame, policy2, weights if weights2 is None else weights2, column=column)
    return compare(base, change, column=column)
