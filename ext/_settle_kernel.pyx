# cython: language_level=3
"""The settle engine's compiled inner loop: largest-remainder shares in 128-bit integers.
Mirrors grouper/settle/_kernel_py.py, which states the contract."""
from libc.stdint cimport int64_t, uint64_t

cdef extern from *:
    ctypedef unsigned long long u128 "unsigned __int128"


def shares(const int64_t[::1] points, int64_t distributable, int64_t total, int64_t[::1] floor, int64_t[::1] remainder):
    """floor[i], remainder[i] = divmod(points[i] × distributable, total), in 128-bit arithmetic."""
    cdef Py_ssize_t i, n = points.shape[0]
    cdef u128 product
    if total <= 0 or distributable < 0:
        raise ValueError("shares needs a positive total and a non-negative distributable amount")
    if floor.shape[0] != n or remainder.shape[0] != n:
        raise ValueError("shares: output arrays must have the length of points")
    for i in range(n):
        if points[i] < 0:
            raise ValueError("shares: points must not be negative")
    cdef double rate = <double>distributable / <double>total
    cdef int64_t estimate
    cdef u128 big_total = <u128>total
    with nogil:
        for i in range(n):
            # a floating-point estimate of the quotient, made exact by a 128-bit multiply-back
            # (division of 128-bit integers is a slow library call; this loop needs none)
            product = <u128>points[i] * <u128>distributable
            estimate = <int64_t>(<double>points[i] * rate)
            if estimate < 0:
                estimate = 0
            while <u128>estimate * big_total > product:
                estimate -= 1
            while product - <u128>estimate * big_total >= big_total:
                estimate += 1
            floor[i] = estimate
            remainder[i] = <int64_t>(product - <u128>estimate * big_total)
