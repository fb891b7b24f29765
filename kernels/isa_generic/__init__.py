"""The Cython kernels compiled for the compiler's default target (any x86-64 CPU, or Arm): the fallback that
:mod:`dropcore.kernels.isa` loads when the CPU runs none of the others."""
