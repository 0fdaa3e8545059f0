"""Compiled grouping kernel: the fast twin of grouper/engine/_kernel_py.py (which is the spec).

`group_cases` takes exactly the arguments of `_kernel_py.group_cases` (the plan arrays, in the
order of `Plan.kernel_args()`, then the batch arrays and the output arrays) and writes the same
outputs. Inputs are `const` typed memoryviews, so read-only buffers (numpy views of Arrow/Polars
memory) are accepted; dtypes and C-contiguity must match exactly (a mismatch raises ValueError
from the buffer protocol).

Everything the case loop could trip over is checked once, up front, and reported as ValueError:
array shapes, every condition program (opcodes, operands, stack depth <= MAX_STACK), the
hierarchy ranges, and, for the rows start:stop that are not skipped, their offsets and code ids
(code id < label_maps.shape[1] and < 64 * set_bits.shape[1]). After that the case loop runs
with the GIL released and without any Python object, so several threads may group disjoint row
ranges of one batch in parallel (each writes only its own rows of the outputs).

Deliberate differences from the reference, all on inputs the reference cannot handle either:
it fails lazily (IndexError / ValueError while evaluating, possibly after writing some rows),
this kernel rejects a bad plan or batch before writing anything; it also rejects start < 0
(the reference would wrap around to the end of the batch). The tag register holds MAX_TAGS
labels inline and falls back to scanning the TAGSET items when a scope has more distinct labels,
and COUNT counts any number of distinct labels, so results match the reference exactly.
"""
from libc.stdint cimport INT32_MIN, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from grouper.engine import ir as _ir

# Mirrors of grouper/engine/ir.py (checked against it at import time, below).
cdef enum:
    S_PDX = 0
    S_PPROC = 1
    S_DX = 2
    S_PROC = 3
    S_SDX = 4
    S_SPROC = 5
    N_SCOPES = 6

cdef enum:
    C_EQ = 0
    C_NE = 1
    C_LT = 2
    C_LE = 3
    C_GT = 4
    C_GE = 5
    N_CMPS = 6

cdef enum:
    K_CONST = 0
    K_IN = 1
    K_IN_UNLESS = 2
    K_COUNT = 3
    K_TAGSET = 4
    K_HAS_TAG = 5
    K_FIELD_CMP = 6
    K_FIELD_PRESENT = 7
    K_AND = 8
    K_OR = 9
    K_NOT = 10
    K_GATE = 11
    K_COUNT_ITEMS = 12
    K_GATE_FIELD = 13

cdef enum:
    ST_GROUPED = 0
    ST_NO_ADRG = 1
    ST_UNGROUPABLE = 2
    ST_INVALID = 3
    ST_NO_DRG = 4
    ST_QY = 5

cdef enum:
    B_NO_DRG_STATUS = 1
    B_SECOND_ATTEMPT = 2
    B_ATTEMPT_ALONE = 4
    B_LAST_ENTERED = 8

cdef enum:
    MAX_STACK = 64
    MAX_TAGS = 64
    N_OPERANDS = 5      # columns of program: opcode, a, b, c, d
    NO_CONDITION = -1
    NOT_QY = -1

cdef int32_t MISSING = INT32_MIN


def _check_ir_constants():
    expected = {
        "PDX": S_PDX, "PPROC": S_PPROC, "DX": S_DX, "PROC": S_PROC, "SDX": S_SDX, "SPROC": S_SPROC,
        "EQ": C_EQ, "NE": C_NE, "LT": C_LT, "LE": C_LE, "GT": C_GT, "GE": C_GE,
        "OP_CONST": K_CONST, "OP_IN": K_IN, "OP_IN_UNLESS": K_IN_UNLESS, "OP_COUNT": K_COUNT,
        "OP_TAGSET": K_TAGSET, "OP_HAS_TAG": K_HAS_TAG, "OP_FIELD_CMP": K_FIELD_CMP,
        "OP_FIELD_PRESENT": K_FIELD_PRESENT, "OP_AND": K_AND, "OP_OR": K_OR, "OP_NOT": K_NOT,
        "OP_GATE": K_GATE, "OP_COUNT_ITEMS": K_COUNT_ITEMS, "OP_GATE_FIELD": K_GATE_FIELD,
        "GROUPED": ST_GROUPED, "NO_ADRG": ST_NO_ADRG, "UNGROUPABLE": ST_UNGROUPABLE,
        "INVALID": ST_INVALID, "NO_DRG": ST_NO_DRG, "QY": ST_QY, "NO_DRG_STATUS": B_NO_DRG_STATUS,
        "SECOND_ATTEMPT": B_SECOND_ATTEMPT, "ATTEMPT_ALONE": B_ATTEMPT_ALONE,
        "LAST_ENTERED": B_LAST_ENTERED, "MAX_STACK": MAX_STACK, "MAX_TAGS": MAX_TAGS,
        "NO_CONDITION": NO_CONDITION, "NOT_QY": NOT_QY, "MISSING": MISSING,
    }
    wrong = [name for name, value in expected.items() if int(getattr(_ir, name)) != value]
    if len(_ir.OPCODE_NAMES) != K_GATE_FIELD + 1 or len(_ir.CMP_IDS) != N_CMPS or len(_ir.SCOPE_IDS) != N_SCOPES:
        wrong.append("OPCODE_NAMES/CMP_IDS/SCOPE_IDS")
    if wrong:
        raise ImportError(
            "grouper._kernel is out of date with grouper/engine/ir.py (constants differ: "
            + ", ".join(wrong) + "); rebuild it with `pip install --no-build-isolation -e .`")


_check_ir_constants()


cdef struct PlanC:
    const uint64_t* set_bits        # row s at set_bits + s * n_words
    Py_ssize_t n_words
    const uint32_t* label_maps      # row m at label_maps + m * map_width
    Py_ssize_t map_width
    const int32_t* program          # instruction pc at program + pc * N_OPERANDS
    const int32_t* cond_start
    const int32_t* invalid_cond
    Py_ssize_t n_invalid
    const int32_t* mdc_cond
    Py_ssize_t n_mdc
    const int32_t* mdc_adrg_start
    const int32_t* adrg_cond
    const int32_t* adrg_drg_start
    const int32_t* drg_cond
    const uint64_t* pdx_mdc_mask    # NULL, or per code id: bit m set unless MDC m's entry rejects that pdx
    const uint64_t* adrg_gate_mask  # NULL, or per code id: bit m set when the code is in an ADRG gate of MDC m
    uint64_t adrg_gate_free         # MDCs with an ADRG without a gate (see ir.Plan)
    # qy rules (see ir.Plan): all NULL when the plan has none
    const int32_t* mdc_qy_start     # n_mdc + 2
    const int32_t* qy_cond
    const int32_t* qy_mdc
    const int32_t* qy_drg
    const int32_t* adrg_qy          # n_adrg


cdef struct CaseC:
    const uint32_t* dx
    Py_ssize_t n_dx
    const uint32_t* px
    Py_ssize_t n_px
    const int32_t* fields           # field a of this case at fields[a * field_stride]
    Py_ssize_t field_stride


# Stand-in base pointer for empty arrays (never dereferenced: every range over it is empty).
cdef uint32_t _NO_CODES[1]
cdef int32_t _NO_INT32[1]
cdef uint64_t _NO_WORDS[1]


cdef inline bint compare(int64_t left, int cmp, int64_t right) noexcept nogil:
    if cmp == C_EQ:
        return left == right
    if cmp == C_NE:
        return left != right
    if cmp == C_LT:
        return left < right
    if cmp == C_LE:
        return left <= right
    if cmp == C_GT:
        return left > right
    return left >= right        # C_GE (comparisons are validated up front)


cdef inline const uint32_t* scope_items(const CaseC* cs, int scope, Py_ssize_t* n) noexcept nogil:
    if scope == S_PDX:
        n[0] = 1 if cs.n_dx > 0 else 0
        return cs.dx
    if scope == S_DX:
        n[0] = cs.n_dx
        return cs.dx
    if scope == S_SDX:
        n[0] = cs.n_dx - 1 if cs.n_dx > 0 else 0
        return cs.dx + 1 if cs.n_dx > 0 else cs.dx
    if scope == S_PPROC:
        n[0] = 1 if cs.n_px > 0 else 0
        return cs.px
    if scope == S_PROC:
        n[0] = cs.n_px
        return cs.px
    n[0] = cs.n_px - 1 if cs.n_px > 0 else 0     # S_SPROC
    return cs.px + 1 if cs.n_px > 0 else cs.px


cdef inline bint any_in_set(const uint64_t* row, const uint32_t* items, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t j
    cdef uint32_t x
    for j in range(n):
        x = items[j]
        if (row[x >> 6] >> (x & 63)) & 1:
            return True
    return False


cdef inline bint any_in_set_unless(const uint64_t* row, const uint32_t* items, Py_ssize_t n,
                                   const uint32_t* excl_map, uint32_t pdx_label) noexcept nogil:
    cdef Py_ssize_t j
    cdef uint32_t x, label
    for j in range(n):
        x = items[j]
        if (row[x >> 6] >> (x & 63)) & 1:
            label = excl_map[x]
            if label == 0 or label != pdx_label:
                return True
    return False


cdef inline bint label_before(const uint32_t* label_map, const uint32_t* items, Py_ssize_t j,
                              uint32_t label) noexcept nogil:
    """Whether label_map[items[i]] == label for some i < j."""
    cdef Py_ssize_t i
    for i in range(j):
        if label_map[items[i]] == label:
            return True
    return False


cdef inline Py_ssize_t load_labels(const uint32_t* label_map, const uint32_t* items, Py_ssize_t n,
                                   uint32_t* seen, int* n_seen, bint* overflow) noexcept nogil:
    """Distinct nonzero labels of the items: the first MAX_TAGS go to seen[], in order of first
    appearance (like the reference); *overflow tells whether there were more. Returns the
    number of distinct labels (exact, any number)."""
    cdef Py_ssize_t j, count = 0
    cdef int t, ns = 0
    cdef uint32_t label
    cdef bint found
    overflow[0] = False
    for j in range(n):
        label = label_map[items[j]]
        if label == 0:
            continue
        found = False
        for t in range(ns):
            if seen[t] == label:
                found = True
                break
        if found:
            continue
        if ns < MAX_TAGS:
            seen[ns] = label
            ns += 1
            count += 1
        elif not label_before(label_map, items, j, label):
            overflow[0] = True
            count += 1
    n_seen[0] = ns
    return count


cdef bint eval_condition(const PlanC* p, Py_ssize_t k, const CaseC* cs) noexcept nogil:
    cdef uint8_t stack[MAX_STACK]
    cdef int sp = 0
    # Tag register: up to MAX_TAGS labels inline; beyond that, HAS_TAG rescans the TAGSET items.
    cdef uint32_t tags[MAX_TAGS]
    cdef int n_tags = 0
    cdef bint tag_overflow = False
    cdef const uint32_t* tag_map = NULL
    cdef const uint32_t* tag_items = NULL
    cdef Py_ssize_t tag_n = 0
    cdef uint32_t seen[MAX_TAGS]
    cdef int n_seen
    cdef bint overflow
    cdef const int32_t* ins = p.program + <Py_ssize_t>p.cond_start[k] * N_OPERANDS
    cdef const int32_t* end = p.program + <Py_ssize_t>p.cond_start[k + 1] * N_OPERANDS
    cdef int op, t
    cdef int32_t a, b, c, d, value
    cdef const uint32_t* items
    cdef const uint32_t* label_map
    cdef Py_ssize_t n, j
    cdef uint32_t pdx
    cdef bint r
    while ins < end:
        op = ins[0]
        a = ins[1]
        b = ins[2]
        c = ins[3]
        d = ins[4]
        ins += N_OPERANDS
        if op == K_GATE_FIELD:
            value = cs.fields[<Py_ssize_t>a * cs.field_stride]
            if value == MISSING or not compare(value, b, c):
                return False
        elif op == K_GATE:
            items = scope_items(cs, a, &n)
            if not any_in_set(p.set_bits + <Py_ssize_t>b * p.n_words, items, n):
                return False
        elif op == K_IN:
            items = scope_items(cs, a, &n)
            stack[sp] = any_in_set(p.set_bits + <Py_ssize_t>b * p.n_words, items, n)
            sp += 1
        elif op == K_AND:
            sp -= 1
            stack[sp - 1] = stack[sp - 1] & stack[sp]
        elif op == K_OR:
            sp -= 1
            stack[sp - 1] = stack[sp - 1] | stack[sp]
        elif op == K_NOT:
            stack[sp - 1] = not stack[sp - 1]
        elif op == K_FIELD_CMP:
            value = cs.fields[<Py_ssize_t>a * cs.field_stride]
            stack[sp] = value != MISSING and compare(value, b, c)
            sp += 1
        elif op == K_FIELD_PRESENT:
            stack[sp] = cs.fields[<Py_ssize_t>a * cs.field_stride] != MISSING
            sp += 1
        elif op == K_IN_UNLESS:
            items = scope_items(cs, a, &n)
            pdx = cs.dx[0] if cs.n_dx > 0 else 0
            stack[sp] = any_in_set_unless(
                p.set_bits + <Py_ssize_t>b * p.n_words, items, n,
                p.label_maps + <Py_ssize_t>c * p.map_width,
                p.label_maps[<Py_ssize_t>d * p.map_width + pdx])
            sp += 1
        elif op == K_COUNT:
            items = scope_items(cs, a, &n)
            stack[sp] = compare(
                load_labels(p.label_maps + <Py_ssize_t>b * p.map_width, items, n,
                            seen, &n_seen, &overflow),
                c, d)
            sp += 1
        elif op == K_COUNT_ITEMS:
            scope_items(cs, a, &n)
            stack[sp] = compare(n, b, c)
            sp += 1
        elif op == K_TAGSET:
            tag_items = scope_items(cs, a, &tag_n)
            tag_map = p.label_maps + <Py_ssize_t>b * p.map_width
            load_labels(tag_map, tag_items, tag_n, tags, &n_tags, &tag_overflow)
        elif op == K_HAS_TAG:
            r = False
            if a > 0:       # labels are nonzero; a negative operand matches no uint32 label
                for t in range(n_tags):
                    if tags[t] == <uint32_t>a:
                        r = True
                        break
                if not r and tag_overflow:
                    for j in range(tag_n):
                        if tag_map[tag_items[j]] == <uint32_t>a:
                            r = True
                            break
            stack[sp] = r
            sp += 1
        else:   # K_CONST (opcodes are validated up front)
            stack[sp] = a != 0
            sp += 1
    return stack[sp - 1]


cdef inline void set_result(uint8_t* status, int32_t* mdc, int32_t* adrg, int32_t* drg, int32_t* reason,
                            uint8_t s, int32_t m, int32_t a, int32_t g, int32_t r) noexcept nogil:
    status[0] = s
    mdc[0] = m
    adrg[0] = a
    drg[0] = g
    reason[0] = r


cdef inline Py_ssize_t top_level_qy(const PlanC* p, Py_ssize_t m, const CaseC* cs) noexcept nogil:
    """The first top-level qy rule tried before MDC m (m = n_mdc: after the last MDC) that holds, or -1."""
    cdef Py_ssize_t q
    if p.mdc_qy_start == NULL:
        return -1
    for q in range(p.mdc_qy_start[m], p.mdc_qy_start[m + 1]):
        if eval_condition(p, p.qy_cond[q], cs):
            return q
    return -1


cdef inline void group_one(const PlanC* p, const CaseC* cs, uint8_t* status, int32_t* mdc,
                           int32_t* adrg, int32_t* drg, int32_t* reason, int behaviour) noexcept nogil:
    cdef Py_ssize_t r, m, ai, g, q, last_entered = -1
    cdef int32_t cond
    cdef uint64_t candidates = <uint64_t>-1
    if p.pdx_mdc_mask != NULL:
        candidates = p.pdx_mdc_mask[cs.dx[0] if cs.n_dx > 0 else 0]
    cdef uint64_t reachable = <uint64_t>-1   # MDCs some ADRG of which can hold for the case's codes
    if p.adrg_gate_mask != NULL:
        reachable = p.adrg_gate_free
        for r in range(cs.n_dx):
            reachable |= p.adrg_gate_mask[cs.dx[r]]
        for r in range(cs.n_px):
            reachable |= p.adrg_gate_mask[cs.px[r]]
    for r in range(p.n_invalid):
        if eval_condition(p, p.invalid_cond[r], cs):
            set_result(status, mdc, adrg, drg, reason, ST_INVALID, -1, -1, -1, <int32_t>r)
            return
    for m in range(p.n_mdc):
        q = top_level_qy(p, m, cs)
        if q >= 0:
            set_result(status, mdc, adrg, drg, reason, ST_QY, p.qy_mdc[q], -1, p.qy_drg[q], -1)
            return
        if not (candidates >> m) & 1:   # the entry's pdx gate would fail: skip it unevaluated
            continue
        if not eval_condition(p, p.mdc_cond[m], cs):
            continue
        if not (reachable >> m) & 1:    # entered, but every ADRG's gate would fail
            last_entered = m
            continue
        for ai in range(p.mdc_adrg_start[m], p.mdc_adrg_start[m + 1]):
            if not eval_condition(p, p.adrg_cond[ai], cs):
                continue
            if p.adrg_qy != NULL and p.adrg_qy[ai] != NOT_QY:   # a qy rule among the ADRGs: ends grouping
                q = p.adrg_qy[ai]
                set_result(status, mdc, adrg, drg, reason, ST_QY, p.qy_mdc[q], -1, p.qy_drg[q], -1)
                return
            for g in range(p.adrg_drg_start[ai], p.adrg_drg_start[ai + 1]):
                cond = p.drg_cond[g]
                if cond == NO_CONDITION or eval_condition(p, cond, cs):
                    set_result(status, mdc, adrg, drg, reason, ST_GROUPED, <int32_t>m, <int32_t>ai, <int32_t>g, -1)
                    return
            # The ADRG holds but none of its DRGs does: the next ADRG is tried, or (NO_DRG_STATUS) status no_drg.
            if behaviour & B_NO_DRG_STATUS:
                set_result(status, mdc, adrg, drg, reason, ST_NO_DRG, <int32_t>m, <int32_t>ai, -1, -1)
                return
        # Entered but no ADRG matched: CHS-DRG goes on with the next MDC.
        last_entered = m
    q = top_level_qy(p, p.n_mdc, cs)
    if q >= 0:
        set_result(status, mdc, adrg, drg, reason, ST_QY, p.qy_mdc[q], -1, p.qy_drg[q], -1)
        return
    set_result(status, mdc, adrg, drg, reason, ST_NO_ADRG if last_entered >= 0 else ST_UNGROUPABLE,
               <int32_t>last_entered, -1, -1, -1)


cdef Py_ssize_t check_rows(const int64_t* offsets, Py_ssize_t n_codes, const uint32_t* codes,
                           const uint8_t* skip, Py_ssize_t start, Py_ssize_t stop,
                           int64_t code_bound, int* what) noexcept nogil:
    """First non-skipped row of start:stop whose offsets (what=1) or code ids (what=2) are out
    of range, or -1."""
    cdef Py_ssize_t i
    cdef int64_t lo, hi, q
    for i in range(start, stop):
        if skip[i]:
            continue
        lo = offsets[i]
        hi = offsets[i + 1]
        if lo < 0 or hi < lo or hi > n_codes:
            what[0] = 1
            return i
        for q in range(lo, hi):
            if codes[q] >= code_bound:
                what[0] = 2
                return i
    return -1


cdef void check_rows_or_raise(str kind, const int64_t[::1] offsets, const uint32_t[::1] codes,
                              const uint8_t* skip, Py_ssize_t start, Py_ssize_t stop,
                              int64_t code_bound, str bound_text) except *:
    cdef int what = 0
    cdef Py_ssize_t bad
    cdef const uint32_t* codes_p = &codes[0] if codes.shape[0] > 0 else _NO_CODES
    with nogil:
        bad = check_rows(&offsets[0], codes.shape[0], codes_p, skip, start, stop, code_bound, &what)
    if bad < 0:
        return
    lo, hi = offsets[bad], offsets[bad + 1]
    if what == 1:
        raise ValueError(
            f"{kind}_offsets[{bad}:{bad + 2}] = [{lo}, {hi}] is not a valid range of "
            f"{kind}_codes (length {codes.shape[0]}): offsets must be non-decreasing from 0")
    worst = 0
    for q in range(lo, hi):
        if codes[q] > worst:
            worst = codes[q]
    raise ValueError(
        f"row {bad}: {kind} code id {worst} is out of range for this plan ({bound_text}); "
        f"were the codes interned with another plan?")


cdef int check_condition(const int32_t[:, ::1] program, Py_ssize_t k, Py_ssize_t lo, Py_ssize_t hi,
                         Py_ssize_t n_sets, Py_ssize_t n_maps, Py_ssize_t n_fields) except -1:
    cdef Py_ssize_t pc
    cdef int depth = 0
    cdef int32_t op, a, b, c, d
    for pc in range(lo, hi):
        op, a, b, c, d = program[pc, 0], program[pc, 1], program[pc, 2], program[pc, 3], program[pc, 4]
        problem = None
        if op == K_CONST or op == K_HAS_TAG or op == K_FIELD_PRESENT:
            if op == K_FIELD_PRESENT and not 0 <= a < n_fields:
                problem = f"field {a} is not a row of fields (which has {n_fields})"
            depth += 1
        elif op == K_IN or op == K_IN_UNLESS or op == K_COUNT or op == K_TAGSET or op == K_GATE:
            if not 0 <= a < N_SCOPES:
                problem = f"bad scope {a}"
            elif op == K_IN or op == K_IN_UNLESS or op == K_GATE:
                if not 0 <= b < n_sets:
                    problem = f"set {b} out of range (plan has {n_sets} sets)"
                elif op == K_IN_UNLESS and not (0 <= c < n_maps and 0 <= d < n_maps):
                    problem = f"label map {c} or {d} out of range (plan has {n_maps} maps)"
            elif not 0 <= b < n_maps:
                problem = f"label map {b} out of range (plan has {n_maps} maps)"
            elif op == K_COUNT and not 0 <= c < N_CMPS:
                problem = f"bad comparison {c}"
            if op != K_TAGSET and op != K_GATE:
                depth += 1
        elif op == K_GATE_FIELD:
            if not 0 <= a < n_fields:
                problem = f"field {a} is not a row of fields (which has {n_fields})"
            elif not 0 <= b < N_CMPS:
                problem = f"bad comparison {b}"
        elif op == K_COUNT_ITEMS:
            if not 0 <= a < N_SCOPES:
                problem = f"bad scope {a}"
            elif not 0 <= b < N_CMPS:
                problem = f"bad comparison {b}"
            depth += 1
        elif op == K_FIELD_CMP:
            if not 0 <= a < n_fields:
                problem = f"field {a} is not a row of fields (which has {n_fields})"
            elif not 0 <= b < N_CMPS:
                problem = f"bad comparison {b}"
            depth += 1
        elif op == K_AND or op == K_OR:
            if depth < 2:
                problem = "stack underflow"
            depth -= 1
        elif op == K_NOT:
            if depth < 1:
                problem = "stack underflow"
        else:
            problem = f"bad opcode {op}"
        if problem is None and depth > MAX_STACK:
            problem = f"stack deeper than MAX_STACK = {MAX_STACK}"
        if problem is not None:
            name = _ir.OPCODE_NAMES[op] if 0 <= op < len(_ir.OPCODE_NAMES) else str(op)
            raise ValueError(f"condition {k}, instruction {pc} ({name} {a} {b} {c} {d}): {problem}")
    if depth < 1:
        raise ValueError(f"condition {k} (program rows {lo}:{hi}) leaves no value on the stack")
    return 0


cdef int check_cond_refs(str name, const int32_t[::1] refs, Py_ssize_t n_cond, bint allow_none) except -1:
    cdef Py_ssize_t i
    cdef int32_t k
    for i in range(refs.shape[0]):
        k = refs[i]
        if not (0 <= k < n_cond or (allow_none and k == NO_CONDITION)):
            raise ValueError(f"{name}[{i}] = {k} is not a condition index (plan has {n_cond} conditions)")
    return 0


cdef int check_starts(str name, const int32_t[::1] starts, Py_ssize_t n_parents, Py_ssize_t n_children,
                      str children) except -1:
    cdef Py_ssize_t i
    if starts.shape[0] != n_parents + 1:
        raise ValueError(f"{name} has length {starts.shape[0]}, expected {n_parents + 1}")
    for i in range(starts.shape[0]):
        if not 0 <= starts[i] <= n_children:
            raise ValueError(f"{name}[{i}] = {starts[i]} is outside 0..{n_children} ({children})")
    return 0


cdef int check_qy(const int32_t[::1] mdc_qy_start, const int32_t[::1] qy_cond, const int32_t[::1] qy_mdc,
                  const int32_t[::1] qy_drg, const int32_t[::1] adrg_qy, Py_ssize_t n_mdc, Py_ssize_t n_adrg,
                  Py_ssize_t n_cond) except -1:
    cdef Py_ssize_t n_qy = qy_cond.shape[0], i
    if qy_mdc.shape[0] != n_qy or qy_drg.shape[0] != n_qy:
        raise ValueError(f"qy_cond/qy_mdc/qy_drg have lengths {n_qy}/{qy_mdc.shape[0]}/{qy_drg.shape[0]}")
    if adrg_qy.shape[0] != n_adrg:
        raise ValueError(f"adrg_qy has length {adrg_qy.shape[0]}, expected one per ADRG ({n_adrg})")
    check_cond_refs("qy_cond", qy_cond, n_cond, False)
    check_starts("mdc_qy_start", mdc_qy_start, n_mdc + 1, n_qy, "qy rule indexes")
    for i in range(n_mdc + 1):
        if mdc_qy_start[i] > mdc_qy_start[i + 1]:
            raise ValueError(f"mdc_qy_start decreases at {i}")
    for i in range(n_qy):
        if not -1 <= qy_mdc[i] < n_mdc:
            raise ValueError(f"qy_mdc[{i}] = {qy_mdc[i]} is not an MDC index (or -1)")
        if qy_drg[i] < 0:
            raise ValueError(f"qy_drg[{i}] = {qy_drg[i]} is negative")
    for i in range(n_adrg):
        if not (adrg_qy[i] == NOT_QY or 0 <= adrg_qy[i] < n_qy):
            raise ValueError(f"adrg_qy[{i}] = {adrg_qy[i]} is not a qy rule index (or -1)")
    return 0


cdef const uint64_t* _mdc_mask(str name, const uint64_t[::1] mask, Py_ssize_t n_mdc, Py_ssize_t map_width) except? NULL:
    """A per-code-id MDC bitmap (one bit per MDC) checked against the plan; NULL when not given."""
    if mask is None:
        return NULL
    if n_mdc > 64:
        raise ValueError(f"{name} holds 64 MDCs, the plan has {n_mdc}")
    if mask.shape[0] != map_width or map_width < 1:
        raise ValueError(f"{name} has {mask.shape[0]} entries, expected one per code id ({map_width})")
    return &mask[0]


def group_cases(const uint64_t[:, ::1] set_bits not None,
                const uint32_t[:, ::1] label_maps not None,
                const int32_t[:, ::1] program not None,
                const int32_t[::1] cond_start not None,
                const int32_t[::1] invalid_cond not None,
                const int32_t[::1] mdc_cond not None,
                const int32_t[::1] mdc_adrg_start not None,
                const int32_t[::1] adrg_cond not None,
                const int32_t[::1] adrg_drg_start not None,
                const int32_t[::1] drg_cond not None,
                const int64_t[::1] dx_offsets not None,
                const uint32_t[::1] dx_codes not None,
                const int64_t[::1] px_offsets not None,
                const uint32_t[::1] px_codes not None,
                const int32_t[:, ::1] fields not None,
                const uint8_t[::1] skip not None,
                uint8_t[::1] out_status not None,
                int32_t[::1] out_mdc not None,
                int32_t[::1] out_adrg not None,
                int32_t[::1] out_drg not None,
                int32_t[::1] out_reason not None,
                Py_ssize_t start=0, Py_ssize_t stop=-1,
                const uint64_t[::1] pdx_mdc_mask=None, int behaviour=0,
                const int32_t[::1] mdc_qy_start=None, const int32_t[::1] qy_cond=None,
                const int32_t[::1] qy_mdc=None, const int32_t[::1] qy_drg=None,
                const int32_t[::1] adrg_qy=None,
                const uint64_t[::1] adrg_gate_mask=None, uint64_t adrg_gate_free=0, bint plan_checked=False):
    """Group cases start:stop (stop -1 = all) of a batch into the output arrays.

    Same arguments and results as `grouper.engine._kernel_py.group_cases`; the case loop runs
    without the GIL, so threads may group disjoint row ranges of one batch concurrently.
    Raises ValueError (before writing any output) if the plan or the rows start:stop are
    inconsistent. `plan_checked`: the caller has passed these very plan arrays before without an
    error, so the plan's checks (~60 µs, more than grouping one case) are skipped; the rows are
    always checked.
    """
    cdef Py_ssize_t n = skip.shape[0]
    cdef Py_ssize_t n_sets = set_bits.shape[0], n_words = set_bits.shape[1]
    cdef Py_ssize_t n_maps = label_maps.shape[0], map_width = label_maps.shape[1]
    cdef Py_ssize_t n_instr = program.shape[0]
    cdef Py_ssize_t n_cond = cond_start.shape[0] - 1 if cond_start.shape[0] > 0 else 0
    cdef Py_ssize_t n_mdc = mdc_cond.shape[0], n_adrg = adrg_cond.shape[0], n_drg = drg_cond.shape[0]
    cdef Py_ssize_t k, i, j, q, longest = 0
    cdef int64_t code_bound
    cdef PlanC p
    cdef CaseC cs, moved
    cdef uint32_t* reordered = NULL
    cdef uint8_t retry_status, first_status
    cdef int32_t retry_mdc, retry_adrg, retry_drg, retry_reason, last_mdc

    # ---- shapes of the batch
    if stop < 0:
        stop = n
    if start < 0 or stop > n:
        raise ValueError(f"rows {start}:{stop} are outside the batch of {n} rows")
    if dx_offsets.shape[0] != n + 1 or px_offsets.shape[0] != n + 1:
        raise ValueError(f"dx_offsets/px_offsets have lengths {dx_offsets.shape[0]}/{px_offsets.shape[0]}, "
                         f"expected len(skip) + 1 = {n + 1}")
    if fields.shape[1] != n:
        raise ValueError(f"fields has shape ({fields.shape[0]}, {fields.shape[1]}), expected (7, {n})")
    for name, out in (("out_status", out_status), ("out_mdc", out_mdc), ("out_adrg", out_adrg),
                      ("out_drg", out_drg), ("out_reason", out_reason)):
        if out.shape[0] != n:
            raise ValueError(f"{name} has length {out.shape[0]}, expected len(skip) = {n}")

    # ---- the plan (small: checked in full on every call, unless the caller checked it already)
    if not plan_checked:
        if program.shape[1] != N_OPERANDS:
            raise ValueError(f"program has {program.shape[1]} columns, expected {N_OPERANDS}")
        if n_maps > 0 and map_width < 1:
            raise ValueError("label_maps has no column for code id 0")
        for k in range(n_cond):
            if not 0 <= cond_start[k] <= cond_start[k + 1] <= n_instr:
                raise ValueError(f"cond_start[{k}:{k + 2}] = [{cond_start[k]}, {cond_start[k + 1]}] "
                                 f"is not a range of program (which has {n_instr} rows)")
            check_condition(program, k, cond_start[k], cond_start[k + 1], n_sets, n_maps, fields.shape[0])
        check_cond_refs("invalid_cond", invalid_cond, n_cond, False)
        check_cond_refs("mdc_cond", mdc_cond, n_cond, False)
        check_cond_refs("adrg_cond", adrg_cond, n_cond, False)
        check_cond_refs("drg_cond", drg_cond, n_cond, True)
        check_starts("mdc_adrg_start", mdc_adrg_start, n_mdc, n_adrg, "ADRG indexes")
        check_starts("adrg_drg_start", adrg_drg_start, n_adrg, n_drg, "DRG indexes")

    # ---- the rows start:stop that will be grouped: offsets and code ids
    # Every code id is used to index set rows (64 ids a word) and label maps.
    code_bound = 1 << 62
    bounds = []
    if n_sets > 0:
        code_bound = min(code_bound, 64 * n_words)
        bounds.append(f"code sets have {64 * n_words} bits")
    if n_maps > 0:
        code_bound = min(code_bound, map_width)
        bounds.append(f"label maps have {map_width} columns")
    bound_text = " and ".join(bounds)
    check_rows_or_raise("dx", dx_offsets, dx_codes, &skip[0] if n > 0 else NULL, start, stop,
                        code_bound, bound_text)
    check_rows_or_raise("px", px_offsets, px_codes, &skip[0] if n > 0 else NULL, start, stop,
                        code_bound, bound_text)

    if start >= stop:
        return

    p.set_bits = &set_bits[0, 0] if set_bits.shape[0] * set_bits.shape[1] > 0 else _NO_WORDS
    p.n_words = n_words
    p.label_maps = &label_maps[0, 0] if label_maps.shape[0] * label_maps.shape[1] > 0 else _NO_CODES
    p.map_width = map_width
    p.program = &program[0, 0] if program.shape[0] * program.shape[1] > 0 else _NO_INT32
    p.cond_start = &cond_start[0] if cond_start.shape[0] > 0 else _NO_INT32
    p.invalid_cond = &invalid_cond[0] if invalid_cond.shape[0] > 0 else _NO_INT32
    p.n_invalid = invalid_cond.shape[0]
    p.mdc_cond = &mdc_cond[0] if n_mdc > 0 else _NO_INT32
    p.n_mdc = n_mdc
    p.mdc_adrg_start = &mdc_adrg_start[0]
    p.adrg_cond = &adrg_cond[0] if n_adrg > 0 else _NO_INT32
    p.adrg_drg_start = &adrg_drg_start[0]
    p.drg_cond = &drg_cond[0] if n_drg > 0 else _NO_INT32
    p.pdx_mdc_mask = _mdc_mask("pdx_mdc_mask", pdx_mdc_mask, n_mdc, map_width)
    p.adrg_gate_mask = _mdc_mask("adrg_gate_mask", adrg_gate_mask, n_mdc, map_width)
    p.adrg_gate_free = adrg_gate_free
    p.mdc_qy_start = NULL
    p.qy_cond = NULL
    p.qy_mdc = NULL
    p.qy_drg = NULL
    p.adrg_qy = NULL
    qy_given = [mdc_qy_start is not None, qy_cond is not None, qy_mdc is not None, qy_drg is not None,
                adrg_qy is not None]
    if any(qy_given):
        if not all(qy_given):
            raise ValueError("the qy arrays mdc_qy_start, qy_cond, qy_mdc, qy_drg, adrg_qy go together: give all or none")
        if not plan_checked:
            check_qy(mdc_qy_start, qy_cond, qy_mdc, qy_drg, adrg_qy, n_mdc, n_adrg, n_cond)
        p.qy_cond = &qy_cond[0] if qy_cond.shape[0] > 0 else _NO_INT32
        p.qy_mdc = &qy_mdc[0] if qy_mdc.shape[0] > 0 else _NO_INT32
        p.qy_drg = &qy_drg[0] if qy_drg.shape[0] > 0 else _NO_INT32
        p.mdc_qy_start = &mdc_qy_start[0]
        p.adrg_qy = &adrg_qy[0] if n_adrg > 0 else _NO_INT32

    cdef const int64_t* dx_off = &dx_offsets[0]
    cdef const int64_t* px_off = &px_offsets[0]
    cdef const uint32_t* dx_base = &dx_codes[0] if dx_codes.shape[0] > 0 else _NO_CODES
    cdef const uint32_t* px_base = &px_codes[0] if px_codes.shape[0] > 0 else _NO_CODES
    cdef const int32_t* field_base = &fields[0, 0] if fields.shape[0] * fields.shape[1] > 0 else _NO_INT32
    cdef const uint8_t* skip_p = &skip[0]
    cdef uint8_t* st = &out_status[0]
    cdef int32_t* o_mdc = &out_mdc[0]
    cdef int32_t* o_adrg = &out_adrg[0]
    cdef int32_t* o_drg = &out_drg[0]
    cdef int32_t* o_reason = &out_reason[0]
    cs.field_stride = n
    if behaviour & B_SECOND_ATTEMPT:
        # one buffer for the reordered procedure list of a second attempt (rows were checked above)
        for i in range(start, stop):
            longest = max(longest, <Py_ssize_t>(px_off[i + 1] - px_off[i]))
        reordered = <uint32_t*>malloc((longest + 1) * sizeof(uint32_t))
        if reordered == NULL:
            raise MemoryError()

    try:
        with nogil:
            for i in range(start, stop):
                if skip_p[i]:
                    st[i] = ST_INVALID
                    o_mdc[i] = -1
                    o_adrg[i] = -1
                    o_drg[i] = -1
                    o_reason[i] = -1
                    continue
                cs.dx = dx_base + dx_off[i]
                cs.n_dx = <Py_ssize_t>(dx_off[i + 1] - dx_off[i])
                cs.px = px_base + px_off[i]
                cs.n_px = <Py_ssize_t>(px_off[i + 1] - px_off[i])
                cs.fields = field_base + i
                group_one(&p, &cs, st + i, o_mdc + i, o_adrg + i, o_drg + i, o_reason + i, behaviour)
                if not behaviour & B_SECOND_ATTEMPT or st[i] == ST_GROUPED or st[i] == ST_INVALID or st[i] == ST_QY:
                    continue
                # Second attempt: procedure j moved to the front, the others in order (ATTEMPT_ALONE:
                # procedure j alone); first grouped wins. LAST_ENTERED: else the last no_adrg MDC.
                first_status = st[i]
                last_mdc = o_mdc[i] if first_status == ST_NO_ADRG else -1
                moved = cs
                moved.px = reordered
                if behaviour & B_ATTEMPT_ALONE:
                    moved.n_px = 1
                for j in range(1, cs.n_px):
                    reordered[0] = cs.px[j]
                    if not behaviour & B_ATTEMPT_ALONE:
                        for q in range(j):
                            reordered[q + 1] = cs.px[q]
                        for q in range(j + 1, cs.n_px):
                            reordered[q] = cs.px[q]
                    group_one(&p, &moved, &retry_status, &retry_mdc, &retry_adrg, &retry_drg, &retry_reason, behaviour)
                    if retry_status == ST_GROUPED:
                        st[i] = retry_status
                        o_mdc[i] = retry_mdc
                        o_adrg[i] = retry_adrg
                        o_drg[i] = retry_drg
                        o_reason[i] = retry_reason
                        break
                    if retry_status == ST_NO_ADRG:
                        last_mdc = retry_mdc
                else:
                    if (behaviour & B_LAST_ENTERED and last_mdc >= 0
                            and (first_status == ST_NO_ADRG or first_status == ST_UNGROUPABLE)):
                        st[i] = ST_NO_ADRG
                        o_mdc[i] = last_mdc
                        o_adrg[i] = -1
                        o_drg[i] = -1
                        o_reason[i] = -1
    finally:
        free(reordered)


def duplicate_items(const int64_t[::1] offsets not None, const uint32_t[::1] codes not None,
                    uint8_t[::1] out not None):
    """out[j] = 1 when item j repeats an earlier item of the same row (code id 0, unknown, never counts).

    Rows are offsets[i]:offsets[i+1] into codes; a row's items are compared pairwise (rows are short).
    """
    cdef Py_ssize_t n = offsets.shape[0] - 1, i, j, k
    cdef int64_t lo, hi
    if out.shape[0] != codes.shape[0]:
        raise ValueError(f"out has length {out.shape[0]}, codes {codes.shape[0]}")
    if n >= 0 and (offsets[0] < 0 or offsets[n] > codes.shape[0]):
        raise ValueError("offsets do not fit the codes")
    with nogil:
        for i in range(n):
            lo = offsets[i]
            hi = offsets[i + 1]
            for j in range(lo, hi):
                out[j] = 0
                if codes[j] == 0:
                    continue
                for k in range(lo, j):
                    if codes[k] == codes[j]:
                        out[j] = 1
                        break
