"""The DIP kernel in plain Python: the readable twin of ext/_dip_kernel.pyx, used when the
extension is not built (GROUPER_NO_EXTENSIONS). Same arguments, same results.

Per case: collect its distinct qualifying procedures and its treatment type (the highest rank
among all its procedures; 0 when none has one). Then try the core rows of its diagnosis
category, then the primary rows: a row matches when one of its alternatives has all its codes
among the case's qualifying procedures (a conservative row, with no alternative, matches when the
case has none). Among matching rows of a level the best is the one with (1) the most `+` terms in
a matching alternative, (2) the most of the case's qualifying procedures named by the row, (3) the
highest treatment rank, (4) the first in file order. Otherwise the comprehensive row of
(category, treatment type) for the longest prefix of the diagnosis that has one (`case_comp[k, i]`
is the category id of the k-th longest listed prefix length, 0 when not listed); otherwise ungrouped.
"""
from __future__ import annotations

GROUPED, UNGROUPED, INVALID = 0, 1, 2
NO_CATEGORY, NO_TREATMENT = 1, 2


def group_dip(proc_rank, proc_qualifying, bucket_start, bucket_rows, row_alt_start, alt_term_start, term_proc,
              row_proc_start, row_proc, row_rank, comp_table, n_cat, n_treat,
              case_cat, case_comp, px_offsets, px_codes, skip,
              out_status, out_row, out_treatment, out_reason, start=0, stop=-1):
    n = len(skip)
    if stop < 0:
        stop = n
    for i in range(start, stop):
        out_row[i] = -1
        out_treatment[i] = -1
        if skip[i]:
            out_status[i] = INVALID
            out_reason[i] = skip[i]
            continue
        qualifying = []
        treatment = 0
        for k in range(px_offsets[i], px_offsets[i + 1]):
            p = px_codes[k]
            if proc_rank[p] > treatment:
                treatment = proc_rank[p]
            if proc_qualifying[p] and p not in qualifying:
                qualifying.append(p)
        out_treatment[i] = treatment
        out_reason[i] = 0
        cat = case_cat[i]
        best = -1
        if cat > 0:
            for level in range(2):
                b = level * n_cat + cat - 1
                best_key = None
                for j in range(bucket_start[b], bucket_start[b + 1]):
                    r = bucket_rows[j]
                    plus = -1
                    if row_alt_start[r] == row_alt_start[r + 1]:
                        if not qualifying:
                            plus = 0
                    else:
                        for a in range(row_alt_start[r], row_alt_start[r + 1]):
                            if all(term_proc[t] in qualifying for t in range(alt_term_start[a], alt_term_start[a + 1])):
                                plus = max(plus, alt_term_start[a + 1] - alt_term_start[a] - 1)
                    if plus < 0:
                        continue
                    matched = sum(1 for k in range(row_proc_start[r], row_proc_start[r + 1]) if row_proc[k] in qualifying)
                    key = (plus, matched, row_rank[r])
                    if best_key is None or key > best_key:   # ties keep the earlier row
                        best, best_key = r, key
                if best >= 0:
                    break
        if best < 0:
            listed = False
            for length in range(case_comp.shape[0]):     # longest prefix first
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
