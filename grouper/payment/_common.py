"""What the payment modules share: loading a scheme and grouping through the one pipeline."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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


def group_ids(rows: pl.DataFrame, keys: list[str]) -> np.ndarray:
    """A dense integer id (0..G-1) per row for its key tuple, in O(n) (no sort, no join of the rows)."""
    combined = np.zeros(rows.height, dtype=np.int64)
    for key in keys:
        values = rows[key]
        if values.dtype in (pl.String, pl.Categorical, pl.Enum):
            # the categorical code of each value (null → -1), one hash pass over the strings
            codes = values.cast(pl.String).cast(pl.Categorical).to_physical().cast(pl.Int64).fill_null(-1).to_numpy()
        else:
            distinct = values.unique(maintain_order=False)
            codes = values.replace_strict(distinct, pl.Series(np.arange(len(distinct), dtype=np.int64)),
                                          return_dtype=pl.Int64).to_numpy()
        dense, size = _dense(codes + 1)
        combined = combined * size + dense
    return _dense(combined)[0]


def _dense(codes: np.ndarray) -> tuple[np.ndarray, int]:
    """Non-negative codes renumbered 0..k-1 in code order; and k."""
    if not len(codes):
        return codes, 1
    used = np.flatnonzero(np.bincount(codes))
    remap = np.empty(used[-1] + 1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return remap[codes], len(used)
