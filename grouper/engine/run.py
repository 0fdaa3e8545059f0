"""Kernel stage: an encoded batch → (status, mdc, adrg, drg, reason) arrays, rows split over threads."""
from __future__ import annotations

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
    mask, behaviour = plan.pdx_mdc_mask, plan.behaviour
    options = {**plan.qy_args(), **plan.decision_args()}
    if mask is not None and plan.mdc_entry_exact:
        options.update(mdc_entry_exact=plan.mdc_entry_exact)
    if plan.adrg_gate_mask is not None:
        options.update(adrg_gate_mask=plan.adrg_gate_mask, adrg_gate_free=plan.adrg_gate_free)
    if plan.adrg_gate_class is not None:
        options.update(adrg_gate_class=plan.adrg_gate_class, adrg_gate_other=plan.adrg_gate_other,
                       adrg_gate_rows=plan.adrg_gate_rows)
    entry = _PLAN_CHECKED.get(id(plan))
    if entry is not None and entry[0]() is plan and kernel in entry[1]:
        options["plan_checked"] = True
    over_rows(n, threads, kernel, lambda start, stop: kernel.group_cases(*args, start, stop, mask, behaviour, **options))
    _checked(plan, kernel)
    return out


def over_rows(n: int, threads: int | None, kernel, call) -> list:
    """call(start, stop) over the rows of a batch, split over threads (the compiled kernel releases
    the GIL; at least MIN_ROWS_PER_THREAD rows a thread); the results in row order."""
    if n < 2 * MIN_ROWS_PER_THREAD:   # one thread (and no cpu_count(), which costs more than one row)
        return [call(0, n)]
    threads = threads or os.cpu_count() or 1
    threads = max(1, min(threads, n // MIN_ROWS_PER_THREAD))
    if threads == 1 or getattr(kernel, "__name__", "").endswith("_kernel_py"):
        return [call(0, n)]
    bounds = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda r: call(int(bounds[r]), int(bounds[r + 1])), range(threads)))


# The plans each kernel has grouped with, without an error: their arrays are not checked again
# (plans are never changed in place; dataclasses.replace makes a new one).
_PLAN_CHECKED: dict[int, tuple[weakref.ref, set]] = {}


def _checked(plan: ir.Plan, kernel) -> None:
    entry = _PLAN_CHECKED.get(id(plan))
    if entry is None or entry[0]() is not plan:
        key = id(plan)
        entry = _PLAN_CHECKED[key] = (weakref.ref(plan, lambda _ref, key=key: _PLAN_CHECKED.pop(key, None)), set())
    entry[1].add(kernel)
