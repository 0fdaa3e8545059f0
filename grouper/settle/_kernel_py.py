"""The settle engine's inner loop in Python (Polars Int128): the readable twin of
ext/_settle_kernel.pyx, used when the extension is not built (GROUPER_NO_EXTENSIONS). Same
arguments, same results."""
from __future__ import annotations

import numpy as np
import polars as pl


def shares(points: np.ndarray, distributable: int, total: int, floor: np.ndarray, remainder: np.ndarray) -> None:
    """floor[i], remainder[i] = divmod(points[i] × distributable, total), exactly (128-bit)."""
    if total <= 0 or distributable < 0:
        raise ValueError("shares needs a positive total and a non-negative distributable amount")
    if len(floor) != len(points) or len(remainder) != len(points):
        raise ValueError("shares: output arrays must have the length of points")
    if len(points) and points.min() < 0:
        raise ValueError("shares: points must not be negative")
    product = pl.Series(points).cast(pl.Int128) * pl.lit(distributable, pl.Int128)
    frame = pl.select((product // total).cast(pl.Int64).alias("floor"), (product % total).cast(pl.Int64).alias("rem"))
    floor[:] = frame["floor"].to_numpy()
    remainder[:] = frame["rem"].to_numpy()
