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
from libc.stdint cimport INT32_MIN, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc

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
    K_JUMP_IF_FALSE = 14
    K_JUMP_IF_TRUE = 15

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
    MAX_GATED_ADRGS = 1024
    ADRG_WORDS = MAX_GATED_ADRGS // 64
    ROWS = 128          # rows a block of the bulk `invalid` checks (rows_hold) covers
    ROWS_STACK = 8      # stack depth of a condition rows_hold evaluates
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
        "OP_JUMP_IF_FALSE": K_JUMP_IF_FALSE, "OP_JUMP_IF_TRUE": K_JUMP_IF_TRUE,
        "GROUPED": ST_GROUPED, "NO_ADRG": ST_NO_ADRG, "UNGROUPABLE": ST_UNGROUPABLE,
        "INVALID": ST_INVALID, "NO_DRG": ST_NO_DRG, "QY": ST_QY, "NO_DRG_STATUS": B_NO_DRG_STATUS,
        "SECOND_ATTEMPT": B_SECOND_ATTEMPT, "ATTEMPT_ALONE": B_ATTEMPT_ALONE,
        "LAST_ENTERED": B_LAST_ENTERED, "MAX_STACK": MAX_STACK, "MAX_TAGS": MAX_TAGS,
        "MAX_GATED_ADRGS": MAX_GATED_ADRGS,
        "NO_CONDITION": NO_CONDITION, "NOT_QY": NOT_QY, "MISSING": MISSING,
    }
    wrong = [name for name, value in expected.items() if int(getattr(_ir, name)) != value]
    if len(_ir.OPCODE_NAMES) != K_JUMP_IF_TRUE + 1 or len(_ir.CMP_IDS) != N_CMPS or len(_ir.SCOPE_IDS) != N_SCOPES:
        wrong.append("OPCODE_NAMES/CMP_IDS/SCOPE_IDS")
    if wrong:
        raise ImportError(
            "grouper._kernel is out of date with grouper/engine/ir.py (constants differ: "
            + ", ".join(wrong) + "); rebuild it with `pip install --no-build-isolation -e .`")


_check_ir_constants()


cdef struct SlotSpan:               # slots lo:hi of the ADRG-level gate, tested for any set bit (slot_span)
    Py_ssize_t m                    # the MDC the span decides for
    Py_ssize_t lo, hi
    Py_ssize_t word                 # lo:hi within one word: that word and its mask; else -1 (next_slot)
    uint64_t mask


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
    uint64_t mdc_entry_exact        # MDCs whose entry is pdx_mdc_mask's bit when there is a pdx (see ir.Plan)
    const uint16_t* adrg_gate_class # NULL, or per code id: its rows as principal diagnosis / procedure (see ir.Plan)
    const uint8_t* adrg_gate_other  # per code id: its rows as another diagnosis / procedure
    const uint64_t* adrg_gate_rows  # row r at adrg_gate_rows + r * (n_slot_words + 1); row 0: slots without a gate
    Py_ssize_t n_gate_rows
    Py_ssize_t empty_gate_row       # a row of no slot (most other items' row: not ORed), or -1
    Py_ssize_t n_slot_words
    Py_ssize_t n_adrg
    Py_ssize_t mdc_slot             # the gate's slot of MDC 0's entry (then MDC 1's, ...)
    uint64_t qy_positions           # (at most 64 MDCs) bit m: top-level qy rules are tried before MDC m
    uint64_t mdc_always             # (at most 64 MDCs, with the gate) bit m: MDC m's entry is `true` (CONST 1)
    # The spans group_one tests before visiting the MDCs (with the gate, at most 64 MDCs), in MDC order:
    # each qy position's top-level qy rules, and each always-entered MDC's ADRGs (see group_one).
    SlotSpan qy_spans[64]
    Py_ssize_t n_qy_spans
    SlotSpan always_spans[64]
    Py_ssize_t n_always_spans
    # DRG decisions (see ir.Plan.adrg_decision): NULL when the plan has none
    const int32_t* adrg_decision    # n_adrg
    const int32_t* decision_nodes   # node r at decision_nodes + 3 * r: atom, if_false, if_true
    const int32_t* decision_atoms   # atom t at decision_atoms + t * N_OPERANDS
    # qy rules (see ir.Plan): all NULL when the plan has none
    const int32_t* mdc_qy_start     # n_mdc + 2
    const int32_t* qy_cond
    const int32_t* qy_mdc
    const int32_t* qy_drg
    const int32_t* adrg_qy          # n_adrg
    # With at most MAX_GATED_ADRGS ADRGs, bit a: adrg_qy[a] != NOT_QY (a small bitmap that stays in
    # cache, read for every ADRG that holds, instead of a load from adrg_qy that often misses)
    uint64_t qy_adrg_bits[ADRG_WORDS]
    bint qy_adrg_bitmap


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
        elif op == K_JUMP_IF_FALSE:
            if stack[sp - 1]:
                sp -= 1
            else:
                ins += <Py_ssize_t>a * N_OPERANDS      # in range: checked up front
        elif op == K_JUMP_IF_TRUE:
            if stack[sp - 1]:
                ins += <Py_ssize_t>a * N_OPERANDS
            else:
                sp -= 1
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


cdef inline bint atom_holds(const PlanC* p, const int32_t* ins, const CaseC* cs) noexcept nogil:
    """The value a push instruction (IN, IN_UNLESS, FIELD_CMP, FIELD_PRESENT, COUNT_ITEMS: a DRG
    decision's test, checked up front) pushes, as eval_condition computes it."""
    cdef int op = ins[0]
    cdef int32_t value
    cdef const uint32_t* items
    cdef Py_ssize_t n
    if op == K_IN:
        items = scope_items(cs, ins[1], &n)
        return any_in_set(p.set_bits + <Py_ssize_t>ins[2] * p.n_words, items, n)
    if op == K_IN_UNLESS:
        items = scope_items(cs, ins[1], &n)
        return any_in_set_unless(
            p.set_bits + <Py_ssize_t>ins[2] * p.n_words, items, n,
            p.label_maps + <Py_ssize_t>ins[3] * p.map_width,
            p.label_maps[<Py_ssize_t>ins[4] * p.map_width + (cs.dx[0] if cs.n_dx > 0 else 0)])
    if op == K_FIELD_CMP:
        value = cs.fields[<Py_ssize_t>ins[1] * cs.field_stride]
        return value != MISSING and compare(value, ins[2], ins[3])
    if op == K_FIELD_PRESENT:
        return cs.fields[<Py_ssize_t>ins[1] * cs.field_stride] != MISSING
    scope_items(cs, ins[1], &n)       # K_COUNT_ITEMS
    return compare(n, ins[2], ins[3])


cdef inline Py_ssize_t decided_drg(const PlanC* p, int32_t node, const CaseC* cs) noexcept nogil:
    """The DRG an ADRG's decision tree (rooted at node) gives, or -1 when none of its DRGs holds.
    Targets are lower rows (checked up front), so the walk ends."""
    cdef const int32_t* row
    while node >= 0:
        row = p.decision_nodes + <Py_ssize_t>node * 3
        node = row[2] if atom_holds(p, p.decision_atoms + <Py_ssize_t>row[0] * N_OPERANDS, cs) else row[1]
    return -2 - <Py_ssize_t>node if node <= -2 else -1


cdef inline void set_result(uint8_t* status, int32_t* mdc, int32_t* adrg, int32_t* drg, int32_t* reason,
                            uint8_t s, int32_t m, int32_t a, int32_t g, int32_t r) noexcept nogil:
    status[0] = s
    mdc[0] = m
    adrg[0] = a
    drg[0] = g
    reason[0] = r


cdef inline Py_ssize_t top_level_qy(const PlanC* p, Py_ssize_t m, const CaseC* cs, const uint64_t* gated) noexcept nogil:
    """The first top-level qy rule tried before MDC m (m = n_mdc: after the last MDC) that holds, or -1.
    gated: the slots of the ADRG-level gate (rule q is slot n_adrg + q), or NULL."""
    cdef Py_ssize_t q, t
    if p.mdc_qy_start == NULL:
        return -1
    for q in range(p.mdc_qy_start[m], p.mdc_qy_start[m + 1]):
        t = p.n_adrg + q
        if gated != NULL and not (gated[t >> 6] >> (t & 63)) & 1:
            continue    # its gate would fail
        if eval_condition(p, p.qy_cond[q], cs):
            return q
    return -1


cdef inline bint gated_slots(const PlanC* p, const CaseC* cs, uint64_t* gated, uint64_t* candidates) noexcept nogil:
    """gated[] = the slots (ADRGs, then top-level qy rules) whose GATE some item of the case passes in
    its role (principal diagnosis, other diagnosis, principal procedure, other procedure), and those
    without a GATE; *candidates = the principal diagnosis's pdx_mdc_mask word of its row (returns
    whether it was set); see ir.Plan.adrg_gate_class. The classes are bounds-checked here, not up
    front (that would cost a walk over every code id on each call): one out of range makes every
    slot a candidate, which only forgoes the skipping."""
    cdef Py_ssize_t j, w
    cdef uint16_t c
    cdef const uint64_t* row
    cdef Py_ssize_t n_words = p.n_slot_words, width = p.n_slot_words + 1
    for w in range(n_words):
        gated[w] = p.adrg_gate_rows[w]
    for j in range(cs.n_dx + cs.n_px):
        if j < cs.n_dx:
            if j == 0:
                c = p.adrg_gate_class[<Py_ssize_t>cs.dx[0] * 2]
            else:
                c = p.adrg_gate_other[<Py_ssize_t>cs.dx[j] * 2]
        elif j == cs.n_dx:
            c = p.adrg_gate_class[<Py_ssize_t>cs.px[0] * 2 + 1]
        else:
            c = p.adrg_gate_other[<Py_ssize_t>cs.px[j - cs.n_dx] * 2 + 1]
        if c >= p.n_gate_rows:
            for w in range(n_words):
                gated[w] = <uint64_t>-1
            return False
        if c == p.empty_gate_row and j != 0:    # (the pdx's row also gives its pdx_mdc_mask word)
            continue
        row = p.adrg_gate_rows + <Py_ssize_t>c * width
        for w in range(n_words):
            gated[w] |= row[w]
        if j == 0 and cs.n_dx > 0:
            candidates[0] = row[n_words]
    return cs.n_dx > 0


cdef bint rows_evaluable(const int32_t* program, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    """Whether rows_hold can evaluate program rows lo:hi: field tests and item counts only, no
    jumps, a stack of at most ROWS_STACK (a checked program)."""
    cdef Py_ssize_t pc
    cdef int op, depth = 0
    for pc in range(lo, hi):
        op = program[pc * N_OPERANDS]
        if op == K_CONST or op == K_FIELD_CMP or op == K_FIELD_PRESENT or op == K_COUNT_ITEMS:
            depth += 1
            if depth > ROWS_STACK:
                return False
        elif op == K_AND or op == K_OR:
            depth -= 1
        elif op != K_NOT and op != K_GATE_FIELD:
            return False
    return True


cdef inline void compare_rows(const int32_t* values, int cmp, int32_t c, uint8_t* out, Py_ssize_t m) noexcept nogil:
    """out[j] = values[j] is present and values[j] cmp c (one loop per comparison: vectorised)."""
    cdef Py_ssize_t j
    if cmp == C_EQ:
        for j in range(m):
            out[j] = (values[j] != MISSING) & (values[j] == c)
    elif cmp == C_NE:
        for j in range(m):
            out[j] = (values[j] != MISSING) & (values[j] != c)
    elif cmp == C_LT:
        for j in range(m):
            out[j] = (values[j] != MISSING) & (values[j] < c)
    elif cmp == C_LE:
        for j in range(m):
            out[j] = (values[j] != MISSING) & (values[j] <= c)
    elif cmp == C_GT:
        for j in range(m):
            out[j] = (values[j] != MISSING) & (values[j] > c)
    else:
        for j in range(m):
            out[j] = (values[j] != MISSING) & (values[j] >= c)


cdef void rows_hold(const PlanC* p, Py_ssize_t k, const int32_t* fields, Py_ssize_t field_stride,
                    const int64_t* dx_off, const int64_t* px_off, Py_ssize_t m, uint8_t* out) noexcept nogil:
    """out[j] = condition k (rows_evaluable) holds for row j of m rows (fields of row j at fields + j,
    field a at a * field_stride; its items at dx_off[j]:dx_off[j + 1], px_off[j]:px_off[j + 1]):
    eval_condition for a block of rows at once, each instruction a loop over the rows."""
    cdef uint8_t stack[ROWS_STACK][ROWS]
    cdef uint8_t alive[ROWS]
    cdef const int32_t* ins = p.program + <Py_ssize_t>p.cond_start[k] * N_OPERANDS
    cdef const int32_t* end = p.program + <Py_ssize_t>p.cond_start[k + 1] * N_OPERANDS
    cdef int op, sp = 0
    cdef int32_t a, b, c
    cdef Py_ssize_t j
    cdef int64_t count
    cdef const int32_t* values
    for j in range(m):
        alive[j] = 1
    while ins < end:
        op = ins[0]
        a = ins[1]
        b = ins[2]
        c = ins[3]
        ins += N_OPERANDS
        if op == K_GATE_FIELD:
            compare_rows(fields + <Py_ssize_t>a * field_stride, b, c, out, m)
            for j in range(m):
                alive[j] &= out[j]
        elif op == K_FIELD_CMP:
            compare_rows(fields + <Py_ssize_t>a * field_stride, b, c, stack[sp], m)
            sp += 1
        elif op == K_FIELD_PRESENT:
            values = fields + <Py_ssize_t>a * field_stride
            for j in range(m):
                stack[sp][j] = values[j] != MISSING
            sp += 1
        elif op == K_COUNT_ITEMS:
            for j in range(m):
                if a == S_PDX or a == S_DX or a == S_SDX:
                    count = dx_off[j + 1] - dx_off[j]
                else:
                    count = px_off[j + 1] - px_off[j]
                if a == S_PDX or a == S_PPROC:
                    count = 1 if count > 0 else 0
                elif a == S_SDX or a == S_SPROC:
                    count = count - 1 if count > 0 else 0
                stack[sp][j] = compare(count, b, c)
            sp += 1
        elif op == K_AND:
            sp -= 1
            for j in range(m):
                stack[sp - 1][j] &= stack[sp][j]
        elif op == K_OR:
            sp -= 1
            for j in range(m):
                stack[sp - 1][j] |= stack[sp][j]
        elif op == K_NOT:
            for j in range(m):
                stack[sp - 1][j] ^= 1
        else:   # K_CONST
            for j in range(m):
                stack[sp][j] = a != 0
            sp += 1
    for j in range(m):
        out[j] = alive[j] & stack[sp - 1][j]


cdef extern from *:
    int __builtin_ctzll(unsigned long long) nogil


cdef inline uint64_t slot_bits(const uint64_t* words, Py_ssize_t first, Py_ssize_t n) noexcept nogil:
    """Bits first:first + n (n <= 64) of a bitmap, as the low bits of a word."""
    cdef Py_ssize_t w = first >> 6, shift = first & 63
    cdef uint64_t bits = words[w] >> shift
    if shift and 64 - shift < n:
        bits |= words[w + 1] << (64 - shift)
    if n < 64:
        bits &= ((<uint64_t>1) << n) - 1
    return bits


cdef inline Py_ssize_t next_slot(const uint64_t* gated, Py_ssize_t t, Py_ssize_t stop) noexcept nogil:
    """The first slot >= t (and < stop, else stop) set in gated; t itself when gated is NULL."""
    if gated == NULL or t >= stop:
        return t
    cdef Py_ssize_t w = t >> 6
    cdef uint64_t bits = gated[w] & ((<uint64_t>-1) << (t & 63))
    while bits == 0:
        w += 1
        if w << 6 >= stop:
            return stop
        bits = gated[w]
    t = (w << 6) + __builtin_ctzll(bits)
    return t if t < stop else stop


cdef inline void set_span(SlotSpan* span, Py_ssize_t m, Py_ssize_t lo, Py_ssize_t hi) noexcept nogil:
    span.m = m
    span.lo = lo
    span.hi = hi
    span.word = -1
    span.mask = 0
    if hi <= lo:            # no slot: never set (word 0, empty mask)
        span.word = 0
    elif lo >> 6 == (hi - 1) >> 6:
        span.word = lo >> 6
        span.mask = ((<uint64_t>-1) << (lo & 63)) & ((<uint64_t>-1) >> (63 - ((hi - 1) & 63)))


cdef inline bint slot_span(const uint64_t* gated, const SlotSpan* span) noexcept nogil:
    """Whether some slot of the span is set in gated: one masked word for a span within a word
    (3.0's qy positions and MDCA: one test instead of a next_slot search per case)."""
    if span.word >= 0:
        return (gated[span.word] & span.mask) != 0
    return next_slot(gated, span.lo, span.hi) < span.hi


cdef inline bint is_qy_adrg(const PlanC* p, Py_ssize_t a) noexcept nogil:
    """Whether ADRG a is a qy rule's pseudo-ADRG (p.adrg_qy given)."""
    if p.qy_adrg_bitmap:
        return (p.qy_adrg_bits[a >> 6] >> (a & 63)) & 1
    return p.adrg_qy[a] != NOT_QY


cdef inline void group_one(const PlanC* p, const CaseC* cs, uint8_t* status, int32_t* mdc,
                           int32_t* adrg, int32_t* drg, int32_t* reason, int behaviour,
                           Py_ssize_t first_invalid) noexcept nogil:
    """first_invalid: the `invalid` rules before it are known not to hold (checked in bulk, rows_hold)."""
    cdef Py_ssize_t r, m, ai, g, q, last_entered = -1
    cdef int32_t cond
    cdef uint64_t candidates = <uint64_t>-1
    cdef uint64_t gated_words[ADRG_WORDS]    # slots whose gate can hold for the case's codes
    cdef const uint64_t* gated = NULL
    if p.adrg_gate_class != NULL:    # also reads the pdx's pdx_mdc_mask, from its row
        gated = gated_words
        if not gated_slots(p, cs, gated_words, &candidates) and p.pdx_mdc_mask != NULL:
            candidates = p.pdx_mdc_mask[cs.dx[0] if cs.n_dx > 0 else 0]
    elif p.pdx_mdc_mask != NULL:
        candidates = p.pdx_mdc_mask[cs.dx[0] if cs.n_dx > 0 else 0]
    cdef uint64_t reachable = <uint64_t>-1   # MDCs some ADRG of which can hold for the case's codes
    if p.adrg_gate_mask != NULL and p.adrg_gate_class == NULL:
        reachable = p.adrg_gate_free
        for r in range(cs.n_dx):
            reachable |= p.adrg_gate_mask[cs.dx[r]]
        for r in range(cs.n_px):
            reachable |= p.adrg_gate_mask[cs.px[r]]
    for r in range(first_invalid, p.n_invalid):
        if eval_condition(p, p.invalid_cond[r], cs):
            set_result(status, mdc, adrg, drg, reason, ST_INVALID, -1, -1, -1, <int32_t>r)
            return
    # The MDCs to visit, in order: all; with at most 64 MDCs only those whose entry can hold (the
    # pdx's candidates, and with the gate the entries' slots) and those with top-level qy rules before them.
    cdef uint64_t visit = <uint64_t>-1
    cdef Py_ssize_t n_visit = p.n_mdc, entered_silently = -1
    if p.n_mdc <= 64:
        visit = candidates
        if gated != NULL:
            visit &= slot_bits(gated, p.mdc_slot, p.n_mdc)
        if p.n_mdc < 64:
            visit &= ((<uint64_t>1) << p.n_mdc) - 1
        n_visit = 64
        if gated != NULL:
            # A qy position is visited only when one of its rules' gates can hold; an always-entered MDC
            # none of whose ADRGs' (or qy pseudo-ADRGs') gates can hold is entered without a match:
            # it is not visited, only remembered as entered (2.0/3.0's MDCA, `when true`, for most cases).
            for r in range(p.n_qy_spans):
                if slot_span(gated, &p.qy_spans[r]):
                    visit |= (<uint64_t>1) << p.qy_spans[r].m
            for r in range(p.n_always_spans):
                m = p.always_spans[r].m
                if (visit >> m) & 1 and not slot_span(gated, &p.always_spans[r]):
                    visit &= ~((<uint64_t>1) << m)
                    entered_silently = m
        else:
            visit |= p.qy_positions
    for r in range(n_visit):
        if visit == 0:
            break
        if p.n_mdc <= 64:
            m = __builtin_ctzll(visit)
            visit &= visit - 1
        else:
            m = r
            if m >= p.n_mdc:
                break
        q = top_level_qy(p, m, cs, gated) if m >= 64 or (p.qy_positions >> m) & 1 else -1
        if q >= 0:
            set_result(status, mdc, adrg, drg, reason, ST_QY, p.qy_mdc[q], -1, p.qy_drg[q], -1)
            return
        if m < 64 and not (candidates >> m) & 1:   # the entry's pdx gate would fail: skip it unevaluated
            continue
        if not ((p.mdc_entry_exact >> m) & 1 and cs.n_dx > 0):
            ai = p.mdc_slot + m
            if gated != NULL and not (gated[ai >> 6] >> (ai & 63)) & 1:
                continue    # the entry's gate would fail
            if not eval_condition(p, p.mdc_cond[m], cs):
                continue
        if not (reachable >> m) & 1:    # entered, but every ADRG's gate would fail
            last_entered = m
            continue
        ai = p.mdc_adrg_start[m] - 1
        while True:
            ai = next_slot(gated, ai + 1, p.mdc_adrg_start[m + 1])   # the ADRGs whose gate fails are skipped
            if ai >= p.mdc_adrg_start[m + 1]:
                break
            if not eval_condition(p, p.adrg_cond[ai], cs):
                continue
            if p.adrg_qy != NULL and is_qy_adrg(p, ai):   # a qy rule among the ADRGs: ends grouping
                q = p.adrg_qy[ai]
                set_result(status, mdc, adrg, drg, reason, ST_QY, p.qy_mdc[q], -1, p.qy_drg[q], -1)
                return
            if p.adrg_decision != NULL and p.adrg_decision[ai] >= 0:
                g = decided_drg(p, p.adrg_decision[ai], cs)
                if g >= 0:
                    set_result(status, mdc, adrg, drg, reason, ST_GROUPED, <int32_t>m, <int32_t>ai, <int32_t>g, -1)
                    return
            else:
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
    q = top_level_qy(p, p.n_mdc, cs, gated)
    if q >= 0:
        set_result(status, mdc, adrg, drg, reason, ST_QY, p.qy_mdc[q], -1, p.qy_drg[q], -1)
        return
    if entered_silently > last_entered:     # MDCs are visited in order: the last entered is the larger
        last_entered = entered_silently
    set_result(status, mdc, adrg, drg, reason, ST_NO_ADRG if last_entered >= 0 else ST_UNGROUPABLE,
               <int32_t>last_entered, -1, -1, -1)


cdef Py_ssize_t check_rows(const int64_t* offsets, Py_ssize_t n_codes, const uint32_t* codes,
                           const uint8_t* skip, Py_ssize_t start, Py_ssize_t stop,
                           int64_t code_bound, int* what) noexcept nogil:
    """First non-skipped row of start:stop whose offsets (what=1) or code ids (what=2) are out
    of range, or -1."""
    cdef Py_ssize_t i
    cdef int64_t lo, hi, q
    cdef uint32_t worst = 0
    cdef bint ordered = 0 <= offsets[start] and offsets[stop] <= n_codes
    # Fast path: offsets non-decreasing and every code id of the range in bounds (skipped rows
    # included); else the row-by-row check below finds the first bad row.
    for i in range(start, stop):
        ordered &= offsets[i] <= offsets[i + 1]
    if ordered:
        for q in range(offsets[start], offsets[stop]):
            worst = max(worst, codes[q])
        if worst < code_bound:
            return -1
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
    landing = {}    # pc a jump lands on → the stack depth it lands with
    for pc in range(lo, hi + 1):
        if pc in landing and landing.pop(pc) != depth:
            raise ValueError(f"condition {k}: a jump lands on instruction {pc} with another stack depth "
                             f"than the instructions before it leave")
        if pc == hi:
            break
        op, a, b, c, d = program[pc, 0], program[pc, 1], program[pc, 2], program[pc, 3], program[pc, 4]
        problem = None
        if op == K_JUMP_IF_FALSE or op == K_JUMP_IF_TRUE:
            if depth < 1:
                problem = "stack underflow"
            elif not 0 <= a <= hi - pc - 1:
                problem = f"jump over {a} instructions leaves the condition"
            elif landing.setdefault(pc + 1 + a, depth) != depth:
                problem = "jumps landing on one instruction with different stack depths"
            depth -= 1
        elif op == K_CONST or op == K_HAS_TAG or op == K_FIELD_PRESENT:
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


cdef int check_adrg_gate(const uint16_t[:, ::1] classes, const uint8_t[:, ::1] other, const uint64_t[:, ::1] rows,
                         Py_ssize_t n_slots, Py_ssize_t map_width) except -1:
    """The shapes of the ADRG-level gate (ir.Plan.adrg_gate_class); the classes are bounds-checked
    where they are read (gated_slots)."""
    if rows is None or other is None:
        raise ValueError("adrg_gate_class, adrg_gate_other and adrg_gate_rows go together: give all or none")
    if n_slots > MAX_GATED_ADRGS:
        raise ValueError(f"the ADRG-level gate holds {MAX_GATED_ADRGS} ADRGs, qy rules and MDCs, the plan has {n_slots}")
    if rows.shape[1] != max(1, (n_slots + 63) // 64) + 1 or rows.shape[0] < 1:
        raise ValueError(f"adrg_gate_rows has shape ({rows.shape[0]}, {rows.shape[1]}), expected "
                         f"(at least 1, {max(1, (n_slots + 63) // 64) + 1}): one bit per ADRG, top-level "
                         f"qy rule and MDC, then an MDC word")
    for name, shape in (("adrg_gate_class", (classes.shape[0], classes.shape[1])),
                        ("adrg_gate_other", (other.shape[0], other.shape[1]))):
        if shape[0] != map_width or shape[1] != 2 or map_width < 1:
            raise ValueError(f"{name} has shape {shape}, expected one row of 2 per code id ({map_width}, 2)")
    return 0


cdef int check_decisions(const int32_t[::1] adrg_decision, const int32_t[:, ::1] nodes, const int32_t[:, ::1] atoms,
                         Py_ssize_t n_adrg, Py_ssize_t n_drg, Py_ssize_t n_sets, Py_ssize_t n_maps,
                         Py_ssize_t n_fields) except -1:
    """The DRG decisions' arrays are in range (see ir.Plan.adrg_decision): roots are nodes or -1, a node's
    targets are lower nodes, -1 or a DRG, an atom is a push test with operands in range."""
    cdef Py_ssize_t i, n_nodes = nodes.shape[0], n_atoms = atoms.shape[0]
    cdef int32_t op, target
    if adrg_decision.shape[0] != n_adrg:
        raise ValueError(f"adrg_decision has {adrg_decision.shape[0]} entries, expected one per ADRG ({n_adrg})")
    if nodes.shape[1] != 3 or atoms.shape[1] != N_OPERANDS:
        raise ValueError(f"decision_nodes / decision_atoms have {nodes.shape[1]} / {atoms.shape[1]} columns, "
                         f"expected 3 / {N_OPERANDS}")
    for i in range(n_adrg):
        if not -1 <= adrg_decision[i] < n_nodes:
            raise ValueError(f"adrg_decision[{i}] = {adrg_decision[i]} is neither -1 nor a node (of {n_nodes})")
    for i in range(n_nodes):
        if not 0 <= nodes[i, 0] < n_atoms:
            raise ValueError(f"decision node {i} tests atom {nodes[i, 0]}, not one of the {n_atoms}")
        for target in (nodes[i, 1], nodes[i, 2]):
            if target >= i or target < -1 - n_drg:
                raise ValueError(f"decision node {i} goes to {target}: not a lower node, -1 or -2 - DRG index")
    for i in range(n_atoms):
        op = atoms[i, 0]
        if op not in (K_IN, K_IN_UNLESS, K_FIELD_CMP, K_FIELD_PRESENT, K_COUNT_ITEMS):
            raise ValueError(f"decision atom {i} has opcode {op}, not a test")
        if op in (K_IN, K_IN_UNLESS, K_COUNT_ITEMS) and not 0 <= atoms[i, 1] < N_SCOPES:
            raise ValueError(f"decision atom {i}: scope {atoms[i, 1]} out of range")
        if op in (K_IN, K_IN_UNLESS) and not 0 <= atoms[i, 2] < n_sets:
            raise ValueError(f"decision atom {i}: set {atoms[i, 2]} out of range")
        if op == K_IN_UNLESS and not (0 <= atoms[i, 3] < n_maps and 0 <= atoms[i, 4] < n_maps):
            raise ValueError(f"decision atom {i}: label map out of range")
        if op in (K_FIELD_CMP, K_FIELD_PRESENT) and not 0 <= atoms[i, 1] < n_fields:
            raise ValueError(f"decision atom {i}: field {atoms[i, 1]} out of range")
        if op in (K_FIELD_CMP, K_COUNT_ITEMS) and not 0 <= atoms[i, 2] < N_CMPS:
            raise ValueError(f"decision atom {i}: comparison {atoms[i, 2]} out of range")
    return 0


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
                const uint64_t[::1] adrg_gate_mask=None, uint64_t adrg_gate_free=0,
                const uint16_t[:, ::1] adrg_gate_class=None, const uint8_t[:, ::1] adrg_gate_other=None,
                const uint64_t[:, ::1] adrg_gate_rows=None,
                uint64_t mdc_entry_exact=0,
                const int32_t[::1] adrg_decision=None, const int32_t[:, ::1] decision_nodes=None,
                const int32_t[:, ::1] decision_atoms=None,
                bint plan_checked=False):
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
    cdef Py_ssize_t n_bulk = 0, block, r
    cdef int32_t first_invalid[ROWS]    # per row of the block: the first bulk-checked `invalid` rule that holds, or -1
    cdef uint8_t holds[ROWS]

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
    if mdc_entry_exact and p.pdx_mdc_mask == NULL:
        raise ValueError("mdc_entry_exact needs pdx_mdc_mask")
    p.mdc_entry_exact = mdc_entry_exact
    p.adrg_gate_class = NULL
    p.adrg_gate_other = NULL
    p.adrg_gate_rows = NULL
    p.n_gate_rows = 0
    p.empty_gate_row = -1
    p.n_slot_words = 0
    p.n_adrg = n_adrg
    p.mdc_slot = 0
    p.qy_positions = 0
    p.mdc_always = 0
    p.n_qy_spans = 0
    p.n_always_spans = 0
    p.adrg_decision = NULL
    p.decision_nodes = NULL
    p.decision_atoms = NULL
    p.mdc_qy_start = NULL
    p.qy_cond = NULL
    p.qy_mdc = NULL
    p.qy_drg = NULL
    p.adrg_qy = NULL
    p.qy_adrg_bitmap = False
    for k in range(ADRG_WORDS):
        p.qy_adrg_bits[k] = 0
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
        for k in range(min(n_mdc, 64)):
            if mdc_qy_start[k] < mdc_qy_start[k + 1]:
                p.qy_positions |= (<uint64_t>1) << k
        p.adrg_qy = &adrg_qy[0] if n_adrg > 0 else _NO_INT32
        if n_adrg <= MAX_GATED_ADRGS:
            p.qy_adrg_bitmap = True
            for k in range(n_adrg):
                if adrg_qy[k] != NOT_QY:
                    p.qy_adrg_bits[k >> 6] |= (<uint64_t>1) << (k & 63)

    decision_given = [adrg_decision is not None, decision_nodes is not None, decision_atoms is not None]
    if any(decision_given):
        if not all(decision_given):
            raise ValueError("adrg_decision, decision_nodes and decision_atoms go together: give all or none")
        if not plan_checked:
            check_decisions(adrg_decision, decision_nodes, decision_atoms, n_adrg, n_drg, n_sets, n_maps,
                            fields.shape[0])
        p.adrg_decision = &adrg_decision[0] if n_adrg > 0 else _NO_INT32
        p.decision_nodes = &decision_nodes[0, 0] if decision_nodes.shape[0] > 0 else _NO_INT32
        p.decision_atoms = &decision_atoms[0, 0] if decision_atoms.shape[0] > 0 else _NO_INT32

    if adrg_gate_class is not None:
        # slots: the ADRGs, the top-level qy rules (those before the MDCs' pseudo-ADRGs), the MDC entries
        p.mdc_slot = n_adrg + (mdc_qy_start[n_mdc + 1] if p.mdc_qy_start != NULL else 0)
        check_adrg_gate(adrg_gate_class, adrg_gate_other, adrg_gate_rows, p.mdc_slot + n_mdc, map_width)
        p.adrg_gate_class = &adrg_gate_class[0, 0]
        p.adrg_gate_other = &adrg_gate_other[0, 0]
        p.adrg_gate_rows = &adrg_gate_rows[0, 0]
        p.n_gate_rows = adrg_gate_rows.shape[0]
        p.n_slot_words = adrg_gate_rows.shape[1] - 1
        for k in range(1, p.n_gate_rows):
            if not any(adrg_gate_rows[k, i] for i in range(p.n_slot_words)):
                p.empty_gate_row = k
                break
        for k in range(min(n_mdc, 64)):
            i = p.cond_start[p.mdc_cond[k]]
            if (p.cond_start[p.mdc_cond[k] + 1] == i + 1 and p.program[i * N_OPERANDS] == K_CONST
                    and p.program[i * N_OPERANDS + 1] != 0):
                p.mdc_always |= (<uint64_t>1) << k
        for k in range(min(n_mdc, 64)):
            if (p.qy_positions >> k) & 1:
                set_span(&p.qy_spans[p.n_qy_spans], k, n_adrg + p.mdc_qy_start[k], n_adrg + p.mdc_qy_start[k + 1])
                p.n_qy_spans += 1
            elif (p.mdc_always >> k) & 1:
                set_span(&p.always_spans[p.n_always_spans], k, p.mdc_adrg_start[k], p.mdc_adrg_start[k + 1])
                p.n_always_spans += 1
    elif adrg_gate_rows is not None or adrg_gate_other is not None:
        raise ValueError("adrg_gate_class, adrg_gate_other and adrg_gate_rows go together: give all or none")

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

    # The leading `invalid` rules that test fields and item counts only are checked in bulk, ROWS rows
    # at a time (rows_hold); group_one starts at the first other one.
    while n_bulk < p.n_invalid and rows_evaluable(p.program, p.cond_start[p.invalid_cond[n_bulk]],
                                                  p.cond_start[p.invalid_cond[n_bulk] + 1]):
        n_bulk += 1
    try:
        with nogil:
            for i in range(start, stop):
                if n_bulk > 0 and (i - start) % ROWS == 0:
                    block = min(<Py_ssize_t>ROWS, stop - i)
                    for j in range(block):
                        first_invalid[j] = -1
                    for r in range(n_bulk):
                        rows_hold(&p, p.invalid_cond[r], field_base + i, n, dx_off + i, px_off + i, block, holds)
                        for j in range(block):
                            if first_invalid[j] < 0 and holds[j]:
                                first_invalid[j] = <int32_t>r
                if skip_p[i]:
                    st[i] = ST_INVALID
                    o_mdc[i] = -1
                    o_adrg[i] = -1
                    o_drg[i] = -1
                    o_reason[i] = -1
                    continue
                if n_bulk > 0 and first_invalid[(i - start) % ROWS] >= 0:
                    set_result(st + i, o_mdc + i, o_adrg + i, o_drg + i, o_reason + i, ST_INVALID, -1, -1, -1,
                               first_invalid[(i - start) % ROWS])
                    continue
                cs.dx = dx_base + dx_off[i]
                cs.n_dx = <Py_ssize_t>(dx_off[i + 1] - dx_off[i])
                cs.px = px_base + px_off[i]
                cs.n_px = <Py_ssize_t>(px_off[i + 1] - px_off[i])
                cs.fields = field_base + i
                group_one(&p, &cs, st + i, o_mdc + i, o_adrg + i, o_drg + i, o_reason + i, behaviour, n_bulk)
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
                    group_one(&p, &moved, &retry_status, &retry_mdc, &retry_adrg, &retry_drg, &retry_reason, behaviour, 0)
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


# =============================================================================================
# One pass over a batch's text: codes interned, fields parsed, every case checked.
#
# Text arrives as Arrow string_view arrays (Polars' own layout, shared without a copy): 16 bytes
# per string, the length first; up to 12 bytes sit inline, longer ones in a data buffer
# (index at byte 8, offset at byte 12). `views` starts at the array's first string.

from libc.string cimport memcmp, memcpy


cdef struct TextC:
    const uint8_t* views
    const uint8_t** buffers
    const uint8_t* validity         # NULL: no nulls
    Py_ssize_t bit_offset           # the array's offset into validity


cdef inline const uint8_t* text_at(const TextC* t, Py_ssize_t i, int32_t* length) noexcept nogil:
    """String i (a null string reads as empty)."""
    cdef const uint8_t* v = t.views + 16 * i
    cdef int32_t n, buf, off
    cdef Py_ssize_t b
    if t.validity != NULL:
        b = t.bit_offset + i
        if not (t.validity[b >> 3] >> (b & 7)) & 1:
            length[0] = 0
            return v
    memcpy(&n, v, 4)
    length[0] = n
    if n <= 12:
        return v + 4
    memcpy(&buf, v + 8, 4)
    memcpy(&off, v + 12, 4)
    return t.buffers[buf] + off


cdef class _Text:
    """A string_view array's buffers held for one call (keeps the memoryviews alive)."""
    cdef TextC c
    cdef list held
    cdef const uint8_t** ptrs

    def __cinit__(self, views, buffers, validity, Py_ssize_t bit_offset, Py_ssize_t n):
        cdef const uint8_t[::1] mv
        cdef Py_ssize_t k
        self.held = []
        self.ptrs = <const uint8_t**>malloc((len(buffers) + 1) * sizeof(uint8_t*))
        if self.ptrs == NULL:
            raise MemoryError()
        mv = views
        if mv.shape[0] < 16 * n:
            raise ValueError(f"views hold {mv.shape[0] // 16} strings, expected {n}")
        self.held.append(mv)
        self.c.views = &mv[0] if mv.shape[0] > 0 else <const uint8_t*>_NO_CODES
        for k, buf in enumerate(buffers):
            mv = buf
            self.held.append(mv)
            self.ptrs[k] = &mv[0] if mv.shape[0] > 0 else <const uint8_t*>_NO_CODES
        self.c.buffers = self.ptrs
        self.c.validity = NULL
        self.c.bit_offset = bit_offset
        if validity is not None:
            mv = validity
            self.held.append(mv)
            if (bit_offset + n + 7) // 8 > mv.shape[0]:
                raise ValueError("validity bitmap too short")
            self.c.validity = &mv[0] if mv.shape[0] > 0 else NULL

    def __dealloc__(self):
        free(self.ptrs)


include "_code_keys.pxi"


def code_table(const uint8_t[::1] data not None, const int64_t[::1] offsets not None):
    """Open-addressing hash table over the plan's codes (code id - 1 = index into offsets):
    uint64[power of two >= 2 * codes, 3], each slot the code's key words (its string_view image,
    so a code of up to 12 bytes is compared without reading its bytes) and its id (0: empty).
    See `intern_codes`."""
    import numpy as np
    cdef Py_ssize_t n = offsets.shape[0] - 1, size = 16, i
    while size < 2 * n + 2:
        size *= 2
    table = np.zeros((size, SLOT_WIDTH), dtype=np.uint64)
    cdef uint64_t[:, ::1] t = table
    cdef uint64_t slot, mask = size - 1, a, b
    cdef const uint8_t* s
    cdef int32_t length
    for i in range(n):
        s = &data[offsets[i]] if offsets[i + 1] > offsets[i] else <const uint8_t*>_NO_CODES
        length = <int32_t>(offsets[i + 1] - offsets[i])
        view_key(s, length, &a, &b)
        slot = string_hash(s, length) & mask
        while t[slot, SLOT_ID] != 0:
            slot = (slot + 1) & mask
        t[slot, SLOT_A] = a
        t[slot, SLOT_B] = b
        t[slot, SLOT_ID] = i + 1
    return table


cdef inline void key_of(const TextC* t, Py_ssize_t i, uint64_t* a, uint64_t* b, int32_t* length,
                        const uint8_t** s) noexcept nogil:
    """String i's key words, as view_key and string_hash give them (b: its FNV-1a hash when longer
    than 12 bytes), its length and its bytes. A string of up to 12 bytes sits in its view, whose
    16 bytes are the key once the bytes past the string are cleared (on a little-endian machine)."""
    cdef const uint8_t* v
    cdef int32_t n
    cdef Py_ssize_t bit
    if not LITTLE_ENDIAN:
        s[0] = text_at(t, i, length)
        view_key(s[0], length[0], a, b)
        if length[0] > 12:
            b[0] = fnv1a(s[0], length[0])
        return
    v = t.views + 16 * i
    if t.validity != NULL:
        bit = t.bit_offset + i
        if not (t.validity[bit >> 3] >> (bit & 7)) & 1:   # null: as ""
            a[0] = 0
            b[0] = 0
            length[0] = 0
            s[0] = v
            return
    memcpy(&n, v, 4)
    length[0] = n
    memcpy(a, v, 8)
    if n <= 12:
        s[0] = v + 4
        memcpy(b, v + 8, 8)
        if n < 4:
            a[0] &= ((<uint64_t>1) << (8 * (4 + n))) - 1
        if n < 12:
            b[0] &= ((<uint64_t>1) << (8 * (n - 4))) - 1 if n > 4 else 0
    else:
        s[0] = text_at(t, i, length)
        b[0] = fnv1a(s[0], n)


def intern_codes(const uint64_t[:, ::1] table not None, const uint8_t[::1] data not None,
                 const int64_t[::1] offsets not None,
                 views, buffers, validity, Py_ssize_t bit_offset, uint32_t[::1] out not None):
    """out[j] = the code id of string j (0: not a code of the plan), looked up in `code_table`."""
    cdef Py_ssize_t n = out.shape[0], j
    cdef _Text text = _Text(views, buffers, validity, bit_offset, n)
    cdef CodeTableC codes
    cdef uint64_t keys_a[INTERN_AHEAD]
    cdef uint64_t keys_b[INTERN_AHEAD]
    cdef int32_t lengths[INTERN_AHEAD]
    cdef const uint8_t* strings[INTERN_AHEAD]
    cdef Py_ssize_t k, m
    code_table_c(&codes, table, data, offsets)
    with nogil:
        j = 0
        while j < n:   # in rounds of INTERN_AHEAD strings (intern_round)
            m = min(INTERN_AHEAD, n - j)
            for k in range(m):
                key_of(&text.c, j + k, &keys_a[k], &keys_b[k], &lengths[k], &strings[k])
            intern_round(&codes, m, keys_a, keys_b, lengths, strings, &out[j])
            j += m


cdef enum:
    FIELD_ABSENT = 0
    FIELD_OK = 1
    FIELD_BAD = 2        # text that is no usable number
    FIELD_SLOW = 3       # not a plain integer: the full reading rules decide (grouper.engine.encode)


def parse_ints(views, buffers, validity, Py_ssize_t bit_offset, int32_t[::1] out not None,
               uint8_t[::1] state not None):
    """Plain integers (`-?[0-9]{1,18}`) straight into out (FIELD_OK; FIELD_BAD outside int32,
    INT32_MIN excluded); empty or null: FIELD_ABSENT; anything else FIELD_SLOW. out is MISSING
    unless FIELD_OK."""
    cdef Py_ssize_t n = out.shape[0], i
    cdef _Text text = _Text(views, buffers, validity, bit_offset, n)
    cdef const uint8_t* s
    cdef int32_t length, k, start
    cdef int64_t value
    cdef bint negative
    if state.shape[0] != n:
        raise ValueError("state and out differ in length")
    with nogil:
        for i in range(n):
            s = text_at(&text.c, i, &length)
            out[i] = MISSING
            if length == 0:
                state[i] = FIELD_ABSENT
                continue
            negative = s[0] == 45       # '-'
            start = 1 if negative else 0
            if length - start < 1 or length - start > 18:
                state[i] = FIELD_SLOW
                continue
            value = 0
            for k in range(start, length):
                if s[k] < 48 or s[k] > 57:
                    break
                value = value * 10 + (s[k] - 48)
            else:
                if negative:
                    value = -value
                if value > INT32_MIN and value <= 2147483647:
                    out[i] = <int32_t>value
                    state[i] = FIELD_OK
                else:
                    state[i] = FIELD_BAD
                continue
            state[i] = FIELD_SLOW


# ---- the checks of one case (grouper.validate; ir.CHECKS gives their order, mirrored here)

cdef enum:
    CH_MALFORMED_LINE = 0
    CH_MALFORMED_FIELD = 1      # + field index 0..5 (sex, age, age_days, weight, los, discharge)
    CH_MISSING_DX = 7
    CH_IMPLAUSIBLE_AGE = 8
    CH_IMPLAUSIBLE_AGE_DAYS = 9
    CH_IMPLAUSIBLE_WEIGHT = 10
    CH_IMPLAUSIBLE_LOS = 11
    CH_UNKNOWN_DISCHARGE = 12
    CH_BAD_DX_FORMAT = 13
    CH_BAD_PROC_FORMAT = 14
    CH_UNKNOWN_DX = 15
    CH_UNKNOWN_PROC = 16
    CH_NOT_PRINCIPAL_DX = 17
    CH_DUPLICATE_DX = 18
    CH_DUPLICATE_PROC = 19
    N_CHECKS = 20

cdef enum:
    F_DX_FORMAT = 1
    F_PROC_FORMAT = 2
    F_NOT_PRINCIPAL = 4
    F_DX_DICT = 8
    F_PROC_DICT = 16

cdef enum:
    FLD_SEX = 0
    FLD_AGE = 1
    FLD_AGE_DAYS = 2
    FLD_WEIGHT = 3
    FLD_LOS = 4
    FLD_DISCHARGE = 5


def _check_check_constants():
    names = _ir.CHECKS
    expected = {"malformed_line": CH_MALFORMED_LINE, "missing_dx": CH_MISSING_DX,
                "implausible_age": CH_IMPLAUSIBLE_AGE, "implausible_age_days": CH_IMPLAUSIBLE_AGE_DAYS,
                "implausible_weight": CH_IMPLAUSIBLE_WEIGHT, "implausible_los": CH_IMPLAUSIBLE_LOS,
                "unknown_discharge": CH_UNKNOWN_DISCHARGE, "bad_dx_format": CH_BAD_DX_FORMAT,
                "bad_proc_format": CH_BAD_PROC_FORMAT, "unknown_dx": CH_UNKNOWN_DX, "unknown_proc": CH_UNKNOWN_PROC,
                "not_principal_dx": CH_NOT_PRINCIPAL_DX, "duplicate_dx": CH_DUPLICATE_DX,
                "duplicate_proc": CH_DUPLICATE_PROC}
    expected.update({f"malformed_{_ir.FIELDS[f]}": CH_MALFORMED_FIELD + f for f in range(6)})
    flags = {"DX_FORMAT": F_DX_FORMAT, "PROC_FORMAT": F_PROC_FORMAT, "NOT_PRINCIPAL": F_NOT_PRINCIPAL,
             "DX_DICT": F_DX_DICT, "PROC_DICT": F_PROC_DICT}
    if (len(names) != N_CHECKS or any(names.index(k) != v for k, v in expected.items())
            or any(int(getattr(_ir, f"CODE_{k}")) != v for k, v in flags.items())
            or _ir.FIELD_OK != FIELD_OK or _ir.FIELD_BAD != FIELD_BAD):
        raise ImportError("grouper._kernel is out of date with grouper/engine/ir.py (CHECKS, CODE_* or FIELD_*); "
                          "rebuild it with `pip install --no-build-isolation -e .`")


_check_check_constants()


cdef inline bint digit(uint8_t c) noexcept nogil:
    return 48 <= c <= 57


cdef inline bint shaped(const uint8_t* s, int32_t n, const char* shape) noexcept nogil:
    """Whether s is exactly `shape`: 'd' a digit 0-9, 'U' a letter A-Z, any other character itself."""
    cdef int32_t k
    for k in range(n):
        if shape[k] == 0:
            return False
        if shape[k] == b'd':
            if not digit(s[k]):
                return False
        elif shape[k] == b'U':
            if not 65 <= s[k] <= 90:
                return False
        elif s[k] != <uint8_t>shape[k]:
            return False
    return shape[n] == 0


cdef inline bint dx_format(const uint8_t* s, int32_t n) noexcept nogil:
    """ir.DX_FORMAT: Udd. then ddd or xdd, then optionally xddd, then optionally +Udd* or +Udd.d*."""
    cdef int32_t p = 7
    if n < 7 or not shaped(s, 4, b"Udd.") or not (shaped(s + 4, 3, b"ddd") or shaped(s + 4, 3, b"xdd")):
        return False
    if n - p >= 4 and shaped(s + p, 4, b"xddd"):
        p += 4
    return p == n or shaped(s + p, n - p, b"+Udd*") or shaped(s + p, n - p, b"+Udd.d*")


cdef inline bint proc_format(const uint8_t* s, int32_t n) noexcept nogil:
    """ir.PROC_FORMAT: dd. then one of dddd, ddddxddd, dxdd, dxddxddd, ddddd, dddUd, dddxdddd."""
    if n < 3 or not shaped(s, 3, b"dd."):
        return False
    s += 3
    n -= 3
    return (shaped(s, n, b"dddd") or shaped(s, n, b"ddddxddd") or shaped(s, n, b"dxdd")
            or shaped(s, n, b"dxddxddd") or shaped(s, n, b"ddddd") or shaped(s, n, b"dddUd")
            or shaped(s, n, b"dddxdddd"))


cdef inline bint not_principal(const uint8_t* s, int32_t n) noexcept nogil:
    """ir.NOT_PRINCIPAL: an asterisk code on its own (ends in *, no +) or an external cause V01-Y98."""
    cdef int32_t k
    if n >= 1 and s[n - 1] == b'*':
        for k in range(n):
            if s[k] == b'+':
                break
        else:
            return True
    if n < 3 or not digit(s[2]):
        return False
    if s[0] == b'V':
        return (s[1] == b'0' and s[2] != b'0') or (49 <= s[1] <= 57)
    if s[0] == b'W' or s[0] == b'X':
        return digit(s[1])
    if s[0] == b'Y':
        return (48 <= s[1] <= 56) or (s[1] == b'9' and s[2] != b'9')
    return False


def text_flags(views, buffers, validity, Py_ssize_t bit_offset, uint8_t[::1] out not None):
    """out[j] = F_DX_FORMAT | F_PROC_FORMAT | F_NOT_PRINCIPAL as string j matches (the same
    matchers `check_cases` applies to unknown codes; tests hold them to the regular expressions)."""
    cdef Py_ssize_t n = out.shape[0], j
    cdef _Text text = _Text(views, buffers, validity, bit_offset, n)
    cdef const uint8_t* s
    cdef int32_t length
    with nogil:
        for j in range(n):
            s = text_at(&text.c, j, &length)
            out[j] = ((F_DX_FORMAT if dx_format(s, length) else 0) | (F_PROC_FORMAT if proc_format(s, length) else 0)
                      | (F_NOT_PRINCIPAL if not_principal(s, length) else 0))


cdef struct ProblemC:
    uint32_t row
    int32_t check
    int64_t ref


cdef struct Found:
    ProblemC* items
    Py_ssize_t n
    Py_ssize_t size
    bint failed


cdef inline void emit(Found* f, Py_ssize_t row, int32_t check, int64_t ref) noexcept nogil:
    cdef ProblemC* grown
    if f.n == f.size:
        grown = <ProblemC*>realloc(f.items, (2 * f.size + 64) * sizeof(ProblemC))
        if grown == NULL:
            f.failed = True
            return
        f.items = grown
        f.size = 2 * f.size + 64
    f.items[f.n].row = <uint32_t>row
    f.items[f.n].check = check
    f.items[f.n].ref = ref
    f.n += 1


cdef struct ListC:                  # one case's diagnoses or procedures
    const uint32_t* ids
    int64_t first                   # index of its first item in the batch's items
    Py_ssize_t n
    const TextC* text
    uint32_t n_known                # ids 1..n_known are the plan's codes (higher: prefix ids, unknown here)
    const uint8_t* code_flags


cdef inline bint known(const ListC* l, Py_ssize_t j) noexcept nogil:
    return 1 <= l.ids[j] <= l.n_known


cdef inline bint same_code(const ListC* l, Py_ssize_t j, Py_ssize_t k) noexcept nogil:
    """Items j and k hold the same text (known codes by id, others byte by byte)."""
    cdef int32_t nj, nk
    cdef const uint8_t* sj
    cdef const uint8_t* sk
    if known(l, j) or known(l, k):
        return l.ids[j] == l.ids[k]
    sj = text_at(l.text, l.first + j, &nj)
    sk = text_at(l.text, l.first + k, &nk)
    return nj == nk and memcmp(sj, sk, nj) == 0


cdef inline int32_t item_length(const ListC* l, Py_ssize_t j) noexcept nogil:
    cdef int32_t n
    text_at(l.text, l.first + j, &n)
    return n


cdef inline bint has_flag(const ListC* l, Py_ssize_t j, uint8_t flag) noexcept nogil:
    """A code flag of item j: the plan's table for known codes, the text matchers for others
    (dictionary flags of unknown codes: those of id 0)."""
    cdef int32_t n
    cdef const uint8_t* s
    if known(l, j) or flag & (F_DX_DICT | F_PROC_DICT):
        return l.code_flags[l.ids[j] if known(l, j) else 0] & flag
    s = text_at(l.text, l.first + j, &n)
    if flag == F_DX_FORMAT:
        return dx_format(s, n)
    if flag == F_PROC_FORMAT:
        return proc_format(s, n)
    return not_principal(s, n)


cdef inline bint bad_format(const ListC* l, Py_ssize_t j, bint is_dx) noexcept nogil:
    """An item in the wrong format; an empty item is a stray separator, except an empty principal
    diagnosis (missing_dx)."""
    cdef uint8_t flag = F_DX_FORMAT if is_dx else F_PROC_FORMAT
    if known(l, j) and l.code_flags[l.ids[j]] & flag:
        return False                # a plan code in the format (never empty): its text need not be read
    if item_length(l, j) == 0:
        return j > 0 or not is_dx
    return not has_flag(l, j, flag)


cdef inline bint unknown_code(const ListC* l, Py_ssize_t j, bint is_dx) noexcept nogil:
    cdef uint8_t flag = F_DX_DICT if is_dx else F_PROC_DICT
    if known(l, j) and l.code_flags[l.ids[j]] & flag:
        return False                # in the dictionary whatever its text: not read
    return item_length(l, j) > 0 and not has_flag(l, j, flag)


cdef inline bint reported_before(const ListC* l, Py_ssize_t j, bint is_dx, int which) noexcept nogil:
    """Whether an earlier item with the same text was already reported for this check (each
    (case, check, code) is reported once). which: 0 format, 1 dictionary."""
    cdef Py_ssize_t k
    for k in range(j):
        if same_code(l, j, k) and (bad_format(l, k, is_dx) if which == 0 else unknown_code(l, k, is_dx)):
            return True
    return False


cdef inline bint all_flagged(const ListC* l, uint8_t flags) noexcept nogil:
    """Every item is a plan code with all of `flags` (so neither a format nor a dictionary problem)."""
    cdef Py_ssize_t j
    for j in range(l.n):
        if not known(l, j) or (l.code_flags[l.ids[j]] & flags) != flags:
            return False
    return True


cdef void report_codes(Found* f, Py_ssize_t row, const ListC* l, int32_t check, bint is_dx, int which) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(l.n):
        if (bad_format(l, j, is_dx) if which == 0 else unknown_code(l, j, is_dx)) and not reported_before(l, j, is_dx, which):
            emit(f, row, check, l.first + j)


cdef inline bint may_repeat(const ListC* l) noexcept nogil:
    """Whether a list may hold a code twice: a plan code's id twice, or two other items (compared
    by text). Most lists do neither, and report_duplicates is not called for them."""
    cdef Py_ssize_t j, k, others = 0
    for j in range(l.n):
        if not known(l, j):
            others += 1
            if others >= 2:
                return True
            continue
        for k in range(j):
            if l.ids[k] == l.ids[j]:
                return True
    return False


cdef void report_duplicates(Found* f, Py_ssize_t row, const ListC* l, int32_t check) noexcept nogil:
    """Codes listed more than once: known codes by ascending id, then other codes in order of
    first appearance; each once. Empty items are not codes."""
    cdef Py_ssize_t j, k, best
    cdef uint32_t last = 0, lowest
    while True:                         # known codes: the next higher repeated id
        best = -1
        lowest = 0
        for j in range(l.n):
            if not known(l, j) or l.ids[j] <= last or (best >= 0 and l.ids[j] >= lowest):
                continue
            for k in range(j):
                if l.ids[k] == l.ids[j]:
                    best = j
                    lowest = l.ids[j]
                    break
            else:
                for k in range(j + 1, l.n):
                    if l.ids[k] == l.ids[j]:
                        best = j
                        lowest = l.ids[j]
                        break
        if best < 0:
            break
        emit(f, row, check, l.first + best)
        last = lowest
    for j in range(l.n):
        if known(l, j) or item_length(l, j) == 0:
            continue
        for k in range(j):
            if not known(l, k) and same_code(l, j, k):
                break
        else:
            for k in range(j + 1, l.n):
                if not known(l, k) and same_code(l, j, k):
                    emit(f, row, check, l.first + j)
                    break


cdef inline bint present(const uint8_t* state, Py_ssize_t n, int field, Py_ssize_t i) noexcept nogil:
    return state[<Py_ssize_t>field * n + i] == FIELD_OK


cdef void check_one(Found* f, Py_ssize_t i, const ListC* dx, const ListC* px, const int32_t* fields,
                    const uint8_t* state, Py_ssize_t n, const uint8_t* on) noexcept nogil:
    """The built-in checks of case i, in ir.CHECKS order (a malformed line: only that)."""
    cdef int k
    cdef int64_t age, days, value
    cdef bint has_age, has_days
    for k in range(6):
        if on[CH_MALFORMED_FIELD + k] and state[<Py_ssize_t>k * n + i] == FIELD_BAD:
            emit(f, i, CH_MALFORMED_FIELD + k, -1)
    if on[CH_MISSING_DX] and (dx.n == 0 or item_length(dx, 0) == 0):
        emit(f, i, CH_MISSING_DX, -1)
    age = fields[FLD_AGE * n + i]
    days = fields[FLD_AGE_DAYS * n + i]
    has_age = present(state, n, FLD_AGE, i)
    has_days = present(state, n, FLD_AGE_DAYS, i)
    if on[CH_IMPLAUSIBLE_AGE] and has_age and (age < 0 or age > 150):
        emit(f, i, CH_IMPLAUSIBLE_AGE, -1)
    if on[CH_IMPLAUSIBLE_AGE_DAYS] and has_days and (
            days < 0 or (has_age and age > 0 and (days < age * 365 or days > (age + 1) * 366))
            or (has_age and age == 0 and days > 366)):
        emit(f, i, CH_IMPLAUSIBLE_AGE_DAYS, -1)
    value = fields[FLD_WEIGHT * n + i]
    if on[CH_IMPLAUSIBLE_WEIGHT] and present(state, n, FLD_WEIGHT, i) and (value < 100 or value > 10000):
        emit(f, i, CH_IMPLAUSIBLE_WEIGHT, -1)
    value = fields[FLD_LOS * n + i]
    if on[CH_IMPLAUSIBLE_LOS] and present(state, n, FLD_LOS, i) and value < 0:
        emit(f, i, CH_IMPLAUSIBLE_LOS, -1)
    value = fields[FLD_DISCHARGE * n + i]
    if on[CH_UNKNOWN_DISCHARGE] and present(state, n, FLD_DISCHARGE, i) and not (1 <= value <= 5 or value == 9):
        emit(f, i, CH_UNKNOWN_DISCHARGE, -1)
    # most lists hold only plan codes in the format and the dictionary: one look at their flags
    cdef bint dx_plain = all_flagged(dx, (F_DX_FORMAT if on[CH_BAD_DX_FORMAT] else 0) | (F_DX_DICT if on[CH_UNKNOWN_DX] else 0))
    cdef bint px_plain = all_flagged(px, (F_PROC_FORMAT if on[CH_BAD_PROC_FORMAT] else 0)
                                     | (F_PROC_DICT if on[CH_UNKNOWN_PROC] else 0))
    if on[CH_BAD_DX_FORMAT] and not dx_plain:
        report_codes(f, i, dx, CH_BAD_DX_FORMAT, True, 0)
    if on[CH_BAD_PROC_FORMAT] and not px_plain:
        report_codes(f, i, px, CH_BAD_PROC_FORMAT, False, 0)
    if on[CH_UNKNOWN_DX] and not dx_plain:
        report_codes(f, i, dx, CH_UNKNOWN_DX, True, 1)
    if on[CH_UNKNOWN_PROC] and not px_plain:
        report_codes(f, i, px, CH_UNKNOWN_PROC, False, 1)
    if on[CH_NOT_PRINCIPAL_DX] and dx.n > 0 and item_length(dx, 0) > 0 and has_flag(dx, 0, F_NOT_PRINCIPAL):
        emit(f, i, CH_NOT_PRINCIPAL_DX, dx.first)
    if on[CH_DUPLICATE_DX] and may_repeat(dx):
        report_duplicates(f, i, dx, CH_DUPLICATE_DX)
    if on[CH_DUPLICATE_PROC] and may_repeat(px):
        report_duplicates(f, i, px, CH_DUPLICATE_PROC)


def check_cases(const uint64_t[:, ::1] set_bits not None,
                const uint32_t[:, ::1] label_maps not None,
                const int32_t[:, ::1] program not None,
                const int32_t[::1] cond_start not None,
                const int32_t[::1] warn_cond not None,
                const int64_t[::1] dx_offsets not None, const uint32_t[::1] dx_codes not None, tuple dx_text not None,
                const int64_t[::1] px_offsets not None, const uint32_t[::1] px_codes not None, tuple px_text not None,
                const int32_t[:, ::1] fields not None, const uint8_t[:, ::1] field_state not None,
                const uint8_t[::1] read_problem not None, const uint8_t[::1] code_flags not None,
                Py_ssize_t n_known, const uint8_t[::1] enabled not None,
                Py_ssize_t start=0, Py_ssize_t stop=-1):
    """Every problem of cases start:stop, in order: (row uint32, check int32, ref int64) arrays.

    check: an index of ir.CHECKS, or len(ir.CHECKS) + w for the scheme's warn rule w (warn_cond[w],
    tested on every case); ref: the item (index into the batch's dx or px items) a code problem is
    about, else -1. A case with read_problem set gets malformed_line only. Each (case, check, code)
    once; `enabled[c]`: whether check c runs. dx_text / px_text: (views, buffers, validity,
    bit_offset) of the items' strings (string_view). code_flags[id]: ir.CODE_* bits of code id
    (index 0: what unknown codes get for the dictionaries). Runs without the GIL.
    """
    import numpy as np
    cdef Py_ssize_t n = read_problem.shape[0], i, w, n_cond = cond_start.shape[0] - 1 if cond_start.shape[0] else 0
    cdef Py_ssize_t n_warn = warn_cond.shape[0]
    cdef _Text dx_t = _Text(*dx_text, dx_codes.shape[0])
    cdef _Text px_t = _Text(*px_text, px_codes.shape[0])
    cdef PlanC p
    cdef CaseC cs
    cdef ListC dx, px
    cdef Found found
    cdef int64_t code_bound = 1 << 62
    cdef const uint8_t* on = &enabled[0]
    cdef Py_ssize_t k
    cdef uint32_t[::1] out_rows
    cdef int32_t[::1] out_checks
    cdef int64_t[::1] out_refs
    if stop < 0:
        stop = n
    if start < 0 or stop > n or start > stop:
        raise ValueError(f"rows {start}:{stop} are outside the batch of {n} rows")
    if (dx_offsets.shape[0] != n + 1 or px_offsets.shape[0] != n + 1 or fields.shape[1] != n
            or field_state.shape[1] != n or field_state.shape[0] < 6 or fields.shape[0] < 6):
        raise ValueError("dx_offsets, px_offsets, fields and field_state do not fit read_problem's rows")
    if enabled.shape[0] != N_CHECKS:
        raise ValueError(f"enabled has {enabled.shape[0]} entries, expected {N_CHECKS}")
    if code_flags.shape[0] < n_known + 1:
        raise ValueError(f"code_flags has {code_flags.shape[0]} entries, expected {n_known + 1}")
    check_cond_refs("warn_cond", warn_cond, n_cond, False)
    for w in range(n_warn):
        k = warn_cond[w]
        check_condition(program, k, cond_start[k], cond_start[k + 1], set_bits.shape[0], label_maps.shape[0],
                        fields.shape[0])
    if set_bits.shape[0] > 0:
        code_bound = min(code_bound, 64 * set_bits.shape[1])
    if label_maps.shape[0] > 0:
        code_bound = min(code_bound, label_maps.shape[1])
    no_skip = np.zeros(n, np.uint8)
    cdef const uint8_t[::1] none_skipped = no_skip
    if n_warn:
        check_rows_or_raise("dx", dx_offsets, dx_codes, &none_skipped[0] if n else NULL, start, stop, code_bound, "the plan")
        check_rows_or_raise("px", px_offsets, px_codes, &none_skipped[0] if n else NULL, start, stop, code_bound, "the plan")
    else:
        check_rows_or_raise("dx", dx_offsets, dx_codes, &none_skipped[0] if n else NULL, start, stop, 1 << 62, "")
        check_rows_or_raise("px", px_offsets, px_codes, &none_skipped[0] if n else NULL, start, stop, 1 << 62, "")
    p.set_bits = &set_bits[0, 0] if set_bits.shape[0] * set_bits.shape[1] > 0 else _NO_WORDS
    p.n_words = set_bits.shape[1]
    p.label_maps = &label_maps[0, 0] if label_maps.shape[0] * label_maps.shape[1] > 0 else _NO_CODES
    p.map_width = label_maps.shape[1]
    p.program = &program[0, 0] if program.shape[0] * program.shape[1] > 0 else _NO_INT32
    p.cond_start = &cond_start[0] if cond_start.shape[0] > 0 else _NO_INT32
    dx.text = &dx_t.c
    px.text = &px_t.c
    dx.n_known = px.n_known = <uint32_t>n_known
    dx.code_flags = px.code_flags = &code_flags[0]
    cdef const uint32_t* dx_base = &dx_codes[0] if dx_codes.shape[0] > 0 else _NO_CODES
    cdef const uint32_t* px_base = &px_codes[0] if px_codes.shape[0] > 0 else _NO_CODES
    cdef const int32_t* field_base = &fields[0, 0] if n > 0 else _NO_INT32
    cdef const uint8_t* state_base = &field_state[0, 0] if n > 0 else <const uint8_t*>_NO_CODES
    found.items = NULL
    found.n = found.size = 0
    found.failed = False
    cs.field_stride = n
    try:
        with nogil:
            for i in range(start, stop):
                if read_problem[i]:
                    emit(&found, i, CH_MALFORMED_LINE, -1)
                    continue
                dx.first = dx_offsets[i]
                dx.n = <Py_ssize_t>(dx_offsets[i + 1] - dx_offsets[i])
                dx.ids = dx_base + dx.first
                px.first = px_offsets[i]
                px.n = <Py_ssize_t>(px_offsets[i + 1] - px_offsets[i])
                px.ids = px_base + px.first
                check_one(&found, i, &dx, &px, field_base, state_base, n, on)
                if n_warn:
                    cs.dx = dx.ids
                    cs.n_dx = dx.n
                    cs.px = px.ids
                    cs.n_px = px.n
                    cs.fields = field_base + i
                    for w in range(n_warn):
                        if eval_condition(&p, warn_cond[w], &cs):
                            emit(&found, i, <int32_t>(N_CHECKS + w), -1)
        if found.failed:
            raise MemoryError()
        rows = np.empty(found.n, np.uint32)
        checks = np.empty(found.n, np.int32)
        refs = np.empty(found.n, np.int64)
        out_rows, out_checks, out_refs = rows, checks, refs
        for i in range(found.n):
            out_rows[i] = found.items[i].row
            out_checks[i] = found.items[i].check
            out_refs[i] = found.items[i].ref
        return rows, checks, refs
    finally:
        free(found.items)
