"""How good predicted probabilities are: accuracy, negative log-likelihood, Brier score, calibration (reliability
bins and expected calibration error), predictive entropy, and the AUROC of a score.

Every function takes ``probs`` of shape ``(N, K)`` (rows of class probabilities, as ``predict`` returns) and int
``labels`` of shape ``(N,)``, and returns plain Python floats. The definitions are the usual ones:

- NLL: the mean of ``-log p[label]``, with ``p`` floored at ``1e-12`` so that one confident mistake costs 27.6 nats
  rather than infinity (the floor is reported in the experiment's results);
- Brier score: the mean over samples of ``sum_k (p_k - [k == label])**2`` (Brier's multi-class score, 0 to 2);
- calibration: the samples are binned by confidence (the largest probability) into ``bins`` equal-width bins
  ``(0, 1/B], ..., ((B-1)/B, 1]``; ECE is the sample-weighted mean of ``|accuracy - confidence|`` over the bins
  (Guo et al. 2017, 15 bins there);
- AUROC: the probability that a random positive scores above a random negative, ties counting one half (the
  Mann-Whitney statistic).
"""
import numpy as np
from scipy.stats import rankdata

from .validation import invalid

NLL_FLOOR = 1e-12


def _check(probs, labels, where):
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] < 2:
        raise invalid("probs", "an (N, K) array of class probabilities with N >= 1 and K >= 2",
                      f"an array of shape {p.shape}", where)
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise invalid("probs", "finite, non-negative probabilities", "NaN, infinite or negative values", where)
    if y.shape != (p.shape[0],) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= p.shape[1]:
        raise invalid("labels", f"({p.shape[0]},) int class labels in [0, {p.shape[1]})",
                      f"an array of shape {y.shape} and dtype {y.dtype}", where)
    return p, y


def accuracy(probs, labels):
    """The fraction of samples whose most probable class is the label."""
    p, y = _check(probs, labels, "accuracy")
    return float(np.mean(p.argmax(axis=1) == y))


def nll(probs, labels):
    """The mean negative log-likelihood of the labels (natural log; probabilities floored at ``NLL_FLOOR``)."""
    p, y = _check(probs, labels, "nll")
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(y)), y], NLL_FLOOR))))


def brier(probs, labels):
    """Brier's multi-class score: the mean squared distance between the probabilities and the one-hot label."""
    p, y = _check(probs, labels, "brier")
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def calibration_bins(probs, labels, bins=15):
    """Per confidence bin: ``edges`` (B + 1), ``count``, mean ``confidence`` and ``accuracy`` (None in an empty
    bin), as lists."""
    p, y = _check(probs, labels, "calibration_bins")
    if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
        raise invalid("bins", "an integer >= 1", bins, "calibration_bins")
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 cannot happen (rows sum to 1, K finite)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    conf_sum = np.bincount(which, weights=conf, minlength=bins)
    correct_sum = np.bincount(which, weights=correct, minlength=bins)
    nonempty = count > 0
    return {"edges": edges.tolist(), "count": count.tolist(),
            "confidence": [float(c / n) if n else None for c, n in zip(conf_sum, count)],
            "accuracy": [float(c / n) if n else None for c, n in zip(correct_sum, count)],
            "nonempty": int(nonempty.sum())}


def ece(probs, labels, bins=15):
    """Expected calibration error over ``bins`` equal-width confidence bins."""
    table = calibration_bins(probs, labels, bins)
    n = sum(table["count"])
    return float(sum(c / n * abs(a - f) for c, a, f in zip(table["count"], table["accuracy"], table["confidence"])
                     if c))


def entropy(probs):
    """Each row's predictive entropy ``-sum_k p_k log p_k`` in nats (``0 log 0 = 0``), shape ``(N,)``."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise invalid("probs", "an (N, K) array of class probabilities", f"an array of shape {p.shape}", "entropy")
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * np.log(p), 0.0)
    return -terms.sum(axis=1)


def auroc(scores, positives):
    """The area under the ROC curve of ``scores`` for telling ``positives`` (bool) from the rest. Raises
    ValueError when either group is empty, where the area is undefined."""
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positives, dtype=bool)
    if s.ndim != 1 or pos.shape != s.shape:
        raise invalid("positives", f"a bool array of the scores' shape {s.shape}", f"shape {pos.shape}", "auroc")
    n_pos = int(pos.sum())
    n_neg = len(s) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"auroc: undefined with {n_pos} positive and {n_neg} negative samples: both groups must "
                         f"be non-empty")
    ranks = rankdata(s)  # average ranks: ties count one half
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
