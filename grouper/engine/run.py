"""Kernel stage: an encoded batch → (status, mdc, adrg, drg, reason) arrays, rows split over threads."""
from __future__ import annotations

import dataclasses
import os
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
    options = plan.qy_args()
    if plan.adrg_gate_mask is not None:
        options.update(adrg_gate_mask=plan.adrg_gate_mask, adrg_gate_free=plan.adrg_gate_free)
    over_rows(n, threads, kernel, lambda start, stop: kernel.group_cases(*args, start, stop, mask, behaviour, **options))
    return out


def over_rows(n: int, threads: int | None, kernel, call) -> list:
    """call(start, stop) over the rows of a batch, split over threads (the compiled kernel releases
    the GIL; at least MIN_ROWS_PER_THREAD rows a thread); the results in row order."""
    threads = threads or os.cpu_count() or 1
    threads = max(1, min(threads, n // MIN_ROWS_PER_THREAD))
    if threads == 1 or getattr(kernel, "__name__", "").endswith("_kernel_py"):
        return [call(0, n)]
    bounds = np.linspace(0, n, threads + 1).astype(int)
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda r: call(int(bounds[r]), int(bounds[r + 1])), range(threads)))


def eval_conditions(plan: ir.Plan, batch: Batch, conds, *, threads: int | None = None, kernel=None) -> np.ndarray:
    """Truth of each condition in `conds` for every case: bool[len(conds), n].

    Runs the grouping kernel on a one-rule plan per condition (the condition as the entry of a
    single MDC/ADRG): `grouped` means it holds. Rows rejected while reading count as false.
    """
    n = len(batch.skip)
    truth = np.zeros((len(conds), n), dtype=bool)
    one = np.array([0, 1], dtype=np.int32)
    for i, k in enumerate(conds):
        cond = np.array([k], dtype=np.int32)
        sub = dataclasses.replace(plan, pdx_mdc_mask=None, adrg_gate_mask=None, behaviour=0, qy_cond=None, invalid_cond=np.zeros(0, np.int32), mdc_cond=cond,
                                  mdc_adrg_start=one,
                                  adrg_cond=cond, adrg_drg_start=one,
                                  drg_cond=np.array([ir.NO_CONDITION], dtype=np.int32))
        status = run_kernel(sub, batch, threads=threads, kernel=kernel)[0]
        truth[i] = status == ir.GROUPED
    return truth
