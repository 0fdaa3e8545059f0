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


def pool_sums(pool: np.ndarray, paid_by: np.ndarray, points: np.ndarray, cost: np.ndarray, group: int, fee: int,
              fee_cost: np.ndarray, group_points: np.ndarray, payment: np.ndarray) -> None:
    """Per pool p (codes 0 … len(fee_cost) − 1; other codes belong to no pool): fee_cost[p] = Σ cost
    of its cases paid by item (paid_by == fee), group_points[p] = Σ points of its cases paid by
    group with points ≥ 0. payment[i] = cost[i] for every case paid by item, else 0."""
    n = len(pool)
    if not (len(paid_by) == len(points) == len(cost) == len(payment) == n and len(group_points) == len(fee_cost)):
        raise ValueError("pool_sums: arrays of different lengths")
    by_fee = paid_by == fee
    by_group = (paid_by == group) & (points >= 0)
    payment[:] = np.where(by_fee, cost, 0)
    for p in range(len(fee_cost)):
        fee_cost[p] = cost[by_fee & (pool == p)].sum()
        group_points[p] = points[by_group & (pool == p)].sum()


def pool_shares(pool: np.ndarray, paid_by: np.ndarray, points: np.ndarray, code: int, group: int, distributable: int,
                total: int, payment: np.ndarray, rows: np.ndarray, remainder: np.ndarray) -> int:
    """For the cases of pool `code` paid by group with points ≥ 0, in row order: payment[i] =
    ⌊points[i] × distributable ÷ total⌋, and the case's row and remainder appended to rows and
    remainder. Returns how many were appended (see `shares` for the arithmetic)."""
    if total <= 0 or distributable < 0:
        raise ValueError("pool_shares needs a positive total and a non-negative distributable amount")
    n = len(pool)
    if not (len(paid_by) == len(points) == len(payment) == n) or len(rows) < n or len(remainder) < n:
        raise ValueError("pool_shares: arrays too short")
    mine = np.flatnonzero((pool == code) & (paid_by == group) & (points >= 0))
    floor, rest = np.empty(len(mine), np.int64), np.empty(len(mine), np.int64)
    shares(points[mine], distributable, total, floor, rest)
    payment[mine] = floor
    rows[:len(mine)] = mine
    remainder[:len(mine)] = rest
    return len(mine)
