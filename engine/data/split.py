"""Seeded train/test splits and stratified k-fold indices, in plain numpy (scikit-learn is not needed)."""
import warnings

import numpy as np


def _n_test(n, test_size):
    if isinstance(test_size, (bool, np.bool_)):
        raise TypeError("test_size must be a fraction in (0, 1) or a sample count, not a bool")
    if isinstance(test_size, (int, np.integer)):
        n_test = int(test_size)
    else:
        frac = float(test_size)
        if not 0.0 < frac < 1.0:
            raise ValueError(f"test_size as a fraction must be in (0, 1), got {test_size}")
        n_test = int(round(frac * n))
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size={test_size} gives {n_test} test samples out of {n}; need 1..{n - 1}")
    return n_test


def _class_quotas(counts, total, rng):
    """Split ``total`` across classes in proportion to ``counts`` (largest remainder, ties broken at random)."""
    exact = counts * (total / counts.sum())
    quotas = np.floor(exact).astype(np.int64)
    short = total - int(quotas.sum())
    if short:
        remainder = exact - quotas
        order = np.lexsort((rng.random(len(counts)), -remainder))
        quotas[order[:short]] += 1
    return quotas


def train_test_split(x, y, test_size=0.2, seed=0, stratify=False):
    """Shuffle and split ``x`` and ``y`` into train and test parts.

    Args:
        x: array of samples (first axis is the sample axis).
        y: labels, one per sample.
        test_size: a fraction in (0, 1) of the samples (rounded to the nearest count), or an int count.
        seed: seed for ``numpy.random.default_rng``; the same seed gives the same split. ``None`` for fresh
            entropy.
        stratify: when true, each class contributes to the test part in proportion to its size (per-class counts
            from largest-remainder rounding, so the total is exactly the requested test size).

    Returns:
        ``(x_train, x_test, y_train, y_test)`` as numpy arrays, each part in shuffled order. Every sample is in
        exactly one part.
    """
    x, y = np.asarray(x), np.asarray(y)
    n = len(y)
    if len(x) != n:
        raise ValueError(f"x has {len(x)} samples but y has {n}")
    n_test = _n_test(n, test_size)
    rng = np.random.default_rng(seed)
    if stratify:
        _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
        quotas = _class_quotas(counts, n_test, rng)
        test_parts, train_parts = [], []
        for c, q in enumerate(quotas):
            members = rng.permutation(np.flatnonzero(inverse == c))
            test_parts.append(members[:q])
            train_parts.append(members[q:])
        test_idx = rng.permutation(np.concatenate(test_parts))
        train_idx = rng.permutation(np.concatenate(train_parts))
    else:
        perm = rng.permutation(n)
        test_idx, train_idx = perm[:n_test], perm[n_test:]
    return x[train_idx], x[test_idx], y[train_idx], y[test_idx]


def stratified_kfold(y, k=5, seed=0):
    """Yield ``k`` seeded ``(train_idx, test_idx)`` pairs of int64 index arrays, preserving class proportions.

    Each class's samples are shuffled and dealt round-robin into the folds, continuing from where the previous
    class stopped, so every sample is in exactly one test fold, each class's count differs by at most one between
    folds, and the fold sizes differ by at most one. Indices within each array are sorted.

    Args:
        y: labels, one per sample.
        k: number of folds, 2 <= k <= len(y). A class with fewer than ``k`` samples triggers a ``UserWarning``
            (it cannot appear in every fold).
        seed: seed for ``numpy.random.default_rng`` (``None`` for fresh entropy).
    """
    y = np.asarray(y)
    n = len(y)
    k = int(k)
    if not 2 <= k <= n:
        raise ValueError(f"k must be between 2 and the number of samples ({n}), got {k}")
    rng = np.random.default_rng(seed)
    _, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    if counts.min() < k:
        warnings.warn(f"the smallest class has {counts.min()} samples, fewer than k={k} folds", stacklevel=2)
    order = np.concatenate([rng.permutation(np.flatnonzero(inverse == c)) for c in range(len(counts))])
    fold = np.empty(n, dtype=np.int64)
    fold[order] = np.arange(n) % k
    for f in range(k):
        in_test = fold == f
        yield np.flatnonzero(~in_test).astype(np.int64), np.flatnonzero(in_test).astype(np.int64)
