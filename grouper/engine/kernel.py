"""Kernel selection: the compiled `grouper._kernel` when available, else the Python reference.

Rules (as in yarl/aiohttp):
- env GROUPER_NO_EXTENSIONS set (any non-empty value, as in setup.py), or a Python other than
  CPython: use the pure-Python kernel `grouper.engine._kernel_py`;
- otherwise import the Cython kernel `grouper._kernel`; if it is not built, fall back to the
  Python kernel, unless env GROUPER_REQUIRE_EXTENSION is set (non-empty, not "0"), in which
  case ImportError is raised (CI uses this to make sure the fast path is what gets tested).
  GROUPER_NO_EXTENSIONS wins over GROUPER_REQUIRE_EXTENSION.

Both kernels have the same `group_cases(*plan.kernel_args(), dx_offsets, dx_codes, px_offsets,
px_codes, fields, skip, out_status, out_mdc, out_adrg, out_drg, out_reason, start=0, stop=-1)`.
The Cython one needs exact dtypes and C-contiguous arrays (uint64/uint32/int32 plan arrays,
int64 offsets, uint32 codes, int32[7, n] fields, uint8 skip, uint8/int32 outputs; read-only
arrays are fine), checks the plan and the rows start:stop up front (ValueError), and releases
the GIL while grouping, so threads can group disjoint row ranges of one batch in parallel.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import platform
from types import ModuleType

from . import _kernel_py

__all__ = ["KERNEL", "KERNEL_NAME", "KERNEL_NAMES", "get_kernel", "group_cases", "kernel_description"]

KERNEL_NAMES = ("cython", "python")

_BUILD_HINT = (
    "the compiled kernel grouper._kernel is not available{detail}. Build it from a source checkout "
    "with `pip install .` (or `pip install --no-build-isolation -e .` for development); this needs "
    "a C compiler and Cython>=3.0, and GROUPER_NO_EXTENSIONS must not be set while building. "
    "Unset GROUPER_REQUIRE_EXTENSION to fall back to the (much slower) pure-Python kernel."
)


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _import_cython() -> ModuleType:
    try:
        from grouper import _kernel
    except ImportError as exc:
        raise ImportError(_BUILD_HINT.format(detail=f" ({exc})")) from exc
    return _kernel


def get_kernel(name: str) -> ModuleType:
    """The kernel module called `name` ("cython" or "python"), regardless of the environment.

    Raises ImportError (with build instructions) if "cython" is asked for but not built.
    """
    if name == "python":
        return _kernel_py
    if name == "cython":
        return _import_cython()
    raise ValueError(f"unknown kernel {name!r}; expected one of {KERNEL_NAMES}")


def _select() -> tuple[ModuleType, str]:
    if os.environ.get("GROUPER_NO_EXTENSIONS") or platform.python_implementation() != "CPython":
        return _kernel_py, "python"
    try:
        return _import_cython(), "cython"
    except ImportError:
        if _flag("GROUPER_REQUIRE_EXTENSION"):
            raise
        return _kernel_py, "python"


KERNEL, KERNEL_NAME = _select()


def companion(name: str, fallback: ModuleType) -> ModuleType:
    """Another compiled module of the package (`grouper.<name>`, e.g. the DIP or settle kernel),
    chosen by the rules above: its Python `fallback` when the DRG kernel is the Python one or the
    module is not built (ImportError with build instructions under GROUPER_REQUIRE_EXTENSION)."""
    if KERNEL_NAME == "python":
        return fallback
    try:
        return importlib.import_module(f"grouper.{name}")
    except ImportError as exc:
        if _flag("GROUPER_REQUIRE_EXTENSION"):
            raise ImportError(_BUILD_HINT.format(detail=f" ({exc})")) from exc
        return fallback
group_cases = KERNEL.group_cases


COMPILED_MODULES = ("_kernel", "_dip_kernel", "_settle_kernel", "_text", "_cases")  # ext/*.pyx (setup.py)


def kernel_description() -> str:
    """Which kernels run, and why not the compiled ones, for `grouper --version` and the run
    summary: "cython kernel", or e.g. "python kernel: the compiled kernels are not built (...)"."""
    if KERNEL_NAME == "python":
        if os.environ.get("GROUPER_NO_EXTENSIONS"):
            return "python kernel: GROUPER_NO_EXTENSIONS is set"
        if platform.python_implementation() != "CPython":
            return f"python kernel: {platform.python_implementation()} runs no compiled kernel"
        return "python kernel: the compiled kernels are not built (slower; `pip install .` with a C compiler builds them)"
    missing = [name for name in COMPILED_MODULES[1:] if importlib.util.find_spec(f"grouper.{name}") is None]
    if missing:
        return f"cython kernel; python twins for {', '.join(f'grouper.{m}' for m in missing)} (not built)"
    return "cython kernel"

