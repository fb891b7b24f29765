"""dropcore's compute kernels: a NumPy reference for every op (``reference``) and the fast Numba versions.

Kernels never validate user input; the engine's layers do. Forward and backward are named in pairs
(``conv2d`` / ``conv2d_backward``, ``relu_dropout`` / ``relu_dropout_backward``).
"""
from .threads import numba_default

numba_default()  # Numba's pool sized to the CPUs this process may use, before any kernel imports Numba
