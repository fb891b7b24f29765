"""Initializers: Keras's fan rules and variances."""
import numpy as np
import pytest

from dropcore import initializers


@pytest.mark.parametrize("cls,var", [(initializers.HeUniform, lambda fi, fo: 2 / fi),
                                     (initializers.HeNormal, lambda fi, fo: 2 / fi),
                                     (initializers.GlorotUniform, lambda fi, fo: 2 / (fi + fo))])
def test_variance(cls, var):
    shape = (3, 3, 16, 32)
    fan_in, fan_out = 9 * 16, 9 * 32
    w = cls(seed=0)(shape)
    assert w.dtype == np.float32 and w.shape == shape
    assert w.var() == pytest.approx(var(fan_in, fan_out), rel=0.05)


def test_seeded_initializers_repeat_and_zeros():
    np.testing.assert_array_equal(initializers.he_uniform(seed=3)((4, 5)), initializers.he_uniform(seed=3)((4, 5)))
    assert not initializers.zeros()((3, 2)).any()
    with pytest.raises(ValueError, match="Invalid value for `kernel_initializer`"):
        initializers.get("lecun_magic")
