"""Summaries of an experiment repeated over seeds: the mean with its t-distribution confidence interval, and the
paired difference of two variants measured on the same seeds.

One seed of a small experiment cannot tell two dropout variants apart: the run-to-run spread that a different
initialisation, split and shuffling give is as large as the differences between variants. Repeating the
experiment over seeds and pairing the runs that share a seed (same split, same initial weights) is what turns a
difference into a finding or shows it to be noise.

The interval is the usual one for a mean of ``n`` independent runs: ``mean ± t(1 - (1 - confidence) / 2, n - 1)
* s / sqrt(n)``, with ``s`` the sample standard deviation (``ddof=1``). With one run there is no spread to
measure, so the interval fields are ``None``.
"""
import math
import numbers

import numpy as np
from scipy import stats as _scipy_stats

from .validation import check_float, invalid

CONFIDENCE = 0.95


def _values(values, arg, where):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise invalid(arg, "a non-empty sequence of finite numbers", values, where)
    if len(values) == 0:
        raise invalid(arg, "a non-empty sequence of finite numbers", list(values), where)
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)]
    if bad:
        raise invalid(arg, f"a non-empty sequence of finite numbers (not {bad[0]!r})", list(values), where)
    return np.asarray(values, np.float64)


def t_quantile(n, confidence=CONFIDENCE):
    """The two-sided ``confidence`` quantile of Student's t with ``n - 1`` degrees of freedom (``n >= 2``)."""
    return float(_scipy_stats.t.ppf(0.5 + confidence / 2.0, n - 1))


def mean_interval(values, confidence=CONFIDENCE, where="mean_interval"):
    """The mean of ``values`` (one number per seed) and its ``confidence`` interval from the t-distribution.

    Returns:
        A dict: ``n``, ``mean``, ``std`` (sample standard deviation, ``ddof=1``), ``half_width`` (``t * std /
        sqrt(n)``), ``low`` and ``high`` (``mean ∓ half_width``) and ``confidence``. With one value ``std``,
        ``half_width``, ``low`` and ``high`` are ``None``: one run has no spread to measure.
    """
    confidence = check_float(confidence, "confidence", 0.0, 1.0, low_open=True, high_open=True, where=where)
    v = _values(values, "values", where)
    n, mean = len(v), float(v.mean())
    if n == 1:
        return {"n": 1, "mean": mean, "std": None, "half_width": None, "low": None, "high": None,
                "confidence": confidence}
    std = float(v.std(ddof=1))
    half = t_quantile(n, confidence) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "half_width": half, "low": mean - half, "high": mean + half,
            "confidence": confidence}


def paired_difference(values, baseline, confidence=CONFIDENCE, where="paired_difference"):
    """The paired comparison of two variants run on the same seeds: ``values[i] - baseline[i]`` for each seed
    ``i``, its mean and ``confidence`` interval (:func:`mean_interval`), and whether that interval excludes 0.

    Pairing removes what the two runs of one seed share (the split, the initial weights, the order of the
    batches), so it separates differences that two unpaired intervals would both cover.

    Returns:
        :func:`mean_interval`'s dict of the differences, plus ``excludes_zero``: ``True`` when the interval lies
        wholly above or below 0, ``False`` when it contains 0, ``None`` with one seed (no interval).
    """
    a = _values(values, "values", where)
    b = _values(baseline, "baseline", where)
    if len(a) != len(b):
        raise invalid("baseline", f"one number per seed, as many as `values` ({len(a)})",
                      f"{len(b)} numbers", where)
    out = mean_interval((a - b).tolist(), confidence, where)
    out["excludes_zero"] = None if out["low"] is None else bool(out["low"] > 0.0 or out["high"] < 0.0)
    return out


def format_interval(stat, digits=4, sign=False):
    """``"0.1234 ± 0.0056"`` (``"0.1234 ± n/a"`` with one seed); ``sign`` writes ``+``/``-`` on the mean."""
    mean = f"{stat['mean']:+.{digits}f}" if sign else f"{stat['mean']:.{digits}f}"
    half = "n/a" if stat["half_width"] is None else f"{stat['half_width']:.{digits}f}"
    return f"{mean} ± {half}"


def separated_lines(n, found, baseline):
    """The closing lines of a paired comparison's table over ``n`` seeds: the differences ``found`` whose interval
    excludes 0 (one phrase each) and that the rest are noise, or why nothing can be told apart."""
    if n == 1:
        return ["One seed: no interval, so no difference can be told from noise (--seeds N, N >= 2)."]
    if found:
        return ([f"Separated from {baseline} (the paired interval excludes 0):"] + [f"  {f}" for f in found]
                + ["Every other difference is within noise."])
    return [f"No difference from {baseline} is separated from noise: every paired interval contains 0."]
