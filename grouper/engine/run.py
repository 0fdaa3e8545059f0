"""Kernel stage: an encoded batch → (status, mdc, adrg, drg, reason) arrays, rows split over threads."""
from __future__ import annotations

import dataclasses
import os
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import ir
from .encode import Batch
from .kernel import KERNEL

MIN_ROWS_PER_THREAD = 50_000


def run_kernel(plan: ir.Plan, batch: Batch, *, threads: int | None = None, kernel=None) -> tuple[np.ndarray, ...]:
    """Group a batch; returns (status, mdc, adrg, drg, reason) arrays. Splits rows over threads."""
    kernel = kernel or KERNEL
    n = len(batch.skip)
    out = (np.empty(n, np.uint8), *(np.empty(n, np.int32) for _ in range(4)))
    args = (*plan.kernel_args(), *batch.kernel_args(), *out)
    if n < 2 * MIN_ROWS_PER_THREAD:   # one thread (and no cpu_count(), which costs more than one row)
        threads = 1
    threads = max(1, min(threads or os.cpu_count() or 1, n // MIN_ROWS_PER_THREAD))
    mask, behaviour = plan.pdx_mdc_mask, plan.behaviour
    options = plan.qy_args()
    if plan.adrg_gate_mask is not None:
        options.update(adrg_gate_mask=plan.adrg_gate_mask, adrg_gate_free=plan.adrg_gate_free)
    entry = _PLAN_CHECKED.get(id(plan))
    if entry is not None and entry[0]() is plan and kernel in entry[1]:
        options["plan_checked"] = True
    if threads == 1 or getattr(kernel, "__name__", "").endswith("_kernel_py"):
        kernel.group_cases(*args, 0, n, mask, behaviour, **options)
        _checked(plan, kernel)
        return out
    bounds = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:  # the Cython kernel releases the GIL
        list(pool.map(lambda r: kernel.group_cases(*args, int(bounds[r]), int(bounds[r + 1]), mask, behaviour, **options),
                      range(threads)))
    _checked(plan, kernel)
    return out


# The plans each kernel has grouped with, without an error: their arrays are not checked again
# (plans are never changed in place; dataclasses.replace makes a new one).
_PLAN_CHECKED: dict[int, tuple[weakref.ref, set]] = {}


def _checked(plan: ir.Plan, kernel) -> None:
    entry = _PLAN_CHECKED.get(id(plan))
    if entry is None or entry[0]() is not plan:
        key = id(plan)
        entry = _PLAN_CHECKED[key] = (weakref.ref(plan, lambda _ref, key=key: _PLAN_CHECKED.pop(key, None)), set())
    entry[1].add(kernel)


def eval_conditions(plan: ir.Plan, batch: Batch, conds, *, threads: int | None = None, kernel=None) -> np.ndarray:
    """Truth of each condition in `conds` for every case: bool[len(conds), n].

    Runs the grouping kernel on a one-rule plan per condition (the condition as the entry of a
    single MDC/ADRG): `grouped` means it holds. Rows rejected while reading count as false.
    """
    n = len(batch.skip)
    truth = np.zeros((len(conds), n), dtype=bool)
    for i, k in enumerate(conds):
        status = run_kernel(_condition_plan(plan, int(k)), batch, threads=threads, kernel=kernel)[0]
        truth[i] = status == ir.GROUPED
    return truth


def conditions_holding(plan: ir.Plan, batch: Batch, conds, *, kernel=None) -> list[int]:
    """eval_conditions for a batch of one case, in fewer kernel calls: the indexes into `conds` of
    the conditions that hold. The conditions are the `invalid` rules of a plan without MDCs, so the
    kernel names the first that holds; the search goes on after it (one call when none holds)."""
    assert len(batch.skip) == 1 and not batch.skip[0], "one case, not skipped"
    held: list[int] = []
    start = 0
    while start < len(conds):
        status, *_, reason = run_kernel(_condition_plan(plan, tuple(int(k) for k in conds[start:])), batch,
                                        threads=1, kernel=kernel)
        if status[0] != ir.INVALID:
            break
        held.append(start + int(reason[0]))
        start = held[-1] + 1
    return held


# The one-rule plans of eval_conditions, per plan: building one copies the plan (~50 µs), which a
# single case (grouper.onecase) would pay on every call.
_CONDITION_PLANS: dict[int, tuple[weakref.ref, dict[int, ir.Plan]]] = {}


def _condition_plan(plan: ir.Plan, k: int | tuple[int, ...]) -> ir.Plan:
    """Condition k as the entry of a single MDC/ADRG (eval_conditions), or conditions (k, ...) as the
    `invalid` rules of a plan without MDCs (conditions_holding)."""
    cached = _CONDITION_PLANS.get(id(plan))
    if cached is None or cached[0]() is not plan:
        key = id(plan)
        cached = _CONDITION_PLANS[key] = (weakref.ref(plan, lambda _ref, key=key: _CONDITION_PLANS.pop(key, None)), {})
    sub = cached[1].get(k)
    if sub is None:
        bare = dict(pdx_mdc_mask=None, adrg_gate_mask=None, behaviour=0, qy_cond=None)
        if isinstance(k, tuple):
            none, zero = np.zeros(0, np.int32), np.zeros(1, np.int32)
            sub = dataclasses.replace(plan, **bare, invalid_cond=np.array(k, np.int32), mdc_cond=none,
                                      mdc_adrg_start=zero, adrg_cond=none, adrg_drg_start=zero, drg_cond=none)
        else:
            cond, one = np.array([k], dtype=np.int32), np.array([0, 1], dtype=np.int32)
            sub = dataclasses.replace(plan, **bare, invalid_cond=np.zeros(0, np.int32), mdc_cond=cond,
                                      mdc_adrg_start=one, adrg_cond=cond, adrg_drg_start=one,
                                      drg_cond=np.array([ir.NO_CONDITION], dtype=np.int32))
        cached[1][k] = sub
    return sub
