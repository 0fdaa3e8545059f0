"""The Cython kernel (grouper._kernel) against the Python reference kernel (engine/_kernel_py.py).

Plans are built by hand here (following the layout documented in engine/ir.py), so these tests
do not depend on the compiler. Three kinds of test:
- concrete results computed by hand, run on both kernels (catches a bug the two share);
- parity on random plans and cases (numpy RNG and hypothesis);
- Cython-only behaviour: read-only inputs, threads on disjoint row ranges, input validation.

Cython tests skip when the extension is not built, or fail if GROUPER_REQUIRE_EXTENSION is set.
"""
from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grouper.engine import _kernel_py, ir
from grouper.engine.ir import (
    DX, EQ, GE, GROUPED, GT, INVALID, LE, LT, MAX_STACK, MISSING, NE, NO_ADRG, NO_CONDITION, NO_DRG, NO_DRG_STATUS, SECOND_ATTEMPT,
    ATTEMPT_ALONE, LAST_ENTERED,
    OP_AND, OP_CONST, OP_COUNT, OP_COUNT_ITEMS, OP_FIELD_CMP, OP_FIELD_PRESENT, OP_GATE, OP_GATE_FIELD, OP_HAS_TAG,
    OP_IN, OP_IN_UNLESS, OP_JUMP_IF_FALSE, OP_JUMP_IF_TRUE, OP_NOT, OP_OR, OP_TAGSET, PDX, PPROC, PROC, SDX, SPROC, UNGROUPABLE,
)

try:
    from grouper.engine import kernel as selector
    SELECTION_ERROR = None
except ImportError as exc:  # GROUPER_REQUIRE_EXTENSION is set and the extension is missing
    selector, SELECTION_ERROR = None, exc

AGE, SEX, LOS = ir.FIELD_IDS["age"], ir.FIELD_IDS["sex"], ir.FIELD_IDS["los"]
N_FIELDS = len(ir.FIELDS)


def _require_extension() -> bool:
    return os.environ.get("GROUPER_REQUIRE_EXTENSION", "") not in ("", "0")


def cython_kernel():
    """The Cython kernel module, or skip (fail under GROUPER_REQUIRE_EXTENSION) if not built."""
    try:
        if selector is None:
            raise SELECTION_ERROR
        return selector.get_kernel("cython")
    except ImportError as exc:
        if _require_extension():
            pytest.fail(f"GROUPER_REQUIRE_EXTENSION is set but the Cython kernel is missing: {exc}")
        pytest.skip("Cython kernel grouper._kernel is not built "
                    "(build it with `pip install --no-build-isolation -e .`)")


@pytest.fixture
def cy():
    return cython_kernel()


@pytest.fixture(params=["python", "cython"])
def kernel(request):
    return _kernel_py if request.param == "python" else cython_kernel()


# --------------------------------------------------------------------------- plan & batch builders

def I(op, a=0, b=0, c=0, d=0):  # noqa: E743 - one instruction row
    return (op, a, b, c, d)


class PlanBuilder:
    """Builds the ten plan arrays of ir.Plan.kernel_args() by hand."""

    def __init__(self, n_codes: int = 20):
        self.width = n_codes + 1                 # code ids 0..n_codes
        self.n_words = (self.width + 63) // 64
        self.sets: list[np.ndarray] = []
        self.maps: list[np.ndarray] = []
        self.conds: list[list[tuple]] = []
        self.invalid: list[int] = []
        self.mdcs: list[tuple[int, list[tuple[int, list[int]]]]] = []

    def set(self, ids) -> int:
        bits = np.zeros(self.n_words, np.uint64)
        for i in ids:
            bits[i >> 6] |= np.uint64(1) << np.uint64(i & 63)
        self.sets.append(bits)
        return len(self.sets) - 1

    def map(self, labels: dict[int, int]) -> int:
        row = np.zeros(self.width, np.uint32)
        for code, label in labels.items():
            row[code] = label
        self.maps.append(row)
        return len(self.maps) - 1

    def cond(self, *instrs) -> int:
        self.conds.append([tuple(x) for x in instrs])
        return len(self.conds) - 1

    def true(self) -> int:
        return self.cond(I(OP_CONST, 1))

    def false(self) -> int:
        return self.cond(I(OP_CONST, 0))

    def invalid_rule(self, cond: int) -> None:
        self.invalid.append(cond)

    def mdc(self, cond: int, adrgs) -> None:
        """adrgs: [(adrg condition, [drg condition or NO_CONDITION, ...]), ...]"""
        self.mdcs.append((cond, [(a, list(drgs)) for a, drgs in adrgs]))

    def build(self) -> tuple:
        set_bits = np.array(self.sets, np.uint64).reshape(len(self.sets), self.n_words)
        label_maps = np.array(self.maps, np.uint32).reshape(len(self.maps), self.width)
        rows = [row for cond in self.conds for row in cond]
        program = np.array(rows, np.int32).reshape(len(rows), 5)
        cond_start = np.cumsum([0] + [len(c) for c in self.conds]).astype(np.int32)
        mdc_cond, mdc_adrg_start, adrg_cond, adrg_drg_start, drg_cond = [], [0], [], [0], []
        for m_cond, adrgs in self.mdcs:
            mdc_cond.append(m_cond)
            for a_cond, drgs in adrgs:
                adrg_cond.append(a_cond)
                drg_cond.extend(drgs)
                adrg_drg_start.append(len(drg_cond))
            mdc_adrg_start.append(len(adrg_cond))
        i32 = lambda xs: np.array(xs, np.int32)  # noqa: E731
        return (set_bits, label_maps, program, cond_start, i32(self.invalid), i32(mdc_cond),
                i32(mdc_adrg_start), i32(adrg_cond), i32(adrg_drg_start), i32(drg_cond))


def make_batch(cases, skip=None) -> tuple:
    """cases: [(dx ids, px ids, {field id: value})]; returns the six batch arrays."""
    n = len(cases)
    dx_offsets = np.zeros(n + 1, np.int64)
    px_offsets = np.zeros(n + 1, np.int64)
    dx_codes, px_codes = [], []
    fields = np.full((N_FIELDS, n), MISSING, np.int32)
    for i, (dx, px, f) in enumerate(cases):
        dx_codes.extend(dx)
        px_codes.extend(px)
        dx_offsets[i + 1] = len(dx_codes)
        px_offsets[i + 1] = len(px_codes)
        for a, v in (f or {}).items():
            fields[a, i] = v
    skip_arr = np.zeros(n, np.uint8) if skip is None else np.array(skip, np.uint8)
    return (dx_offsets, np.array(dx_codes, np.uint32), px_offsets, np.array(px_codes, np.uint32),
            fields, skip_arr)


SENTINEL_STATUS, SENTINEL_INT = 250, 777_777


def new_outputs(n: int) -> tuple:
    return (np.full(n, SENTINEL_STATUS, np.uint8),) + tuple(np.full(n, SENTINEL_INT, np.int32) for _ in range(4))


def run(kernel, plan, batch, start=0, stop=-1, outputs=None, behaviour=0) -> np.ndarray:
    """Group and return the outputs as one int64[n, 5] array (status, mdc, adrg, drg, reason)."""
    out = new_outputs(len(batch[5])) if outputs is None else outputs
    if behaviour:
        kernel.group_cases(*plan, *batch, *out, start, stop, None, behaviour)
    elif start == 0 and stop == -1:
        kernel.group_cases(*plan, *batch, *out)       # defaults
    else:
        kernel.group_cases(*plan, *batch, *out, start, stop)
    return np.stack([o.astype(np.int64) for o in out], axis=1)


def truth(kernel, instrs, dx=(), px=(), fields=None, pb=None) -> bool:
    """Evaluate one condition on one case, through the kernel: the condition is the plan's only
    invalid rule, so the case is INVALID (reason 0) iff it holds, else UNGROUPABLE."""
    pb = pb or PlanBuilder()
    pb.invalid_rule(pb.cond(*instrs))
    (status, mdc, adrg, drg, reason), = run(kernel, pb.build(), make_batch([(list(dx), list(px), fields)]))
    assert (mdc, adrg, drg) == (-1, -1, -1)
    assert (status, reason) in ((INVALID, 0), (UNGROUPABLE, -1))
    return bool(status == INVALID)


# --------------------------------------------------------------------------- hand-computed results

def scoped_plan():
    pb = PlanBuilder()
    return pb, {code: pb.set([code]) for code in range(0, 21)}


@pytest.mark.parametrize("scope, code, expected", [
    (PDX, 3, True), (PDX, 5, False), (DX, 5, True), (DX, 7, True), (DX, 10, False),
    (SDX, 3, False), (SDX, 5, True), (SDX, 7, True),
    (PPROC, 10, True), (PPROC, 11, False), (PROC, 11, True), (PROC, 3, False),
    (SPROC, 10, False), (SPROC, 11, True),
])
def test_in_scopes(kernel, scope, code, expected):
    pb, sets = scoped_plan()
    assert truth(kernel, [I(OP_IN, scope, sets[code])], dx=[3, 5, 7], px=[10, 11], pb=pb) is expected


@pytest.mark.parametrize("scope, code, rest, expected", [
    (PDX, 3, 1, True), (PDX, 5, 1, False), (PPROC, 10, 0, False), (SPROC, 11, 1, True), (SDX, 3, 1, False),
])
def test_gate_stops_a_condition_early(kernel, scope, code, rest, expected):
    # GATE pushes nothing: a passing gate leaves the rest of the program to decide.
    pb, sets = scoped_plan()
    program = [I(OP_GATE, scope, sets[code]), I(OP_CONST, rest)]
    assert truth(kernel, program, dx=[3, 5, 7], px=[10, 11], pb=pb) is expected


@pytest.mark.parametrize("scope", [PDX, PPROC, DX, PROC, SDX, SPROC])
def test_in_empty_lists(kernel, scope):
    pb = PlanBuilder()
    everything = pb.set(range(21))
    assert truth(kernel, [I(OP_IN, scope, everything)], dx=[], px=[], pb=pb) is False


@pytest.mark.parametrize("scope, expected", [(PDX, False), (SDX, False), (PPROC, True), (SPROC, False)])
def test_single_item_lists(kernel, scope, expected):
    pb = PlanBuilder()
    everything = pb.set(range(21))
    assert truth(kernel, [I(OP_IN, scope, everything)], dx=[], px=[4], pb=pb) is expected


def test_code_id_zero_is_an_ordinary_item(kernel):
    pb = PlanBuilder()
    zero = pb.set([0])
    assert truth(kernel, [I(OP_IN, DX, zero)], dx=[3, 0], pb=pb)
    pb = PlanBuilder()
    zero = pb.set([0])
    assert not truth(kernel, [I(OP_IN, DX, zero)], dx=[3, 4], pb=pb)


def test_set_bits_across_words(kernel):
    pb = PlanBuilder(n_codes=200)
    s = pb.set([63, 64, 127, 128, 200])
    for code, expected in [(63, True), (64, True), (65, False), (127, True), (128, True), (129, False),
                           (200, True), (199, False), (0, False)]:
        pb2 = PlanBuilder(n_codes=200)
        pb2.sets = list(pb.sets)
        assert truth(kernel, [I(OP_IN, DX, s)], dx=[code], pb=pb2) is expected, code


@pytest.mark.parametrize("a, expected", [(0, False), (1, True), (5, True), (-1, True)])
def test_const(kernel, a, expected):
    assert truth(kernel, [I(OP_CONST, a)]) is expected


def in_unless_plan():
    """IN_UNLESS DX set{5, 7, 0} excl map c against pdx map d."""
    pb = PlanBuilder()
    s = pb.set([5, 7, 0])
    excl = pb.map({5: 9, 7: 0, 0: 4, 6: 9})
    pdx_map = pb.map({3: 9, 8: 0, 0: 4, 2: 1})
    return pb, [I(OP_IN_UNLESS, DX, s, excl, pdx_map)], [I(OP_IN_UNLESS, PROC, s, excl, pdx_map)]


@pytest.mark.parametrize("dx, px, expected", [
    ([3, 5], [], False),        # 5 in set, excl[5] = 9 == pdx_map[3]: excluded
    ([3, 5, 7], [], True),      # 7 in set, excl[7] = 0: never excluded
    ([8, 7], [], True),         # pdx label 0, excl[7] = 0: 0 == 0 but the label must be nonzero
    ([2, 5], [], True),         # pdx label 1 != excl[5] = 9
    ([3, 6], [], False),        # 6 not in the set (its excl label is irrelevant)
    ([5], [], True),            # pdx 5 itself: pdx_map[5] = 0 != excl[5]
    ([], [], False),
])
def test_in_unless(kernel, dx, px, expected):
    pb, instrs, _ = in_unless_plan()
    assert truth(kernel, instrs, dx=dx, px=px, pb=pb) is expected


def test_in_unless_empty_dx_uses_code_id_zero_as_pdx(kernel):
    # No dx: pdx is id 0, pdx_map[0] = 4, and excl[0] = 4, so procedure 0 is excluded ...
    pb, _, instrs = in_unless_plan()
    assert truth(kernel, instrs, dx=[], px=[0], pb=pb) is False
    # ... but procedure 5 (excl 9) is not
    pb, _, instrs = in_unless_plan()
    assert truth(kernel, instrs, dx=[], px=[0, 5], pb=pb) is True
    # with a pdx of label 9, 5 is excluded and 0 is not
    pb, _, instrs = in_unless_plan()
    assert truth(kernel, instrs, dx=[3], px=[5], pb=pb) is False
    pb, _, instrs = in_unless_plan()
    assert truth(kernel, instrs, dx=[3], px=[5, 0], pb=pb) is True


COUNT_LABELS = {1: 1, 2: 1, 3: 2, 4: 0, 5: 3, 6: 3}   # dx [1..6]: distinct nonzero labels {1, 2, 3}


@pytest.mark.parametrize("cmp, value, expected", [
    (EQ, 3, True), (EQ, 2, False), (NE, 3, False), (NE, 6, True),
    (LT, 4, True), (LT, 3, False), (LE, 3, True), (LE, 2, False),
    (GT, 2, True), (GT, 3, False), (GE, 3, True), (GE, 4, False),
])
def test_count(kernel, cmp, value, expected):
    pb = PlanBuilder()
    m = pb.map(COUNT_LABELS)
    assert truth(kernel, [I(OP_COUNT, DX, m, cmp, value)], dx=[1, 2, 3, 4, 5, 6], pb=pb) is expected


@pytest.mark.parametrize("scope, dx, expected_count", [
    (DX, [], 0), (DX, [4, 0], 0), (PDX, [1, 2, 3], 1), (SDX, [1, 2, 3], 2), (SDX, [3, 1, 2], 1),
])
def test_count_scopes(kernel, scope, dx, expected_count):
    pb = PlanBuilder()
    m = pb.map(COUNT_LABELS)
    assert truth(kernel, [I(OP_COUNT, scope, m, EQ, expected_count)], dx=dx, pb=pb)


def test_count_many_distinct_labels(kernel):
    # More distinct labels than MAX_TAGS: the count must still be exact.
    n = 150
    pb = PlanBuilder(n_codes=n)
    m = pb.map({code: (code % 90) + 1 for code in range(1, n + 1)})
    dx = list(range(1, n + 1))
    assert truth(kernel, [I(OP_COUNT, DX, m, EQ, 90)], dx=dx, pb=pb)
    pb = PlanBuilder(n_codes=n)
    m = pb.map({code: (code % 90) + 1 for code in range(1, n + 1)})
    assert not truth(kernel, [I(OP_COUNT, DX, m, EQ, 64)], dx=dx, pb=pb)


def tag_plan():
    pb = PlanBuilder()
    sites = pb.map({1: 11, 2: 12, 3: 12, 4: 0, 5: 13, 10: 14})
    other = pb.map({1: 21})
    return pb, sites, other


@pytest.mark.parametrize("instrs, expected", [
    ([I(OP_TAGSET, DX, "sites"), I(OP_HAS_TAG, 12)], True),
    ([I(OP_TAGSET, DX, "sites"), I(OP_HAS_TAG, 13)], False),         # 5 is not a dx
    ([I(OP_TAGSET, PROC, "sites"), I(OP_HAS_TAG, 14)], True),
    ([I(OP_TAGSET, SDX, "sites"), I(OP_HAS_TAG, 11)], False),        # 1 is the pdx
    ([I(OP_TAGSET, PDX, "sites"), I(OP_HAS_TAG, 11)], True),
    ([I(OP_TAGSET, DX, "sites"), I(OP_HAS_TAG, 0)], False),          # 4 has label 0: not a tag
    ([I(OP_TAGSET, DX, "sites"), I(OP_HAS_TAG, -1)], False),
    ([I(OP_HAS_TAG, 12)], False),                                    # empty register
    ([I(OP_TAGSET, DX, "sites"), I(OP_TAGSET, DX, "other"), I(OP_HAS_TAG, 12)], False),  # replaced
    ([I(OP_TAGSET, DX, "sites"), I(OP_TAGSET, DX, "other"), I(OP_HAS_TAG, 21)], True),
    ([I(OP_TAGSET, DX, "sites"), I(OP_HAS_TAG, 11), I(OP_HAS_TAG, 12), I(OP_AND),
      I(OP_TAGSET, SPROC, "sites"), I(OP_HAS_TAG, 14), I(OP_NOT), I(OP_AND)], True),
])
def test_tagset_has_tag(kernel, instrs, expected):
    pb, sites, other = tag_plan()
    names = {"sites": sites, "other": other}
    instrs = [tuple(names.get(x, x) if isinstance(x, str) else x for x in row) for row in instrs]
    assert truth(kernel, instrs, dx=[1, 2, 3, 4], px=[10], pb=pb) is expected


def test_tag_register_beyond_max_tags(kernel):
    # 100 distinct labels in scope: the reference keeps them all, so HAS_TAG must see label 100.
    n = 100
    pb = PlanBuilder(n_codes=n)
    m = pb.map({code: code for code in range(1, n + 1)})
    for label, expected in [(1, True), (64, True), (65, True), (100, True), (101, False)]:
        pb2 = PlanBuilder(n_codes=n)
        pb2.maps = list(pb.maps)
        assert truth(kernel, [I(OP_TAGSET, DX, m), I(OP_HAS_TAG, label)],
                     dx=list(range(1, n + 1)), pb=pb2) is expected, label


@pytest.mark.parametrize("cmp, value, expected", [
    (EQ, 30, True), (EQ, 31, False), (NE, 31, True), (NE, 30, False), (LT, 31, True), (LT, 30, False),
    (LE, 30, True), (LE, 29, False), (GT, 29, True), (GT, 30, False), (GE, 30, True), (GE, 31, False),
])
def test_field_cmp(kernel, cmp, value, expected):
    assert truth(kernel, [I(OP_FIELD_CMP, AGE, cmp, value)], fields={AGE: 30}) is expected


@pytest.mark.parametrize("cmp", [EQ, NE, LT, LE, GT, GE])
def test_field_cmp_missing_is_false(kernel, cmp):
    assert truth(kernel, [I(OP_FIELD_CMP, AGE, cmp, 30)], fields={SEX: 1}) is False
    assert truth(kernel, [I(OP_FIELD_CMP, AGE, cmp, 30), I(OP_NOT)], fields={SEX: 1}) is True


def test_field_cmp_extremes(kernel):
    big = np.iinfo(np.int32).max
    assert truth(kernel, [I(OP_FIELD_CMP, LOS, GT, MISSING + 1)], fields={LOS: big})
    assert truth(kernel, [I(OP_FIELD_CMP, LOS, LT, 0)], fields={LOS: MISSING + 1})
    assert truth(kernel, [I(OP_FIELD_CMP, LOS, EQ, -5)], fields={LOS: -5})


def test_field_present(kernel):
    assert truth(kernel, [I(OP_FIELD_PRESENT, AGE)], fields={AGE: 0})
    assert not truth(kernel, [I(OP_FIELD_PRESENT, AGE)], fields={SEX: 2})
    assert truth(kernel, [I(OP_FIELD_PRESENT, SEX)], fields={SEX: 2})


@pytest.mark.parametrize("bits", range(16))
def test_nested_boolean_logic(kernel, bits):
    a, b, c, d = ((bits >> k) & 1 for k in range(4))
    # ((a and not b) or (c and d)) and not (a or d)   and   not (not (a or (b and (c or not d))))
    first = [I(OP_CONST, a), I(OP_CONST, b), I(OP_NOT), I(OP_AND), I(OP_CONST, c), I(OP_CONST, d),
             I(OP_AND), I(OP_OR), I(OP_CONST, a), I(OP_CONST, d), I(OP_OR), I(OP_NOT), I(OP_AND)]
    second = [I(OP_CONST, a), I(OP_CONST, b), I(OP_CONST, c), I(OP_CONST, d), I(OP_NOT), I(OP_OR),
              I(OP_AND), I(OP_OR), I(OP_NOT), I(OP_NOT)]
    assert truth(kernel, first) is bool(((a and not b) or (c and d)) and not (a or d))
    assert truth(kernel, second) is bool(a or (b and (c or not d)))


def test_result_is_top_of_stack(kernel):
    assert truth(kernel, [I(OP_CONST, 0), I(OP_CONST, 1)]) is True
    assert truth(kernel, [I(OP_CONST, 1), I(OP_CONST, 0)]) is False


def test_full_stack_depth(kernel):
    # MAX_STACK pushes then MAX_STACK - 1 ANDs: the deepest program the Cython kernel accepts.
    ones = [I(OP_CONST, 1)] * MAX_STACK + [I(OP_AND)] * (MAX_STACK - 1)
    assert truth(kernel, ones) is True
    last_zero = [I(OP_CONST, 1)] * (MAX_STACK - 1) + [I(OP_CONST, 0)] + [I(OP_AND)] * (MAX_STACK - 1)
    assert truth(kernel, last_zero) is False


def hierarchy_plan():
    """A plan with two invalid rules and four MDCs, driven by the dx codes:
    dx 1 -> invalid rule 0, dx 2 -> invalid rule 1;
    MDC 0 entered by 10 (ADRG 0 needs 11: DRG 0 if age >= 65 else DRG 1);
    MDC 1 entered by 10 or 20 (ADRG 1 needs 21, ADRG 2 needs 22: DRG 2 if 23, DRG 3 if 24, no fallback);
    MDC 2 entered by 30 (no ADRGs);
    MDC 3 entered by 20 anywhere in dx (ADRG 3 needs 25: DRG 5 unconditional).
    MDC 0 is entered by a 10 anywhere in dx, MDC 1 only by a pdx 10 or 20."""
    pb = PlanBuilder(n_codes=40)
    has = {code: pb.cond(I(OP_IN, DX, pb.set([code]))) for code in (1, 2, 10, 11, 20, 21, 22, 23, 24, 25, 30)}
    pb.invalid_rule(has[1])
    pb.invalid_rule(has[2])
    old = pb.cond(I(OP_FIELD_CMP, AGE, GE, 65))
    ten_or_twenty = pb.cond(I(OP_IN, PDX, pb.set([10])), I(OP_IN, PDX, pb.set([20])), I(OP_OR))
    pb.mdc(has[10], [(has[11], [old, NO_CONDITION])])
    pb.mdc(ten_or_twenty, [(has[21], [NO_CONDITION]), (has[22], [has[23], has[24]])])
    pb.mdc(has[30], [])
    pb.mdc(has[20], [(has[25], [NO_CONDITION])])
    return pb.build()


@pytest.mark.parametrize("dx, age, expected", [
    ([1, 10, 11], 70, (INVALID, -1, -1, -1, 0)),
    ([10, 2, 1], 70, (INVALID, -1, -1, -1, 0)),       # first matching rule wins
    ([10, 2, 11], 70, (INVALID, -1, -1, -1, 1)),
    ([10, 11], 70, (GROUPED, 0, 0, 0, -1)),
    ([10, 11], 40, (GROUPED, 0, 0, 1, -1)),           # conditional DRG false: the fallback
    ([10, 11], MISSING, (GROUPED, 0, 0, 1, -1)),
    ([10, 21], 40, (GROUPED, 1, 1, 2, -1)),           # MDC 0 entered, no ADRG: falls through to MDC 1
    ([10, 22, 24], 40, (GROUPED, 1, 2, 4, -1)),
    ([10, 22, 23, 24], 40, (GROUPED, 1, 2, 3, -1)),
    ([10, 22], 40, (NO_ADRG, 1, -1, -1, -1)),         # ADRG 2 matched but none of its DRGs
    ([10], 40, (NO_ADRG, 1, -1, -1, -1)),             # MDCs 0 and 1 entered: the last one is reported
    ([20, 30], 40, (NO_ADRG, 3, -1, -1, -1)),         # MDCs 1, 2 and 3 entered, none with an ADRG
    ([30], 40, (NO_ADRG, 2, -1, -1, -1)),
    ([20, 25], 40, (GROUPED, 3, 3, 5, -1)),           # MDC 1 entered without ADRG, then MDC 3
    ([21, 10], 40, (NO_ADRG, 0, -1, -1, -1)),         # MDC 1 needs 10/20 as *pdx*; MDC 0 does not
    ([21, 20], 40, (NO_ADRG, 3, -1, -1, -1)),
    ([21, 22], 40, (UNGROUPABLE, -1, -1, -1, -1)),
    ([], 40, (UNGROUPABLE, -1, -1, -1, -1)),
    ([0, 0], 40, (UNGROUPABLE, -1, -1, -1, -1)),
])
def test_hierarchy(kernel, dx, age, expected):
    (row,) = run(kernel, hierarchy_plan(), make_batch([(dx, [], {AGE: age})]))
    assert tuple(row) == expected


def behaviour_plan():
    """MDC 0 entered by pdx 10: ADRG 0 needs principal procedure 5 (DRG 0 only when age >= 65, no
    fallback), ADRG 1 needs principal procedure 5 or 6 (DRG 1 unconditional)."""
    pb = PlanBuilder(n_codes=40)
    old = pb.cond(I(OP_FIELD_CMP, AGE, GE, 65))
    pb.mdc(pb.cond(I(OP_IN, PDX, pb.set([10]))),
           [(pb.cond(I(OP_IN, PPROC, pb.set([5]))), [old]), (pb.cond(I(OP_IN, PPROC, pb.set([5, 6]))), [NO_CONDITION])])
    return pb.build()


@pytest.mark.parametrize("px, age, behaviour, expected", [
    ([5], 70, 0, (GROUPED, 0, 0, 0, -1)),
    ([5], 40, 0, (GROUPED, 0, 1, 1, -1)),                          # default: ADRG 0 without DRG → next ADRG
    ([5], 40, NO_DRG_STATUS, (NO_DRG, 0, 0, -1, -1)),              # adrg_without_drg = no_drg
    ([7, 8, 6], 40, 0, (NO_ADRG, 0, -1, -1, -1)),
    ([7, 8, 6], 40, SECOND_ATTEMPT, (GROUPED, 0, 1, 1, -1)),       # procedure 3 as the principal one
    ([7, 5, 6], 40, SECOND_ATTEMPT | NO_DRG_STATUS, (GROUPED, 0, 1, 1, -1)),   # 5 → no_drg, then 6 → grouped
    ([7, 5], 40, SECOND_ATTEMPT | NO_DRG_STATUS, (NO_ADRG, 0, -1, -1, -1)),    # no attempt grouped: the first result
    ([7], 40, SECOND_ATTEMPT, (NO_ADRG, 0, -1, -1, -1)),
    ([], 40, SECOND_ATTEMPT, (NO_ADRG, 0, -1, -1, -1)),
])
def test_behaviour_flags(kernel, px, age, behaviour, expected):
    out = new_outputs(1)
    kernel.group_cases(*behaviour_plan(), *make_batch([([10], px, {AGE: age})]), *out, 0, -1, None, behaviour)
    assert tuple(int(o[0]) for o in out) == expected


def retry_plan():
    """MDC 0 entered by pdx 10: ADRG 0 needs principal procedure 5 and procedure 9 anywhere (DRG 0).
    MDC 1 entered by principal procedure 6: ADRG 1 needs pdx 20 (DRG 1)."""
    pb = PlanBuilder(n_codes=40)
    pb.mdc(pb.cond(I(OP_IN, PDX, pb.set([10]))),
           [(pb.cond(I(OP_IN, PPROC, pb.set([5])), I(OP_IN, PROC, pb.set([9])), I(OP_AND)), [NO_CONDITION])])
    pb.mdc(pb.cond(I(OP_IN, PPROC, pb.set([6]))), [(pb.cond(I(OP_IN, PDX, pb.set([20]))), [NO_CONDITION])])
    return pb.build()


ALONE = SECOND_ATTEMPT | ATTEMPT_ALONE


@pytest.mark.parametrize("pdx, px, behaviour, expected", [
    (10, [7, 5, 9], SECOND_ATTEMPT, (GROUPED, 0, 0, 0, -1)),      # [5, 7, 9]: procedure 9 is still there
    (10, [7, 5, 9], ALONE, (NO_ADRG, 0, -1, -1, -1)),              # [5] alone, then [9] alone: neither groups
    (10, [7, 9, 5], ALONE, (NO_ADRG, 0, -1, -1, -1)),
    (10, [5, 9], ALONE, (GROUPED, 0, 0, 0, -1)),                   # the first attempt groups: no retry
    (11, [7, 6], SECOND_ATTEMPT, (UNGROUPABLE, -1, -1, -1, -1)),    # no attempt groups: the first result
    (11, [7, 6], SECOND_ATTEMPT | LAST_ENTERED, (NO_ADRG, 1, -1, -1, -1)),   # the retry entered MDC 1
    (11, [7, 6], ALONE | LAST_ENTERED, (NO_ADRG, 1, -1, -1, -1)),
    (10, [7, 6], ALONE, (NO_ADRG, 0, -1, -1, -1)),
    (10, [7, 6], ALONE | LAST_ENTERED, (NO_ADRG, 1, -1, -1, -1)),  # MDC 0, then MDC 0 and 1 in the retry
    (10, [7, 6, 8], ALONE | LAST_ENTERED, (NO_ADRG, 0, -1, -1, -1)),  # [8], the last attempt, enters MDC 0 only
    (11, [7, 8], ALONE | LAST_ENTERED, (UNGROUPABLE, -1, -1, -1, -1)),  # no attempt entered an MDC
    (11, [6, 8], LAST_ENTERED, (NO_ADRG, 1, -1, -1, -1)),           # without retries: as before
])
def test_second_attempt_alone_and_last_entered(kernel, pdx, px, behaviour, expected):
    out = new_outputs(1)
    kernel.group_cases(*retry_plan(), *make_batch([([pdx], px, {AGE: 40})]), *out, 0, -1, None, behaviour)
    assert tuple(int(o[0]) for o in out) == expected


def test_skip_rows(kernel):
    batch = list(make_batch([([10, 11], [], {AGE: 70}), ([10, 11], [], {AGE: 70}), ([], [], None)],
                            skip=[0, 1, 1]))
    res = run(kernel, hierarchy_plan(), tuple(batch))
    assert res.tolist() == [[GROUPED, 0, 0, 0, -1], [INVALID, -1, -1, -1, -1], [INVALID, -1, -1, -1, -1]]


def test_skip_rows_are_not_read(kernel):
    # A skipped row's codes are never looked at, even ids no plan knows.
    batch = make_batch([([10, 11], [], {AGE: 70}), ([10, 10**6], [10**7], None)], skip=[0, 1])
    assert run(kernel, hierarchy_plan(), batch).tolist() == [[GROUPED, 0, 0, 0, -1], [INVALID, -1, -1, -1, -1]]


def test_empty_plan_and_empty_batch(kernel):
    empty = PlanBuilder().build()
    assert run(kernel, empty, make_batch([([1], [2], None), ([], [], None)])).tolist() == \
        [[UNGROUPABLE, -1, -1, -1, -1]] * 2
    assert run(kernel, hierarchy_plan(), make_batch([])).shape == (0, 5)


def test_start_stop(kernel):
    plan = hierarchy_plan()
    batch = make_batch([([10, 11], [], {AGE: 70}), ([10, 21], [], None), ([30], [], None),
                        ([1], [], None), ([], [], None)])
    full = run(kernel, plan, batch)
    for start, stop in [(0, 5), (1, 3), (2, -1), (4, 5), (3, 3), (0, 0), (5, 5), (5, -1)]:
        part = run(kernel, plan, batch, start, stop)
        end = 5 if stop < 0 else stop
        assert (part[start:end] == full[start:end]).all()
        untouched = np.r_[0:start, end:5]
        assert (part[untouched, 0] == SENTINEL_STATUS).all()
        assert (part[untouched, 1:] == SENTINEL_INT).all()


# --------------------------------------------------------------------------- random plans and cases

N_CODES = 150


ANY_TEST = (OP_CONST, OP_IN, OP_IN, OP_IN, OP_IN_UNLESS, OP_COUNT, OP_TAGSET, OP_HAS_TAG, OP_FIELD_CMP, OP_FIELD_PRESENT)


def random_condition(rng, n_sets, n_maps, depth=0, jumps=False, tests=ANY_TEST) -> list[tuple]:
    """A random well-formed postfix program (stack depth <= 2 * 4 + 2). jumps: about half the `and` /
    `or` short-circuit (`A, JUMP_IF_FALSE len(B), B`), as the compiler emits them. tests: the
    opcodes its leaves draw from."""
    if depth < 4 and rng.random() < 0.55:
        kind = rng.integers(3)
        left = random_condition(rng, n_sets, n_maps, depth + 1, jumps, tests)
        if kind == 2:
            return left + [I(OP_NOT)]
        right = random_condition(rng, n_sets, n_maps, depth + 1, jumps, tests)
        if jumps and rng.random() < 0.5:
            return left + [I(OP_JUMP_IF_FALSE if kind == 0 else OP_JUMP_IF_TRUE, len(right))] + right
        return left + right + [I(OP_AND if kind == 0 else OP_OR)]
    scope = int(rng.integers(6))
    op = int(rng.choice(tests))
    if op == OP_COUNT_ITEMS:
        return [I(op, scope, int(rng.integers(6)), int(rng.integers(0, 4)))]
    if op == OP_CONST:
        return [I(op, int(rng.random() < 0.6))]
    if op == OP_IN:
        return [I(op, scope, int(rng.integers(n_sets)))]
    if op == OP_IN_UNLESS:
        return [I(op, scope, int(rng.integers(n_sets)), int(rng.integers(n_maps)), int(rng.integers(n_maps)))]
    if op == OP_COUNT:
        return [I(op, scope, int(rng.integers(n_maps)), int(rng.integers(6)), int(rng.integers(4)))]
    if op == OP_TAGSET:
        return [I(op, scope, int(rng.integers(n_maps))), I(OP_HAS_TAG, int(rng.integers(-1, 9)))]
    if op == OP_HAS_TAG:        # whatever the register holds (maybe nothing yet)
        return [I(op, int(rng.integers(0, 9)))]
    if op == OP_FIELD_CMP:
        return [I(op, int(rng.integers(N_FIELDS)), int(rng.integers(6)), int(rng.integers(-1, 4)))]
    return [I(op, int(rng.integers(N_FIELDS)))]


def random_field_condition(rng, depth=0) -> list[tuple]:
    """A random program of field tests and item counts only (what the compiled kernel checks in bulk
    when it is a leading `invalid` rule), maybe behind GATE_FIELDs."""
    if depth == 0:   # an equality first, so the rule holds for some cases only
        return ([I(OP_GATE_FIELD, int(rng.integers(N_FIELDS)), EQ, int(rng.integers(-1, 4)))]
                + [I(OP_GATE_FIELD, int(rng.integers(N_FIELDS)), int(rng.integers(6)), int(rng.integers(-1, 4)))
                   for _ in range(int(rng.integers(0, 2)))] + random_field_condition(rng, 1))
    if depth < 4 and rng.random() < 0.5:
        kind = rng.integers(3)
        left = random_field_condition(rng, depth + 1)
        if kind == 2:
            return left + [I(OP_NOT)]
        return left + random_field_condition(rng, depth + 1) + [I(OP_AND if kind == 0 else OP_OR)]
    op = int(rng.choice([OP_CONST, OP_FIELD_CMP, OP_FIELD_CMP, OP_FIELD_PRESENT, OP_COUNT_ITEMS]))
    if op == OP_CONST:
        return [I(op, int(rng.random() < 0.3))]
    if op == OP_FIELD_CMP:
        return [I(op, int(rng.integers(N_FIELDS)), int(rng.integers(6)), int(rng.integers(-1, 4)))]
    if op == OP_COUNT_ITEMS:
        return [I(op, int(rng.integers(6)), int(rng.integers(6)), int(rng.integers(0, 4)))]
    return [I(op, int(rng.integers(N_FIELDS)))]


def random_plan(seed: int, n_conditions: int = 30, jumps: bool = False, field_invalids: int = 0) -> tuple:
    """jumps: short-circuit jumps in the conditions; field_invalids: that many `invalid` rules of field
    tests and item counts first (the compiled kernel's bulk check)."""
    rng = np.random.default_rng(seed)
    pb = PlanBuilder(n_codes=N_CODES)
    n_sets, n_maps = 12, 5
    for _ in range(n_sets):
        # mostly small codes, so the random cases hit the sets often
        pb.set(rng.choice(40, size=int(rng.integers(1, 12)), replace=False).tolist()
               + rng.choice(N_CODES + 1, size=int(rng.integers(0, 4))).tolist())
    for _ in range(n_maps):
        pb.map({code: int(rng.integers(0, 8)) for code in range(N_CODES + 1) if rng.random() < 0.7})
    # Some conditions start with GATE instructions, as the compiler emits for `pdx in X and ...`.
    gates = lambda: ([I(OP_GATE_FIELD, int(rng.integers(N_FIELDS)), int(rng.integers(6)), int(rng.integers(-1, 4)))
                      for _ in range(int(rng.integers(0, 2)))]   # noqa: E731 - `age = 0 and ...`
                     + [I(OP_GATE, int(rng.integers(6)), int(rng.integers(n_sets))) for _ in range(int(rng.integers(0, 3)))])
    conds = [pb.cond(*(gates() + random_condition(rng, n_sets, n_maps, jumps=jumps))) for _ in range(n_conditions)]
    pick = lambda: int(rng.choice(conds))  # noqa: E731 - conditions are shared, as a compiler may do
    for _ in range(field_invalids):
        pb.invalid_rule(pb.cond(*random_field_condition(rng)))
    for _ in range(2):
        pb.invalid_rule(pb.cond(*(random_condition(rng, n_sets, n_maps, 2) + random_condition(rng, n_sets, n_maps, 2)
                                  + [I(OP_AND)])))
    for _ in range(6):
        adrgs = []
        for _ in range(int(rng.integers(0, 4))):
            drgs = [pick() for _ in range(int(rng.integers(0, 3)))]
            if rng.random() < 0.7:
                drgs.append(NO_CONDITION)
            adrgs.append((pick(), drgs))
        pb.mdc(pick(), adrgs)
    return pb.build()


def random_field(rng) -> int:
    return MISSING if rng.random() < 0.15 else int(rng.integers(-1, 4))


def random_cases(seed: int, n: int) -> tuple:
    rng = np.random.default_rng(seed)
    code = lambda: int(rng.integers(40)) if rng.random() < 0.85 else int(rng.integers(N_CODES + 1))  # noqa: E731
    cases = [([code() for _ in range(int(rng.integers(0, 7)))],
              [code() for _ in range(int(rng.integers(0, 5)))],
              {a: random_field(rng) for a in range(N_FIELDS)}) for _ in range(n)]
    return make_batch(cases, skip=(rng.random(n) < 0.05).astype(np.uint8))


@pytest.mark.parametrize("seed", range(8))
def test_random_parity(cy, seed):
    plan, batch = random_plan(seed), random_cases(1000 + seed, 1500)
    expected = run(_kernel_py, plan, batch)
    got = run(cy, plan, batch)
    mismatch = np.flatnonzero((expected != got).any(axis=1))
    assert mismatch.size == 0, f"first mismatching row {mismatch[0]}: python {expected[mismatch[0]]}, cython {got[mismatch[0]]}"
    # the random plans should exercise every outcome, or this test proves little
    assert len(set(expected[:, 0].tolist())) >= 3


@pytest.mark.parametrize("behaviour", [NO_DRG_STATUS, SECOND_ATTEMPT, NO_DRG_STATUS | SECOND_ATTEMPT, ALONE,
                                       ALONE | LAST_ENTERED, SECOND_ATTEMPT | LAST_ENTERED | NO_DRG_STATUS])
def test_random_parity_with_settings(cy, behaviour):
    changed = 0
    for seed in range(4):
        plan, batch = random_plan(200 + seed), random_cases(300 + seed, 1000)
        expected = run(_kernel_py, plan, batch, behaviour=behaviour)
        assert (expected == run(cy, plan, batch, behaviour=behaviour)).all()
        # against the same settings without the refinements of the retry (or without any setting)
        baseline = behaviour & ~(ATTEMPT_ALONE | LAST_ENTERED) if behaviour & (ATTEMPT_ALONE | LAST_ENTERED) else 0
        changed += int((expected != run(_kernel_py, plan, batch, behaviour=baseline)).any(axis=1).sum())
    assert changed > 0    # the settings changed some results, so the comparison covered them


@pytest.mark.parametrize("seed", range(3))
def test_random_parity_subranges(cy, seed):
    plan, batch = random_plan(50 + seed), random_cases(60 + seed, 400)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        start, stop = sorted(rng.integers(0, 401, size=2).tolist())
        assert (run(_kernel_py, plan, batch, start, stop) == run(cy, plan, batch, start, stop)).all()


code_ids = st.one_of(st.integers(0, 40), st.integers(0, N_CODES))
field_values = st.one_of(st.just(MISSING), st.integers(-2, 5), st.integers(MISSING + 1, np.iinfo(np.int32).max))
case_strategy = st.tuples(st.lists(code_ids, max_size=8), st.lists(code_ids, max_size=6),
                          st.fixed_dictionaries({a: field_values for a in range(N_FIELDS)}))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan_seed=st.integers(0, 2**32 - 1), cases=st.lists(case_strategy, min_size=1, max_size=12),
       skip=st.lists(st.booleans(), min_size=12, max_size=12))
def test_hypothesis_parity(plan_seed, cases, skip):
    cy = cython_kernel()
    plan = random_plan(plan_seed, n_conditions=12)
    batch = make_batch(cases, skip=skip[:len(cases)])
    assert (run(_kernel_py, plan, batch) == run(cy, plan, batch)).all()
    behaviour = plan_seed % 16
    assert (run(_kernel_py, plan, batch, behaviour=behaviour) == run(cy, plan, batch, behaviour=behaviour)).all()


# --------------------------------------------------------------------------- Cython only

def test_read_only_inputs(cy):
    pa = pytest.importorskip("pyarrow")
    plan, batch = random_plan(7), random_cases(8, 500)
    expected = run(_kernel_py, plan, batch)
    frozen = []
    for arr in (*plan, *batch):
        arr = arr.copy()
        arr.setflags(write=False)
        frozen.append(arr)
    # and codes straight out of Arrow memory (zero-copy, read-only)
    frozen[11] = pa.array(batch[1]).to_numpy(zero_copy_only=True)
    assert not frozen[11].flags.writeable
    assert (run(cy, tuple(frozen[:10]), tuple(frozen[10:])) == expected).all()


def test_threads_on_disjoint_ranges(cy):
    plan, batch = random_plan(3), random_cases(4, 40_000)
    expected = run(cy, plan, batch)
    assert (run(_kernel_py, plan, batch, 0, 2000) == expected)[:2000].all()
    out = new_outputs(len(batch[5]))
    bounds = np.linspace(0, len(batch[5]), 9).astype(int)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda k: cy.group_cases(*plan, *batch, *out, int(bounds[k]), int(bounds[k + 1])),
                      range(8)))
    got = np.stack([o.astype(np.int64) for o in out], axis=1)
    assert (got == expected).all()


def _expect_rejected(cy, plan, batch, match, start=0, stop=-1):
    out = new_outputs(len(batch[5]))
    with pytest.raises(ValueError, match=match):
        cy.group_cases(*plan, *batch, *out, start, stop)
    assert (out[0] == SENTINEL_STATUS).all(), "outputs were written before the error"


def test_rejects_code_ids_outside_the_plan(cy):
    plan = hierarchy_plan()                     # 41 code ids: label maps/sets cover 0..63 / 0..40
    _expect_rejected(cy, plan, make_batch([([10], [], None), ([10, 64], [], None)]), "code id 64")
    pb = PlanBuilder(n_codes=40)
    pb.map({1: 1})
    pb.invalid_rule(pb.true())
    _expect_rejected(cy, pb.build(), make_batch([([], [41], None)]), "px code id 41")
    # the same id is fine in a row outside start:stop
    out = new_outputs(2)
    cy.group_cases(*plan, *make_batch([([10], [], None), ([64], [], None)]), *out, 0, 1)
    assert out[0][0] == NO_ADRG


def test_rejects_bad_offsets(cy):
    batch = list(make_batch([([10], [], None), ([11], [], None)]))
    batch[0] = np.array([0, 2, 1], np.int64)
    _expect_rejected(cy, hierarchy_plan(), tuple(batch), "dx_offsets")
    batch[0] = np.array([0, 1, 5], np.int64)
    _expect_rejected(cy, hierarchy_plan(), tuple(batch), "dx_offsets")


def test_rejects_bad_shapes(cy):
    plan, batch = hierarchy_plan(), make_batch([([10], [], None), ([11], [], None)])
    short = list(batch)
    short[4] = batch[4][:, :1].copy()
    _expect_rejected(cy, plan, tuple(short), "fields")
    short = list(batch)
    short[2] = batch[2][:2].copy()
    _expect_rejected(cy, plan, tuple(short), "offsets")
    out = list(new_outputs(2))
    out[3] = out[3][:1]
    with pytest.raises(ValueError, match="out_drg"):
        cy.group_cases(*plan, *batch, *out)
    _expect_rejected(cy, plan, batch, "outside the batch", start=-1, stop=2)
    _expect_rejected(cy, plan, batch, "outside the batch", start=0, stop=3)
    with pytest.raises(ValueError):                 # dtype mismatch (buffer protocol)
        cy.group_cases(*plan, *batch[:4], batch[4].astype(np.int64), batch[5], *new_outputs(2))


@pytest.mark.parametrize("instrs, match", [
    ([I(OP_CONST, 1)] * (MAX_STACK + 1), "MAX_STACK"),
    ([I(OP_CONST, 1), I(OP_AND)], "underflow"),
    ([I(OP_NOT)], "underflow"),
    ([I(OP_TAGSET, DX, 0)], "no value"),
    ([], "no value"),
    ([I(len(ir.OPCODE_NAMES))], "bad opcode"),
    ([I(OP_IN, 6, 0)], "bad scope"),
    ([I(OP_IN, DX, 5)], "set 5"),
    ([I(OP_COUNT, DX, 0, 6, 1)], "bad comparison"),
    ([I(OP_IN_UNLESS, DX, 0, 0, 3)], "label map"),
    ([I(OP_FIELD_CMP, N_FIELDS, EQ, 1)], "field"),
    ([I(OP_FIELD_PRESENT, -1)], "field"),
])
def test_rejects_bad_programs(cy, instrs, match):
    pb = PlanBuilder()
    pb.set([1])
    pb.map({1: 1})
    pb.invalid_rule(pb.cond(*instrs))
    _expect_rejected(cy, pb.build(), make_batch([([1], [], None)]), match)


def test_rejects_bad_hierarchy(cy):
    batch = make_batch([([1], [], None)])
    plan = list(hierarchy_plan())
    plan[5] = np.array([0, 99, 1, 2], np.int32)                # mdc_cond
    _expect_rejected(cy, tuple(plan), batch, "mdc_cond")
    plan = list(hierarchy_plan())
    plan[9] = np.full_like(plan[9], -2)                         # drg_cond
    _expect_rejected(cy, tuple(plan), batch, "drg_cond")
    plan = list(hierarchy_plan())
    plan[6] = plan[6][:-1].copy()                               # mdc_adrg_start
    _expect_rejected(cy, tuple(plan), batch, "mdc_adrg_start")
    plan = list(hierarchy_plan())
    plan[8] = plan[8] + 100                                     # adrg_drg_start
    _expect_rejected(cy, tuple(plan), batch, "adrg_drg_start")


# --------------------------------------------------------------------------- kernel selection

def test_get_kernel():
    if selector is None:
        pytest.fail(f"kernel selection failed: {SELECTION_ERROR}")
    assert selector.get_kernel("python") is _kernel_py
    with pytest.raises(ValueError):
        selector.get_kernel("fortran")
    assert selector.KERNEL_NAME in ("cython", "python")
    assert selector.group_cases is selector.KERNEL.group_cases
    if _require_extension():
        assert selector.KERNEL_NAME == "cython"


def _selected(env_extra: dict, prelude: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GROUPER_")}
    env.update(env_extra)
    code = prelude + "from grouper.engine import kernel; print(kernel.KERNEL_NAME, kernel.group_cases is kernel.KERNEL.group_cases)"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=os.path.dirname(os.__file__))  # not the checkout: test the installed package


def test_selection_no_extensions():
    proc = _selected({"GROUPER_NO_EXTENSIONS": "1", "GROUPER_REQUIRE_EXTENSION": "1"})
    assert proc.returncode == 0 and proc.stdout.split() == ["python", "True"], proc.stderr


def test_selection_when_extension_missing():
    hide = "import sys; sys.modules['grouper._kernel'] = None\n"   # makes `from grouper import _kernel` fail
    proc = _selected({}, hide)
    assert proc.returncode == 0 and proc.stdout.split() == ["python", "True"], proc.stderr
    proc = _selected({"GROUPER_REQUIRE_EXTENSION": "1"}, hide)
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "pip install" in proc.stderr


def test_selection_default(cy):
    proc = _selected({})
    assert proc.returncode == 0 and proc.stdout.split() == ["cython", "True"], proc.stderr


# --------------------------------------------------------------------------- the ADRG-level gate

def adrg_gate_options(plan) -> dict:
    """The compiler's ADRG-level gate (ir.Plan.adrg_gate_class) for a hand-built plan (no qy rules:
    its slots are the ADRGs, then the MDC entries)."""
    from grouper.engine.compile import adrg_gate_classes

    set_bits, label_maps, program, cond_start, _, mdc_cond, _, adrg_cond = plan[:8]
    classes, other, rows = adrg_gate_classes(program, cond_start, list(adrg_cond) + list(mdc_cond), set_bits,
                                             label_maps.shape[1] - 1, None)
    return {"adrg_gate_class": classes, "adrg_gate_other": other, "adrg_gate_rows": rows}


def parity_with(cy, plan, batch, options: dict, behaviour: int = 0, pdx_mdc_mask=None):
    expected = run(_kernel_py, plan, batch, behaviour=behaviour)
    out = new_outputs(len(batch[5]))
    cy.group_cases(*plan, *batch, *out, 0, -1, pdx_mdc_mask, behaviour, **options)
    got = np.stack([o.astype(np.int64) for o in out], axis=1)
    mismatch = np.flatnonzero((expected != got).any(axis=1))
    assert mismatch.size == 0, f"row {mismatch[0]}: python {expected[mismatch[0]]}, cython {got[mismatch[0]]}"
    return expected


@pytest.mark.parametrize("seed", range(6))
def test_random_parity_with_adrg_gate(cy, seed):
    """The compiled kernel skips the ADRGs and MDC entries whose gate no item of the case passes in
    its role; the reference tests all: same results, also in second attempts (where the procedures
    change)."""
    plan, batch = random_plan(400 + seed, n_conditions=40), random_cases(500 + seed, 1500)
    options = adrg_gate_options(plan)
    rows = options["adrg_gate_rows"]
    assert len(rows) > 2 and (rows[1:, :-1] != 0).any()       # some slots are gated, so something is skipped
    for behaviour in (0, SECOND_ATTEMPT | NO_DRG_STATUS, SECOND_ATTEMPT | ATTEMPT_ALONE):
        parity_with(cy, plan, batch, options, behaviour)


def test_adrg_gate_rows_carry_the_pdx_mdc_mask(cy):
    """A principal diagnosis's row ends with its pdx_mdc_mask word, which the kernel uses (with the
    exact entries) instead of reading pdx_mdc_mask: same results as the reference."""
    from grouper.engine.compile import adrg_gate_classes

    for seed in range(3):
        plan, batch = random_plan(420 + seed, n_conditions=40), random_cases(520 + seed, 1500)
        set_bits, label_maps, program, cond_start, _, mdc_cond, _, adrg_cond = plan[:8]
        width = label_maps.shape[1]
        # per code, the MDCs whose entry can hold with it as principal diagnosis (no GATE pdx S of the
        # entry excludes it), as the compiler's pdx_mdc_mask
        mask = np.full(width, (1 << len(mdc_cond)) - 1, np.uint64)
        for m, k in enumerate(mdc_cond):
            rows = program[cond_start[k]:cond_start[k + 1]]
            for op, a, b, *_ in rows:
                if op == OP_GATE and a == PDX:
                    ids = np.arange(width)
                    inside = (set_bits[b, ids >> 6] >> (ids & 63).astype(np.uint64)) & np.uint64(1)
                    mask[inside == 0] &= ~np.uint64(1 << m)
        classes, other, gate_rows = adrg_gate_classes(program, cond_start, list(adrg_cond) + list(mdc_cond),
                                                      set_bits, width - 1, mask)
        assert (gate_rows[classes[:, 0], -1] == mask).all()
        gate = {"adrg_gate_class": classes, "adrg_gate_other": other, "adrg_gate_rows": gate_rows}
        parity_with(cy, plan, batch, gate, pdx_mdc_mask=mask)


def test_rejects_bad_adrg_gate(cy):
    plan, batch = random_plan(7), random_cases(8, 10)
    good = adrg_gate_options(plan)
    out = new_outputs(10)
    for change, match in ((dict(adrg_gate_class=good["adrg_gate_class"][:-1].copy()), "adrg_gate_class has"),
                          (dict(adrg_gate_other=np.zeros((len(good["adrg_gate_other"]), 4), np.uint8)),
                           "adrg_gate_other has"),
                          (dict(adrg_gate_rows=np.zeros((3, 9), np.uint64)), "adrg_gate_rows has"),
                          (dict(adrg_gate_rows=None), "go together"),
                          (dict(adrg_gate_other=None), "go together"),
                          (dict(adrg_gate_class=None), "go together")):
        with pytest.raises(ValueError, match=match):
            cy.group_cases(*plan, *batch, *out, 0, -1, None, 0, **{**good, **change})
    assert (out[0] == SENTINEL_STATUS).all()
    with pytest.raises(ValueError, match="needs pdx_mdc_mask"):
        cy.group_cases(*plan, *batch, *out, 0, -1, None, 0, mdc_entry_exact=1)


@pytest.mark.parametrize("damage", ["class past the rows", "every class past the rows", "other class past the rows"])
def test_malformed_adrg_gate_classes_only_stop_the_skipping(cy, damage):
    """The classes are bounds-checked where the kernel reads them (checking every code id's up front
    would cost more than grouping one case): one out of range makes every ADRG and MDC a candidate,
    so the results stay those of the reference."""
    plan, batch = random_plan(402, n_conditions=40), random_cases(502, 1500)
    options = adrg_gate_options(plan)
    classes, other = options["adrg_gate_class"].copy(), options["adrg_gate_other"].copy()
    if damage == "class past the rows":
        classes[::3, :] = len(options["adrg_gate_rows"])
    elif damage == "every class past the rows":
        classes[:] = 60_000
    else:
        other[::2, :] = 255
    parity_with(cy, plan, batch, {**options, "adrg_gate_class": classes, "adrg_gate_other": other})


# --------------------------------------------------------------------------- short-circuit jumps, bulk invalid checks

@pytest.mark.parametrize("seed", range(6))
def test_random_parity_with_jumps_and_field_invalids(cy, seed):
    """Short-circuit `and` / `or` (JUMP_IF_FALSE / JUMP_IF_TRUE) and leading field-only `invalid`
    rules (checked in bulk, a block of rows at a time, by the compiled kernel) give the reference's
    results, with and without the ADRG-level gate and second attempts."""
    plan = random_plan(600 + seed, n_conditions=40, jumps=True, field_invalids=4)
    batch = random_cases(700 + seed, 1500)   # more than one block of rows (ROWS = 128), a partial last one
    program = plan[2]
    assert (program[:, 0] == OP_JUMP_IF_FALSE).any() and (program[:, 0] == OP_JUMP_IF_TRUE).any()
    expected = parity_with(cy, plan, batch, {})
    bulk = (expected[:, 0] == INVALID) & (expected[:, 4] >= 0) & (expected[:, 4] < 4)
    assert bulk.sum() > 50 and (expected[:, 0] != INVALID).sum() > 50   # both the bulk rules and grouping matter
    for behaviour in (SECOND_ATTEMPT | NO_DRG_STATUS, SECOND_ATTEMPT | ATTEMPT_ALONE | LAST_ENTERED):
        parity_with(cy, plan, batch, adrg_gate_options(plan), behaviour)
    for start, stop in ((5, 700), (129, 131), (1499, 1500)):      # blocks counted from `start`
        full = run(_kernel_py, plan, batch)
        part = run(cy, plan, batch, start, stop)
        assert (part[start:stop] == full[start:stop]).all()


def test_jumps_by_hand(kernel):
    """`A and B` as A, JUMP_IF_FALSE 1, B and `A or B` as A, JUMP_IF_TRUE 1, B: the truth tables, and
    a jumped-over right side that would fail (a stack underflow) is never run."""
    for a in (0, 1):
        for b in (0, 1):
            assert truth(kernel, [I(OP_CONST, a), I(OP_JUMP_IF_FALSE, 1), I(OP_CONST, b)]) == bool(a and b)
            assert truth(kernel, [I(OP_CONST, a), I(OP_JUMP_IF_TRUE, 1), I(OP_CONST, b)]) == bool(a or b)
            # (a or b) and not a, with both jumps landing on the same instruction count
            assert truth(kernel, [I(OP_CONST, a), I(OP_JUMP_IF_TRUE, 1), I(OP_CONST, b), I(OP_JUMP_IF_FALSE, 2),
                                  I(OP_CONST, a), I(OP_NOT)]) == bool((a or b) and not a)


@pytest.mark.parametrize("program, match", [
    ([I(OP_JUMP_IF_FALSE, 0), I(OP_CONST, 1)], "underflow"),
    ([I(OP_CONST, 1), I(OP_JUMP_IF_FALSE, 2), I(OP_CONST, 1)], "leaves the condition"),
    ([I(OP_CONST, 1), I(OP_JUMP_IF_TRUE, -1), I(OP_CONST, 1)], "leaves the condition"),
    ([I(OP_CONST, 1), I(OP_JUMP_IF_TRUE, 0), I(OP_CONST, 1)], "stack depth"),
    ([I(OP_CONST, 1), I(OP_JUMP_IF_TRUE, 2), I(OP_CONST, 1), I(OP_CONST, 1)], "stack depth"),
])
def test_rejects_bad_jumps(cy, program, match):
    pb = PlanBuilder()
    k = pb.cond(*program)
    pb.mdc(k, [])
    plan, batch = pb.build(), make_batch([([1], [], None)])
    with pytest.raises(ValueError, match=match):
        run(cy, plan, batch)


def test_more_than_64_mdcs(kernel):
    """The compiled kernel visits only the MDCs whose entry can hold when there are at most 64 (a
    bitmap); beyond, it walks them all: same results either way."""
    pb = PlanBuilder(n_codes=90)
    for m in range(70):
        pb.mdc(pb.cond(I(OP_GATE, PDX, pb.set([m + 1])), I(OP_CONST, 1)),
               [(pb.cond(I(OP_IN, PROC, pb.set([m % 7]))), [NO_CONDITION])])
    batch = make_batch([([m + 1, 3], [m % 7 if m % 3 else 80], None) for m in range(70)]
                       + [([85], [], None), ([], [1], None)])
    got = run(kernel, pb.build(), batch)
    expected = [(GROUPED, m, m, m) if m % 3 else (NO_ADRG, m, -1, -1) for m in range(70)]
    assert [tuple(row[:4]) for row in got[:70].tolist()] == expected
    assert got[70, 0] == UNGROUPABLE and got[71, 0] == UNGROUPABLE


# --------------------------------------------------------------------------- DRG decisions, MDCs entered unvisited

DECISION_TESTS = (OP_CONST, OP_IN, OP_IN, OP_IN_UNLESS, OP_IN_UNLESS, OP_FIELD_CMP, OP_FIELD_PRESENT, OP_COUNT_ITEMS)


def random_decision_condition(rng, n_sets, n_maps) -> list[tuple]:
    """A random program of the tests a DRG decision takes (IN, IN_UNLESS, field tests, item counts,
    constants), joined by AND / OR / NOT or short-circuit jumps, maybe behind GATEs."""
    gates = [I(OP_GATE_FIELD, AGE, int(rng.choice([GE, LT])), int(rng.integers(0, 4)))
             for _ in range(int(rng.random() < 0.3))]
    gates += [I(OP_GATE, int(rng.integers(6)), int(rng.integers(n_sets))) for _ in range(int(rng.random() < 0.2))]
    return gates + random_condition(rng, n_sets, n_maps, 2, jumps=True, tests=DECISION_TESTS)


def decision_plan(seed: int) -> tuple:
    """A random plan whose DRG lists are mostly made of decision tests (a few with a TAGSET, which
    keeps the general path), the DRGs' conditions few and shared as the compiler's are."""
    rng = np.random.default_rng(seed)
    pb = PlanBuilder(n_codes=N_CODES)
    n_sets, n_maps = 10, 4
    for _ in range(n_sets):
        pb.set(rng.choice(40, size=int(rng.integers(1, 14)), replace=False).tolist())
    for _ in range(n_maps):
        pb.map({code: int(rng.integers(0, 4)) for code in range(N_CODES + 1) if rng.random() < 0.6})
    drg_conds = [pb.cond(*random_decision_condition(rng, n_sets, n_maps)) for _ in range(12)]
    drg_conds.append(pb.cond(I(OP_TAGSET, DX, 0), I(OP_HAS_TAG, 1)))
    adrg_conds = [pb.cond(*random_condition(rng, n_sets, n_maps, 2)) for _ in range(8)] + [pb.true()]
    for _ in range(5):
        adrgs = []
        for _ in range(int(rng.integers(1, 5))):
            drgs = [int(rng.choice(drg_conds)) for _ in range(int(rng.integers(1, 6)))]
            if rng.random() < 0.6:
                drgs.append(NO_CONDITION)
            adrgs.append((int(rng.choice(adrg_conds)), drgs))
        pb.mdc(int(rng.choice(adrg_conds)), adrgs)
    return pb.build()


def decision_options(plan) -> dict:
    from grouper.engine.compile import drg_decisions

    set_bits, _, program, cond_start, _, _, _, _, adrg_drg_start, drg_cond = plan
    roots, nodes, atoms = drg_decisions(program, cond_start, adrg_drg_start, drg_cond, set_bits)
    return {"adrg_decision": roots, "decision_nodes": nodes, "decision_atoms": atoms}


@pytest.mark.parametrize("seed", range(8))
def test_random_parity_with_drg_decisions(cy, seed):
    """An ADRG's DRG list compiled to a decision tree (each test made once, in the order of smallest
    expected cost) gives the DRG its conditions give in turn: the reference with and without the
    trees and the compiled kernel with them agree, with the ADRG-level gate and the settings."""
    plan, batch = decision_plan(800 + seed), random_cases(900 + seed, 1500)
    options = decision_options(plan)
    assert (options["adrg_decision"] >= 0).sum() >= 3
    for behaviour in (0, NO_DRG_STATUS, SECOND_ATTEMPT | NO_DRG_STATUS, SECOND_ATTEMPT | ATTEMPT_ALONE | LAST_ENTERED):
        expected = run(_kernel_py, plan, batch, behaviour=behaviour)    # the DRG conditions in turn
        reference = new_outputs(len(batch[5]))
        _kernel_py.group_cases(*plan, *batch, *reference, 0, -1, None, behaviour, **options)
        assert (np.stack([o.astype(np.int64) for o in reference], axis=1) == expected).all()
        parity_with(cy, plan, batch, options, behaviour)
        parity_with(cy, plan, batch, {**options, **adrg_gate_options(plan)}, behaviour)
    decided = np.isin(expected[:, 2], np.flatnonzero(options["adrg_decision"] >= 0)) & (expected[:, 0] == GROUPED)
    assert decided.sum() > 50       # many cases took their DRG from a tree


def test_drg_decision_tree_by_hand():
    """[mcc and age >= 70, age >= 70, mcc, cc_or_mcc, -] with cc_or_mcc = mcc or pdx in T and any
    secondary dx in Z (Z a rare set, T a common one, as 3.0's CCs with an empty exclusion table): the
    tree tests age first, each test at most once on a path, and the rare Z before the common T."""
    from grouper.engine.compile import drg_decisions

    pb = PlanBuilder(n_codes=60)
    mcc_set, t_set, z_set = pb.set(range(1, 20)), pb.set(range(0, 60)), pb.set([50])
    excl = pb.map({code: 1 for code in range(1, 10)})
    mcc = [I(OP_IN_UNLESS, SDX, mcc_set, excl, excl)]
    cc_or_mcc = mcc + [I(OP_JUMP_IF_TRUE, 3), I(OP_IN, PDX, t_set), I(OP_JUMP_IF_FALSE, 1), I(OP_IN, SDX, z_set)]
    old = [I(OP_GATE_FIELD, AGE, GE, 70)]
    conds = [pb.cond(*(old + mcc)), pb.cond(*old, I(OP_CONST, 1)), pb.cond(*mcc), pb.cond(*cc_or_mcc)]
    pb.mdc(pb.true(), [(pb.true(), conds + [NO_CONDITION])])
    set_bits, _, program, cond_start, _, _, _, _, adrg_drg_start, drg_cond = pb.build()
    roots, nodes, atoms = drg_decisions(program, cond_start, adrg_drg_start, drg_cond, set_bits)

    def paths(node, seen=()):
        if node < 0:
            yield seen, (-2 - node if node <= -2 else None)
            return
        atom, if_false, if_true = nodes[node].tolist()
        test = tuple(atoms[atom].tolist())
        assert test not in seen
        yield from paths(if_false, seen + (test,))
        yield from paths(if_true, seen + (test,))

    assert tuple(atoms[nodes[roots[0], 0]].tolist()) == (OP_FIELD_CMP, AGE, GE, 70, 0)
    for seen, drg in paths(int(roots[0])):
        tests = [t[:3] for t in seen]
        if (OP_IN, PDX, t_set) in tests:
            assert tests.index((OP_IN, SDX, z_set)) < tests.index((OP_IN, PDX, t_set))
    leaves = {drg for _, drg in paths(int(roots[0]))}
    assert leaves == {0, 1, 2, 3, 4}


def test_rejects_bad_drg_decisions(cy):
    plan, batch = decision_plan(810), random_cases(910, 10)
    good = decision_options(plan)
    nodes, atoms = good["decision_nodes"], good["decision_atoms"]
    upward = nodes.copy()
    upward[0, 1] = len(nodes) - 1
    not_a_test = atoms.copy()
    not_a_test[0, 0] = OP_TAGSET
    bad_set = atoms.copy()
    bad_set[(bad_set[:, 0] == OP_IN) | (bad_set[:, 0] == OP_IN_UNLESS), 2] = 99
    out = new_outputs(10)
    for change, match in ((dict(adrg_decision=good["adrg_decision"][:-1].copy()), "one per ADRG"),
                          (dict(adrg_decision=np.full_like(good["adrg_decision"], len(nodes))), "neither -1 nor a node"),
                          (dict(decision_nodes=upward), "not a lower node"),
                          (dict(decision_atoms=not_a_test), "not a test"),
                          (dict(decision_atoms=bad_set), "set 99 out of range"),
                          (dict(decision_nodes=None), "go together")):
        with pytest.raises(ValueError, match=match):
            cy.group_cases(*plan, *batch, *out, 0, -1, None, 0, **{**good, **change})
    assert (out[0] == SENTINEL_STATUS).all()
    with pytest.raises(ValueError, match="go together"):
        _kernel_py.group_cases(*plan, *batch, *out, 0, -1, None, 0, **{**good, "decision_atoms": None})


def test_true_mdc_entered_without_a_visit(kernel):
    """With the ADRG-level gate, an MDC whose entry is `true` (2.0/3.0's MDCA) none of whose ADRGs'
    gates can hold is entered without being visited: a case no later MDC groups is still no_adrg in
    the last MDC entered, that one or a later one."""
    pb = PlanBuilder(n_codes=20)
    a_set, b_set, c_set = pb.set([1]), pb.set([2, 3]), pb.set([3])
    pb.mdc(pb.true(), [(pb.cond(I(OP_GATE, PDX, a_set), I(OP_CONST, 1)), [NO_CONDITION])])
    pb.mdc(pb.cond(I(OP_GATE, PDX, b_set), I(OP_CONST, 1)), [(pb.cond(I(OP_GATE, PDX, c_set), I(OP_CONST, 1)), [NO_CONDITION])])
    plan = pb.build()
    batch = make_batch([([1], [], None), ([2], [], None), ([3], [], None), ([9], [], None), ([], [], None)])
    options = adrg_gate_options(plan) if kernel.__name__.endswith("_kernel") else {}
    out = new_outputs(5)
    kernel.group_cases(*plan, *batch, *out, 0, -1, None, 0, **options)
    got = [tuple(int(o[i]) for o in out[:4]) for i in range(5)]
    assert got == [(GROUPED, 0, 0, 0), (NO_ADRG, 1, -1, -1), (GROUPED, 1, 1, 1), (NO_ADRG, 0, -1, -1),
                   (NO_ADRG, 0, -1, -1)]


def _spanning_plan(n_first: int, qy_before_second: int = 0):
    """MDC 0 (pdx 1) with n_first ADRGs that need pproc 7; MDC 1 (`true`, or pdx 2..5 with qy rules
    before it) with four ADRGs on pdx 2, 4, 5, 3; MDC 2 (`true`) without ADRGs. With qy_before_second,
    that many top-level qy rules (pdx 6, pdx 8, ...) come before MDC 1: their gate slots follow the ADRGs'."""
    pb = PlanBuilder(n_codes=20)
    one, seven = pb.set([1]), pb.set([7])
    first = pb.cond(I(OP_GATE, PDX, one), I(OP_CONST, 1))
    pb.mdc(first, [(pb.cond(I(OP_GATE, PDX, one), I(OP_GATE, PPROC, seven), I(OP_CONST, 1)), [NO_CONDITION])
                   for _ in range(n_first)])
    second = pb.true() if not qy_before_second else pb.cond(I(OP_GATE, PDX, pb.set([2, 3, 4, 5])), I(OP_CONST, 1))
    pb.mdc(second, [(pb.cond(I(OP_GATE, PDX, pb.set([code])), I(OP_CONST, 1)), [NO_CONDITION]) for code in (2, 4, 5, 3)])
    pb.mdc(pb.true(), [])
    qy_conds = [pb.cond(I(OP_GATE, PDX, pb.set([6 + 2 * q])), I(OP_CONST, 1)) for q in range(qy_before_second)]
    plan = pb.build()
    if not qy_before_second:
        return plan, {}
    n_adrg = len(plan[7])
    qy = {"mdc_qy_start": np.array([0, 0, qy_before_second, qy_before_second, qy_before_second], np.int32),
          "qy_cond": np.array(qy_conds, np.int32), "qy_mdc": np.ones(qy_before_second, np.int32),
          "qy_drg": np.arange(qy_before_second, dtype=np.int32), "adrg_qy": np.full(n_adrg, -1, np.int32)}
    return plan, qy


@pytest.mark.parametrize("n_first, qy_before_second", [(62, 0), (60, 0), (59, 2), (58, 4), (10, 1)])
def test_visit_set_up_spans_across_slot_words(cy, n_first, qy_before_second):
    """The visit set-up tests an always-entered MDC's ADRG slots and a qy position's rule slots with one
    masked word when they lie in one word of the gate, else by a search: spans inside a word (MDC 1's
    ADRGs at slots 60-63, a qy rule at slot 14), across a word boundary (MDC 1's ADRGs at slots 62-65;
    the qy rules at 63-64 and 62-65, after the n_first + 4 ADRGs), and the empty span of MDC 2 (entered,
    nothing to test) group like the reference."""
    from grouper.engine.compile import adrg_gate_classes

    plan, qy = _spanning_plan(n_first, qy_before_second)
    set_bits, label_maps, program, cond_start, _, mdc_cond, _, adrg_cond = plan[:8]
    top_qys = list(qy["qy_cond"]) if qy else []
    classes, other, rows = adrg_gate_classes(program, cond_start, list(adrg_cond) + top_qys + list(mdc_cond),
                                             set_bits, label_maps.shape[1] - 1, None)
    options = {"adrg_gate_class": classes, "adrg_gate_other": other, "adrg_gate_rows": rows, **qy}
    batch = make_batch([([1], [7], None), ([1], [], None), ([2], [], None), ([3], [], None), ([5], [9], None),
                        ([6], [], None), ([8], [], None), ([12], [], None), ([9], [], None), ([], [], None)])
    expected_rows = parity_with_qy(cy, plan, batch, options)
    grouped = {int(row[0]) for row in expected_rows}
    assert GROUPED in grouped and NO_ADRG in grouped   # both paths of the set-up are exercised
    assert tuple(expected_rows[3][:3]) == (GROUPED, 1, n_first + 3)       # pdx 3: MDC 1's last ADRG
    assert tuple(expected_rows[8][:2]) == (NO_ADRG, 2)                    # nothing holds: MDC 2 entered last


def parity_with_qy(cy, plan, batch, options: dict):
    """parity_with, the reference also given the qy arrays among the options."""
    qy = {k: v for k, v in options.items() if k in ("mdc_qy_start", "qy_cond", "qy_mdc", "qy_drg", "adrg_qy")}
    expected_out = new_outputs(len(batch[5]))
    _kernel_py.group_cases(*plan, *batch, *expected_out, 0, -1, None, 0, **qy)
    expected = np.stack([o.astype(np.int64) for o in expected_out], axis=1)
    out = new_outputs(len(batch[5]))
    cy.group_cases(*plan, *batch, *out, 0, -1, None, 0, **options)
    got = np.stack([o.astype(np.int64) for o in out], axis=1)
    mismatch = np.flatnonzero((expected != got).any(axis=1))
    assert mismatch.size == 0, f"row {mismatch[0]}: python {expected[mismatch[0]]}, cython {got[mismatch[0]]}"
    return expected
