"""Which compiled variant of the Cython kernels this process runs: the best one the CPU supports, or ``DROPCORE_ISA``.

setup.py compiles the kernels once per target, each copy in its own subpackage under the same module names:
``isa_avx512`` (x86-64-v4: dropcore's GEMM, direct convolution and pooling on AVX-512), ``isa_avx2`` (x86-64-v3: the
same kernels on AVX2 and FMA) and ``isa_generic`` (portable loops and BLAS, for the compiler's default target: any
x86-64 CPU, and Arm). A variant is imported only after the CPU check passed: its code, even its module
initialization, may use instructions an older CPU lacks, which would kill the process (SIGILL) instead of raising.

The CPU check is a tiny extension built for the generic target (``_cpu_features``) that calls the compiler's
``__builtin_cpu_supports``: rather than /proc/cpuinfo because it works on any OS, reads XGETBV (whether the OS
saves the wide registers) and knows exactly which extensions each x86-64 level includes. It is built with the
kernels, so where it is missing no variant is built either.

The choice is made once, when the kernels first load: :func:`variant`, or the attributes ``ISA``,
``elementwise``, ``gemm`` and ``pool`` of this module (which load it). Importing this module loads nothing.
"""
import functools
import importlib
import importlib.util
import os
from types import SimpleNamespace

#: Every target, best first, with the x86-64 level (``_cpu_features.x86_level()``) it needs.
LEVELS = {"avx512": 4, "avx2": 3, "generic": 0}
#: The environment variable that forces a target.
ENV = "DROPCORE_ISA"
_MODULES = {"elementwise": "_cy_elementwise", "gemm": "_cy_gemm", "pool": "_cy_pool",
            "depthwise": "_cy_depthwise"}


class IsaError(ValueError):
    """``DROPCORE_ISA`` names a target this machine cannot run: the CPU lacks it, or it was not built."""


def cpu_isas():
    """The targets this CPU (and OS) runs, best first; "generic" always."""
    try:
        from ._cpu_features import x86_level
    except ImportError:  # not built (no compiler): no variant is either, and "generic" runs anywhere
        return ["generic"]
    level = x86_level()
    return [isa for isa, needs in LEVELS.items() if level >= needs]


def _built(isa):
    try:
        return all(importlib.util.find_spec(f"{__package__}.isa_{isa}.{m}") for m in _MODULES.values())
    except ImportError:  # an installation without the variant's subpackage
        return False


def built_isas():
    """The targets whose kernel modules are installed, best first (found without importing them)."""
    return [isa for isa in LEVELS if _built(isa)]


def choose(requested, offered, built):
    """The target to load: ``requested`` (``DROPCORE_ISA``'s value; empty or None: the best) when the CPU offers it
    (``offered``, as :func:`cpu_isas`) and it is ``built`` (as :func:`built_isas`), else the best target in both.

    Raises ValueError for an unknown ``requested``, :class:`IsaError` when it cannot run here, and ImportError when
    no built target runs on this CPU (callers then fall back on the Numba kernels, as without a compiler).
    """
    name = (requested or "").strip().lower()
    if name and name not in LEVELS:
        raise ValueError(f"{ENV}={requested!r}: expected one of {', '.join(LEVELS)}, or unset for the best target "
                         f"this CPU runs")
    if name and name not in offered:
        raise IsaError(f"{ENV}={requested!r}: this CPU lacks {name}; it runs {', '.join(offered)}")
    if name and name not in built:
        raise IsaError(f"{ENV}={requested!r}: the {name} kernels are not built (built: {', '.join(built) or 'none'}); "
                       f"rebuild with `pip install -e .` (see DROPCORE_ISAS in setup.py) or choose a built target")
    usable = [isa for isa in offered if isa in built]
    if not usable:
        raise ImportError(f"no Cython kernels built for this CPU (built: {', '.join(built) or 'none'}; the CPU runs "
                          f"{', '.join(offered)})")
    return name or usable[0]


@functools.lru_cache(maxsize=None)
def variant():
    """The kernels this process runs, chosen and imported once: a namespace of ``isa`` (the target's name) and the
    modules ``elementwise``, ``gemm``, ``pool`` and ``depthwise``. Raises as :func:`choose`."""
    isa = choose(os.environ.get(ENV), cpu_isas(), built_isas())
    modules = {key: importlib.import_module(f"{__package__}.isa_{isa}.{m}") for key, m in _MODULES.items()}
    return SimpleNamespace(isa=isa, **modules)


def __getattr__(name):
    """``ISA`` (the target in use) and the chosen variant's modules (``elementwise``, ``gemm``, ``pool``,
    ``depthwise``)."""
    if name == "ISA":
        return variant().isa
    if name in _MODULES:
        return getattr(variant(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: What each target's kernels are, for :func:`coverage`.
KERNELS = {
    "avx512": "dropcore's AVX-512 kernels (GEMM tiles of 6 x 64, direct convolution, Winograd and pooling on 16 "
              "lanes)",
    "avx2": "dropcore's AVX2 + FMA kernels (GEMM tiles of 6 x 16, direct convolution, Winograd and pooling on 8 "
            "lanes)",
    "generic": "the portable loops and BLAS (no batch invariance: BatchingPredictor needs exact=False there)",
}


def coverage(offered=None, built=None):
    """Lines saying which compiled targets this machine can test and which claims go untested here: a test run on
    an AVX2 CPU says nothing about the AVX-512 kernels. ``offered`` and ``built`` default to :func:`cpu_isas` and
    :func:`built_isas`."""
    offered = cpu_isas() if offered is None else offered
    built = built_isas() if built is None else built
    tested = [t for t in LEVELS if t in offered and t in built]
    lines = [f"dropcore targets: this CPU runs {', '.join(offered)}; built {', '.join(built) or 'none'}; "
             f"tested here: {', '.join(tested) or 'none (the Numba kernels only)'}"]
    for target in LEVELS:
        if target not in tested:
            why = "this CPU lacks it" if target not in offered else "it is not built"
            lines.append(f"untested here ({why}): {target}: {KERNELS[target]}")
    return lines
