"""What the payment modules share: loading a scheme and grouping through the one pipeline."""
from __future__ import annotations

from pathlib import Path

import polars as pl

from ..pipeline import grouped_batches
from ..scheme import LoadedScheme, load_scheme


def loaded_scheme(scheme: LoadedScheme | str | Path | None) -> LoadedScheme:
    return scheme if isinstance(scheme, LoadedScheme) else load_scheme(scheme)


def group_cases(source: pl.DataFrame | str | Path, scheme, *, carry: bool = False, encoding: str | None = None,
                columns=None) -> pl.DataFrame:
    """Results (a grouped frame with `carry`) of a case file or frame, one row per case, in order."""
    plan = loaded_scheme(scheme).plan
    return pl.concat([g.results for g in grouped_batches(source, plan, columns=columns, encoding=encoding,
                                                         carry=carry)], rechunk=True)
