# cython: language_level=3
"""The DIP grouping kernel (compiled). Mirrors grouper/dip/_kernel_py.py line for line; see
there for the rules. Releases the GIL; rows start:stop only, so threads may split a batch."""
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc

cdef enum:
    GROUPED = 0
    UNGROUPED = 1
    INVALID = 2
    NO_CATEGORY = 1
    NO_TREATMENT = 2


cdef inline bint _has(const uint32_t* items, int n, uint32_t p) noexcept nogil:
    cdef int k
    for k in range(n):
        if items[k] == p:
            return True
    return False


def group_dip(const int8_t[::1] proc_rank, const uint8_t[::1] proc_qualifying,
              const int32_t[::1] bucket_start, const int32_t[::1] bucket_rows,
              const int32_t[::1] row_alt_start, const int32_t[::1] alt_term_start, const uint32_t[::1] term_proc,
              const int32_t[::1] row_proc_start, const uint32_t[::1] row_proc, const int8_t[::1] row_rank,
              const int32_t[::1] comp_table, int n_cat, int n_treat,
              const int32_t[::1] case_cat, const int32_t[:, ::1] case_comp,
              const int64_t[::1] px_offsets, const uint32_t[::1] px_codes, const uint8_t[::1] skip,
              uint8_t[::1] out_status, int32_t[::1] out_row, int8_t[::1] out_treatment, uint8_t[::1] out_reason,
              Py_ssize_t start=0, Py_ssize_t stop=-1):
    cdef Py_ssize_t n = skip.shape[0]
    if stop < 0:
        stop = n
    if start < 0 or stop > n or start > stop:
        raise ValueError(f"rows {start}:{stop} outside 0:{n}")
    if px_offsets.shape[0] != n + 1 or case_cat.shape[0] != n or case_comp.shape[1] != n:
        raise ValueError("case arrays disagree in length")
    if out_status.shape[0] != n or out_row.shape[0] != n or out_treatment.shape[0] != n or out_reason.shape[0] != n:
        raise ValueError("output arrays disagree in length")
    if bucket_start.shape[0] != 2 * n_cat + 1 or comp_table.shape[0] % max(n_treat, 1) != 0:
        raise ValueError("plan arrays disagree with n_cat / n_treat")
    cdef Py_ssize_t n_proc = proc_rank.shape[0]
    cdef Py_ssize_t i, k, j, a, t
    cdef int max_items = 1
    for i in range(start, stop):
        if px_offsets[i + 1] - px_offsets[i] > max_items:
            max_items = <int>(px_offsets[i + 1] - px_offsets[i])
    for k in range(px_offsets[start], px_offsets[stop]):
        if px_codes[k] >= n_proc:
            raise ValueError(f"procedure id {px_codes[k]} outside the plan")
    cdef uint32_t* qualifying = <uint32_t*>malloc(max_items * sizeof(uint32_t))
    if qualifying == NULL:
        raise MemoryError()
    cdef int nq, treatment, level, plus, matched, best_plus, best_matched, best_rank, nterms, cat, comp
    cdef int32_t r, best, b
    cdef uint32_t p
    cdef bint ok, listed
    cdef Py_ssize_t length
    try:
        with nogil:
            for i in range(start, stop):
                out_row[i] = -1
                out_treatment[i] = -1
                if skip[i]:
                    out_status[i] = INVALID
                    out_reason[i] = skip[i]
                    continue
                nq = 0
                treatment = 0
                for k in range(px_offsets[i], px_offsets[i + 1]):
                    p = px_codes[k]
                    if proc_rank[p] > treatment:
                        treatment = proc_rank[p]
                    if proc_qualifying[p] and not _has(qualifying, nq, p):
                        qualifying[nq] = p
                        nq += 1
                out_treatment[i] = treatment
                out_reason[i] = 0
                cat = case_cat[i]
                best = -1
                if cat > 0:
                    for level in range(2):
                        b = level * n_cat + cat - 1
                        best_plus = -1
                        best_matched = -1
                        best_rank = -1
                        for j in range(bucket_start[b], bucket_start[b + 1]):
                            r = bucket_rows[j]
                            plus = -1
                            if row_alt_start[r] == row_alt_start[r + 1]:
                                if nq == 0:
                                    plus = 0
                            else:
                                for a in range(row_alt_start[r], row_alt_start[r + 1]):
                                    ok = True
                                    for t in range(alt_term_start[a], alt_term_start[a + 1]):
                                        if not _has(qualifying, nq, term_proc[t]):
                                            ok = False
                                            break
                                    nterms = alt_term_start[a + 1] - alt_term_start[a] - 1
                                    if ok and nterms > plus:
                                        plus = nterms
                            if plus < 0:
                                continue
                            matched = 0
                            for k in range(row_proc_start[r], row_proc_start[r + 1]):
                                if _has(qualifying, nq, row_proc[k]):
                                    matched += 1
                            if (plus > best_plus or (plus == best_plus and (matched > best_matched or (
                                    matched == best_matched and row_rank[r] > best_rank)))):
                                best = r
                                best_plus = plus
                                best_matched = matched
                                best_rank = row_rank[r]
                        if best >= 0:
                            break
                if best < 0:
                    listed = False
                    for length in range(case_comp.shape[0]):
                        comp = case_comp[length, i]
                        if comp > 0:
                            listed = True
                            best = comp_table[(comp - 1) * n_treat + treatment]
                            if best >= 0:
                                break
                    if best < 0:
                        out_reason[i] = NO_TREATMENT if listed else NO_CATEGORY
                out_row[i] = best
                out_status[i] = GROUPED if best >= 0 else UNGROUPED
    finally:
        free(qualifying)
