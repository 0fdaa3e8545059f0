# cython: language_level=3
"""The DIP grouping kernel (compiled). Mirrors grouper/dip/_kernel_py.py step for step; see
there for the rules (domain.md §3.3). Releases the GIL; rows start:stop only, so threads may split a batch."""
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc

cdef enum:
    GROUPED = 0
    UNGROUPED = 1
    INVALID = 2
    NO_CATEGORY = 1
    NO_TREATMENT = 2
    NO_POSITION = 1 << 30

cdef int64_t UNKNOWN_GAP = (<int64_t>1) << 62   # the gap of a row or case without a cost


cdef inline int _find(const uint32_t* items, int n, uint32_t p) noexcept nogil:
    cdef int k
    for k in range(n):
        if items[k] == p:
            return k
    return -1


def group_dip(const int8_t[::1] proc_rank, const uint8_t[::1] proc_qualifying,
              const int32_t[::1] bucket_start, const int32_t[::1] bucket_rows,
              const int32_t[::1] row_alt_start, const int32_t[::1] alt_term_start,
              const int32_t[::1] term_opt_start, const uint32_t[::1] opt_proc,
              const int32_t[::1] row_proc_start, const uint32_t[::1] row_proc, const int64_t[::1] row_cost,
              const int32_t[::1] precedence, const uint8_t[::1] tie_break,
              const int32_t[::1] comp_table, int n_cat, int n_treat,
              const int32_t[::1] case_cat, const int32_t[:, ::1] case_comp, const int64_t[::1] case_cost,
              const int64_t[::1] px_offsets, const uint32_t[::1] px_codes, const uint8_t[::1] skip,
              uint8_t[::1] out_status, int32_t[::1] out_row, int8_t[::1] out_treatment, uint8_t[::1] out_reason,
              Py_ssize_t start=0, Py_ssize_t stop=-1):
    cdef Py_ssize_t n = skip.shape[0]
    if stop < 0:
        stop = n
    if start < 0 or stop > n or start > stop:
        raise ValueError(f"rows {start}:{stop} outside 0:{n}")
    if (px_offsets.shape[0] != n + 1 or case_cat.shape[0] != n or case_comp.shape[1] != n
            or case_cost.shape[0] != n):
        raise ValueError("case arrays disagree in length")
    if out_status.shape[0] != n or out_row.shape[0] != n or out_treatment.shape[0] != n or out_reason.shape[0] != n:
        raise ValueError("output arrays disagree in length")
    if (bucket_start.shape[0] != 2 * n_cat + 1 or comp_table.shape[0] % max(n_treat, 1) != 0
            or precedence.shape[0] != 3 * n_treat or tie_break.shape[0] != 3
            or row_cost.shape[0] != row_alt_start.shape[0] - 1):
        raise ValueError("plan arrays disagree with n_cat / n_treat / the rows")
    cdef Py_ssize_t n_proc = proc_rank.shape[0]
    cdef Py_ssize_t i, k, j, a, t, o
    cdef int max_items = 1
    for i in range(start, stop):
        if px_offsets[i + 1] - px_offsets[i] > max_items:
            max_items = <int>(px_offsets[i + 1] - px_offsets[i])
    for k in range(px_offsets[start], px_offsets[stop]):
        if px_codes[k] >= n_proc:
            raise ValueError(f"procedure id {px_codes[k]} outside the plan")
    cdef uint32_t* qualifying = <uint32_t*>malloc(max_items * sizeof(uint32_t))
    cdef int32_t* qcount = <int32_t*>malloc(max_items * sizeof(int32_t))
    if qualifying == NULL or qcount == NULL:
        free(qualifying)
        free(qcount)
        raise MemoryError()
    cdef int nq, treatment, level, plus, matched, kind, lead_kind, lead_plus, lead_matched, nterms, cat, comp, q
    cdef int best_pos, pos
    cdef int64_t cost, gap, lead_gap
    cdef int32_t r, best, b, lead, comp_row
    cdef uint32_t p
    cdef bint held, any_opt, listed
    cdef Py_ssize_t key
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
                    if proc_qualifying[p]:
                        q = _find(qualifying, nq, p)
                        if q < 0:
                            qualifying[nq] = p
                            qcount[nq] = 1
                            nq += 1
                        else:
                            qcount[q] += 1
                out_treatment[i] = treatment
                out_reason[i] = 0
                cost = case_cost[i]
                best = -1
                best_pos = NO_POSITION
                cat = case_cat[i]
                if cat > 0:
                    for level in range(2):
                        b = level * n_cat + cat - 1
                        lead = -1
                        lead_plus = -1
                        lead_matched = -1
                        lead_gap = 0
                        lead_kind = 0
                        for j in range(bucket_start[b], bucket_start[b + 1]):
                            r = bucket_rows[j]
                            plus = -1
                            if row_alt_start[r] == row_alt_start[r + 1]:
                                if nq == 0:
                                    plus = 0
                            else:
                                for a in range(row_alt_start[r], row_alt_start[r + 1]):
                                    nterms = alt_term_start[a + 1] - alt_term_start[a] - 1
                                    if nterms <= plus:
                                        continue
                                    held = True
                                    for t in range(alt_term_start[a], alt_term_start[a + 1]):
                                        any_opt = False
                                        for o in range(term_opt_start[t], term_opt_start[t + 1]):
                                            if _find(qualifying, nq, opt_proc[o]) >= 0:
                                                any_opt = True
                                                break
                                        if not any_opt:
                                            held = False
                                            break
                                    if held:
                                        plus = nterms
                            if plus < 0:
                                continue
                            matched = 0
                            kind = 0
                            for k in range(row_proc_start[r], row_proc_start[r + 1]):
                                q = _find(qualifying, nq, row_proc[k])
                                if q >= 0:
                                    matched += qcount[q]
                                    if proc_rank[row_proc[k]] > kind:
                                        kind = proc_rank[row_proc[k]]
                            if tie_break[level]:
                                if row_cost[r] >= 0 and cost >= 0:
                                    gap = row_cost[r] - cost if row_cost[r] >= cost else cost - row_cost[r]
                                else:
                                    gap = UNKNOWN_GAP
                                if lead < 0 or plus > lead_plus or (plus == lead_plus and (matched > lead_matched or (
                                        matched == lead_matched and gap < lead_gap))):
                                    lead = r
                                    lead_plus = plus
                                    lead_matched = matched
                                    lead_gap = gap
                                    lead_kind = kind
                            else:
                                pos = precedence[level * n_treat + kind]
                                if pos < best_pos:
                                    best = r
                                    best_pos = pos
                        if lead >= 0:
                            pos = precedence[level * n_treat + lead_kind]
                            if pos < best_pos:
                                best = lead
                                best_pos = pos
                if precedence[2 * n_treat + treatment] < best_pos:
                    listed = False
                    comp_row = -1
                    for key in range(case_comp.shape[0]):
                        comp = case_comp[key, i]
                        if comp > 0:
                            listed = True
                            comp_row = comp_table[(comp - 1) * n_treat + treatment]
                            if comp_row >= 0:
                                break
                    if comp_row >= 0:
                        best = comp_row
                    elif best < 0:
                        out_reason[i] = NO_TREATMENT if listed else NO_CATEGORY
                out_row[i] = best
                out_status[i] = GROUPED if best >= 0 else UNGROUPED
    finally:
        free(qualifying)
        free(qcount)
