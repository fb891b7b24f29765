"""What Monte-Carlo dropout buys: one trained network scored deterministically and with Monte-Carlo dropout at
several numbers of passes, on held-out data and on shifted copies of it the network never saw.

``uncertainty_experiment`` trains a zoo network (with its dropout) on part of the data, then for each method
(``deterministic``: dropout off; ``mc-T``: the mean of T passes with dropout on) and each data set (the held-out
samples, the same rotated, the same with Gaussian noise) reports accuracy, negative log-likelihood, Brier score,
expected calibration error and its reliability bins, the mean predictive entropy, and the AUROC of predictive
entropy for telling the misclassified samples from the correct ones (how well the uncertainty flags errors). It
repeats that over seeds (each a new split, network, shuffling, noise and masks), and summarizes each score by its
mean and 95% t-interval over the seeds, and each Monte-Carlo method against the deterministic prediction of the
same network by the paired difference (:mod:`dropcore.stats`). The same seeds give the same numbers.
"""
import numpy as np
from scipy import ndimage

from . import calibration, zoo
from .data import train_test_split
from .initializers import set_random_seed
from .io import model_to_bytes
from .stats import CONFIDENCE, format_interval, mean_interval, paired_difference, separated_lines
from .utils import atomic_write
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


def _datasets(x_te, rotation, noise, seed):
    sets = {"held-out": (x_te, "none")}
    if rotation:
        sets[f"rotated {rotation:g}°"] = (rotate(x_te, rotation), f"rotated by {rotation:g} degrees")
    if noise:
        sets[f"noise {noise:g}"] = (add_noise(x_te, noise, seed), f"Gaussian noise, stddev {noise:g}, clipped")
    return sets


def uncertainty_run(seed, data, settings, on_score=None):
    """Train and score one seed of :func:`uncertainty_experiment`: a pure task (no shared state), so that seeds
    may go to other processes.

    Args:
        seed: seeds the split, the weights, the shuffling, the noise and the Monte-Carlo masks.
        data: ``(x, y)``, the images and labels before the split.
        settings: ``model``, ``num_classes``, ``rate``, ``epochs``, ``batch_size``, ``optimizer``,
            ``learning_rate``, ``test_size``, ``mc_samples``, ``rotation``, ``noise``, ``bins``, ``verbose`` and
            ``keep_model`` (the seed whose trained network comes back as bytes, or ``None``).
        on_score: optional ``on_score(dataset, method, row)`` called as each score is ready.

    Returns:
        A dict: ``seed``, ``n_train``, ``n_test``, ``train_accuracy``, ``datasets`` (``{name: {"shift": ...,
        "methods": {method: row}}}``, rows as :func:`score` returns) and ``model`` (the file's bytes for
        ``keep_model``'s seed, else ``None``).
    """
    x, y = data
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=settings["test_size"], seed=seed, stratify=True)
    model = settings["model"]
    set_random_seed(seed)
    net = zoo.build(model, x_tr.shape[1:], settings["num_classes"], dropout=settings["rate"])
    net.compile(optimizer=zoo.make_optimizer(settings["optimizer"], settings["learning_rate"], model), loss=LOSS,
                metrics=["accuracy"])
    net.fit(x_tr, y_tr, batch_size=settings["batch_size"], epochs=settings["epochs"], seed=seed,
            verbose=settings["verbose"])
    datasets = {}
    for name, (xs, shift) in _datasets(x_te, settings["rotation"], settings["noise"], seed).items():
        methods = {}
        predictions = [("deterministic", lambda: net.predict(xs, batch_size=256))]
        predictions += [(f"mc-{t}", lambda t=t: net.predict(xs, batch_size=256, mc_samples=t, seed=seed)[0])
                        for t in settings["mc_samples"]]
        for method, predict in predictions:
            methods[method] = score(predict(), y_te, settings["bins"])
            if on_score is not None:
                on_score(name, method, methods[method])
        datasets[name] = {"shift": shift, "methods": methods}
    _, train_acc = net.evaluate(x_tr, y_tr, batch_size=256)
    # the file's bytes, not the file: the task may run on another machine; with the optimizer, as Model.save
    blob = model_to_bytes(net, include_optimizer=True) if seed == settings["keep_model"] else None
    return {"seed": seed, "n_train": int(len(x_tr)), "n_test": int(len(x_te)), "train_accuracy": float(train_acc),
            "datasets": datasets, "model": blob}


def uncertainty_experiment(x, y, model="mnist_cnn", epochs=3, batch_size=64, mc_samples=DEFAULT_MC_SAMPLES,
                           rotation=45.0, noise=0.5, test_size=0.2, bins=15, optimizer=None, learning_rate=None,
                           seed=0, seeds=3, verbose=0, on_score=None, save_model=None, rate=None, runner=None):
    """Train zoo network ``model`` once per seed, then compare deterministic and Monte-Carlo-dropout predictions,
    over the seeds and paired by seed.

    Args:
        x, y: channels-last images and int labels; a stratified ``test_size`` fraction is held out, drawn by
            each seed.
        model: a zoo CNN with dropout (its reference rates, e.g. ``mnist_cnn``'s 0.25 and 0.5).
        rate: one dropout rate for every place the network has dropout (``None``: its reference rates).
        mc_samples: the numbers of Monte-Carlo passes T to compare (each at least 1).
        rotation: the held-out images turned by this many degrees form the "rotated" set (0: no such set).
        noise: the held-out images plus Gaussian noise of this standard deviation form the "noisy" set (0: none).
        bins: confidence bins for ECE and the reliability diagram.
        epochs, batch_size, optimizer, learning_rate: training settings (optimizer ``None``: the zoo's).
        seed, seeds: ``seeds`` seeds from ``seed`` (``seed``, ``seed + 1``, ...), each seeding the split, the
            weights, the shuffling, the noise and the Monte-Carlo masks of one trained network.
        on_score: optional ``on_score(dataset, method, row)`` called as each score is ready (serial runs only:
            with ``runner`` the scores come back together).
        save_model: optionally, a path where the first seed's trained network is saved (to score more data the
            same way).
        runner: optional: train and score each seed elsewhere, e.g. as a Dask task (see
            :func:`dropcore.experiments.run_tasks`); the results are the same.

    Returns:
        A dict: ``model``, ``seed`` (the first), ``seeds``, ``epochs``, ``rate``, ``n_train``, ``n_test``,
        ``mc_samples``, ``bins``, ``nll_floor``, ``runs`` (one per seed: ``seed``, ``train_accuracy`` and
        ``datasets``: ``{name: {"shift": ..., "methods": {method: row}}}`` with methods ``deterministic`` and
        ``mc-T`` and rows as :func:`score` returns) and ``summary`` (see :func:`summarize`).
    """
    from .experiments import run_tasks, seed_list

    where = "uncertainty_experiment"
    seeds = seed_list(seed, seeds, where)
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
    settings = {"model": model, "num_classes": max(2, int(y.max()) + 1), "rate": rate, "epochs": epochs,
                "batch_size": batch_size, "optimizer": optimizer, "learning_rate": learning_rate,
                "test_size": test_size, "mc_samples": mc_samples, "rotation": rotation, "noise": noise, "bins": bins,
                "verbose": verbose, "keep_model": seeds[0] if save_model is not None else None}
    if runner is None:
        runs = []
        for s in seeds:
            if verbose:
                print(f"[{len(runs) + 1}/{len(seeds)}] seed {s}", flush=True)
            runs.append(uncertainty_run(s, (x, y), settings, on_score))
    else:
        runs = run_tasks(runner, uncertainty_run, seeds, (x, y), dict(settings, verbose=0))
    for run in runs:
        blob = run.pop("model")  # bytes: kept out of the result, which is written as JSON
        if blob is not None:
            with atomic_write(save_model, "wb") as fh:
                fh.write(blob)
    first = runs[0]
    runs = [{k: r[k] for k in ("seed", "train_accuracy", "datasets")} for r in runs]
    return {"model": model, "seed": seeds[0], "seeds": seeds, "epochs": epochs, "rate": rate,
            "n_train": first["n_train"], "n_test": first["n_test"], "mc_samples": mc_samples, "bins": bins,
            "nll_floor": calibration.NLL_FLOOR, "runs": runs, "summary": summarize(runs)}


#: the scores :func:`summarize` gives a mean and interval and compares with the deterministic prediction
MEASURES = ("accuracy", "nll", "brier", "ece", "mean_entropy", "auroc_entropy")
BASELINE = "deterministic"


def summarize(runs, confidence=CONFIDENCE):
    """Each data set and method over the seeds, and each Monte-Carlo method against the deterministic prediction
    of the same network, paired by seed.

    ``auroc_entropy`` is undefined on a seed where a method made no error (or no correct prediction); its
    interval and paired difference are taken over the seeds where it is defined (``n`` says how many), and are
    ``None`` when there is none.

    Returns:
        A dict: ``baseline`` (``"deterministic"``), ``confidence``, ``seeds`` and ``datasets``: ``{name: {"shift":
        ..., "methods": {method: {"measures": {measure: mean_interval}, "vs_baseline": {measure:
        paired_difference} or None}}}}``.
    """
    where = "uncertainty summarize"
    out = {}
    for name, d in runs[0]["datasets"].items():
        methods = {}
        for method in d["methods"]:
            rows = [r["datasets"][name]["methods"][method] for r in runs]
            base = [r["datasets"][name]["methods"][BASELINE] for r in runs]
            measures, versus = {}, None if method == BASELINE else {}
            for m in MEASURES:
                pairs = [(a[m], b[m]) for a, b in zip(rows, base) if a[m] is not None]
                measures[m] = mean_interval([a for a, _ in pairs], confidence, where) if pairs else None
                if versus is not None:
                    both = [(a, b) for a, b in pairs if b is not None]
                    versus[m] = paired_difference([a for a, _ in both], [b for _, b in both], confidence,
                                                  where) if both else None
            methods[method] = {"measures": measures, "vs_baseline": versus}
        out[name] = {"shift": d["shift"], "methods": methods}
    return {"baseline": BASELINE, "confidence": confidence, "seeds": [r["seed"] for r in runs], "datasets": out}


_SHOWN = (("accuracy", "accuracy"), ("nll", "NLL"), ("brier", "Brier"), ("ece", "ECE"), ("auroc_entropy", "AUROC"))


def _cell(stat, sign=False):
    return "n/a" if stat is None else format_interval(stat, digits=3, sign=sign)


def format_table(result):
    """Two tables: each data set and method's mean ± half-width of the 95% interval over the seeds (accuracy,
    NLL, Brier, ECE and the AUROC of entropy for the errors); then each Monte-Carlo method minus the deterministic
    prediction of the same network, paired by seed, with ``*`` where the interval excludes 0."""
    summary = result["summary"]
    n, conf = len(summary["seeds"]), summary["confidence"]
    head = f"{'data':<14}{'method':<15}" + "".join(f"{h:>16}" for _, h in _SHOWN)
    lines = [f"Mean ± {conf:.0%} interval over {n} seed{'s' if n != 1 else ''} {summary['seeds']}"
             + (" (one seed: no interval)" if n == 1 else ""), head, "-" * len(head)]
    for name, d in summary["datasets"].items():
        for method, row in d["methods"].items():
            lines.append(f"{name:<14}{method:<15}" + "".join(f"{_cell(row['measures'][m]):>16}" for m, _ in _SHOWN))
    lines += ["", f"Paired against {summary['baseline']}, seed by seed (mean difference ± {conf:.0%} interval; "
                  "* the interval excludes 0)"]
    head = f"{'data':<14}{'method':<15}" + "".join(f"{'Δ ' + h:>18}" for _, h in _SHOWN)
    lines += [head, "-" * len(head)]
    found = []
    for name, d in summary["datasets"].items():
        for method, row in d["methods"].items():
            if row["vs_baseline"] is None:
                continue
            cells = []
            for m, h in _SHOWN:
                diff = row["vs_baseline"][m]
                cells.append(f"{_cell(diff, sign=True)} {'*' if diff and diff['excludes_zero'] else ' '}")
                if diff and diff["excludes_zero"]:
                    found.append(f"{name}, {method}: {h} {'higher' if diff['mean'] > 0 else 'lower'} by "
                                 f"{abs(diff['mean']):.3f} ± {diff['half_width']:.3f}")
            lines.append((f"{name:<14}{method:<15}" + "".join(f"{c:>18}" for c in cells)).rstrip())
    lines += [""] + separated_lines(n, found, summary["baseline"])
    return "\n".join(lines)
