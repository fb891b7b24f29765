"""The compiled targets of the Cython kernels: CPU detection, the choice (DROPCORE_ISA) and each variant's results.

Each target runs in its own process (the choice is made once per process); a target this CPU lacks is simulated
by replacing the detection in-process, which fails before any variant is imported.
"""
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from dropcore.kernels import isa

ALL = list(isa.LEVELS)


def test_cpu_detection_is_sane():
    offered, built = isa.cpu_isas(), isa.built_isas()
    assert offered and offered[-1] == "generic"
    assert offered == [t for t in ALL if t in offered]  # best first
    assert "avx512" not in offered or "avx2" in offered  # x86-64-v4 includes x86-64-v3
    assert built == [t for t in ALL if t in built]


def test_choose_takes_the_best_target_both_the_cpu_and_the_build_have():
    assert isa.choose(None, ALL, ALL) == "avx512"
    assert isa.choose("", ["avx2", "generic"], ALL) == "avx2"
    assert isa.choose(None, ALL, ["avx2", "generic"]) == "avx2"
    assert isa.choose(" AVX2 ", ALL, ALL) == "avx2"
    assert isa.choose("generic", ALL, ALL) == "generic"
    with pytest.raises(ImportError, match="no Cython kernels built for this CPU"):  # -> the Numba kernels
        isa.choose(None, ["generic"], ["avx512"])


def test_unknown_target_is_a_value_error():
    with pytest.raises(ValueError, match=r"DROPCORE_ISA='sse9': expected one of avx512, avx2, generic"):
        isa.choose("sse9", ALL, ALL)


def test_target_the_cpu_lacks_is_a_clear_error():
    with pytest.raises(isa.IsaError, match=r"DROPCORE_ISA='avx512': this CPU lacks avx512; it runs avx2, generic"):
        isa.choose("avx512", ["avx2", "generic"], ALL)


def test_target_not_built_is_a_clear_error():
    with pytest.raises(isa.IsaError, match=r"DROPCORE_ISA='avx2': the avx2 kernels are not built \(built: generic\)"):
        isa.choose("avx2", ALL, ["generic"])


def test_loading_checks_the_cpu_before_importing(monkeypatch):
    """The real loading path on a simulated CPU without AVX-512: it raises before importing the variant."""
    monkeypatch.setenv(isa.ENV, "avx512")
    monkeypatch.setattr(isa, "cpu_isas", lambda: ["avx2", "generic"])
    no_import = SimpleNamespace(util=importlib.util, import_module=lambda name: pytest.fail(f"imported {name}"))
    monkeypatch.setattr(isa, "importlib", no_import)
    with pytest.raises(isa.IsaError, match="this CPU lacks avx512"):
        isa.variant.__wrapped__()  # uncached: the process's own choice stays as it is


def _run(env_isa, code):
    env = {k: v for k, v in os.environ.items() if k != isa.ENV}
    if env_isa is not None:
        env[isa.ENV] = env_isa
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                          timeout=300)


CHECK_VARIANT = """
    import json
    import numpy as np
    from dropcore.kernels import blas, conv, cython_ops, dense, isa
    from dropcore.kernels.reference import conv as ref_conv, dense as ref_dense

    rng = np.random.default_rng(0)
    errors = {}
    # one case per convolution path of the AVX-512 variant (direct, implicit GEMM, im2col); others use im2col
    for name, xs, ws, padding in [("direct", (2, 9, 9, 3), (3, 3, 3, 8), "same"),
                                  ("implicit", (2, 10, 10, 32), (3, 3, 32, 40), "valid"),
                                  ("im2col", (2, 9, 9, 32), (3, 3, 32, 64), "same")]:
        x, w, b = (rng.standard_normal(s).astype(np.float32) for s in (xs, ws, ws[3:]))
        ref = ref_conv.conv2d(x, w, b, (1, 1), padding, relu=True)
        errors["cython conv " + name] = float(np.abs(cython_ops.conv2d(x, w, b, (1, 1), padding, True) - ref).max())
        errors["numba conv " + name] = float(np.abs(conv.conv2d(x, w, b, (1, 1), padding, True) - ref).max())
    x, w, b = (rng.standard_normal(s).astype(np.float32) for s in ((64, 300), (300, 70), (70,)))
    ref = ref_dense.dense(x, w, b, relu=True)
    errors["cython dense"] = float(np.abs(cython_ops.dense(x, w, b, True) - ref).max())
    errors["numba dense"] = float(np.abs(dense.dense(x, w, b, True) - ref).max())
    # Through the Numba kernels' fast-GEMM symbol even where the variant has no GEMM of its own (its NumPy stand-in):
    # code Numba cached under another DROPCORE_ISA must call this process's function, never a stale address.
    out = np.empty((64, 70), np.float32)
    blas.matmul(x, w, out, True)
    errors["fast-gemm symbol"] = float(np.abs(out - x @ w).max())
    print(json.dumps({"isa": isa.ISA, "avx512": cython_ops.HAVE_AVX512, "fast_gemm": blas.HAVE_FAST_GEMM,
                      "direct_conv": blas.HAVE_DIRECT_CONV, "errors": errors}))
"""


@pytest.mark.parametrize("target", ALL)
def test_forced_target_loads_that_variant_and_matches_the_reference(target):
    if target not in isa.cpu_isas():
        pytest.skip(f"this CPU lacks {target}")
    if target not in isa.built_isas():
        pytest.skip(f"the {target} kernels are not built (DROPCORE_ISAS)")
    out = _run(target, CHECK_VARIANT)
    assert out.returncode == 0, out.stderr  # a negative code would be a signal (SIGILL)
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["isa"] == target
    # the avx512 and avx2 variants have dropcore's own GEMM and direct convolution, the generic one neither; the
    # Numba kernels link to the same ones
    assert got["avx512"] is (target == "avx512")
    assert got["fast_gemm"] is got["direct_conv"] is (target != "generic")
    for case, err in got["errors"].items():
        assert err < 1e-3, (case, err)


def test_unknown_target_fails_cleanly_in_a_fresh_process():
    out = _run("avx1024", "import dropcore.kernels.cython_ops")
    assert out.returncode == 1, out.stderr  # an exception, not a signal
    assert "ValueError: DROPCORE_ISA='avx1024': expected one of avx512, avx2, generic" in out.stderr


def test_info_reports_the_target_in_use():
    import dropcore

    got = dropcore.info()
    assert got["cpu_isas"] == isa.cpu_isas() and got["built_isas"] == isa.built_isas()
    if not got["cython_kernels"]:
        assert got["isa"] is None
        return
    assert got["isa"] == isa.ISA and got["isa"] in got["cpu_isas"]
    assert got["own_gemm"] is (got["isa"] != "generic")
    if not os.environ.get(isa.ENV):  # the best target the CPU runs and the build has
        assert got["isa"] == next(t for t in got["cpu_isas"] if t in got["built_isas"])


SAME_BITS = """
    import hashlib
    import numpy as np
    from dropcore.kernels import cython_ops as cy

    rng = np.random.default_rng(1)
    r = lambda *s: rng.standard_normal(s).astype(np.float32)
    outs = [cy.conv2d(r(2, 9, 9, 3), r(3, 3, 3, 20), r(20), (1, 1), "same", True),  # direct
            cy.conv2d(r(2, 10, 10, 32), r(3, 3, 32, 40), r(40), (2, 2), "valid", True),  # implicit GEMM
            cy.conv2d(r(2, 9, 9, 32), r(3, 3, 32, 70), r(70), (1, 1), "same", True),  # Winograd
            cy.conv2d(r(2, 9, 9, 32), r(5, 5, 32, 24), r(24), (2, 2), "same", False),  # im2col panels
            cy.dense(r(3, 700), r(700, 129), r(129), True), cy.dense(r(70, 300), r(300, 10), r(10)),
            cy.max_pool2d(r(2, 9, 9, 37), (3, 3), (2, 2), "same")]
    print(hashlib.sha256(b"".join(o.tobytes() for o in outs)).hexdigest())
"""


def test_avx512_and_avx2_give_the_same_bits():
    """dropcore's own kernels form every sum in the same order on both vector targets (``_gemm.h``), so the
    convolutions (each path), dense layers and max pooling give the same bits under either."""
    targets = [t for t in ("avx512", "avx2") if t in isa.cpu_isas() and t in isa.built_isas()]
    if len(targets) < 2:
        pytest.skip(f"needs a CPU with avx512 and avx2 and both built; this one tests {', '.join(targets) or 'none'}")
    digests = {}
    for target in targets:
        out = _run(target, SAME_BITS)
        assert out.returncode == 0, out.stderr
        digests[target] = out.stdout.split()[-1]
    assert digests["avx512"] == digests["avx2"], digests
