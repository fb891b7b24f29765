"""Every kernel set against the kernel contract (dropcore.kernels.contract): the same ops, the same parameters and
defaults, and no fallback to the reference in the fast sets."""
import inspect

import pytest

from dropcore.kernels.contract import OPS, signature
from dropcore.ops import get_ops

SETS = ["reference", "numba", "cython"]


def _set(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    return get_ops(name)


@pytest.mark.parametrize("name", SETS)
def test_a_set_holds_exactly_the_contracts_ops(name):
    ops = _set(name)
    assert set(vars(ops)) == {op.name for op in OPS} | {"name", "fallbacks"}
    assert ops.name == name


@pytest.mark.parametrize("name", SETS)
@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_every_op_has_the_contracts_signature(name, op):
    fn = getattr(_set(name), op.name)
    assert inspect.signature(fn) == signature(op), f"{name}.{op.name}"


def test_no_set_falls_back_to_the_reference():
    """Every op of the contract is compiled in both fast sets: training runs on the Cython kernels by default, so a
    fallback would be a NumPy op in every training step (a layer without a compiled path is a defect)."""
    assert get_ops("reference").fallbacks == ()
    assert get_ops("numba").fallbacks == ()
    cy = _set("cython")
    assert cy.fallbacks == ()
    reference = get_ops("reference")
    for op in OPS:
        assert getattr(cy, op.name) is not getattr(reference, op.name), op.name


def test_each_family_module_is_where_the_contract_says():
    """An op is looked up in its family's module only: a helper of the same name elsewhere cannot shadow it."""
    numba_ops = get_ops("numba")
    for op in OPS:
        assert getattr(numba_ops, op.name).__module__ == f"dropcore.kernels.{op.family}"
        assert getattr(get_ops("reference"), op.name).__module__ == f"dropcore.kernels.reference.{op.family}"


def test_an_unknown_set_is_refused():
    with pytest.raises(ValueError, match=r"Invalid value for `ops`: expected one of .*Received: ops='fast'"):
        get_ops("fast")
