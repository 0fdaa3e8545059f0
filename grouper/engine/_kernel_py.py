"""Reference kernel in plain Python: the readable definition of what ext/_kernel.pyx computes.

Same signature and outputs as `grouper._kernel.group_cases`; tests check the two agree.
Slow (a Python loop per case): use it for tests and explanations, not for batches.
"""
from __future__ import annotations

import re

from .ir import (
    ATTEMPT_ALONE, DX, EQ, GE, GROUPED, GT, INVALID, LAST_ENTERED, LE, LT, MISSING, NE, NOT_QY, NO_ADRG, NO_CONDITION,
    NO_DRG, NO_DRG_STATUS, OP_AND, OP_CONST, OP_COUNT, OP_COUNT_ITEMS, OP_FIELD_CMP, OP_FIELD_PRESENT, OP_GATE,
    OP_GATE_FIELD, OP_HAS_TAG, OP_IN, OP_IN_UNLESS, OP_JUMP_IF_FALSE, OP_JUMP_IF_TRUE, OP_NOT, OP_OR, OP_TAGSET, PDX,
    PPROC, PROC, QY, SDX, SECOND_ATTEMPT, SPROC, UNGROUPABLE,
)
from .ir import (
    CHECKS, CODE_DX_DICT, CODE_DX_FORMAT, CODE_NOT_PRINCIPAL, CODE_PROC_DICT, CODE_PROC_FORMAT, DISCHARGE_MODES,
    DX_FORMAT, FIELD_ABSENT, FIELD_BAD, FIELD_OK, FIELD_SLOW, MAX_AGE, NOT_PRINCIPAL, PROC_FORMAT, WEIGHT_RANGE,
)


def compare(left: int, cmp: int, right: int) -> bool:
    if cmp == EQ:
        return left == right
    if cmp == NE:
        return left != right
    if cmp == LT:
        return left < right
    if cmp == LE:
        return left <= right
    if cmp == GT:
        return left > right
    if cmp == GE:
        return left >= right
    raise ValueError(f"bad comparison {cmp}")


class Case:
    """One case's view of the batch arrays: code ids of its diagnoses/procedures and its fields."""

    __slots__ = ("dx", "px", "fields")

    def __init__(self, dx, px, fields):
        self.dx = dx
        self.px = px
        self.fields = fields

    def items(self, scope: int):
        if scope == PDX:
            return self.dx[:1]
        if scope == PPROC:
            return self.px[:1]
        if scope == DX:
            return self.dx
        if scope == PROC:
            return self.px
        if scope == SDX:
            return self.dx[1:]
        if scope == SPROC:
            return self.px[1:]
        raise ValueError(f"bad scope {scope}")

    @property
    def pdx(self) -> int:
        return self.dx[0] if len(self.dx) else 0


def in_set(set_bits, s: int, code: int) -> bool:
    return bool((int(set_bits[s, code >> 6]) >> (code & 63)) & 1)


def distinct_labels(label_map, items) -> list[int]:
    seen: list[int] = []
    for item in items:
        label = int(label_map[item])
        if label and label not in seen:
            seen.append(label)
    return seen


def test_value(set_bits, label_maps, op: int, a: int, b: int, c: int, d: int, case: Case) -> bool:
    """The value a test instruction pushes: IN (also a GATE's test), IN_UNLESS, FIELD_CMP (also a
    GATE_FIELD's), FIELD_PRESENT, COUNT_ITEMS."""
    if op in (OP_IN, OP_GATE):
        return any(in_set(set_bits, b, x) for x in case.items(a))
    if op == OP_IN_UNLESS:
        pdx_label = int(label_maps[d, case.pdx])
        return any(in_set(set_bits, b, x) and not (label_maps[c, x] != 0 and label_maps[c, x] == pdx_label)
                   for x in case.items(a))
    if op in (OP_FIELD_CMP, OP_GATE_FIELD):
        value = case.fields[a]
        return value != MISSING and compare(value, b, c)
    if op == OP_FIELD_PRESENT:
        return case.fields[a] != MISSING
    if op == OP_COUNT_ITEMS:
        return compare(len(case.items(a)), b, c)
    raise ValueError(f"opcode {op} is not a test")


def decided_drg(set_bits, label_maps, decision, node: int, case: Case) -> int:
    """The DRG an ADRG's decision tree (ir.Plan.adrg_decision, rooted at node) gives, or -1 when none
    of its DRGs holds: the DRG its list gives, each test made at most once."""
    nodes, atoms = decision
    while node >= 0:
        atom, if_false, if_true = nodes[node].tolist()
        node = if_true if test_value(set_bits, label_maps, *atoms[atom].tolist(), case) else if_false
    return -2 - node if node <= -2 else -1


def eval_condition(plan_arrays, k: int, case: Case) -> bool:
    set_bits, label_maps, program, cond_start = plan_arrays[:4]
    stack: list[bool] = []
    tags: list[int] = []
    skip = 0
    for op, a, b, c, d in program[cond_start[k]:cond_start[k + 1]].tolist():
        if skip:        # jumped over by JUMP_IF_FALSE / JUMP_IF_TRUE
            skip -= 1
        elif op in (OP_JUMP_IF_FALSE, OP_JUMP_IF_TRUE):
            if stack[-1] == (op == OP_JUMP_IF_TRUE):
                skip = a    # the value decides the `and` / `or`: it stays, the right side is skipped
            else:
                stack.pop()
        elif op == OP_CONST:
            stack.append(bool(a))
        elif op in (OP_GATE_FIELD, OP_GATE):
            if not test_value(set_bits, label_maps, op, a, b, c, d, case):
                return False
        elif op in (OP_IN, OP_IN_UNLESS, OP_FIELD_CMP, OP_FIELD_PRESENT, OP_COUNT_ITEMS):
            stack.append(test_value(set_bits, label_maps, op, a, b, c, d, case))
        elif op == OP_COUNT:
            stack.append(compare(len(distinct_labels(label_maps[b], case.items(a))), c, d))
        elif op == OP_TAGSET:
            tags = distinct_labels(label_maps[b], case.items(a))
        elif op == OP_HAS_TAG:
            stack.append(a in tags)
        elif op == OP_AND:
            right = stack.pop()
            stack.append(stack.pop() and right)
        elif op == OP_OR:
            right = stack.pop()
            stack.append(stack.pop() or right)
        elif op == OP_NOT:
            stack.append(not stack.pop())
        else:
            raise ValueError(f"bad opcode {op}")
    return stack[-1]


def group_one(plan_arrays, case: Case, pdx_mdc_mask=None, behaviour: int = 0,
              qy=None, adrg_gate=None, decision=None) -> tuple[int, int, int, int, int]:
    """(status, mdc, adrg, drg, reason) for one case; indexes are -1 where not applicable.

    `pdx_mdc_mask` (optional, per code id) has bit m clear when MDC m's entry cannot hold for that
    principal diagnosis; such MDCs are skipped unevaluated (the result is the same).
    `behaviour` (ir.NO_DRG_STATUS | ir.SECOND_ATTEMPT flags): see `group_with_attempts`.
    `qy` (optional): the plan's qy arrays (mdc_qy_start, qy_cond, qy_mdc, qy_drg, adrg_qy), see ir.Plan.
    `adrg_gate` (optional): (adrg_gate_mask, adrg_gate_free), see ir.Plan: an MDC none of whose ADRGs
    can hold for the case's codes is entered without testing its ADRGs (the result is the same).
    `decision` (optional): (adrg_decision, decision_nodes, decision_atoms), see ir.Plan: an ADRG with a
    decision tree takes its DRG from it instead of from its DRG conditions in turn (the same DRG).
    """
    (_, _, _, _, invalid_cond, mdc_cond, mdc_adrg_start, adrg_cond, adrg_drg_start, drg_cond) = plan_arrays
    for r, cond in enumerate(invalid_cond.tolist()):
        if eval_condition(plan_arrays, cond, case):
            return INVALID, -1, -1, -1, r
    mdc_qy_start, qy_cond, qy_mdc, qy_drg, adrg_qy = qy if qy is not None else (None,) * 5

    def top_level_qy(m: int):
        """The first top-level qy rule tried before MDC m (after the last one for m = n_mdc) that holds."""
        if mdc_qy_start is None:
            return None
        for q in range(mdc_qy_start[m], mdc_qy_start[m + 1]):
            if eval_condition(plan_arrays, int(qy_cond[q]), case):
                return QY, int(qy_mdc[q]), -1, int(qy_drg[q]), -1
        return None

    last_entered = -1
    candidates = -1 if pdx_mdc_mask is None else int(pdx_mdc_mask[case.pdx])
    reachable = -1
    if adrg_gate is not None:
        gate_mask, reachable = adrg_gate[0], int(adrg_gate[1])
        for x in case.dx + case.px:
            reachable |= int(gate_mask[x])
    for m, cond in enumerate(mdc_cond.tolist()):
        result = top_level_qy(m)
        if result is not None:
            return result
        if not (candidates >> m) & 1 or not eval_condition(plan_arrays, cond, case):
            continue
        for a in range(mdc_adrg_start[m], mdc_adrg_start[m + 1]) if (reachable >> m) & 1 else ():
            if not eval_condition(plan_arrays, int(adrg_cond[a]), case):
                continue
            if adrg_qy is not None and adrg_qy[a] != NOT_QY:  # a qy rule among the ADRGs: ends grouping
                q = int(adrg_qy[a])
                return QY, int(qy_mdc[q]), -1, int(qy_drg[q]), -1
            if decision is not None and decision[0][a] >= 0:
                g = decided_drg(plan_arrays[0], plan_arrays[1], decision[1:], int(decision[0][a]), case)
                if g >= 0:
                    return GROUPED, m, a, g, -1
            else:
                for g in range(adrg_drg_start[a], adrg_drg_start[a + 1]):
                    if drg_cond[g] == NO_CONDITION or eval_condition(plan_arrays, int(drg_cond[g]), case):
                        return GROUPED, m, a, g, -1
            # The ADRG holds but none of its DRGs does: the next ADRG is tried, or (NO_DRG_STATUS) status no_drg.
            if behaviour & NO_DRG_STATUS:
                return NO_DRG, m, a, -1, -1
        # Entered but no ADRG matched: CHS-DRG goes on with the next MDC.
        last_entered = m
    result = top_level_qy(len(mdc_cond))
    if result is not None:
        return result
    if last_entered >= 0:
        return NO_ADRG, last_entered, -1, -1, -1
    return UNGROUPABLE, -1, -1, -1, -1


def group_with_attempts(plan_arrays, case: Case, pdx_mdc_mask=None, behaviour: int = 0,
                        qy=None, adrg_gate=None, decision=None) -> tuple[int, int, int, int, int]:
    """`group_one`, then, with SECOND_ATTEMPT, for a case left without a group (no_adrg, no_drg,
    ungroupable): group it again with procedure j (j = 2, 3, ...) moved to the front as the principal
    procedure, the others keeping their order (with ATTEMPT_ALONE: procedure j alone); the first
    grouped result wins, else the first result (with LAST_ENTERED, when that is no_adrg or
    ungroupable: the last no_adrg result over all attempts, i.e. the last MDC entered).
    A qy result is final, like a grouped one."""
    result = group_one(plan_arrays, case, pdx_mdc_mask, behaviour, qy, adrg_gate, decision)
    if not behaviour & SECOND_ATTEMPT or result[0] in (GROUPED, INVALID, QY):
        return result
    last_entered = result
    for j in range(1, len(case.px)):
        procs = [case.px[j]] if behaviour & ATTEMPT_ALONE else [case.px[j]] + case.px[:j] + case.px[j + 1:]
        retry = group_one(plan_arrays, Case(case.dx, procs, case.fields), pdx_mdc_mask, behaviour, qy, adrg_gate,
                          decision)
        if retry[0] == GROUPED:
            return retry
        if retry[0] == NO_ADRG:
            last_entered = retry
    if behaviour & LAST_ENTERED and result[0] in (NO_ADRG, UNGROUPABLE):
        return last_entered
    return result


def group_cases(set_bits, label_maps, program, cond_start, invalid_cond, mdc_cond, mdc_adrg_start,
                adrg_cond, adrg_drg_start, drg_cond,
                dx_offsets, dx_codes, px_offsets, px_codes, fields, skip,
                out_status, out_mdc, out_adrg, out_drg, out_reason, start: int = 0, stop: int = -1,
                pdx_mdc_mask=None, behaviour: int = 0, mdc_qy_start=None, qy_cond=None, qy_mdc=None,
                qy_drg=None, adrg_qy=None, adrg_gate_mask=None, adrg_gate_free: int = 0,
                adrg_gate_class=None, adrg_gate_other=None, adrg_gate_rows=None, mdc_entry_exact: int = 0,
                adrg_decision=None, decision_nodes=None, decision_atoms=None,
                plan_checked: bool = False) -> None:
    """Group cases start:stop (stop -1 = all) of a batch into the output arrays.

    dx_offsets/px_offsets: int64[n+1]; dx_codes/px_codes: uint32 code ids; fields: int32[7, n];
    skip: uint8[n], nonzero for rows already rejected while reading (they get status INVALID,
    reason -1). Outputs: status uint8[n], mdc/adrg/drg/reason int32[n]. behaviour: ir.NO_DRG_STATUS |
    ir.SECOND_ATTEMPT | ir.ATTEMPT_ALONE | ir.LAST_ENTERED (the scheme's settings). The qy arrays (all or none) are those of
    ir.Plan.qy_args(). adrg_gate_mask / adrg_gate_free: ir.Plan's (optional; only skip work).
    adrg_gate_class / adrg_gate_other / adrg_gate_rows: ir.Plan's ADRG-level gate, used by the compiled kernel only (it
    only skips work): here every ADRG and qy rule is tested, so the parity tests check it.
    mdc_entry_exact: ir.Plan's, likewise used by the compiled kernel only (here every entry is evaluated).
    adrg_decision / decision_nodes / decision_atoms: ir.Plan's DRG decisions (all or none; optional): an
    ADRG with one takes its DRG from its tree (the same DRG as its conditions in turn, which the tests check).
    """
    plan_arrays = (set_bits, label_maps, program, cond_start, invalid_cond, mdc_cond, mdc_adrg_start,
                   adrg_cond, adrg_drg_start, drg_cond)
    qy = None if qy_cond is None else (mdc_qy_start, qy_cond, qy_mdc, qy_drg, adrg_qy)
    adrg_gate = None if adrg_gate_mask is None else (adrg_gate_mask, adrg_gate_free)
    given = [x is not None for x in (adrg_decision, decision_nodes, decision_atoms)]
    if any(given) and not all(given):
        raise ValueError("adrg_decision, decision_nodes and decision_atoms go together: give all or none")
    decision = (adrg_decision, decision_nodes, decision_atoms) if all(given) else None
    n = len(skip)
    stop = n if stop < 0 else stop
    for i in range(start, stop):
        if skip[i]:
            result = (INVALID, -1, -1, -1, -1)
        else:
            case = Case(dx_codes[dx_offsets[i]:dx_offsets[i + 1]].tolist(),
                        px_codes[px_offsets[i]:px_offsets[i + 1]].tolist(),
                        fields[:, i].tolist())
            result = group_with_attempts(plan_arrays, case, pdx_mdc_mask, behaviour, qy, adrg_gate, decision)
        out_status[i], out_mdc[i], out_adrg[i], out_drg[i], out_reason[i] = result


# ---- one pass over a batch's text: codes interned, fields parsed, every case checked ----------
#
# Text arrives as Arrow string_view arrays (see grouper.engine.encode.Text.kernel_args): 16 bytes
# per string, its length first; up to 12 bytes inline, longer ones in data buffer (index at byte 8,
# offset at byte 12).

def text_at(text, i: int) -> bytes:
    """String i of a (views, buffers, validity, bit_offset) text (a null string reads as b"")."""
    views, buffers, validity, bit_offset = text
    if validity is not None:
        b = bit_offset + i
        if not (int(validity[b >> 3]) >> (b & 7)) & 1:
            return b""
    view = bytes(views[16 * i:16 * i + 16])
    n = int.from_bytes(view[:4], "little", signed=True)
    if n <= 12:
        return view[4:4 + n]
    buf, off = int.from_bytes(view[8:12], "little"), int.from_bytes(view[12:16], "little")
    return bytes(buffers[buf][off:off + n])


def code_table(data, offsets) -> dict[bytes, int]:
    """The plan's codes → code id (the compiled kernel builds a hash table; same lookups)."""
    return {bytes(data[offsets[i]:offsets[i + 1]]): i + 1 for i in range(len(offsets) - 1)}


def intern_codes(table, data, offsets, views, buffers, validity, bit_offset, out) -> None:
    """out[j] = the code id of string j (0: not a code of the plan)."""
    text = (views, buffers, validity, bit_offset)
    for j in range(len(out)):
        out[j] = table.get(text_at(text, j), 0)


PLAIN_INTEGER = re.compile(rb"-?[0-9]{1,18}")


def parse_ints(views, buffers, validity, bit_offset, out, state) -> None:
    """Plain integers straight into out (FIELD_OK; FIELD_BAD outside int32, INT32_MIN excluded);
    empty or null: FIELD_ABSENT; anything else FIELD_SLOW (the full reading rules decide)."""
    text = (views, buffers, validity, bit_offset)
    for i in range(len(out)):
        s = text_at(text, i)
        out[i] = MISSING
        if not s:
            state[i] = FIELD_ABSENT
        elif PLAIN_INTEGER.fullmatch(s):
            value = int(s)
            state[i] = FIELD_OK if MISSING < value <= 2**31 - 1 else FIELD_BAD
            if state[i] == FIELD_OK:
                out[i] = value
        else:
            state[i] = FIELD_SLOW


def _anchored(pattern: str) -> re.Pattern:
    # Polars' (Rust) `$` is the end of the text; Python's also matches before a final newline.
    return re.compile(pattern.replace("$", r"\Z").encode())


TEXT_MATCHERS = ((CODE_DX_FORMAT, _anchored(DX_FORMAT)), (CODE_PROC_FORMAT, _anchored(PROC_FORMAT)),
                 (CODE_NOT_PRINCIPAL, _anchored(NOT_PRINCIPAL)))


def text_flags(views, buffers, validity, bit_offset, out) -> None:
    """out[j] = CODE_DX_FORMAT | CODE_PROC_FORMAT | CODE_NOT_PRINCIPAL as string j matches."""
    text = (views, buffers, validity, bit_offset)
    for j in range(len(out)):
        s = text_at(text, j)
        out[j] = sum(flag for flag, pattern in TEXT_MATCHERS if pattern.search(s))


class _Codes:
    """One case's diagnoses or procedures, as the checks see them."""

    def __init__(self, ids, first: int, text, n_known: int, code_flags):
        self.ids, self.first = [int(x) for x in ids], first
        self.texts = [text_at(text, first + j) for j in range(len(self.ids))]
        self.n_known, self.code_flags = n_known, code_flags

    def known(self, j: int) -> bool:
        return 1 <= self.ids[j] <= self.n_known

    def flag(self, j: int, flag: int) -> bool:
        """A code flag: the plan's table for known codes (dictionary flags of others: id 0's),
        the text matchers for other codes' formats."""
        if self.known(j) or flag & (CODE_DX_DICT | CODE_PROC_DICT):
            return bool(int(self.code_flags[self.ids[j] if self.known(j) else 0]) & flag)
        return any(bool(pattern.search(self.texts[j])) for f, pattern in TEXT_MATCHERS if f == flag)

    def bad_format(self, j: int, is_dx: bool) -> bool:
        if not self.texts[j]:       # a stray separator; an empty principal diagnosis is missing_dx
            return j > 0 or not is_dx
        return not self.flag(j, CODE_DX_FORMAT if is_dx else CODE_PROC_FORMAT)

    def unknown(self, j: int, is_dx: bool) -> bool:
        return bool(self.texts[j]) and not self.flag(j, CODE_DX_DICT if is_dx else CODE_PROC_DICT)

    def once(self, test) -> list[int]:
        """The items for which test holds, each text once (its first such item)."""
        seen, out = set(), []
        for j in range(len(self.ids)):
            if test(j) and self.texts[j] not in seen:
                seen.add(self.texts[j])
                out.append(j)
        return out

    def duplicates(self) -> list[int]:
        """Codes listed more than once: known codes by ascending id, then the others in order of
        first appearance; each once (its first item). Empty items are not codes."""
        counts: dict[bytes, int] = {}
        for s in self.texts:
            counts[s] = counts.get(s, 0) + 1
        repeated = [j for j in self.once(lambda j: counts[self.texts[j]] > 1 and self.texts[j] != b"")]
        return (sorted((j for j in repeated if self.known(j)), key=lambda j: self.ids[j])
                + [j for j in repeated if not self.known(j)])


def check_one(i: int, dx: _Codes, px: _Codes, fields, state, on) -> list[tuple[int, int]]:
    """(check, ref) of every problem of case i, in CHECKS order (ref: item index or -1)."""
    out = []
    check = CHECKS.index

    def present(f: int) -> bool:
        return int(state[f, i]) == FIELD_OK

    for f in range(6):
        if on[check("malformed_sex") + f] and int(state[f, i]) == FIELD_BAD:
            out.append((check("malformed_sex") + f, -1))
    if on[check("missing_dx")] and (not dx.ids or not dx.texts[0]):
        out.append((check("missing_dx"), -1))
    sex, age, days, weight, los, discharge = (int(fields[f, i]) for f in range(6))
    if on[check("implausible_age")] and present(1) and not 0 <= age <= MAX_AGE:
        out.append((check("implausible_age"), -1))
    if on[check("implausible_age_days")] and present(2) and (
            days < 0 or (present(1) and age > 0 and not age * 365 <= days <= (age + 1) * 366)
            or (present(1) and age == 0 and days > 366)):
        out.append((check("implausible_age_days"), -1))
    if on[check("implausible_weight")] and present(3) and not WEIGHT_RANGE[0] <= weight <= WEIGHT_RANGE[1]:
        out.append((check("implausible_weight"), -1))
    if on[check("implausible_los")] and present(4) and los < 0:
        out.append((check("implausible_los"), -1))
    if on[check("unknown_discharge")] and present(5) and discharge not in DISCHARGE_MODES:
        out.append((check("unknown_discharge"), -1))
    for name, codes, test in (
            ("bad_dx_format", dx, lambda j: dx.bad_format(j, True)),
            ("bad_proc_format", px, lambda j: px.bad_format(j, False)),
            ("unknown_dx", dx, lambda j: dx.unknown(j, True)),
            ("unknown_proc", px, lambda j: px.unknown(j, False))):
        if on[check(name)]:
            out += [(check(name), codes.first + j) for j in codes.once(test)]
    if on[check("not_principal_dx")] and dx.ids and dx.texts[0] and dx.flag(0, CODE_NOT_PRINCIPAL):
        out.append((check("not_principal_dx"), dx.first))
    for name, codes in (("duplicate_dx", dx), ("duplicate_proc", px)):
        if on[check(name)]:
            out += [(check(name), codes.first + j) for j in codes.duplicates()]
    return out


def check_cases(set_bits, label_maps, program, cond_start, warn_cond,
                dx_offsets, dx_codes, dx_text, px_offsets, px_codes, px_text,
                fields, field_state, read_problem, code_flags, n_known, enabled, start: int = 0, stop: int = -1):
    """Every problem of cases start:stop, in order: (row uint32, check int32, ref int64) arrays.

    check: an index of CHECKS, or len(CHECKS) + w for the scheme's warn rule w (warn_cond[w],
    tested on every case); ref: the item (index into the batch's dx or px items) a code problem is
    about, else -1. A case with read_problem set gets malformed_line only. Each (case, check,
    code) once; enabled[c]: whether check c runs. code_flags[id]: CODE_* bits of code id (index 0:
    what unknown codes get for the dictionaries).
    """
    import numpy as np

    plan_arrays = (set_bits, label_maps, program, cond_start)
    n = len(read_problem)
    stop = n if stop < 0 else stop
    found: list[tuple[int, int, int]] = []
    for i in range(start, stop):
        if read_problem[i]:
            found.append((i, CHECKS.index("malformed_line"), -1))
            continue
        dx = _Codes(dx_codes[dx_offsets[i]:dx_offsets[i + 1]], int(dx_offsets[i]), dx_text, n_known, code_flags)
        px = _Codes(px_codes[px_offsets[i]:px_offsets[i + 1]], int(px_offsets[i]), px_text, n_known, code_flags)
        found += [(i, c, ref) for c, ref in check_one(i, dx, px, fields, field_state, enabled)]
        case = Case(dx.ids, px.ids, fields[:, i].tolist())
        found += [(i, len(CHECKS) + w, -1) for w, k in enumerate(warn_cond.tolist())
                  if eval_condition(plan_arrays, k, case)]
    rows, checks, refs = zip(*found) if found else ((), (), ())
    return np.array(rows, np.uint32), np.array(checks, np.int32), np.array(refs, np.int64)
