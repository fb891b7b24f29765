"""The Cython kernels compiled for x86-64-v4 (AVX-512): import them through :mod:`dropcore.kernels.isa` only, which
checks the CPU first (on a CPU without AVX-512 their code stops the process with SIGILL)."""
