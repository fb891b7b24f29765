"""Every kernel set against the kernel contract (dropcore.kernels.contract): the same ops, the same parameters and
defaults, and fallbacks to the reference only where the contract allows them."""
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


def test_only_the_cython_set_falls_back_and_only_for_training_ops():
    assert get_ops("reference").fallbacks == ()
    assert get_ops("numba").fallbacks == ()
    cy = _set("cython")
    assert set(cy.fallbacks) == {op.name for op in OPS if not op.inference}
    reference = get_ops("reference")
    for op in OPS:
        fn = getattr(cy, op.name)
        assert (fn is getattr(reference, op.name)) == (op.name in cy.fallbacks)


def test_each_family_module_is_where_the_contract_says():
    """An op is looked up in its family's module only: a helper of the same name elsewhere cannot shadow it."""
    numba_ops = get_ops("numba")
    for op in OPS:
        assert getattr(numba_ops, op.name).__module__ == f"dropcore.kernels.{op.family}"
        assert getattr(get_ops("reference"), op.name).__module__ == f"dropcore.kernels.reference.{op.family}"


def test_an_unknown_set_is_refused():
    with pytest.raises(ValueError, match=r"Invalid value for `ops`: expected one of .*Received: ops='fast'"):
        get_ops("fast")
