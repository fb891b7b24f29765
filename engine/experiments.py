"""Dropout experiments: the same network with dropout at different places, and k-fold cross-validation.

``dropout_experiment`` trains one zoo network several times — without dropout, and with dropout on the visible
layer, after the convolution blocks, after the dense layers, and combinations — and reports the final training and
validation loss and accuracy and the overfitting gap. It repeats that over several seeds: within one seed every
variant has the same initial weights, split and shuffling; each seed changes all three and the dropout masks. Each
variant is then summarized by its mean and 95% t-interval over the seeds, and compared with the network without
dropout by the paired difference over the same seeds (:mod:`dropcore.stats`). ``kfold_experiment`` cross-validates
the tabular dropout MLP (dropout on the visible layer, max-norm hidden layers) with stratified, seeded folds.

Training loss and accuracy in the results are measured after training, in inference mode, on the training split:
the running averages ``fit`` logs are taken with dropout active, which would flatter every dropout variant's gap.
"""
import numpy as np

from . import zoo
from .data import stratified_kfold, train_test_split
from .initializers import set_random_seed
from .model import Model
from .stats import CONFIDENCE, format_interval, mean_interval, paired_difference, separated_lines
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


def _data(x, y, validation_split, validation_data, where):
    """What every run trains from: ``((x, y), split)`` — split again by each run's seed, stratified — or, when
    ``validation_data`` is given, ``((x_train, y_train, x_val, y_val), None)``, the same for every seed."""
    x, y = np.asarray(x, np.float32), np.asarray(y)
    if validation_data is not None:
        x_val, y_val = (np.asarray(a) for a in validation_data)
        return (x, y, np.asarray(x_val, np.float32), y_val), None
    split = check_float(validation_split, "validation_split", 0.0, 1.0, low_open=True, high_open=True, where=where)
    return (x, y), split


def split_for(data, seed, validation_split):
    """``(x_train, y_train, x_val, y_val)`` for one seed: ``data`` itself when it already holds validation data,
    else ``(x, y)`` split by ``seed`` (stratified), so that each seed validates on other samples."""
    if len(data) == 4:
        return tuple(data)
    x, y = data
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=validation_split, seed=seed, stratify=True)
    return x_tr, y_tr, x_val, y_val


def seed_list(seed, seeds, where=None):
    """The seeds an experiment runs: ``seeds`` consecutive integers from ``seed`` (``seed=3, seeds=2``: 3, 4)."""
    seed = check_int(seed, "seed", 0, where)
    seeds = check_int(seeds, "seeds", 1, where)
    return list(range(seed, seed + seeds))


def train_run(run, data, settings):
    """Train and measure one network of an experiment: a pure task (no shared state), so that runs may go to
    other processes.

    Args:
        run: ``{"placement": (...), "kind": ..., "rate": ..., "seed": ...}`` (``rate`` ``None``: the zoo's rates).
            ``seed`` seeds the split, the initial weights, the shuffling and the dropout masks.
        data: ``(x, y)``, split by the run's seed with ``settings["validation_split"]``, or ``(x_train, y_train,
            x_val, y_val)`` used as it is.
        settings: ``model``, ``num_classes``, ``epochs``, ``batch_size``, ``optimizer``, ``learning_rate``,
            ``validation_split``, ``verbose``.

    Returns:
        ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``gap`` (train accuracy − validation
        accuracy, both in inference mode) and ``history`` (the per-epoch logs).
    """
    seed = run["seed"]
    x_tr, y_tr, x_val, y_val = split_for(data, seed, settings["validation_split"])
    model, batch_size = settings["model"], settings["batch_size"]
    set_random_seed(seed)  # within a seed every variant starts from the same weights: dropout layers have none
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
                print(f"[{i + 1}/{len(runs)}] {run['label']}, seed {run['seed']}", flush=True)
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


def _settings(model, epochs, batch_size, optimizer, learning_rate, split, verbose, classes, where):
    if model not in zoo.names():
        raise invalid("model", f"one of {zoo.names()}", model, where)
    return {"model": model, "num_classes": classes, "epochs": check_int(epochs, "epochs", 1, where),
            "batch_size": check_int(batch_size, "batch_size", 1, where), "optimizer": optimizer,
            "learning_rate": learning_rate, "validation_split": split, "verbose": verbose}


def _check_rate(rate, where):
    if rate is None:
        return None
    # 0 would turn every run into the network without dropout
    return check_float(rate, "rate", 0.0, 1.0, low_open=True, high_open=True, where=where)


def _experiment(runs, data, split, seeds, settings, on_run, runner, **extra):
    """Run every (variant, seed) — seed by seed, each seed's variants in order — and summarize them."""
    tasks = [dict(run, seed=s) for s in seeds for run in runs]
    x_tr, _, x_val, _ = split_for(data, seeds[0], split)  # every seed's split has the same sizes
    rows = _run_all(tasks, data, settings, on_run, runner)
    return dict({"model": settings["model"], "seed": seeds[0], "seeds": list(seeds), "epochs": settings["epochs"],
                 "rate": runs[0]["rate"], "n_train": int(len(x_tr)), "n_val": int(len(x_val))}, **extra,
                runs=rows, summary=summarize(rows))


def dropout_experiment(x, y, model="mnist_cnn", variants=None, rate=None, epochs=10, batch_size=32, optimizer=None,
                       learning_rate=None, validation_split=0.2, validation_data=None, seed=0, seeds=3, verbose=0,
                       on_run=None, runner=None):
    """Train zoo network ``model`` once per dropout variant and seed, and compare the variants over the seeds.

    Args:
        x, y: training samples (channels-last images, or feature rows for ``"mlp"``) and int labels.
        model: a zoo model name (see :func:`dropcore.zoo.names`).
        variants: variant names (``"none"``, ``"visible"``, ``"conv"``, ``"dense"`` or places joined by ``"+"``);
            default :func:`default_variants`.
        rate: one dropout rate for every place (``None``: the network's reference rates, and the dropout paper's
            0.2 / 0.25 / 0.5 at places the reference network has none).
        epochs, batch_size, optimizer, learning_rate: training settings (optimizer ``None``: the zoo's).
        validation_split: the fraction held out, stratified and seeded, when ``validation_data`` is not given.
        seed, seeds: the experiment runs ``seeds`` seeds, ``seed``, ``seed + 1``, ... Each seeds one split, one
            set of initial weights (shared by every variant of that seed), the shuffling and the masks.
        verbose: passed to ``fit`` (0 silent, 1 progress bar, 2 one line per epoch).
        on_run: optional ``on_run(row)`` called after each training (e.g. to print progress).
        runner: optional: run the trainings elsewhere, e.g. as Dask tasks (see :func:`run_tasks`); the results
            are the same.

    Returns:
        A dict: ``model``, ``seed`` (the first), ``seeds``, ``epochs``, ``rate``, ``n_train``, ``n_val``,
        ``runs`` — one dict per training, seed by seed, with ``label`` and ``variant`` (the variant's name),
        ``placement``, ``kind``, ``rate``, ``seed``, ``train_loss``, ``train_accuracy``, ``val_loss``,
        ``val_accuracy``, ``gap`` (train accuracy − validation accuracy) and ``history`` (the per-epoch logs) —
        and ``summary`` (see :func:`summarize`).
    """
    where = "dropout_experiment"
    seeds = seed_list(seed, seeds, where)
    names = default_variants(model) if variants is None else list(variants)
    if not names:
        raise invalid("variants", "a non-empty list of variant names", names, where)
    placements = [parse_variant(v) for v in names]
    if len(set(placements)) != len(placements):  # the summary groups runs by name: one name, one variant
        raise invalid("variants", "variant names without repeats", names, where)
    rate = _check_rate(rate, where)
    data, split = _data(x, y, validation_split, validation_data, where)
    settings = _settings(model, epochs, batch_size, optimizer, learning_rate, split, verbose,
                         _num_classes(data[1], *data[3:]), where)
    runs = [{"label": variant_name(p), "variant": variant_name(p), "placement": p, "kind": "dropout", "rate": rate}
            for p in placements]
    return _experiment(runs, data, split, seeds, settings, on_run, runner)


#: the kinds the comparison runs by default: without dropout at the convolution place, then each kind there
DEFAULT_KINDS = ("none",) + zoo.KINDS


def parse_kinds(kinds):
    """A list of kind names (a comma-separated string or a sequence), each ``"none"`` or one of ``zoo.KINDS``."""
    names = kinds.split(",") if isinstance(kinds, str) else list(kinds)
    bad = [k for k in names if k not in DEFAULT_KINDS]
    if not names or bad:
        unknown = f" (not {', '.join(map(repr, bad))})" if bad else ""
        raise invalid("kinds", f"a non-empty list of {DEFAULT_KINDS}{unknown}", kinds)
    if len(set(names)) != len(names):  # the summary groups runs by kind
        raise invalid("kinds", f"kinds from {DEFAULT_KINDS} without repeats", kinds)
    return names


def dropout_kinds_experiment(x, y, model="mnist_cnn", kinds=DEFAULT_KINDS, rate=None, placement=("conv",),
                             epochs=10, batch_size=32, optimizer=None, learning_rate=None, validation_split=0.2,
                             validation_data=None, seed=0, seeds=3, verbose=0, on_run=None, runner=None):
    """Train CNN ``model`` once per kind of dropout at its convolution place and seed, and compare the kinds.

    Within one seed every run has the same network, initial weights, split and shuffling; only the dropout after
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
        As :func:`dropout_experiment`, with one row per kind and seed (``label`` and ``kind`` are the kind's name)
        and ``placement``.
    """
    where = "dropout_kinds_experiment"
    seeds = seed_list(seed, seeds, where)
    names = parse_kinds(kinds)
    places = parse_variant("+".join(placement) if not isinstance(placement, str) else placement)
    if "conv" not in places:
        raise invalid("placement", "places that include 'conv' (where the kinds differ)", placement, where)
    if model == "mlp":
        raise invalid("model", f"a CNN from {tuple(n for n in zoo.names() if n != 'mlp')}", model, where)
    rate = _check_rate(rate, where)
    data, split = _data(x, y, validation_split, validation_data, where)
    settings = _settings(model, epochs, batch_size, optimizer, learning_rate, split, verbose,
                         _num_classes(data[1], *data[3:]), where)
    runs = []
    for kind in names:
        placed = tuple(p for p in places if p != "conv") if kind == "none" else places
        runs.append({"label": kind, "variant": variant_name(placed), "placement": placed,
                     "kind": "dropout" if kind == "none" else kind, "rate": rate})
    return _experiment(runs, data, split, seeds, settings, on_run, runner, placement=list(places))


#: what :func:`summarize` gives a mean and interval, and (the last three) compares with the baseline
MEASURES = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "gap")
COMPARED = ("val_loss", "val_accuracy", "gap")


def summarize(runs, baseline=None, confidence=CONFIDENCE):
    """Each variant's measures over the seeds, and each variant against the baseline, paired by seed.

    Args:
        runs: the experiment's rows (``label``, ``seed`` and :data:`MEASURES`), every label run on the same seeds.
        baseline: the label to compare with (``None``: ``"none"`` when there is one, else the first label).
        confidence: of the t-intervals (:func:`dropcore.stats.mean_interval`).

    Returns:
        A dict: ``baseline``, ``confidence``, ``seeds`` and ``variants``, one dict per label in the order the
        labels first appear, with ``label``, ``n_seeds``, ``measures`` (``{measure: mean_interval}``) and
        ``vs_baseline`` (``{measure: paired_difference}`` for :data:`COMPARED`; ``None`` for the baseline itself).
    """
    where = "summarize"
    by_label = {}
    for r in runs:
        by_label.setdefault(r["label"], {})
        if r["seed"] in by_label[r["label"]]:
            raise invalid("runs", f"one run per label and seed ({r['label']!r} has seed {r['seed']} twice)",
                          f"{len(runs)} runs", where)
        by_label[r["label"]][r["seed"]] = r
    if not by_label:
        raise invalid("runs", "a non-empty list of runs", runs, where)
    labels = list(by_label)
    seeds = sorted(by_label[labels[0]])
    for label in labels:
        if sorted(by_label[label]) != seeds:  # a paired comparison needs every seed on both sides
            raise invalid("runs", f"every label run on the same seeds ({labels[0]!r} has {seeds})",
                          f"{label!r} on seeds {sorted(by_label[label])}", where)
    if baseline is None:
        baseline = "none" if "none" in by_label else labels[0]
    elif baseline not in by_label:
        raise invalid("baseline", f"one of the labels {labels}", baseline, where)
    base = [by_label[baseline][s] for s in seeds]
    variants = []
    for label in labels:
        rows = [by_label[label][s] for s in seeds]
        measures = {m: mean_interval([r[m] for r in rows], confidence, where) for m in MEASURES}
        versus = None if label == baseline else {
            m: paired_difference([r[m] for r in rows], [b[m] for b in base], confidence, where) for m in COMPARED}
        variants.append({"label": label, "n_seeds": len(seeds), "measures": measures, "vs_baseline": versus})
    return {"baseline": baseline, "confidence": confidence, "seeds": seeds, "variants": variants}


_HEADS = {"val_loss": "val loss", "val_accuracy": "val acc", "gap": "gap", "train_accuracy": "train acc"}


def format_table(result, column="variant"):
    """A dropout experiment over seeds as text: each variant's mean ± half-width of the 95% interval (over the
    seeds, t-distribution) of the final training accuracy, validation loss and accuracy and the gap; then each
    variant minus the baseline, paired by seed, with ``*`` where the interval excludes 0; then in words which
    differences the intervals separate."""
    summary = result["summary"]
    n, base, conf = len(summary["seeds"]), summary["baseline"], summary["confidence"]
    shown = ("train_accuracy", "val_loss", "val_accuracy", "gap")
    head = f"{column:<20}" + "".join(f"{_HEADS[m]:>20}" for m in shown)
    lines = [f"Mean ± {conf:.0%} interval over {n} seed{'s' if n != 1 else ''} {summary['seeds']}"
             + (" (one seed: no interval)" if n == 1 else ""), head, "-" * len(head)]
    for v in summary["variants"]:
        lines.append(f"{v['label']:<20}" + "".join(
            f"{format_interval(v['measures'][m], sign=m == 'gap'):>20}" for m in shown))
    others = [v for v in summary["variants"] if v["vs_baseline"] is not None]
    if not others:
        return "\n".join(lines)
    lines += ["", f"Paired against {base}, seed by seed (mean difference ± {conf:.0%} interval; "
                  f"* the interval excludes 0)"]
    head = f"{column:<20}" + "".join(f"{'Δ ' + _HEADS[m]:>22}" for m in COMPARED)
    lines += [head, "-" * len(head)]
    found = []
    for v in others:
        cells = []
        for m in COMPARED:
            d = v["vs_baseline"][m]
            cells.append(f"{format_interval(d, sign=True)} {'*' if d['excludes_zero'] else ' '}")
            if d["excludes_zero"]:
                word = "higher" if d["mean"] > 0 else "lower"
                found.append(f"{v['label']}: {_HEADS[m]} {word} than {base} by {abs(d['mean']):.4f} "
                             f"± {d['half_width']:.4f}")
        lines.append((f"{v['label']:<20}" + "".join(f"{c:>22}" for c in cells)).rstrip())
    lines += [""] + separated_lines(n, found, base)
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
