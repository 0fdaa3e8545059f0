# cython: language_level=3
"""The settle engine's compiled inner loops: pool sums and largest-remainder shares in 128-bit integers.
Mirrors grouper/settle/_kernel_py.py, which states the contract."""
from libc.stdint cimport int64_t, uint8_t, uint64_t

cdef extern from *:
    ctypedef unsigned long long u128 "unsigned __int128"


cdef inline int64_t _floor_share(int64_t points, int64_t distributable, u128 total, double rate,
                                 int64_t* remainder) noexcept nogil:
    """⌊points × distributable ÷ total⌋ (remainder in *remainder): a floating-point estimate of the
    quotient made exact by a 128-bit multiply-back (128-bit division is a slow library call)."""
    cdef u128 product = <u128>points * <u128>distributable
    cdef int64_t estimate = <int64_t>(<double>points * rate)
    if estimate < 0:
        estimate = 0
    while <u128>estimate * total > product:
        estimate -= 1
    while product - <u128>estimate * total >= total:
        estimate += 1
    remainder[0] = <int64_t>(product - <u128>estimate * total)
    return estimate


def shares(const int64_t[::1] points, int64_t distributable, int64_t total, int64_t[::1] floor, int64_t[::1] remainder):
    """floor[i], remainder[i] = divmod(points[i] × distributable, total), in 128-bit arithmetic."""
    cdef Py_ssize_t i, n = points.shape[0]
    if total <= 0 or distributable < 0:
        raise ValueError("shares needs a positive total and a non-negative distributable amount")
    if floor.shape[0] != n or remainder.shape[0] != n:
        raise ValueError("shares: output arrays must have the length of points")
    for i in range(n):
        if points[i] < 0:
            raise ValueError("shares: points must not be negative")
    cdef double rate = <double>distributable / <double>total
    with nogil:
        for i in range(n):
            floor[i] = _floor_share(points[i], distributable, <u128>total, rate, &remainder[i])


def pool_sums(const uint8_t[::1] pool, const uint8_t[::1] paid_by, const int64_t[::1] points, const int64_t[::1] cost,
              int group, int fee, int64_t[::1] fee_cost, int64_t[::1] group_points, int64_t[::1] payment):
    """Per pool p (codes 0 … len(fee_cost) − 1; other codes belong to no pool): fee_cost[p] = Σ cost
    of its cases paid by item (paid_by == fee), group_points[p] = Σ points of its cases paid by
    group with points ≥ 0. payment[i] = cost[i] for every case paid by item, else 0."""
    cdef Py_ssize_t i, n = pool.shape[0], pools = fee_cost.shape[0]
    cdef int p
    if paid_by.shape[0] != n or points.shape[0] != n or cost.shape[0] != n or payment.shape[0] != n \
            or group_points.shape[0] != pools:
        raise ValueError("pool_sums: arrays of different lengths")
    with nogil:
        for p in range(pools):
            fee_cost[p] = 0
            group_points[p] = 0
        for i in range(n):
            p = pool[i]
            payment[i] = 0
            if paid_by[i] == fee:
                payment[i] = cost[i]
                if p < pools:
                    fee_cost[p] += cost[i]
            elif paid_by[i] == group and points[i] >= 0 and p < pools:
                group_points[p] += points[i]


def pool_shares(const uint8_t[::1] pool, const uint8_t[::1] paid_by, const int64_t[::1] points, int code, int group,
                int64_t distributable, int64_t total, int64_t[::1] payment, int64_t[::1] rows, int64_t[::1] remainder):
    """For the cases of pool `code` paid by group with points ≥ 0, in row order: payment[i] =
    ⌊points[i] × distributable ÷ total⌋, and the case's row and remainder appended to rows and
    remainder. Returns how many were appended (see `shares` for the arithmetic)."""
    cdef Py_ssize_t i, j = 0, n = pool.shape[0]
    cdef u128 big_total = <u128>total
    cdef double rate
    if total <= 0 or distributable < 0:
        raise ValueError("pool_shares needs a positive total and a non-negative distributable amount")
    if paid_by.shape[0] != n or points.shape[0] != n or payment.shape[0] != n or rows.shape[0] < n \
            or remainder.shape[0] < n:
        raise ValueError("pool_shares: arrays too short")
    rate = <double>distributable / <double>total
    with nogil:
        for i in range(n):
            if pool[i] != code or paid_by[i] != group or points[i] < 0:
                continue
            payment[i] = _floor_share(points[i], distributable, big_total, rate, &remainder[j])
            rows[j] = i
            j += 1
    return j
