"""Argument checks shared by every constructor, with one message template (Keras's).

``Invalid value for `rate`: expected a float in [0, 1). Received: rate=1.5``
"""
import numbers

import numpy as np


def invalid(arg, expected, value, where=None):
    """Build the ValueError for argument ``arg``: what was expected and what was received."""
    prefix = f"{where}: " if where else ""
    return ValueError(f"{prefix}Invalid value for `{arg}`: expected {expected}. Received: {arg}={value!r}")


def check_int(value, arg, minimum=1, where=None):
    """An integer >= ``minimum`` (booleans refused)."""
    if type(value) is int and value >= minimum:  # the common case, without the ABC check (request path)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise invalid(arg, f"an integer >= {minimum}", value, where)
    return int(value)


def check_float(value, arg, low, high, low_open=False, high_open=False, where=None):
    """A real number in the interval given (``None`` bounds are unbounded)."""
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    expected = f"a float in {lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise invalid(arg, expected, value, where)
    value = float(value)
    if low is not None and (value < low or (low_open and value == low)):
        raise invalid(arg, expected, value, where)
    if high is not None and (value > high or (high_open and value == high)):
        raise invalid(arg, expected, value, where)
    return value


def check_choice(value, arg, choices, where=None):
    """One of ``choices`` (strings compared case-insensitively)."""
    key = value.lower() if isinstance(value, str) else value
    if key not in choices:
        raise invalid(arg, f"one of {tuple(choices)}", value, where)
    return key


def normalize_tuple(value, n, arg, where=None):
    """An int or a sequence of ``n`` positive ints -> a tuple of ``n`` ints (Keras's ``normalize_tuple``)."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        items = (value,) * n
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise invalid(arg, f"an int or a tuple of {n} ints", value, where) from None
    if len(items) != n or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in items):
        raise invalid(arg, f"a positive int or a tuple of {n} positive ints", value, where)
    return tuple(int(v) for v in items)


def all_finite(arr):
    """Whether every value of ``arr`` is finite. As the bytes of ``np.isfinite`` rather than its ``.all()``: a
    prediction's input check, and NumPy's reduction machinery made a LeNet-5 batch-1 prediction 8 us slower on the
    Zen 3 (65 against 57 us, the kernels after it included), the bytes' scan 1-2 us."""
    return 0 not in np.isfinite(arr).tobytes()


def as_float32_batch(x, arg="x", where=None):
    """Convert user data to a C-contiguous float32 array, refusing non-numeric, empty or non-finite data."""
    prefix = f"{where}: " if where else ""
    arr = np.asarray(x)
    if arr.dtype != np.float32 and (arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                                                  or arr.dtype == np.bool_)):
        raise TypeError(f"{prefix}`{arg}` must be numeric; received an array of dtype {arr.dtype}")
    if arr.size == 0 or arr.ndim == 0 or arr.shape[0] == 0:
        raise ValueError(f"{prefix}`{arg}` is empty (shape {arr.shape}); expected at least one sample")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not all_finite(arr):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(
            f"{prefix}`{arg}` contains {int((~np.isfinite(arr)).sum())} non-finite values (NaN or inf), "
            f"the first at index {tuple(int(i) for i in bad)}; expected finite numbers"
        )
    return arr
