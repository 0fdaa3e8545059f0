"""The DIP kernel in plain Python: the readable twin of ext/_dip_kernel.pyx, used when the
extension is not built (GROUPER_NO_EXTENSIONS). Same arguments, same results.

Per case (domain.md §3.3; docs/dip.md "Grouping order"):
1. its qualifying procedures with how often each occurs, and its treatment type (the highest rank
   among all its procedures; 0 when none has one);
2. the matching rows of its category, core then primary: a row matches when one of its alternatives
   has every term held (a term holds when the case has one of its codes); a conservative row, with
   no alternative, matches when the case has no qualifying procedure. A matching row's class is
   (level, type): type = the highest rank among the case's qualifying procedures the row names
   (0 for a conservative row);
3. in a tie-break level (`tie_break[level]`) the matching rows are narrowed to one: the most `+`
   terms in a held alternative, then the most matched procedures (the case's qualifying procedures
   the row names, each counted as often as it occurs), then the smallest |reference cost − case
   cost| (unknown when either is missing: larger than any known gap), then file order;
4. the comprehensive row of (key, treatment type) for the first key that has one: the longest
   listed prefix of the diagnosis, then the chapter ranges holding it (`case_comp[k, i]`: key id
   of the k-th key to try, 0 when not listed);
5. the candidate whose class comes first in `precedence` wins; within a class, file order.
"""
from __future__ import annotations

GROUPED, UNGROUPED, INVALID = 0, 1, 2
NO_CATEGORY, NO_TREATMENT = 1, 2
UNKNOWN_GAP = 1 << 62      # the gap of a row or case without a cost: worse than any known gap
NO_POSITION = 1 << 30


def _plus(r, counts, row_alt_start, alt_term_start, term_opt_start, opt_proc) -> int:
    """`+` terms of the row's best held alternative; 0 for a conservative row of a case without
    qualifying procedures; -1 when the row does not match."""
    if row_alt_start[r] == row_alt_start[r + 1]:
        return 0 if not counts else -1
    plus = -1
    for a in range(row_alt_start[r], row_alt_start[r + 1]):
        terms = range(alt_term_start[a], alt_term_start[a + 1])
        if all(any(opt_proc[o] in counts for o in range(term_opt_start[t], term_opt_start[t + 1])) for t in terms):
            plus = max(plus, len(terms) - 1)
    return plus


def group_dip(proc_rank, proc_qualifying, bucket_start, bucket_rows, row_alt_start, alt_term_start, term_opt_start,
              opt_proc, row_proc_start, row_proc, row_cost, precedence, tie_break, comp_table, n_cat, n_treat,
              case_cat, case_comp, case_cost, px_offsets, px_codes, skip,
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
        counts = {}                   # qualifying procedure id → occurrences
        treatment = 0
        for k in range(px_offsets[i], px_offsets[i + 1]):
            p = px_codes[k]
            if proc_rank[p] > treatment:
                treatment = proc_rank[p]
            if proc_qualifying[p]:
                counts[p] = counts.get(p, 0) + 1
        out_treatment[i] = treatment
        out_reason[i] = 0
        cost = case_cost[i]
        best, best_pos = -1, NO_POSITION
        cat = case_cat[i]
        if cat > 0:
            for level in range(2):
                b = level * n_cat + cat - 1
                lead, lead_key, lead_kind = -1, None, 0
                for j in range(bucket_start[b], bucket_start[b + 1]):
                    r = bucket_rows[j]
                    plus = _plus(r, counts, row_alt_start, alt_term_start, term_opt_start, opt_proc)
                    if plus < 0:
                        continue
                    matched, kind = 0, 0
                    for k in range(row_proc_start[r], row_proc_start[r + 1]):
                        p = row_proc[k]
                        if p in counts:
                            matched += counts[p]
                            kind = max(kind, proc_rank[p])
                    if tie_break[level]:
                        gap = abs(row_cost[r] - cost) if row_cost[r] >= 0 and cost >= 0 else UNKNOWN_GAP
                        key = (plus, matched, -gap)
                        if lead_key is None or key > lead_key:       # ties keep the earlier row
                            lead, lead_key, lead_kind = r, key, kind
                    elif precedence[level * n_treat + kind] < best_pos:
                        best, best_pos = r, precedence[level * n_treat + kind]
                if lead >= 0 and precedence[level * n_treat + lead_kind] < best_pos:
                    best, best_pos = lead, precedence[level * n_treat + lead_kind]
        if precedence[2 * n_treat + treatment] < best_pos:
            listed, comp_row = False, -1
            for key in range(case_comp.shape[0]):          # longest prefix first, then ranges
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
