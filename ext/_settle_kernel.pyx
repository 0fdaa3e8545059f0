# cython: language_level=3
"""The settle engine's compiled inner loops: pool sums and largest-remainder shares in 128-bit integers.
Mirrors grouper/payment/_settle_kernel_py.py, which states the contract."""
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

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


def mul_div_half_up(const int64_t[:] a, const int64_t[:] b, const int64_t[:] d, int64_t[::1] out):
    """out[i] = a[i] × b[i] ÷ d[i] rounded half up, exactly (128-bit); −1 (null) when an input is
    negative (null), d[i] ≤ 0 or the result does not fit in 63 bits."""
    cdef Py_ssize_t i, n = a.shape[0]
    cdef u128 product, quotient, rest
    cdef uint64_t small, q, r
    if b.shape[0] != n or d.shape[0] != n or out.shape[0] != n:
        raise ValueError("mul_div_half_up: arrays of different lengths")
    with nogil:
        for i in range(n):
            if a[i] < 0 or b[i] < 0 or d[i] <= 0:
                out[i] = -1
                continue
            product = <u128>a[i] * <u128>b[i]
            if product >> 63 == 0:  # the common case: 64-bit division (128-bit division is a slow library call)
                small = <uint64_t>product
                q = small // <uint64_t>d[i]
                r = small - q * <uint64_t>d[i]
                out[i] = <int64_t>(q + (1 if 2 * r >= <uint64_t>d[i] else 0))
                continue
            quotient = product // <u128>d[i]
            rest = product - quotient * <u128>d[i]
            if 2 * rest >= <u128>d[i]:
                quotient += 1
            out[i] = <int64_t>quotient if quotient < (<u128>1 << 63) else -1


def compare_products(const int64_t[:] a, const int64_t[:] b, const int64_t[:] c, const int64_t[:] d,
                     int8_t[::1] out):
    """out[i] = the sign of a[i] × b[i] − c[i] × d[i] (−1, 0, 1), exactly; 2 (null) when an input is negative (null)."""
    cdef Py_ssize_t i, n = a.shape[0]
    cdef u128 left, right
    if b.shape[0] != n or c.shape[0] != n or d.shape[0] != n or out.shape[0] != n:
        raise ValueError("compare_products: arrays of different lengths")
    with nogil:
        for i in range(n):
            if a[i] < 0 or b[i] < 0 or c[i] < 0 or d[i] < 0:
                out[i] = 2
                continue
            left = <u128>a[i] * <u128>b[i]
            right = <u128>c[i] * <u128>d[i]
            out[i] = 1 if left > right else (-1 if left < right else 0)


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
    remainder. Returns how many were appended (the arithmetic: `_floor_share`)."""
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


cdef extern from "stdlib.h":
    void qsort(void* base, size_t count, size_t size, int (*compare)(const void*, const void*) noexcept nogil) nogil

ctypedef struct Stay:
    uint64_t key        # partition-hash prefix | admission day offset
    uint64_t check      # a second, independent hash of the partition
    int64_t row
    int32_t discharge   # days since 1970-01-01
    uint8_t excepted

cdef enum:
    TOP_BITS = 20       # next_stays' buckets: 2^20 by the key's top bits,
    OUTER_BITS = 10     # made in two passes: 2^10 by the top 10 bits, then 2^10 in each


cdef int _stay_order(const void* a, const void* b) noexcept nogil:
    cdef const Stay* x = <const Stay*>a
    cdef const Stay* y = <const Stay*>b
    if x.key != y.key:
        return -1 if x.key < y.key else 1
    if x.row != y.row:
        return -1 if x.row < y.row else 1
    return 0


def next_stays(const uint64_t[::1] key, const uint64_t[::1] check, const int32_t[::1] discharge,
               const uint8_t[::1] excepted, const int64_t[::1] row, uint64_t prefix_mask, int32_t first_day,
               int32_t days, int64_t[::1] candidates, int64_t[::1] exact):
    """The readmission search over stays sorted by key (see grouper/payment/_settle_kernel_py.py, which
    states the contract). Returns (number of candidates, number of exact rows) written."""
    cdef Py_ssize_t n = key.shape[0], i, j, t, start, size, d, position
    cdef Py_ssize_t outer_buckets = 1 << OUTER_BITS, inner_buckets = 1 << (TOP_BITS - OUTER_BITS)
    cdef Py_ssize_t n_candidates = 0, n_exact = 0, largest, first, last
    cdef Stay* sorted_stays
    cdef Stay* buffer
    cdef Py_ssize_t* outer
    cdef Py_ssize_t* fill
    cdef Py_ssize_t inner[(1 << (TOP_BITS - OUTER_BITS)) + 1]
    cdef bint failed = False
    cdef Stay s
    cdef bint doubt
    cdef int64_t gap
    if check.shape[0] != n or discharge.shape[0] != n or excepted.shape[0] != n or row.shape[0] != n \
            or candidates.shape[0] < n or exact.shape[0] < n:
        raise ValueError("next_stays: arrays of different lengths")
    sorted_stays = <Stay*>malloc(max(n, 1) * sizeof(Stay))
    outer = <Py_ssize_t*>calloc(outer_buckets + 1, sizeof(Py_ssize_t))
    fill = <Py_ssize_t*>malloc(outer_buckets * sizeof(Py_ssize_t))
    if sorted_stays == NULL or outer == NULL or fill == NULL:
        free(sorted_stays); free(outer); free(fill)
        raise MemoryError()
    with nogil:
        # bucket by the key's top 10 bits (1,024 write streams: the scatter stays in cache), then
        # each bucket by the next 10 bits through a small buffer, then sort each of those
        for i in range(n):
            outer[(key[i] >> (64 - OUTER_BITS)) + 1] += 1
        for d in range(outer_buckets):
            outer[d + 1] += outer[d]
        largest = 0
        for d in range(outer_buckets):
            fill[d] = outer[d]
            if outer[d + 1] - outer[d] > largest:
                largest = outer[d + 1] - outer[d]
        for i in range(n):
            d = key[i] >> (64 - OUTER_BITS)
            position = fill[d]
            sorted_stays[position].key = key[i]
            sorted_stays[position].check = check[i]
            sorted_stays[position].row = row[i]
            sorted_stays[position].discharge = discharge[i]
            sorted_stays[position].excepted = excepted[i]
            fill[d] = position + 1
        buffer = <Stay*>malloc(max(largest, 1) * sizeof(Stay))
        if buffer == NULL:
            failed = True
        else:
            for d in range(outer_buckets):
                start = outer[d]
                size = outer[d + 1] - start
                if size == 0:
                    continue
                memcpy(buffer, &sorted_stays[start], size * sizeof(Stay))
                for t in range(inner_buckets + 1):
                    inner[t] = 0
                for i in range(size):
                    inner[((buffer[i].key >> (64 - TOP_BITS)) & (inner_buckets - 1)) + 1] += 1
                for t in range(inner_buckets):
                    inner[t + 1] += inner[t]
                for i in range(size):
                    t = (buffer[i].key >> (64 - TOP_BITS)) & (inner_buckets - 1)
                    sorted_stays[start + inner[t]] = buffer[i]
                    inner[t] += 1
                first = start
                for t in range(inner_buckets):
                    last = start + inner[t]  # after the scatter inner[t] is the end of sub-bucket t
                    size = last - first
                    if size > 16:
                        qsort(&sorted_stays[first], size, sizeof(Stay), _stay_order)
                    elif size > 1:
                        for i in range(first + 1, last):  # insertion sort
                            s = sorted_stays[i]
                            j = i - 1
                            while j >= first and _stay_order(&s, &sorted_stays[j]) < 0:
                                sorted_stays[j + 1] = sorted_stays[j]
                                j -= 1
                            sorted_stays[j + 1] = s
                    first = last
            free(buffer)
    if failed:
        free(sorted_stays); free(outer); free(fill)
        raise MemoryError()
    with nogil:
        # runs of one prefix: exact when in doubt, else each stay against the next
        i = 0
        while i < n:
            j = i
            doubt = False
            while j + 1 < n and (sorted_stays[j + 1].key & prefix_mask) == (sorted_stays[i].key & prefix_mask):
                if sorted_stays[j + 1].check != sorted_stays[j].check or sorted_stays[j + 1].key == sorted_stays[j].key:
                    doubt = True
                j += 1
            if doubt:
                for t in range(i, j + 1):
                    exact[n_exact] = sorted_stays[t].row
                    n_exact += 1
            else:
                for t in range(i, j):
                    gap = <int64_t>(sorted_stays[t + 1].key & 0xFFFF) + first_day - sorted_stays[t].discharge
                    if 0 <= gap <= days and not sorted_stays[t].excepted and not sorted_stays[t + 1].excepted:
                        candidates[n_candidates] = sorted_stays[t].row
                        n_candidates += 1
            i = j + 1
    free(sorted_stays); free(outer); free(fill)
    return n_candidates, n_exact
