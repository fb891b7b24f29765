"""Probability scores against scikit-learn and independent loops."""
import math

import numpy as np
import pytest

from dropcore import calibration

RNG = np.random.default_rng(0)


def random_probs(n, k, rng=RNG):
    logits = rng.normal(0, 2, (n, k))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


P = random_probs(500, 10)
Y = np.where(RNG.random(500) < 0.7, P.argmax(axis=1), RNG.integers(0, 10, 500))  # mostly right, some wrong


def test_nll_accuracy_and_brier_against_scikit_learn_and_a_loop():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed (pip install "
                                                             "'dropcore[digits]')")
    assert calibration.nll(P, Y) == pytest.approx(metrics.log_loss(Y, P, labels=range(10)), rel=1e-12)
    assert calibration.accuracy(P, Y) == metrics.accuracy_score(Y, P.argmax(axis=1))
    loop = sum(sum((P[i, k] - (k == Y[i])) ** 2 for k in range(10)) for i in range(500)) / 500
    assert calibration.brier(P, Y) == pytest.approx(loop, rel=1e-12)
    two = np.stack([1 - P[:, 0], P[:, 0]], axis=1)  # binary: twice scikit-learn's (which scores one column)
    yb = (Y == 0).astype(int)
    assert calibration.brier(two, yb) == pytest.approx(2 * metrics.brier_score_loss(yb, P[:, 0]), rel=1e-12)


def test_nll_floors_a_zero_probability():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert calibration.nll(p, np.array([1, 0])) == pytest.approx((-math.log(1e-12) - math.log(0.5)) / 2)


def test_ece_and_bins_against_a_loop():
    conf, pred = P.max(axis=1), P.argmax(axis=1)
    total = 0.0
    counts = []
    for b in range(15):
        lo, hi = b / 15, (b + 1) / 15
        inside = [i for i in range(500) if lo < conf[i] <= hi]
        counts.append(len(inside))
        if inside:
            acc = np.mean([pred[i] == Y[i] for i in inside])
            total += len(inside) / 500 * abs(acc - np.mean(conf[inside]))
    table = calibration.calibration_bins(P, Y, 15)
    assert table["count"] == counts and sum(counts) == 500
    assert calibration.ece(P, Y) == pytest.approx(total, rel=1e-12)
    assert calibration.ece(P, P.argmax(axis=1), bins=1) == pytest.approx(1 - conf.mean())  # always right


def test_confidence_on_a_bin_edge_goes_to_the_lower_bin():
    p = np.array([[0.6, 0.4], [0.5, 0.5], [1.0, 0.0]])
    table = calibration.calibration_bins(p, np.array([0, 0, 0]), bins=2)
    assert table["count"] == [1, 2] and table["accuracy"] == [1.0, 1.0]


def test_auroc_against_scikit_learn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")
    scores = np.round(RNG.normal(size=300), 1)  # many ties
    positives = RNG.random(300) < 0.3 + 0.4 * (scores > 0)
    assert calibration.auroc(scores, positives) == pytest.approx(metrics.roc_auc_score(positives, scores),
                                                                 rel=1e-12)
    assert calibration.auroc([1, 2, 3, 4], [False, False, True, True]) == 1.0
    assert calibration.auroc([1, 1, 1, 1], [False, True, False, True]) == 0.5
    with pytest.raises(ValueError, match="undefined with 0 positive and 3 negative samples"):
        calibration.auroc([1, 2, 3], [False, False, False])


def test_entropy():
    e = calibration.entropy(np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]]))
    np.testing.assert_allclose(e, [0.0, math.log(2), -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))])


@pytest.mark.parametrize("probs, labels, match", [
    (np.ones(3), np.zeros(3, int), r"`probs`: expected an \(N, K\) array"),
    (np.array([[0.5, np.nan]]), np.array([0]), "NaN, infinite or negative"),
    (np.array([[0.5, 0.5]]), np.array([2]), r"`labels`: expected \(1,\) int class labels in \[0, 2\)"),
    (np.array([[0.5, 0.5]]), np.array([0.0]), "dtype float64"),
])
def test_bad_inputs_are_named(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        calibration.nll(probs, labels)
