"""Argument types of the ``dropcore`` command and its subcommands (argparse ``type=``): each parses one value and
says what it expected and what it received."""
import argparse

import numpy as np


def int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, received {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, received {text!r}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def float_in(low, high, low_open=False, high_open=True):
    interval = f"{'(' if low_open else '['}{low}, " + ("inf)" if high is None else f"{high}{')' if high_open else ']'}")

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, received {text!r}") from None
        below = value < low or (low_open and value == low)
        above = high is not None and (value > high or (high_open and value == high))
        if not np.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"expected a number in {interval}, received {text!r}")
        return value
    parse.__name__ = f"number in {interval}"
    return parse


positive_int = int_at_least(1)
rate = float_in(0.0, 1.0)
positive_float = float_in(0.0, None, low_open=True, high_open=False)
