# cython: language_level=3
"""What this CPU runs, asked of the compiler's run-time check (``__builtin_cpu_supports``).

Always compiled for the compiler's default target (never with ``-march``), so it imports on any CPU:
:mod:`dropcore.kernels.isa` asks it before importing a variant of the kernels that may not. The check reads CPUID
and XGETBV, so it also says whether the OS saves the wide registers (a CPU's AVX-512 may be switched off).
"""

cdef extern from *:
    """
    #if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    #if !defined(__clang__) && __GNUC__ >= 12
    /* Whole levels: every extension -march=x86-64-vN lets the compiler emit (BMI2, MOVBE, ...), not just AVX. */
    #define DC_V3() __builtin_cpu_supports("x86-64-v3")
    #define DC_V4() __builtin_cpu_supports("x86-64-v4")
    #else
    /* Older GCC and Clang know no levels here: the extensions the levels are named for, and BMI, which the
     * compiler emits in scalar code (every CPU with AVX2 and BMI2 has the rest of x86-64-v3). */
    #define DC_V3() (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") \\
                     && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2"))
    #define DC_V4() (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") \\
                     && __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") \\
                     && __builtin_cpu_supports("avx512vl"))
    #endif
    static int dc_x86_level(void) {
        __builtin_cpu_init();
        if (DC_V3()) return DC_V4() ? 4 : 3;
        return 1;
    }
    #else
    static int dc_x86_level(void) { return 0; }
    #endif
    """
    int dc_x86_level()


def x86_level():
    """The x86-64 level this CPU and OS run: 4 (x86-64-v4: AVX-512), 3 (x86-64-v3: AVX2, FMA), 1 (below), or 0
    (not x86, or a compiler without the check: only the generic kernels then)."""
    return dc_x86_level()
