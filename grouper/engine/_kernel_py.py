"""Reference kernel in plain Python: the readable definition of what ext/_kernel.pyx computes.

Same signature and outputs as `grouper._kernel.group_cases`; tests check the two agree.
Slow (a Python loop per case): use it for tests and explanations, not for batches.
"""
from __future__ import annotations

from .ir import (
    ATTEMPT_ALONE, DX, EQ, GE, GROUPED, GT, INVALID, LAST_ENTERED, LE, LT, MISSING, NE, NOT_QY, NO_ADRG, NO_CONDITION,
    NO_DRG, NO_DRG_STATUS, OP_AND, OP_CONST, OP_COUNT, OP_COUNT_ITEMS, OP_FIELD_CMP, OP_FIELD_PRESENT, OP_GATE,
    OP_GATE_FIELD, OP_HAS_TAG, OP_IN, OP_IN_UNLESS, OP_NOT, OP_OR, OP_TAGSET, PDX, PPROC, PROC, QY, SDX,
    SECOND_ATTEMPT, SPROC, UNGROUPABLE,
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


def eval_condition(plan_arrays, k: int, case: Case) -> bool:
    set_bits, label_maps, program, cond_start = plan_arrays[:4]
    stack: list[bool] = []
    tags: list[int] = []
    for op, a, b, c, d in program[cond_start[k]:cond_start[k + 1]].tolist():
        if op == OP_CONST:
            stack.append(bool(a))
        elif op == OP_GATE_FIELD:
            value = case.fields[a]
            if value == MISSING or not compare(value, b, c):
                return False
        elif op == OP_GATE:
            if not any(in_set(set_bits, b, x) for x in case.items(a)):
                return False
        elif op == OP_IN:
            stack.append(any(in_set(set_bits, b, x) for x in case.items(a)))
        elif op == OP_IN_UNLESS:
            pdx_label = int(label_maps[d, case.pdx])
            stack.append(any(
                in_set(set_bits, b, x) and not (label_maps[c, x] != 0 and label_maps[c, x] == pdx_label)
                for x in case.items(a)))
        elif op == OP_COUNT:
            stack.append(compare(len(distinct_labels(label_maps[b], case.items(a))), c, d))
        elif op == OP_COUNT_ITEMS:
            stack.append(compare(len(case.items(a)), b, c))
        elif op == OP_TAGSET:
            tags = distinct_labels(label_maps[b], case.items(a))
        elif op == OP_HAS_TAG:
            stack.append(a in tags)
        elif op == OP_FIELD_CMP:
            value = case.fields[a]
            stack.append(value != MISSING and compare(value, b, c))
        elif op == OP_FIELD_PRESENT:
            stack.append(case.fields[a] != MISSING)
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
              qy=None, adrg_gate=None) -> tuple[int, int, int, int, int]:
    """(status, mdc, adrg, drg, reason) for one case; indexes are -1 where not applicable.

    `pdx_mdc_mask` (optional, per code id) has bit m clear when MDC m's entry cannot hold for that
    principal diagnosis; such MDCs are skipped unevaluated (the result is the same).
    `behaviour` (ir.NO_DRG_STATUS | ir.SECOND_ATTEMPT flags): see `group_with_attempts`.
    `qy` (optional): the plan's qy arrays (mdc_qy_start, qy_cond, qy_mdc, qy_drg, adrg_qy), see ir.Plan.
    `adrg_gate` (optional): (adrg_gate_mask, adrg_gate_free), see ir.Plan: an MDC none of whose ADRGs
    can hold for the case's codes is entered without testing its ADRGs (the result is the same).
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
                        qy=None, adrg_gate=None) -> tuple[int, int, int, int, int]:
    """`group_one`, then, with SECOND_ATTEMPT, for a case left without a group (no_adrg, no_drg,
    ungroupable): group it again with procedure j (j = 2, 3, ...) moved to the front as the principal
    procedure, the others keeping their order (with ATTEMPT_ALONE: procedure j alone); the first
    grouped result wins, else the first result (with LAST_ENTERED, when that is no_adrg or
    ungroupable: the last no_adrg result over all attempts, i.e. the last MDC entered).
    A qy result is final, like a grouped one."""
    result = group_one(plan_arrays, case, pdx_mdc_mask, behaviour, qy, adrg_gate)
    if not behaviour & SECOND_ATTEMPT or result[0] in (GROUPED, INVALID, QY):
        return result
    last_entered = result
    for j in range(1, len(case.px)):
        procs = [case.px[j]] if behaviour & ATTEMPT_ALONE else [case.px[j]] + case.px[:j] + case.px[j + 1:]
        retry = group_one(plan_arrays, Case(case.dx, procs, case.fields), pdx_mdc_mask, behaviour, qy, adrg_gate)
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
                plan_checked: bool = False) -> None:
    """Group cases start:stop (stop -1 = all) of a batch into the output arrays.

    dx_offsets/px_offsets: int64[n+1]; dx_codes/px_codes: uint32 code ids; fields: int32[7, n];
    skip: uint8[n], nonzero for rows already rejected while reading (they get status INVALID,
    reason -1). Outputs: status uint8[n], mdc/adrg/drg/reason int32[n]. behaviour: ir.NO_DRG_STATUS |
    ir.SECOND_ATTEMPT | ir.ATTEMPT_ALONE | ir.LAST_ENTERED (the scheme's settings). The qy arrays (all or none) are those of
    ir.Plan.qy_args(). adrg_gate_mask / adrg_gate_free: ir.Plan's (optional; only skip work).
    """
    plan_arrays = (set_bits, label_maps, program, cond_start, invalid_cond, mdc_cond, mdc_adrg_start,
                   adrg_cond, adrg_drg_start, drg_cond)
    qy = None if qy_cond is None else (mdc_qy_start, qy_cond, qy_mdc, qy_drg, adrg_qy)
    adrg_gate = None if adrg_gate_mask is None else (adrg_gate_mask, adrg_gate_free)
    n = len(skip)
    stop = n if stop < 0 else stop
    for i in range(start, stop):
        if skip[i]:
            result = (INVALID, -1, -1, -1, -1)
        else:
            case = Case(dx_codes[dx_offsets[i]:dx_offsets[i + 1]].tolist(),
                        px_codes[px_offsets[i]:px_offsets[i + 1]].tolist(),
                        fields[:, i].tolist())
            result = group_with_attempts(plan_arrays, case, pdx_mdc_mask, behaviour, qy, adrg_gate)
        out_status[i], out_mdc[i], out_adrg[i], out_drg[i], out_reason[i] = result


def duplicate_items(offsets, codes, out) -> None:
    """out[j] = 1 when item j repeats an earlier item of the same row (code id 0, unknown, never counts)."""
    for i in range(len(offsets) - 1):
        seen = set()
        for j in range(offsets[i], offsets[i + 1]):
            code = int(codes[j])
            out[j] = code != 0 and code in seen
            seen.add(code)
