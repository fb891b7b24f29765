"""Dropout experiments: the same network with dropout at different places, and k-fold cross-validation.

``dropout_experiment`` trains one zoo network several times — without dropout, and with dropout on the visible
layer, after the convolution blocks, after the dense layers, and combinations — from the same initial weights, on
the same split, with the same shuffling (one seed), and reports the final training and validation loss and
accuracy and the overfitting gap. ``kfold_experiment`` cross-validates the tabular dropout MLP (dropout on the
visible layer, max-norm hidden layers) with stratified, seeded folds.

Training loss and accuracy in the results are measured after training, in inference mode, on the training split:
the running averages ``fit`` logs are taken with dropout active, which would flatter every dropout variant's gap.
"""
import numpy as np

from . import zoo
from .data import stratified_kfold, train_test_split
from .initializers import set_random_seed
from .model import Model
from .validation import check_float, check_int, invalid

LOSS = "sparse_categorical_crossentropy"


def variant_name(placement):
    """``("conv", "dense")`` -> ``"conv+dense"``; no dropout -> ``"none"``."""
    return "+".join(p for p in zoo.PLACES if p in placement) or "none"


def parse_variant(name):
    """``"conv+dense"`` -> ``("conv", "dense")``; ``"none"`` -> ``()``."""
    if not isinstance(name, str) or not name:
        raise invalid("variants", f"names such as 'none', 'visible', 'conv+dense' (places {zoo.PLACES})", name)
    if name == "none":
        return ()
    parts = tuple(name.split("+"))
    bad = [p for p in parts if p not in zoo.PLACES]
    if bad:
        raise invalid("variants", f"'none' or places from {zoo.PLACES} joined by '+'", name)
    return tuple(p for p in zoo.PLACES if p in parts)


def default_variants(model):
    """Without dropout, each place alone, then the combinations the classic networks use."""
    if model == "mlp":
        return ["none", "visible", "dense", "visible+dense"]
    return ["none", "visible", "conv", "dense", "conv+dense", "visible+conv+dense"]


def _num_classes(y, *more):
    top = max(int(np.max(a)) for a in (y,) + more)
    return max(2, top + 1)


def _final(model, x, y, batch_size):
    loss, acc = model.evaluate(x, y, batch_size=max(batch_size, 256))
    return float(loss), float(acc)


def _split(x, y, validation_split, validation_data, seed, where):
    """``(x_train, y_train, x_val, y_val)``: ``validation_data`` as given, else a stratified, seeded split."""
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if validation_data is not None:
        x_val, y_val = (np.asarray(a) for a in validation_data)
        return x, y, np.asarray(x_val, np.float32), y_val
    split = check_float(validation_split, "validation_split", 0.0, 1.0, low_open=True, high_open=True, where=where)
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=split, seed=seed, stratify=True)
    return x_tr, y_tr, x_val, y_val


def train_run(run, data, settings):
    """Train and measure one network of an experiment: a pure task (no shared state), so that runs may go to
    other processes.

    Args:
        run: ``{"placement": (...), "kind": ..., "rate": ...}`` (``rate`` ``None``: the zoo's rates).
        data: ``(x_train, y_train, x_val, y_val)``.
        settings: ``model``, ``num_classes``, ``epochs``, ``batch_size``, ``optimizer``, ``learning_rate``,
            ``seed``, ``verbose``.

    Returns:
        ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``gap`` (train accuracy − validation
        accuracy, both in inference mode) and ``history`` (the per-epoch logs).
    """
    x_tr, y_tr, x_val, y_val = data
    model, seed, batch_size = settings["model"], settings["seed"], settings["batch_size"]
    set_random_seed(seed)  # the same initial weights for every run: dropout layers have none
    net = zoo.build(model, x_tr.shape[1:], settings["num_classes"], dropout=run["rate"], placement=run["placement"],
                    kind=run["kind"])
    net.compile(optimizer=zoo.make_optimizer(settings["optimizer"], settings["learning_rate"], model), loss=LOSS,
                metrics=["accuracy"])
    history = net.fit(x_tr, y_tr, batch_size=batch_size, epochs=settings["epochs"], validation_data=(x_val, y_val),
                      seed=seed, verbose=settings["verbose"])
    train_loss, train_acc = _final(net, x_tr, y_tr, batch_size)
    val_loss, val_acc = _final(net, x_val, y_val, batch_size)
    return {"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss, "val_accuracy": val_acc,
            "gap": train_acc - val_acc, "history": {k: list(v) for k, v in history.history.items()}}


def _run_all(runs, data, settings, on_run, runner):
    """Each run's row (its description, then :func:`train_run`'s measures), in order: here one after another, or
    through ``runner`` (see :func:`run_tasks`)."""
    if runner is None:
        results = []
        for i, run in enumerate(runs):
            if settings["verbose"]:
                print(f"[{i + 1}/{len(runs)}] {run['label']}", flush=True)
            results.append(train_run(run, data, settings))
            if on_run is not None:
                on_run(_row(run, results[-1]))
        return [_row(run, result) for run, result in zip(runs, results)]
    results = run_tasks(runner, train_run, runs, data, dict(settings, verbose=0))
    rows = [_row(run, result) for run, result in zip(runs, results)]
    for row in rows:
        if on_run is not None:
            on_run(row)
    return rows


def _row(run, result):
    return dict(run, placement=list(run["placement"]), **result)


def run_tasks(runner, task, items, data, settings):
    """``[task(item, data, settings) for item in items]`` through ``runner``: a callable
    ``runner(task, items, data, settings)`` returning the results in ``items`` order, e.g.
    :func:`dropcore.distributed.sweep.dask_runner`'s, which runs each item as a task on a cluster with ``data``
    sent once. Every task seeds itself, so the results equal the serial run's."""
    if not callable(runner):
        raise invalid("runner", "None or a callable runner(task, items, data, settings)", runner)
    results = list(runner(task, list(items), data, settings))
    if len(results) != len(items):
        raise ValueError(f"runner returned {len(results)} results for {len(items)} tasks")
    return results


def _settings(model, epochs, batch_size, optimizer, learning_rate, seed, verbose, classes, where):
    if model not in zoo.names():
        raise invalid("model", f"one of {zoo.names()}", model, where)
    return {"model": model, "num_classes": classes, "epochs": check_int(epochs, "epochs", 1, where),
            "batch_size": check_int(batch_size, "batch_size", 1, where), "optimizer": optimizer,
            "learning_rate": learning_rate, "seed": seed, "verbose": verbose}


def _check_rate(rate, where):
    if rate is None:
        return None
    # 0 would turn every run into the network without dropout
    return check_float(rate, "rate", 0.0, 1.0, low_open=True, high_open=True, where=where)


def dropout_experiment(x, y, model="mnist_cnn", variants=None, rate=None, epochs=10, batch_size=32, optimizer=None,
                       learning_rate=None, validation_split=0.2, validation_data=None, seed=0, verbose=0,
                       on_run=None, runner=None):
    """Train zoo network ``model`` once per dropout variant and compare them.

    Args:
        x, y: training samples (channels-last images, or feature rows for ``"mlp"``) and int labels.
        model: a zoo model name (see :func:`dropcore.zoo.names`).
        variants: variant names (``"none"``, ``"visible"``, ``"conv"``, ``"dense"`` or places joined by ``"+"``);
            default :func:`default_variants`.
        rate: one dropout rate for every place (``None``: the network's reference rates, and the dropout paper's
            0.2 / 0.25 / 0.5 at places the reference network has none).
        epochs, batch_size, optimizer, learning_rate: training settings (optimizer ``None``: the zoo's).
        validation_split: the fraction held out, stratified and seeded, when ``validation_data`` is not given.
        seed: seeds the initial weights (identical across variants), the split, the shuffling and the masks.
        verbose: passed to ``fit`` (0 silent, 1 progress bar, 2 one line per epoch).
        on_run: optional ``on_run(row)`` called after each variant (e.g. to print progress).
        runner: optional: run the trainings elsewhere, e.g. as Dask tasks (see :func:`run_tasks`); the results
            are the same.

    Returns:
        A dict: ``model``, ``seed``, ``epochs``, ``n_train``, ``n_val`` and ``runs``, one dict per variant in
        order with ``label`` and ``variant`` (its name), ``placement``, ``kind``, ``rate``, ``train_loss``,
        ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``gap`` (train accuracy − validation accuracy) and
        ``history`` (the per-epoch logs).
    """
    where = "dropout_experiment"
    seed = check_int(seed, "seed", 0, where)
    names = default_variants(model) if variants is None else list(variants)
    if not names:
        raise invalid("variants", "a non-empty list of variant names", names, where)
    placements = [parse_variant(v) for v in names]
    rate = _check_rate(rate, where)
    data = _split(x, y, validation_split, validation_data, seed, where)
    settings = _settings(model, epochs, batch_size, optimizer, learning_rate, seed, verbose,
                         _num_classes(data[1], data[3]), where)
    runs = [{"label": variant_name(p), "variant": variant_name(p), "placement": p, "kind": "dropout", "rate": rate}
            for p in placements]
    return {"model": model, "seed": seed, "epochs": settings["epochs"], "rate": rate, "n_train": int(len(data[0])),
            "n_val": int(len(data[2])), "runs": _run_all(runs, data, settings, on_run, runner)}


#: the kinds the comparison runs by default: without dropout at the convolution place, then each kind there
DEFAULT_KINDS = ("none",) + zoo.KINDS


def parse_kinds(kinds):
    """A list of kind names (a comma-separated string or a sequence), each ``"none"`` or one of ``zoo.KINDS``."""
    names = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    bad = [k for k in names if k not in DEFAULT_KINDS]
    if not names or bad:
        unknown = f" (not {', '.join(map(repr, bad))})" if bad else ""
        raise invalid("kinds", f"a non-empty list of {DEFAULT_KINDS}{unknown}", kinds)
    return names


def dropout_kinds_experiment(x, y, model="mnist_cnn", kinds=DEFAULT_KINDS, rate=None, placement=("conv",),
                             epochs=10, batch_size=32, optimizer=None, learning_rate=None, validation_split=0.2,
                             validation_data=None, seed=0, verbose=0, on_run=None, runner=None):
    """Train CNN ``model`` once per kind of dropout at its convolution place and compare them.

    Every run has the same network, initial weights, split and shuffling (one ``seed``); only the dropout after
    each convolution block changes (see :data:`dropcore.zoo.KINDS`: ``"maxpool"`` drops inside the pooling
    instead). ``"none"`` leaves the convolution place empty. Other places in ``placement`` (``"visible"``,
    ``"dense"``) take plain ``Dropout`` in every run, so they are the same in all of them.

    Args:
        kinds: kind names, ``"none"`` or :data:`dropcore.zoo.KINDS` (default: all of them).
        rate: the rate of every kind (``None``: the network's reference rate at the convolution place, 0.25 for
            ``mnist_cnn``); for ``"gaussian"`` the noise variance is ``rate / (1 - rate)``, for ``"dropblock"``
            the fraction of units dropped, in blocks of :data:`dropcore.zoo.BLOCK_SIZE`.
        placement: the places with dropout; it must include ``"conv"``.
        Everything else as :func:`dropout_experiment`.

    Returns:
        As :func:`dropout_experiment`, with one row per kind (``label`` and ``kind`` are the kind's name).
    """
    where = "dropout_kinds_experiment"
    seed = check_int(seed, "seed", 0, where)
    names = parse_kinds(kinds)
    places = parse_variant("+".join(placement) if not isinstance(placement, str) else placement)
    if "conv" not in places:
        raise invalid("placement", "places that include 'conv' (where the kinds differ)", placement, where)
    if model == "mlp":
        raise invalid("model", f"a CNN from {tuple(n for n in zoo.names() if n != 'mlp')}", model, where)
    rate = _check_rate(rate, where)
    data = _split(x, y, validation_split, validation_data, seed, where)
    settings = _settings(model, epochs, batch_size, optimizer, learning_rate, seed, verbose,
                         _num_classes(data[1], data[3]), where)
    runs = []
    for kind in names:
        placed = tuple(p for p in places if p != "conv") if kind == "none" else places
        runs.append({"label": kind, "variant": variant_name(placed), "placement": placed,
                     "kind": "dropout" if kind == "none" else kind, "rate": rate})
    return {"model": model, "seed": seed, "epochs": settings["epochs"], "rate": rate, "n_train": int(len(data[0])),
            "n_val": int(len(data[2])), "placement": list(places), "runs": _run_all(runs, data, settings, on_run, runner)}


def format_table(result, column="variant"):
    """A dropout experiment's runs side by side, one row per run (named by its ``label``), as a text table."""
    head = f"{column:<20}{'train loss':>11}{'train acc':>11}{'val loss':>10}{'val acc':>10}{'gap':>9}"
    lines = [head, "-" * len(head)]
    for r in result["runs"]:
        lines.append(f"{r['label']:<20}{r['train_loss']:>11.4f}{r['train_accuracy']:>11.4f}{r['val_loss']:>10.4f}"
                     f"{r['val_accuracy']:>10.4f}{r['gap']:>+9.4f}")
    return "\n".join(lines)


def _standardize(x_train, x_test):
    """Scale features by the training fold's mean and standard deviation (constant features are left at 0)."""
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std[std == 0] = 1.0
    return (x_train - mean) / std, (x_test - mean) / std


def train_fold(split, data, settings):
    """Train and test one fold of :func:`kfold_experiment`: a pure task (no shared state), so that folds may go
    to other processes. ``split`` is ``(train_idx, test_idx)``, ``data`` is ``(x, y)``; ``settings`` holds
    ``kfold_experiment``'s arguments. Returns ``n_train``, ``n_test``, ``loss`` and ``accuracy``."""
    train_idx, test_idx = split
    x, y = data
    x_tr, x_te = x[train_idx], x[test_idx]
    if settings["standardize"]:
        x_tr, x_te = _standardize(x_tr, x_te)
    set_random_seed(settings["seed"])
    build_fn, classes = settings["build_fn"], settings["num_classes"]
    net = zoo.mlp(x.shape[1:], classes, dropout=settings["rate"]) if build_fn is None else \
        build_fn(x.shape[1:], classes)
    if not isinstance(net, Model):
        raise invalid("build_fn", "a callable returning a dropcore model", type(net).__name__, "kfold_experiment")
    optimizer, learning_rate = settings["optimizer"], settings["learning_rate"]
    if net.loss is None or optimizer is not None or learning_rate is not None:
        net.compile(optimizer=zoo.make_optimizer(optimizer, learning_rate, "mlp"), loss=LOSS, metrics=["accuracy"])
    net.fit(x_tr, y[train_idx], batch_size=settings["batch_size"], epochs=settings["epochs"], seed=settings["seed"],
            verbose=settings["verbose"])
    loss, acc = net.evaluate(x_te, y[test_idx])
    return {"n_train": int(len(train_idx)), "n_test": int(len(test_idx)), "loss": float(loss),
            "accuracy": float(acc)}


def kfold_experiment(x, y, k=10, seed=0, build_fn=None, epochs=50, batch_size=16, rate=None, optimizer=None,
                     learning_rate=None, standardize=True, verbose=0, on_fold=None, runner=None):
    """Stratified, seeded k-fold cross-validation of the tabular dropout MLP (:func:`dropcore.zoo.mlp`).

    Each fold trains a fresh network from the same seed on the other folds and tests it on this one; features are
    standardized with the training folds' statistics (as the tutorial's scikit-learn pipeline does).

    Args:
        x, y: feature rows ``(N, F)`` and int labels.
        k: the number of folds (see :func:`dropcore.data.stratified_kfold`).
        build_fn: optional ``build_fn(input_shape, num_classes)`` returning a fresh model for each fold, called
            after the fold's ``set_random_seed(seed)``; an uncompiled one is compiled with ``optimizer`` /
            ``learning_rate``. Default: :func:`dropcore.zoo.mlp` with visible-layer dropout ``rate``.
        rate: the visible-layer dropout rate (``None``: 0.2).
        optimizer, learning_rate: ``None`` is the tutorial's SGD(0.1, momentum 0.9).
        on_fold: optional ``on_fold(row)`` called after each fold.
        runner: optional: run the folds elsewhere, e.g. as Dask tasks (see :func:`run_tasks`); the results are
            the same.

    Returns:
        A dict: ``k``, ``seed``, ``folds`` (``fold`` 1-based, ``n_train``, ``n_test``, ``loss``, ``accuracy``),
        ``mean_accuracy`` and ``std_accuracy`` (population standard deviation over the folds, as
        ``numpy.std`` of scikit-learn's ``cross_val_score`` results).
    """
    seed = check_int(seed, "seed", 0, "kfold_experiment")
    k = check_int(k, "k", 2, "kfold_experiment")
    if build_fn is not None and not callable(build_fn):
        raise invalid("build_fn", "None or a callable build_fn(input_shape, num_classes)", build_fn,
                      "kfold_experiment")
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if x.ndim != 2:
        raise invalid("x", "feature rows of shape (N, F)", f"an array of shape {x.shape}", "kfold_experiment")
    if k > len(y):
        raise invalid("k", f"an integer in [2, {len(y)}] (the number of samples)", k, "kfold_experiment")
    settings = {"num_classes": _num_classes(y), "build_fn": build_fn, "rate": rate, "optimizer": optimizer,
                "learning_rate": learning_rate, "standardize": standardize, "epochs": epochs,
                "batch_size": batch_size, "seed": seed, "verbose": verbose}
    splits = list(stratified_kfold(y, k=k, seed=seed))
    if runner is None:
        results = []
        for split in splits:
            results.append(train_fold(split, (x, y), settings))
            if on_fold is not None:
                on_fold(dict(fold=len(results), **results[-1]))
    else:
        results = run_tasks(runner, train_fold, splits, (x, y), dict(settings, verbose=0))
    folds = [dict(fold=i + 1, **result) for i, result in enumerate(results)]
    if runner is not None and on_fold is not None:
        for row in folds:
            on_fold(row)
    accs = np.array([f["accuracy"] for f in folds])
    return {"k": k, "seed": seed, "epochs": epochs, "folds": folds, "mean_accuracy": float(accs.mean()),
            "std_accuracy": float(accs.std())}
