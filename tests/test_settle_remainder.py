"""The largest-remainder tie-break (`_first_in_order`) takes the same cases as a full sort by
(hospital, id, cost, row), and both share kernels agree with Python's exact integers."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from grouper.engine.kernel import get_kernel
from grouper.payment import _settle_kernel_py as _kernel_py
from grouper.payment import settle as E


@pytest.mark.parametrize("seed", range(5))
def test_tie_break_equals_a_full_sort(seed):
    rng = np.random.default_rng(seed)
    n = 500
    tied = pl.DataFrame({
        "row": rng.permutation(10 * n)[:n].astype(np.uint32),
        "hospital": pl.Series(rng.choice(["H1", "H2", "H3", None], n).tolist(), dtype=pl.String),
        "id": pl.Series(rng.choice([f"c{i}" for i in range(n // 3)] + [None], n).tolist(), dtype=pl.String),
        "cost": rng.integers(0, 3, n),
    })
    for count in (0, 1, 37, 124, 125, 126, 250, n - 1, n):
        expected = tied.sort(["hospital", "id", "cost", "row"], nulls_last=True).head(count)["row"].to_list()
        assert sorted(E._first_in_order(tied, count).tolist()) == sorted(expected)


def _kernels():
    yield _kernel_py
    try:
        get_kernel("cython")
        from grouper import _settle_kernel
        yield _settle_kernel
    except ImportError:
        pass


@pytest.mark.parametrize("kernel", [_kernel_py], ids=lambda k: k.__name__)  # the compiled kernel: pool_shares below
def test_shares_are_exact_128_bit_divisions(kernel):
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.integers(0, 2**40, 1000), [0, 2**62, 1]]).astype(np.int64)
    d, total = 10**13 + 7, int(points.sum())
    floor, remainder = np.empty(len(points), np.int64), np.empty(len(points), np.int64)
    kernel.shares(points, d, total, floor, remainder)
    assert [(int(f), int(r)) for f, r in zip(floor, remainder)] == [divmod(int(p) * d, total) for p in points]
    with pytest.raises(ValueError):
        kernel.shares(np.array([-1], np.int64), d, 1, floor[:1], remainder[:1])


def test_pool_kernels_agree():
    kernels = list(_kernels())
    rng = np.random.default_rng(9)
    n = 5000
    pool = rng.choice([0, 1, 2, 255], n).astype(np.uint8)
    paid_by = rng.choice([0, 0, 0, 1, 2, 255], n).astype(np.uint8)
    points = rng.choice([-1, 0, 5_000_000, 123_456_789, 2**40], n).astype(np.int64)
    cost = rng.integers(0, 10**9, n).astype(np.int64)
    results = []
    for kernel in kernels:
        fee, pts, pay = np.zeros(3, np.int64), np.zeros(3, np.int64), np.empty(n, np.int64)
        kernel.pool_sums(pool, paid_by, points, cost, 0, 1, fee, pts, pay)
        rows, rem = np.empty(n, np.int64), np.empty(n, np.int64)
        m = kernel.pool_shares(pool, paid_by, points, 1, 0, 10**13 + 3, int(pts[1]), pay, rows, rem)
        results.append((fee.tolist(), pts.tolist(), pay.tolist(), rows[:m].tolist(), rem[:m].tolist()))
    fee, pts, pay, rows, rem = results[0]
    mask = (paid_by == 1)
    assert fee == [int(cost[mask & (pool == p)].sum()) for p in range(3)]
    assert pts == [int(points[(paid_by == 0) & (points >= 0) & (pool == p)].sum()) for p in range(3)]
    assert rows == np.flatnonzero((pool == 1) & (paid_by == 0) & (points >= 0)).tolist()
    assert [(pay[r], x) for r, x in zip(rows, rem)] == [divmod(int(points[r]) * (10**13 + 3), pts[1]) for r in rows]
    assert all(r == results[0] for r in results)
