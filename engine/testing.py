"""Helpers for checking kernels and layers: central finite differences in float64."""
import numpy as np


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function ``f`` at the float64 array ``x`` (``x`` is restored)."""
    x = np.asarray(x)
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs float64 input, got {x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def check_gradient(f, analytic, x, rtol=1e-5, atol=1e-7, eps=1e-6):
    """Assert that ``analytic`` (the gradient of ``f`` w.r.t. ``x``) matches central differences.

    ``f`` takes no arguments and reads ``x`` (which is perturbed in place), returning a scalar.
    """
    numeric = numerical_gradient(f, x, eps=eps)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)
    return numeric
