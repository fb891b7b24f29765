"""Build script: installs engine/ as ``dropcore`` and kernels/ as ``dropcore.kernels``.

The Cython inference kernels are optional: where no compiler (or no Cython) is available the package still installs
and runs on the Numba kernels, and ``dropcore info`` says so.
"""
import os
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

PACKAGE_DIR = {"dropcore": "engine", "dropcore.kernels": "kernels"}


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


def _extensions():
    """Cython extensions for the inference path, or none when Cython/numpy headers are missing."""
    pyx = sorted(f for f in os.listdir("kernels") if f.endswith(".pyx")) if os.path.isdir("kernels") else []
    if not pyx or os.environ.get("DROPCORE_NO_CYTHON"):
        return []
    try:
        import numpy
        from Cython.Build import cythonize
        from setuptools import Extension
    except ImportError as exc:  # the package still works on the Numba kernels
        print(f"dropcore: building without Cython kernels ({exc})", file=sys.stderr)
        return []
    openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
    # Built on the machine that runs it (pip install -e .), so target its CPU: the im2col, pooling and element-wise
    # loops then vectorize with its widest registers. DROPCORE_MARCH="" (or e.g. x86-64-v2) for a portable build.
    march = os.environ.get("DROPCORE_MARCH", "native")
    arch = [f"-march={march}"] if march and sys.platform != "darwin" else []
    headers = sorted(os.path.join("kernels", f) for f in os.listdir("kernels") if f.endswith((".h", ".pxi")))
    exts = [
        Extension(
            "dropcore.kernels." + f[:-4],
            [os.path.join("kernels", f)],
            include_dirs=[numpy.get_include(), "kernels"],
            depends=headers,  # an edited micro-kernel header rebuilds the extensions that include it
            extra_compile_args=["-O3"] + arch + openmp,
            extra_link_args=openmp,
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        for f in pyx
    ]
    try:
        return cythonize(exts, language_level=3, quiet=True)
    except Exception as exc:  # a Cython error must not stop the install: the Numba kernels still work
        print(f"dropcore: building without Cython kernels (cythonize failed: {exc})", file=sys.stderr)
        return []


class OptionalBuildExt(build_ext):
    """Build the Cython kernels when a C compiler works; otherwise install without them and say so."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # no compiler, no OpenMP, ...: dropcore.info() then reports "numba"
            print(f"dropcore: building without Cython kernels ({exc})", file=sys.stderr)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"dropcore: could not build {ext.name} ({exc}); inference falls back to the Numba kernels",
                  file=sys.stderr)


packages = _packages()
setup(packages=packages, package_dir=_package_dir(packages), ext_modules=_extensions(),
      cmdclass={"build_ext": OptionalBuildExt})
