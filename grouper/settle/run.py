"""Entry points of the settlement wing (the Python API mirrors `grouper settle`)."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from .compare import Comparison, compare
from .engine import BaseSource, DrgWeights, Settlement, settle
from .files import load_cases
from .policy import Policy, load_policy


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
    return DrgWeights.from_csv(weights, scale, los_column)


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
