"""Build script: installs engine/ as ``dropcore`` and kernels/ as ``dropcore.kernels``.

The Cython inference kernels are optional: where no compiler (or no Cython) is available the package still installs
and runs on the Numba kernels, and ``dropcore info`` says so.

They are compiled once per instruction-set target, each copy in its own subpackage under the same module names
(``dropcore.kernels.isa_avx512._cy_gemm``, ``isa_avx2``, ``isa_generic``); ``dropcore.kernels.isa`` loads the best
one the CPU supports (``DROPCORE_ISA`` forces one). No target is the build machine's CPU (no ``-march=native``), so
a wheel runs on any x86-64 CPU: avx512 is x86-64-v4, avx2 x86-64-v3, generic the compiler's default (the only
target built off x86, e.g. on Arm). A tiny generic extension, ``dropcore.kernels._cpu_features``, tells them apart.

Environment:

- ``DROPCORE_ISAS=avx512,generic``: build only these targets (a quicker development build); by default all.
- ``DROPCORE_NO_CYTHON=1``: build no Cython kernels at all.

Rebuilds: an in-place build (``pip install -e .``, ``build_ext --inplace``) compiles only the extensions whose
copy in the source tree is older than what it is built from (its generated C, the headers it includes, setup.py
with its flags); ``--force`` compiles them all. Without that, every ``pip install -e ".[extra]"`` recompiled the
whole set (an editable install builds in a new temporary directory each time, where nothing is up to date).
"""
import os
import platform
import sys
import sysconfig
import time

from setuptools import setup
from setuptools.command.build_ext import build_ext

PACKAGE_DIR = {"dropcore": "engine", "dropcore.kernels": "kernels"}
KERNELS = ("_cy_elementwise", "_cy_gemm", "_cy_pool", "_cy_depthwise")
#: Compiler flags per target, best first (the order of dropcore.kernels.isa.LEVELS). x86-64-v4 is AVX-512
#: F/BW/CD/DQ/VL; the _avx512_*.h headers use AVX-512F intrinsics only, so they need nothing more. GCC's generic
#: tuning vectorizes loops 256 bits wide even there; the kernels' loops are written for 512. Measured on the Zen 5
#: dev box, batch-1 mnist_cnn against the old -march=native build: x86-64-v4 alone ~6% slower, with this ~4%.
TARGETS = {"avx512": ["-march=x86-64-v4", "-mprefer-vector-width=512"], "avx2": ["-march=x86-64-v3"], "generic": []}


def _packages():
    """Every package below engine/ and kernels/, mapped into the one ``dropcore`` namespace."""
    found = []
    for root, prefix in (("engine", "dropcore"), ("kernels", "dropcore.kernels")):
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "__"))]
            if "__init__.py" in filenames:
                rel = os.path.relpath(dirpath, root)
                found.append(prefix if rel == "." else prefix + "." + rel.replace(os.sep, "."))
    return found


def _package_dir(packages):
    mapping = dict(PACKAGE_DIR)
    for name in packages:
        for prefix, root in (("dropcore.kernels", "kernels"), ("dropcore", "engine")):
            if name == prefix or name.startswith(prefix + "."):
                rest = name[len(prefix):].lstrip(".")
                mapping[name] = os.path.join(root, *rest.split(".")) if rest else root
                break
    return mapping


def _targets():
    """The targets to build: every one on x86, "generic" elsewhere; ``DROPCORE_ISAS`` keeps a subset."""
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
    targets = [t for t in TARGETS if x86 or t == "generic"]
    asked = os.environ.get("DROPCORE_ISAS", "").strip()
    if asked:
        names = [t.strip().lower() for t in asked.split(",") if t.strip()]
        unknown = [t for t in names if t not in TARGETS]
        if unknown:
            raise SystemExit(f"dropcore: DROPCORE_ISAS={asked!r}: unknown target(s) {', '.join(unknown)}; expected "
                             f"a comma-separated subset of {', '.join(TARGETS)}")
        targets = [t for t in targets if t in names]
    if os.environ.get("DROPCORE_MARCH"):
        print("dropcore: DROPCORE_MARCH is no longer used: the kernels are built for fixed x86-64 levels and the "
              "best one the CPU runs is chosen at import (DROPCORE_ISAS, DROPCORE_ISA)", file=sys.stderr)
    return targets


def _cpus():
    """The CPUs this process may use: the parallel jobs of a build."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, cpus or 1)


def _newer(target, sources):
    """Whether file ``target`` exists and is at least as new as every file of ``sources`` (all must exist)."""
    try:
        return os.path.getmtime(target) >= max(os.path.getmtime(p) for p in sources)
    except OSError:
        return False


def _built_copy(name):
    """Where extension ``name`` (``dropcore.kernels.isa_avx2._cy_gemm``) lives in the source tree once built."""
    return os.path.join("kernels", *name.split(".")[2:]) + sysconfig.get_config_var("EXT_SUFFIX")


def _extensions():
    """Cython extensions for the inference path, or none when Cython/numpy headers are missing."""
    if not os.path.isdir("kernels") or os.environ.get("DROPCORE_NO_CYTHON"):
        return []
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:  # the package still works on the Numba kernels
        print(f"dropcore: building without Cython kernels ({exc})", file=sys.stderr)
        return []
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    headers = sorted(os.path.join("kernels", f) for f in os.listdir("kernels") if f.endswith((".h", ".pxi")))

    def cython(names, compile_args, link_args, build_dir):
        # Each target cythonizes into its own build_dir: the generated C names its module, so the copies differ.
        exts, stale = [], []
        for name in names:
            pyx = os.path.join("kernels", name.rsplit(".", 1)[1] + ".pyx")
            c_file = os.path.join("build", "cython", build_dir, pyx[:-4] + ".c")
            # A built copy newer than its .pyx, the headers and setup.py keeps its C: cythonize would write it
            # again when another Cython runs (pip's isolated build environment), and the C compile would follow.
            fresh = os.path.exists(c_file) and _newer(_built_copy(name), [pyx, *headers, os.path.abspath(__file__)])
            (exts if fresh else stale).append(Extension(
                name, [c_file if fresh else pyx], include_dirs=[numpy.get_include(), "kernels"],
                depends=headers,  # an edited micro-kernel header rebuilds the extensions that include it
                define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")]))
        if stale:  # one process per CPU: a target's .pyx files cythonize at once (10-20 s each, before any C)
            exts += cythonize(stale, language_level=3, quiet=True, nthreads=_cpus() if len(stale) > 1 else 0,
                              build_dir=os.path.join("build", "cython", build_dir))
        for ext in exts:
            # Flags set after cythonize: it merges an extension's lists with those it saw before for the same
            # .pyx, which gave the generic copies the -march of the others.
            ext.extra_compile_args, ext.extra_link_args = list(compile_args), list(link_args)
        return exts

    try:
        exts = cython(["dropcore.kernels._cpu_features"], ["-O2"], [], "cpu")  # no -march: it must run anywhere
        for target in _targets():
            exts += cython([f"dropcore.kernels.isa_{target}.{module}" for module in KERNELS],
                           ["-O3"] + TARGETS[target] + openmp, openmp, target)
        return exts
    except Exception as exc:  # a Cython error must not stop the install: the Numba kernels still work
        print(f"dropcore: building without Cython kernels (cythonize failed: {exc})", file=sys.stderr)
        return []


class OptionalBuildExt(build_ext):
    """Build the Cython kernels when a C compiler works; otherwise install without them and say so.

    The extensions compile in parallel, one per CPU this process may use, unless ``-j`` says otherwise: the
    thirteen of them (four kernels for each target, and the CPU check) compiled one after the other otherwise."""

    def finalize_options(self):
        super().finalize_options()
        if not self.parallel:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
            self.parallel = max(1, cpus or 1)

    def run(self):
        # setuptools builds into build_lib, then copies to the source tree when in place (editable installs too)
        self._to_source = bool(self.inplace or getattr(self, "editable_mode", False))
        self._up_to_date = set()
        try:
            super().run()
        except Exception as exc:  # no compiler, no OpenMP, ...: dropcore.info() then reports "numba"
            print(f"dropcore: building without Cython kernels ({exc})", file=sys.stderr)

    def _source_copy(self, ext):
        """The extension's file in the source tree, which the package imports."""
        return self._get_inplace_equivalent(self.get_finalized_command("build_py"), ext)[0]

    def _is_up_to_date(self, ext):
        """Whether the source tree's copy is newer than its C sources, the headers and setup.py."""
        if self.force or not self._to_source:
            return False
        return _newer(self._source_copy(ext), [*ext.sources, *ext.depends, os.path.abspath(__file__)])

    def copy_extensions_to_source(self):
        """Copy what was compiled; an up-to-date extension's copy stays as it is (a running process may have it
        loaded: the copy would rewrite it in place)."""
        every = self.extensions
        self.extensions = [ext for ext in every if ext.name not in self._up_to_date]
        try:
            super().copy_extensions_to_source()
        finally:
            self.extensions = every

    def build_extension(self, ext):
        if self._is_up_to_date(ext):
            self._up_to_date.add(ext.name)
            print(f"dropcore: {ext.name} is up to date", file=sys.stderr)
            return
        started = time.perf_counter()
        try:
            super().build_extension(ext)
            print(f"dropcore: compiled {ext.name} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        except Exception as exc:
            print(f"dropcore: could not build {ext.name} ({exc}); inference falls back to the Numba kernels",
                  file=sys.stderr)


packages = _packages()
setup(packages=packages, package_dir=_package_dir(packages), ext_modules=_extensions(),
      cmdclass={"build_ext": OptionalBuildExt})
