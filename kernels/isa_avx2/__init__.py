"""The Cython kernels compiled for x86-64-v3 (AVX2, FMA): import them through :mod:`dropcore.kernels.isa` only, which
checks the CPU first (on an older CPU their code stops the process with SIGILL)."""
