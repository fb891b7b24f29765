"""The body parsers' fast paths give exactly what the general ones give, and refuse what those refuse."""
import io
import json

import numpy as np
import pytest

from dropcore.serving import payloads
from dropcore.serving.limits import Limits

LIMITS = Limits(max_instances=8)


@pytest.mark.parametrize("shape", [(10, 10, 1), (4, 3), (5,)])
@pytest.mark.parametrize("indent", [None, 1])
def test_fast_json_equals_the_general_parse(shape, indent):
    x = np.random.default_rng(0).standard_normal((3,) + shape).astype(np.float32)
    x.flat[0], x.flat[-1] = -1.5e-7, 3e38
    doc = {"seed": 2, "instances": x.tolist(), "mc_samples": 3}
    text = json.dumps(doc, indent=indent)
    assert payloads._fast_json(text, shape, LIMITS) is not None  # the fast path is taken
    got, mc, seed = payloads.parse_json(text.encode(), shape, LIMITS)
    want = np.asarray(json.loads(text)["instances"], np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, want) and np.array_equal(got, x)
    assert (mc, seed) == (3, 2)


@pytest.mark.parametrize("body, reason", [
    ('{"instances": [[[1, NaN], [3, 4]]]}', "non-finite value (nan at index (0, 0, 1))"),
    ('{"instances": [[[1,, 2], [3, 4]]]}', "not valid JSON"),
    ('{"instances": [[[1 2], [3, 4]]]}', "not valid JSON"),
    ('{"instances": [[[1, 2], [3]]]}', "rectangular nested list"),
    ('{"instances": [[["1", 2], [3, 4]]]}', "holds strings"),
    ('{"instances": [[[true, false], [true, true]]]}', "holds booleans"),
    ('{"instances": [[[null, 2], [3, 4]]]}', "rectangular nested list of numbers"),
    ('{"instances": [[[1, 2], [3, 4]]], "x": "]"}', "unknown fields ['x']"),
    ('{"instances": 3}', '"instances" must be a list'),
    ('{"instances": [[[1, 2], [3, 4]]]', "not valid JSON"),
    ('{"instances": ' + json.dumps([[[1, 2], [3, 4]]] * 9) + "}", "9 instances; at most 8"),
])
def test_malformed_json_falls_back_and_is_refused(body, reason):
    with pytest.raises(payloads.BadRequest, match=None) as err:
        payloads.parse_json(body.encode(), (2, 2), LIMITS)
    assert reason in str(err.value), str(err.value)


@pytest.mark.parametrize("array", [np.zeros((1, 10, 10, 1), np.float32), np.ones((3, 4), np.float64),
                                   np.arange(6, dtype=">f4").reshape(2, 3),
                                   np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.zeros((2, 0), np.float32)])
def test_npy_read_and_write_equal_numpy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    raw = buffer.getvalue()
    got = payloads._load_npy(raw)
    assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)
    if array.dtype.str in ("<f4", "<f8") and array.flags.c_contiguous:
        assert payloads.npy_bytes(array) == raw  # the same bytes np.save writes
    with pytest.raises(payloads.BadRequest, match="not a readable .npy"):
        payloads._load_npy(raw[:-1] if array.size else raw[:20])
