"""The settle engine's inner loops in Python (Polars and NumPy): the readable twin of
ext/_settle_kernel.pyx, used when the extension is not built (GROUPER_NO_EXTENSIONS).
`mul_div_half_up`, `compare_products`, `pool_sums`, `pool_shares` and `next_stays` take the same arguments and give the same results as
the compiled ones; `shares` (exact 128-bit division with Polars Int128) is the twin's own building block."""
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


def mul_div_half_up(a: np.ndarray, b: np.ndarray, d: np.ndarray, out: np.ndarray) -> None:
    """out[i] = a[i] × b[i] ÷ d[i] rounded half up, exactly (128-bit); −1 (null) when an input is
    negative (null), d[i] ≤ 0 or the result does not fit in 63 bits."""
    if not (len(a) == len(b) == len(d) == len(out)):
        raise ValueError("mul_div_half_up: arrays of different lengths")
    frame = pl.DataFrame({"a": a, "b": b, "d": d}, schema={"a": pl.Int128, "b": pl.Int128, "d": pl.Int128})
    valid = (pl.col("a") >= 0) & (pl.col("b") >= 0) & (pl.col("d") > 0)
    quotient = (pl.col("a") * pl.col("b") * 2 + pl.col("d")) // (pl.when(valid).then(pl.col("d")).otherwise(1) * 2)
    result = pl.when(valid & (quotient < 1 << 63)).then(quotient).otherwise(-1).cast(pl.Int64)
    out[:] = frame.select(result).to_series().to_numpy()


def compare_products(a: np.ndarray, b: np.ndarray, c: np.ndarray, d: np.ndarray, out: np.ndarray) -> None:
    """out[i] = the sign of a[i] × b[i] − c[i] × d[i] (−1, 0, 1), exactly; 2 (null) when an input is negative (null)."""
    if not (len(a) == len(b) == len(c) == len(d) == len(out)):
        raise ValueError("compare_products: arrays of different lengths")
    frame = pl.DataFrame({"a": a, "b": b, "c": c, "d": d}, schema=dict.fromkeys("abcd", pl.Int128))
    valid = (pl.col("a") >= 0) & (pl.col("b") >= 0) & (pl.col("c") >= 0) & (pl.col("d") >= 0)
    difference = pl.col("a") * pl.col("b") - pl.col("c") * pl.col("d")
    out[:] = frame.select(pl.when(valid).then(difference.sign()).otherwise(2).cast(pl.Int8)).to_series().to_numpy()


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


def next_stays(key: np.ndarray, check: np.ndarray, discharge: np.ndarray, excepted: np.ndarray, row: np.ndarray,
               prefix_mask: int, first_day: int, days: int, candidates: np.ndarray, exact: np.ndarray) -> tuple[int, int]:
    """The readmission search over stays (grouper/payment/settle.py `stay_order` builds the arrays).

    Stays are ordered by `key` (a partition-hash prefix above 16 bits of admission day offset
    from `first_day`), then by `row`. A run of stays with one prefix (`key & prefix_mask`) is in
    doubt when two neighbours differ in `check` (the second partition hash: two partitions share
    the prefix) or have equal keys (two admissions on one day): all its rows go to `exact`.
    Otherwise every stay of the run but the last is a candidate when the next stay's admission
    comes 0 … `days` days after its discharge and neither is `excepted`. Writes the rows into the
    front of `candidates` and `exact` (in that order) and returns how many of each.
    """
    n = len(key)
    if not (len(check) == len(discharge) == len(excepted) == len(row) == n) or len(candidates) < n or len(exact) < n:
        raise ValueError("next_stays: arrays of different lengths")
    frame = pl.DataFrame({"k": key, "c": check, "d": discharge, "x": excepted.astype(bool), "row": row},
                         schema={"k": pl.UInt64, "c": pl.UInt64, "d": pl.Int32, "x": pl.Boolean, "row": pl.Int64})
    frame = frame.sort("k", "row")
    prefix = pl.col("k") & pl.lit(prefix_mask, pl.UInt64)
    in_run = (prefix.shift(-1) == prefix).fill_null(False)
    odd = in_run & ((pl.col("c").shift(-1) != pl.col("c")) | (pl.col("k").shift(-1) == pl.col("k")))
    frame = frame.with_columns(prefix.alias("p"), in_run.alias("in_run"), odd.fill_null(False).alias("odd"))
    unsure = frame.filter(pl.col("odd"))["p"].unique().implode()
    frame = frame.with_columns(pl.col("p").is_in(unsure).alias("doubt"))
    admitted = (pl.col("k") & pl.lit(0xFFFF, pl.UInt64)).cast(pl.Int64) + first_day
    gap = admitted.shift(-1) - pl.col("d")
    found = frame.filter(pl.col("in_run") & ~pl.col("doubt") & (gap >= 0) & (gap <= days) & ~pl.col("x")
                         & ~pl.col("x").shift(-1).fill_null(False))["row"].to_numpy()
    doubtful = frame.filter(pl.col("doubt"))["row"].to_numpy()
    candidates[:len(found)] = found
    exact[:len(doubtful)] = doubtful
    return len(found), len(doubtful)
