"""What Monte-Carlo dropout buys: one trained network scored deterministically and with Monte-Carlo dropout at
several numbers of passes, on held-out data and on shifted copies of it the network never saw.

``uncertainty_experiment`` trains a zoo network (with its dropout) on part of the data, then for each method
(``deterministic``: dropout off; ``mc-T``: the mean of T passes with dropout on) and each data set (the held-out
samples, the same rotated, the same with Gaussian noise) reports accuracy, negative log-likelihood, Brier score,
expected calibration error and its reliability bins, the mean predictive entropy, and the AUROC of predictive
entropy for telling the misclassified samples from the correct ones (how well the uncertainty flags errors). All
from one seed: the same seed gives the same numbers.
"""
import numpy as np
from scipy import ndimage

from . import calibration, zoo
from .data import train_test_split
from .initializers import set_random_seed
from .validation import check_float, check_int, invalid

LOSS = "sparse_categorical_crossentropy"
DEFAULT_MC_SAMPLES = (1, 10, 50)


def rotate(x, degrees):
    """Images ``(N, H, W, C)`` turned by ``degrees`` counter-clockwise about their centre (bilinear, same size,
    corners filled with 0: MNIST's background)."""
    return ndimage.rotate(np.asarray(x, np.float32), degrees, axes=(2, 1), reshape=False, order=1,
                          mode="constant", cval=0.0).astype(np.float32)


def add_noise(x, stddev, seed):
    """``x`` plus Gaussian noise of ``stddev`` (seeded), clipped to the data's own range."""
    x = np.asarray(x, np.float32)
    noisy = x + np.random.default_rng(seed).normal(0.0, stddev, x.shape).astype(np.float32)
    return np.clip(noisy, x.min(), x.max())


def score(probs, labels, bins=15):
    """The experiment's measures of one method on one data set (see the module docstring). ``auroc_entropy`` is
    None when every sample is right (or every one wrong), where it is undefined."""
    errors = probs.argmax(axis=1) != labels
    ent = calibration.entropy(probs)
    try:
        auroc = calibration.auroc(ent, errors)
    except ValueError:
        auroc = None
    return {"accuracy": calibration.accuracy(probs, labels), "nll": calibration.nll(probs, labels),
            "brier": calibration.brier(probs, labels), "ece": calibration.ece(probs, labels, bins),
            "mean_entropy": float(ent.mean()), "auroc_entropy": auroc, "n": int(len(labels)),
            "n_errors": int(errors.sum()), "reliability": calibration.calibration_bins(probs, labels, bins)}


def uncertainty_experiment(x, y, model="mnist_cnn", epochs=3, batch_size=64, mc_samples=DEFAULT_MC_SAMPLES,
                           rotation=45.0, noise=0.5, test_size=0.2, bins=15, optimizer=None, learning_rate=None,
                           seed=0, verbose=0, on_score=None, save_model=None, rate=None):
    """Train zoo network ``model`` once, then compare deterministic and Monte-Carlo-dropout predictions.

    Args:
        x, y: channels-last images and int labels; a stratified, seeded ``test_size`` fraction is held out.
        model: a zoo CNN with dropout (its reference rates, e.g. ``mnist_cnn``'s 0.25 and 0.5).
        rate: one dropout rate for every place the network has dropout (``None``: its reference rates).
        mc_samples: the numbers of Monte-Carlo passes T to compare (each at least 1).
        rotation: the held-out images turned by this many degrees form the "rotated" set (0: no such set).
        noise: the held-out images plus Gaussian noise of this standard deviation form the "noisy" set (0: none).
        bins: confidence bins for ECE and the reliability diagram.
        epochs, batch_size, optimizer, learning_rate: training settings (optimizer ``None``: the zoo's).
        seed: seeds the split, the weights, the shuffling, the noise and the Monte-Carlo masks.
        on_score: optional ``on_score(dataset, method, row)`` called as each score is ready.
        save_model: optionally, a path where the trained network is saved (to score more data the same way).

    Returns:
        A dict: ``model``, ``seed``, ``epochs``, ``rate``, ``n_train``, ``n_test``, ``mc_samples``, ``bins``,
        ``nll_floor``, ``train_accuracy`` and ``datasets``: ``{name: {"shift": ..., "methods": {method: row}}}``
        with methods ``deterministic`` and ``mc-T`` and rows as :func:`score` returns.
    """
    where = "uncertainty_experiment"
    seed = check_int(seed, "seed", 0, where)
    epochs = check_int(epochs, "epochs", 1, where)
    batch_size = check_int(batch_size, "batch_size", 1, where)
    bins = check_int(bins, "bins", 1, where)
    if model not in zoo.names() or model == "mlp":
        raise invalid("model", f"a zoo CNN from {tuple(n for n in zoo.names() if n != 'mlp')}", model, where)
    if isinstance(mc_samples, int) or not mc_samples:
        raise invalid("mc_samples", "a non-empty list of pass counts, e.g. (1, 10, 50)", mc_samples, where)
    mc_samples = [check_int(t, "mc_samples", 1, where) for t in mc_samples]
    if rate is not None:  # 0 would leave Monte-Carlo dropout nothing to draw
        rate = check_float(rate, "rate", 0.0, 1.0, low_open=True, high_open=True, where=where)
    rotation = check_float(rotation, "rotation", -360.0, 360.0, high_open=False, where=where)
    noise = check_float(noise, "noise", 0.0, None, where=where)
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.ndim != 4:
        raise invalid("x", "images of shape (N, H, W, C)", f"an array of shape {x.shape}", where)
    test_size = check_float(test_size, "test_size", 0.0, 1.0, low_open=True, high_open=True, where=where)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_size, seed=seed, stratify=True)
    classes = max(2, int(max(y_tr.max(), y_te.max())) + 1)

    set_random_seed(seed)
    net = zoo.build(model, x.shape[1:], classes, dropout=rate)
    net.compile(optimizer=zoo.make_optimizer(optimizer, learning_rate, model), loss=LOSS, metrics=["accuracy"])
    net.fit(x_tr, y_tr, batch_size=batch_size, epochs=epochs, seed=seed, verbose=verbose)
    if save_model is not None:
        net.save(save_model)

    sets = {"held-out": (x_te, "none")}
    if rotation:
        sets[f"rotated {rotation:g}°"] = (rotate(x_te, rotation), f"rotated by {rotation:g} degrees")
    if noise:
        sets[f"noise {noise:g}"] = (add_noise(x_te, noise, seed), f"Gaussian noise, stddev {noise:g}, clipped")
    datasets = {}
    for name, (xs, shift) in sets.items():
        methods = {}
        predictions = [("deterministic", lambda: net.predict(xs, batch_size=256))]
        predictions += [(f"mc-{t}", lambda t=t: net.predict(xs, batch_size=256, mc_samples=t, seed=seed)[0])
                        for t in mc_samples]
        for method, predict in predictions:
            methods[method] = score(predict(), y_te, bins)
            if on_score is not None:
                on_score(name, method, methods[method])
        datasets[name] = {"shift": shift, "methods": methods}
    _, train_acc = net.evaluate(x_tr, y_tr, batch_size=256)
    return {"model": model, "seed": seed, "epochs": epochs, "rate": rate, "n_train": int(len(x_tr)),
            "n_test": int(len(x_te)), "mc_samples": mc_samples, "bins": bins, "nll_floor": calibration.NLL_FLOOR,
            "train_accuracy": float(train_acc), "datasets": datasets}


def format_table(result):
    """One row per data set and method: accuracy, NLL, Brier, ECE, mean entropy and the AUROC of entropy."""
    head = (f"{'data':<16}{'method':<15}{'accuracy':>9}{'NLL':>8}{'Brier':>8}{'ECE':>8}{'entropy':>9}"
            f"{'AUROC':>8}{'errors':>8}")
    lines = [head, "-" * len(head)]
    for name, d in result["datasets"].items():
        for method, r in d["methods"].items():
            auroc = "n/a" if r["auroc_entropy"] is None else f"{r['auroc_entropy']:.4f}"
            lines.append(f"{name:<16}{method:<15}{r['accuracy']:>9.4f}{r['nll']:>8.4f}{r['brier']:>8.4f}"
                         f"{r['ece']:>8.4f}{r['mean_entropy']:>9.4f}{auroc:>8}{r['n_errors']:>8}")
    return "\n".join(lines)
