"""pytest-benchmark: every kernel, forward and backward, at the reference models' shapes and at each contract op's
declared case, for each kernel set.

Run with ``pytest bench/`` (e.g. ``pytest bench/ --benchmark-group-by=param:case``, ``-k conv2d``). Each
benchmark first checks that the kernel set agrees with the NumPy reference on that call, so a fast wrong kernel
cannot pass unnoticed.
"""
import numpy as np
import pytest

from bench import cases
from dropcore.kernels.threads import blas_single_thread

CASES = cases.all_cases() + cases.contract_cases()
SETS = cases.kernel_sets()
# The Cython set is collected only where it is built.
PARAMS = [pytest.param(c, impl, id=f"{impl}-{c.id}") for c in CASES for impl in cases.IMPLS
          if impl in SETS and c.supported_by(SETS[impl])]


def _flat(out):
    return [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]


@pytest.mark.parametrize("case,impl", PARAMS)
def test_kernel(benchmark, case, impl):
    ops = SETS[impl]
    benchmark.group = case.id
    benchmark.extra_info.update(direction=case.direction, func=case.func)
    fn = case.bind(ops)
    expected, got = _flat(case.bind(SETS["reference"])()), _flat(fn())
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-4)
    if impl == "reference":  # NumPy's own BLAS threads, as a NumPy user runs it
        benchmark(fn)
    else:  # Numba and Cython call BLAS from every thread of their own pool: BLAS held to one, as the engine does
        with blas_single_thread():
            benchmark(fn)
