"""The settle kernel's exact 128-bit helpers: the compiled loop and its Python twin agree, and both
round half up exactly (the engine's products of points, prices, coefficients and costs)."""
from __future__ import annotations

import numpy as np
import pytest

from grouper.payment import _settle_kernel_py as _kernel_py

try:
    from grouper import _settle_kernel as compiled
except ImportError:  # built without a compiler (GROUPER_NO_EXTENSIONS): the twin is the only kernel
    compiled = None

KERNELS = [_kernel_py] + ([compiled] if compiled is not None else [])


@pytest.mark.parametrize("kernel", KERNELS)
def test_mul_div_half_up_by_hand(kernel):
    a = np.array([5, 7, 1, 10**15, -1, 3, 152_777_137_5], np.int64)
    b = np.array([3, 1, 1, 10**12, 1, 1, 1], np.int64)
    d = np.array([2, 2, 3, 3, 1, 0, 10], np.int64)
    out = np.empty(len(a), np.int64)
    kernel.mul_div_half_up(a, b, d, out)
    # 7.5 → 8, 3.5 → 4, 0.33 → 0, too large → −1, negative input → −1, d = 0 → −1, 152777137.5 → 152777138
    assert out.tolist() == [8, 4, 0, -1, -1, -1, 152_777_138]


@pytest.mark.parametrize("kernel", KERNELS)
def test_compare_products_exactly(kernel):
    # 409.64 × 10⁶ against 0.4 × 10⁶ × 1,024.10 (in fen): equal, where floats say otherwise
    a, b = np.array([40_964, 40_965, 40_963, -1], np.int64), np.array([10**6] * 4, np.int64)
    c, d = np.array([400_000] * 4, np.int64), np.array([102_410] * 4, np.int64)
    out = np.empty(4, np.int8)
    kernel.compare_products(a, b, c, d, out)
    assert out.tolist() == [0, 1, -1, 2]


@pytest.mark.skipif(compiled is None, reason="the compiled kernel is not built")
def test_the_compiled_kernel_matches_its_twin_on_random_products():
    rng = np.random.default_rng(16)
    for scale in (10**6, 10**12, 10**18):
        a, b, d = rng.integers(-5, scale, 20_000), rng.integers(0, 10**7, 20_000), rng.integers(-1, 10**9, 20_000)
        mine, twin = np.empty(len(a), np.int64), np.empty(len(a), np.int64)
        compiled.mul_div_half_up(a, b, d, mine)
        _kernel_py.mul_div_half_up(a, b, d, twin)
        assert np.array_equal(mine, twin)
        signs, twin_signs = np.empty(len(a), np.int8), np.empty(len(a), np.int8)
        compiled.compare_products(a, b, d, b, signs)
        _kernel_py.compare_products(a, b, d, b, twin_signs)
        assert np.array_equal(signs, twin_signs)
