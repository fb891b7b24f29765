"""The counter-based Gaussian noise (``gaussian_noise``): the Numba kernel equals the float64 reference up to float32
rounding, on any thread count; a slice with its offset draws the whole call's noise; the draws are standard normal;
the reference is the documented Box-Muller construction."""
import math

import numba
import numpy as np
import pytest

from dropcore.kernels import dropout as nb_drop
from dropcore.kernels.reference import dropout as ref_drop
from dropcore.kernels.reference.rng import dropout_key, random_bits
from dropcore.kernels.threads import threads
from dropcore.ops import get_ops

KEY = dropout_key(11, 3, 2)


def _assert_within_float32_rounding(a, b):
    """Equal but for a float64 last-bit difference in log/cos surviving the rounding: at most one float32 ulp."""
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape
    ulp = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32))
    assert (np.abs(a.astype(np.float64) - b) <= ulp).all()
    assert np.mean(a == b) > 0.999


@pytest.mark.parametrize("shape, offset", [((1,), 0), ((7, 5, 3), 0), ((300, 1000), 12345), ((3, 4), 2**31 - 5)])
def test_numba_equals_the_reference(shape, offset):
    _assert_within_float32_rounding(nb_drop.gaussian_noise(shape, KEY, offset),
                                    ref_drop.gaussian_noise(shape, KEY, offset))


def test_does_not_depend_on_the_thread_count():
    results = []
    for n in (1, 2):
        with threads(min(n, numba.config.NUMBA_NUM_THREADS)):
            results.append(nb_drop.gaussian_noise((40, 3000), KEY, 7))
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("name", ["reference", "numba", "cython"])
def test_a_slice_with_its_offset_draws_the_whole_calls_noise(name):
    if name == "cython":
        pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    ops = get_ops(name)
    whole = ops.gaussian_noise((9, 5, 4), KEY)
    for k in (1, 4, 8):
        np.testing.assert_array_equal(ops.gaussian_noise((9 - k, 5, 4), KEY, offset=k * 20), whole[k:])
    assert not np.array_equal(ops.gaussian_noise((5, 5, 4), KEY), whole[4:])
    assert not np.array_equal(ops.gaussian_noise((9, 5, 4), dropout_key(11, 4, 2)), whole)  # another step


def test_the_reference_is_box_muller_on_hash_pairs():
    z = ref_drop.gaussian_noise((6,), KEY, offset=3)
    bits = random_bits(20, KEY)
    for i in range(6):
        j = 3 + i
        u1, u2 = (int(bits[2 * j]) + 1) / 2**32, int(bits[2 * j + 1]) / 2**32
        assert z[i] == np.float32(math.sqrt(-2 * math.log(u1)) * math.cos(2 * math.pi * u2))


@pytest.mark.parametrize("impl", [nb_drop, ref_drop], ids=["numba", "reference"])
def test_is_standard_normal(impl):
    n = 1 << 20
    z = impl.gaussian_noise((n,), dropout_key(5, 0, 1)).astype(np.float64)
    assert np.isfinite(z).all() and np.abs(z).max() < 6.67
    se = 1 / math.sqrt(n)  # standard errors: mean 1/sqrt(n), std about 1/sqrt(2n), 4th moment sqrt(96/n)
    assert abs(z.mean()) < 5 * se
    assert abs(z.std() - 1) < 5 * se / math.sqrt(2)
    assert abs((z**4).mean() - 3) < 5 * math.sqrt(96 / n)
    assert abs(np.mean(np.abs(z) < 1) - 0.6826894921370859) < 5 * math.sqrt(0.22 / n)
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 * se  # neighbours independent
