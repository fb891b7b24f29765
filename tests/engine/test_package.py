"""The ``dropcore`` package's surface: subpackages reachable as attributes without importing what they wrap."""
import json
import subprocess
import sys
import textwrap

import pytest


def test_subpackages_are_attributes_imported_on_first_use():
    """``dropcore.onnx.load`` works after a bare ``import dropcore``; reaching the subpackages imports none of the
    optional libraries they wrap (onnx, Dask, MPI, Flask) nor Numba, and an unknown name is an AttributeError."""
    code = textwrap.dedent("""
        import json, sys
        import dropcore
        before = "dropcore.onnx" in sys.modules
        reached = [dropcore.onnx.__name__, dropcore.distributed.__name__, dropcore.serving.__name__,
                   "onnx" in dir(dropcore)]
        heavy = [m for m in ("onnx", "onnxruntime", "dask", "mpi4py", "flask", "numba") if m in sys.modules]
        reached.append(callable(dropcore.onnx.load))  # the converter itself, which imports onnx when reached
        try:
            dropcore.no_such_thing
            missing = None
        except AttributeError as exc:
            missing = str(exc)
        print(json.dumps({"before": before, "reached": reached, "heavy": heavy, "missing": missing}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.splitlines()[-1])
    subpackages = ["dropcore.onnx", "dropcore.distributed", "dropcore.serving"]
    assert got == {"before": False, "reached": subpackages + [True, True], "heavy": [],
                   "missing": "module 'dropcore' has no attribute 'no_such_thing'"}


@pytest.mark.parametrize("name", ["onnx", "data"])
def test_a_subpackage_attribute_is_the_module(name):
    import importlib

    import dropcore

    assert getattr(dropcore, name) is importlib.import_module(f"dropcore.{name}")
