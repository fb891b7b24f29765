"""The body parsers: msgspec's JSON decoding gives what json.loads + np.asarray give, the .npy reader what np.load
gives, and both refuse bad bodies with the reason."""
import io
import json

import numpy as np
import pytest
from numpy.lib import format as npy_format

from dropcore.serving import payloads
from dropcore.serving.limits import Limits
from dropcore.serving.npy_reader import read_npy

LIMITS = Limits(max_instances=8)


@pytest.mark.parametrize("shape", [(10, 10, 1), (4, 3), (5,)])
@pytest.mark.parametrize("indent", [None, 1])
def test_json_equals_the_standard_library_parse(shape, indent):
    x = np.random.default_rng(0).standard_normal((3,) + shape).astype(np.float32)
    x.flat[0], x.flat[-1] = -1.5e-7, 3e38
    doc = {"seed": 2, "instances": x.tolist(), "mc_samples": 3}
    text = json.dumps(doc, indent=indent)
    got, mc, seed = payloads.parse_json(text.encode(), shape, LIMITS)
    want = np.asarray(json.loads(text)["instances"], np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, want) and np.array_equal(got, x)
    assert (mc, seed) == (3, 2)


RAGGED_OR_MISNESTED = [
    [[[1.0], [2.0]], [[3.0]]],  # ragged at the second level
    [[[1.0], [2.0]], [3.0, 4.0]],  # numbers where lists belong
    [[[1.0, 2.0], [3.0]], [[4.0], [5.0]]],  # ragged at the last level
    [[[[1.0]], [[2.0]]], [[[3.0]], [[4.0]]]],  # nested deeper than the input
    [[1.0, 2.0], [3.0, 4.0]],  # shallower than the input
    [],  # no instances
]


@pytest.mark.parametrize("instances", RAGGED_OR_MISNESTED)
def test_json_flattening_fast_path_takes_only_exact_shapes(instances):
    """The fast path either gives what np.asarray gives, or steps aside for it (which words the error)."""
    assert payloads._rectangular(instances, (2, 1)) is None
    body = json.dumps({"instances": instances}).encode()
    with pytest.raises(payloads.BadRequest):
        payloads.parse_json(body, (2, 1), LIMITS)


@pytest.mark.parametrize("shape", [(10, 10, 1), (4, 3), (5,), (2, 1, 3, 1)])
def test_json_flattening_fast_path_equals_asarray(shape):
    x = np.random.default_rng(1).standard_normal((4,) + shape)
    instances = x.tolist()
    got = payloads._rectangular(instances, shape)
    assert got.dtype == np.float32 and np.array_equal(got, np.asarray(instances, np.float32))
    assert payloads._rectangular(instances, shape[:-1] + (shape[-1] + 1,)) is None


def test_json_integers_and_floats_mix():
    got, mc, seed = payloads.parse_json(b'{"instances": [[[1, 2.5], [-3, 4e0]]]}', (2, 2), LIMITS)
    assert np.array_equal(got, np.array([[[1, 2.5], [-3, 4]]], np.float32)) and (mc, seed) == (None, None)


DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("body, reason", [
    ('{"instances": [[[1, NaN], [3, 4]]]}', "non-finite value (nan at index (0, 0, 1))"),
    ('{"instances": [[[1, 2], [-Infinity, 4]]]}', "non-finite value (-inf at index (0, 1, 0))"),
    ('{"instances": [[[1e39, 2], [3, 4]]]}', "non-finite value (inf at index (0, 0, 0))"),
    ('{"instances": [[[1e999, 2], [3, 4]]]}', "holds a number beyond float64's range"),
    ('{"instances": [[[1,, 2], [3, 4]]]}', "not valid JSON"),
    ('{"instances": [[[1 2], [3, 4]]]}', "not valid JSON"),
    ('{"instances": [[[1, NaN], [3, 4]]}', "not valid JSON"),
    ('{"instances": [[[1, 2], [3]]]}', "rectangular nested list"),
    ('{"instances": [[["1", 2], [3, 4]]]}', "holds strings"),
    ('{"instances": [[[true, false], [true, true]]]}', "holds booleans"),
    ('{"instances": [[[1, 2], [3, true]]]}', "holds booleans (Expected `float`, got `bool` - at `instances[0][1][1]`)"),
    ('{"instances": [[[null, 2], [3, 4]]]}', "rectangular nested list of numbers"),
    ('{"instances": [[[[1], 2], [3, 4]]]}', "lists nested deeper than (n, 2, 2)"),
    ('{"instances": [[[1, 2], [3, 4]]], "x": "]"}', "unknown fields ['x']"),
    ('{"x": 1, "instances": [[[1, 2], [3, 4]]], "y": NaN}', "unknown fields ['x', 'y']"),
    ('{"instances": 3}', '"instances" must be a list'),
    ('{"seed": 3}', "received the fields ['seed']"),
    ('[1, 2]', 'expected a JSON object with "instances"'),
    ('{"instances": [[[1, 2], [3, 4]]], "mc_samples": [2]}', "`mc_samples` must be an integer, received an array"),
    ('{"instances": [[[1, 2], [3, 4]]], "seed": {"a": 1}, "mc_samples": 2}', "`seed` must be an integer"),
    ('{"instances": [[[1, 2], [3, 4]]]', "not valid JSON"),
    ('{"instances": [[[1, 2], [3, 4]]]} x', "not valid JSON"),
    ('{"instances": [[[1, 2], [3, "\xff"]]]}', "holds strings"),  # (valid UTF-8: U+00FF)
    ('{"instances": ' + json.dumps([[[1, 2], [3, 4]]] * 9) + "}", "9 instances; at most 8"),
    ('{"instances": ' + DEEP + "}", "deeper than 1000 levels; expected at most 4"),
    ('{"instances": [NaN, ' + DEEP + "]}", "deeper than 1000 levels"),
    ('{"x": ' + DEEP + "}", "deeper than 1000 levels"),
    (DEEP, 'expected a JSON object with "instances": a list of inputs (or a .npy body with Content-Type: '
           'application/x-npy), received an array'),
])
def test_malformed_json_is_refused(body, reason):
    with pytest.raises(payloads.BadRequest) as err:
        payloads.parse_json(body.encode(), (2, 2), LIMITS)
    assert reason in str(err.value), str(err.value)
    assert err.value.status == 400


def test_json_that_is_not_utf8_is_refused():
    for body in (b'{"instances": [[[1, 2], [3, 4]]], "seed": "\xff"}', b'\xff{"instances": [[[1, NaN], [3, 4]]]}'):
        with pytest.raises(payloads.BadRequest, match="not valid JSON") as err:
            payloads.parse_json(body, (2, 2), LIMITS)
        assert err.value.status == 400


def _npy(array, **kwargs):
    buffer = io.BytesIO()
    np.save(buffer, array, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("array", [np.zeros((1, 10, 10, 1), np.float32), np.ones((3, 4), np.float64),
                                   np.arange(6, dtype=">f4").reshape(2, 3),
                                   np.asfortranarray(np.arange(6.0).reshape(2, 3)), np.zeros((2, 0), np.float32),
                                   np.arange(6, dtype=np.int16).reshape(3, 2), np.ones((2, 2), bool)])
def test_npy_read_and_write_equal_numpy(array):
    raw = _npy(array)
    got = read_npy(raw)
    assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)
    if array.dtype.str in ("<f4", "<f8") and array.flags.c_contiguous:
        assert payloads.npy_bytes(array) == raw  # the same bytes np.save writes
    with pytest.raises(payloads.BadRequest, match="not a readable .npy"):
        read_npy(raw[:-1] if array.size else raw[:20])


ONE = _npy(np.zeros((1, 2, 2), np.float32))


def _header(shape, descr="<f4"):
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


@pytest.mark.parametrize("body, reason", [
    # the header claims 10^9 rows over 16 bytes of data: refused before anything is allocated
    (_header((10**9, 2, 2)) + bytes(16), "declares shape (1000000000, 2, 2) of float32, 16000000000 bytes of data; "
                                         "16 bytes follow"),
    (_header((10**9, 2, 2), "<f8") + bytes(16), "declares shape (1000000000, 2, 2) of float64"),
    (_header((-1, 2, 2)) + bytes(16), "expected dimensions >= 0"),
    (ONE + b"\0", "17 bytes follow the header"),
    (_npy(np.array([{"a": 1}], dtype=object), allow_pickle=True), "dtype object holds Python objects"),
    (_npy(np.zeros((1, 2, 2), np.int32)), "dtype int32; expected float32 or float64"),
    (_npy(np.zeros((1, 2, 2), bool)), "dtype bool; expected float32 or float64"),
    (_npy(np.zeros((1, 2, 2), np.float16)), "dtype float16; expected float32 or float64"),
    (_npy(np.zeros((1, 2, 2), np.complex64)), "dtype complex64; expected float32 or float64"),
    (_npy(np.zeros((1, 2, 2), [("a", "<f4")])), "a structured dtype (a list of fields); expected float32"),
    (_npy(np.array([["a", "b"], ["c", "d"]])), "dtype <U1; expected"),
    (_npy(np.zeros((2, 2), np.float32)), "have shape (2, 2); expected (n, 2, 2)"),
    (_npy(np.full((1, 2, 2), np.inf)), "non-finite value (inf at index (0, 0, 0))"),
    (ONE.replace(b"\x01\x00", b"\x03\x00", 1), "format version 3.0; expected 1.0 or 2.0"),
    (ONE.replace(b"'descr': '<f4'", b"'descr': 'zz4'"), "not a readable .npy"),
    (b"\x93NUMPY", "not a readable .npy"),
    (b"", "not a readable .npy"),
])
def test_malformed_npy_is_refused(body, reason):
    with pytest.raises(payloads.BadRequest) as err:
        payloads.parse_npy(body, {}, (2, 2), LIMITS)
    assert reason in str(err.value), str(err.value)
    assert err.value.status == 400


def test_fortran_and_big_endian_npy_give_the_c_order_floats():
    x = np.random.default_rng(1).random((3, 2, 2))
    for array in (np.asfortranarray(x), x.astype(">f8"), np.asfortranarray(x.astype(">f4"))):
        got, _, _ = payloads.parse_npy(_npy(array), {}, (2, 2), LIMITS)
        assert got.dtype == np.float32 and np.array_equal(got, x.astype(np.float32))
