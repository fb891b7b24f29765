"""Training curves as PNG files: one run's loss and accuracy (``plot_history``), several runs' validation curves
overlaid (``plot_curves``), and the dropout experiments' pictures over seeds (``plot_experiment``,
``plot_reliability``: mean curves with min-max bands).

matplotlib is an optional extra (``pip install dropcore[plot]``), imported only when a plot is drawn. Figures are
drawn on matplotlib's Agg canvas directly, never through pyplot, so plotting from a script, a test or a notebook
neither opens a window nor changes the global backend.
"""
import os

from .callbacks import History, load_history
from .validation import invalid


def _figure(n_panels, rows=1):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "dropcore.plotting needs matplotlib to draw training curves: pip install matplotlib "
            "(or pip install dropcore[plot])"
        ) from exc
    cols = -(-n_panels // rows)
    fig = Figure(figsize=(5.5 * cols, 4.0 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    return fig, axes[:n_panels]


def _label(ax, metric, n_epochs, legend_size=None):
    from matplotlib.ticker import MaxNLocator

    # epochs are whole numbers: one tick each for short runs (MaxNLocator still picks fractions for 1-2 epochs)
    if n_epochs <= 20:
        ax.set_xticks(range(1, n_epochs + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(0.5, n_epochs + 0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric)
    ax.set_title(metric)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def _as_history(history_or_path, arg="history_or_path"):
    """A dict of per-epoch lists from a History, a dict, or a .json/.csv history file."""
    if isinstance(history_or_path, History):
        return dict(history_or_path.history)
    if isinstance(history_or_path, dict):
        return dict(history_or_path)
    if isinstance(history_or_path, (str, os.PathLike)):
        return load_history(history_or_path)
    raise invalid(arg, "a History, a dict of lists or a .json/.csv history file", type(history_or_path).__name__)


def _save(fig, path):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path


def plot_history(history_or_path, path, title=None):
    """Draw the training and validation loss (left) and accuracy (right, when recorded) per epoch to a PNG.

    Args:
        history_or_path: what ``fit`` returned, its ``.history`` dict, or a history file written by
            ``save_history``/``JSONLogger`` (.json) or ``CSVLogger`` (.csv).
        path: the PNG file to write (directories are created).
        title: an optional figure title.

    Returns:
        ``path``. Raises ImportError (with the install command) when matplotlib is missing, and ValueError when
        the history has no ``loss``.
    """
    hist = _as_history(history_or_path)
    if not hist.get("loss"):
        raise ValueError(f"plot_history: the history has no 'loss' values; keys: {sorted(hist)}")
    panels = [m for m in ("loss", "accuracy") if hist.get(m)]
    fig, axes = _figure(len(panels))
    for ax, metric in zip(axes, panels):
        for key, label, style in ((metric, "training", "-o"), ("val_" + metric, "validation", "-s")):
            values = hist.get(key)
            if values:
                ax.plot(range(1, len(values) + 1), values, style, markersize=3, label=label)
        _label(ax, metric, max(len(hist.get(k) or ()) for k in (metric, "val_" + metric)))
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_curves(runs, path, metrics=("val_loss", "val_accuracy"), title=None):
    """Overlay one curve per run for each metric (one panel per metric) and write a PNG.

    Args:
        runs: a dict ``{label: history}`` where each history is as for :func:`plot_history`.
        path: the PNG file to write.
        metrics: the per-epoch keys to draw, one panel each; a run without a key is left out of that panel.
        title: an optional figure title.

    Returns:
        ``path``. Raises ValueError when ``runs`` is empty or no run has any of ``metrics``.
    """
    if not isinstance(runs, dict) or not runs:
        raise invalid("runs", "a non-empty dict {label: history}", runs if not isinstance(runs, dict) else "{}",
                      "plot_curves")
    if isinstance(metrics, str):
        metrics = (metrics,)
    hists = {str(label): _as_history(h, f"runs[{label!r}]") for label, h in runs.items()}
    shown = [m for m in metrics if any(h.get(m) for h in hists.values())]
    if not shown:
        first = sorted(next(iter(hists.values())))
        raise ValueError(f"plot_curves: no run has any of {list(metrics)}; the first run has {first}")
    fig, axes = _figure(len(shown))
    for ax, metric in zip(axes, shown):
        for label, h in hists.items():
            values = h.get(metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, "-", marker=".", label=label)
        _label(ax, metric, max(len(h.get(metric) or ()) for h in hists.values()), legend_size="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _by_label(runs):
    """``{label: [run, ...]}`` in the order the labels first appear (one run per seed)."""
    groups = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    return groups


def _mean_band(ax, curves, label):
    """The mean of ``curves`` (one list per seed, cut to the shortest) as a line, and their min-max as a band."""
    import numpy as np

    n = min(len(c) for c in curves)
    values = np.array([c[:n] for c in curves], np.float64)
    epochs = range(1, n + 1)
    (line,) = ax.plot(epochs, values.mean(axis=0), "-", marker=".", label=label)
    if len(curves) > 1:
        ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15,
                        linewidth=0)


def plot_experiment(result, path, title=None):
    """A dropout experiment's picture: each variant's training and validation loss and accuracy per epoch (four
    panels: the mean over the seeds as a line, the seeds' min-max as a band) and its final overfitting gap (train −
    validation accuracy, both measured in inference mode after training) as a bar at the mean over the seeds, with
    the 95% t-interval as an error bar and each seed as a dot. ``result``: what
    :func:`dropcore.experiments.dropout_experiment` or :func:`~dropcore.experiments.dropout_kinds_experiment`
    returned (or its results.json, loaded)."""
    from .stats import mean_interval

    runs = result.get("runs") if isinstance(result, dict) else None
    if not runs:
        raise invalid("result", "an experiment result with 'runs'", type(result).__name__, "plot_experiment")
    groups = _by_label(runs)
    n_seeds = max(len(g) for g in groups.values())
    note = f"lines: mean of {n_seeds} seeds, bands: min-max over them" if n_seeds > 1 else ""
    metrics = [("loss", "training loss (dropout on)"), ("val_loss", "validation loss"),
               ("accuracy", "training accuracy (dropout on)"), ("val_accuracy", "validation accuracy")]
    fig, axes = _figure(len(metrics) + 1, rows=2)
    for ax, (metric, label) in zip(axes, metrics):
        for name, group in groups.items():
            curves = [r["history"][metric] for r in group if r["history"].get(metric)]
            if curves:
                _mean_band(ax, curves, name)
        _label(ax, metric, max(len(r["history"].get(metric) or ()) for r in runs), legend_size="small")
        ax.set_title(label)
    ax = axes[-1]
    labels = list(groups)
    stats = [mean_interval([r["gap"] for r in groups[name]], where="plot_experiment") for name in labels]
    means = [s["mean"] for s in stats]
    errors = [0.0 if s["half_width"] is None else s["half_width"] for s in stats]
    ax.bar(range(len(labels)), means, color=["tab:red" if g > 0 else "tab:blue" for g in means],
           yerr=errors if n_seeds > 1 else None, capsize=4, ecolor="black")
    if n_seeds > 1:
        for i, name in enumerate(labels):
            gaps = [r["gap"] for r in groups[name]]
            ax.plot([i] * len(gaps), gaps, "o", color="black", markersize=2.5, alpha=0.6)
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize="small")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("train acc − val acc")
    ax.set_title("gap after training" + (": mean, 95% interval, seeds" if n_seeds > 1 else ""))
    ax.grid(alpha=0.3, axis="y")
    if title or note:
        fig.suptitle(f"{title}\n{note}" if title and note else title or note)
    return _save(fig, path)


def plot_reliability(result, path, title=None, min_count=10):
    """Reliability diagrams of :func:`dropcore.uncertainty.uncertainty_experiment`'s result: one panel per data
    set, each method's accuracy against its confidence per bin, the diagonal being perfect calibration.

    Over several seeds each bin's point is the mean, over the seeds where the bin holds at least ``min_count``
    samples, of its mean confidence and its accuracy, and the band is the min-max of that accuracy over those
    seeds (the accuracy of a bin of two samples is 0, 0.5 or 1: noise, not calibration). The legend gives each
    method's ECE (over all bins) as the mean ± the half-width of its 95% t-interval over the seeds."""
    import numpy as np

    from .stats import format_interval, mean_interval

    runs = result.get("runs") if isinstance(result, dict) else None
    if not runs or not all(isinstance(r, dict) and r.get("datasets") for r in runs):
        raise invalid("result", "an uncertainty experiment result with 'runs', each with 'datasets'",
                      type(result).__name__, "plot_reliability")
    datasets = runs[0]["datasets"]
    fig, axes = _figure(len(datasets))
    for ax, (name, d) in zip(axes, datasets.items()):
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
        for method in d["methods"]:
            rows = [r["datasets"][name]["methods"][method] for r in runs]
            edges = len(rows[0]["reliability"]["count"])
            xs, ys, lows, highs = [], [], [], []
            for b in range(edges):
                kept = [row["reliability"] for row in rows if row["reliability"]["count"][b] >= min_count]
                if kept:
                    acc = np.array([k["accuracy"][b] for k in kept])
                    xs.append(float(np.mean([k["confidence"][b] for k in kept])))
                    ys.append(float(acc.mean()))
                    lows.append(float(acc.min()))
                    highs.append(float(acc.max()))
            ece = mean_interval([row["ece"] for row in rows], where="plot_reliability")
            if xs:
                (line,) = ax.plot(xs, ys, "-", marker=".",
                                  label=f"{method} (ECE {format_interval(ece, digits=3)})" if len(rows) > 1
                                  else f"{method} (ECE {ece['mean']:.3f})")
                if len(rows) > 1:
                    ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.12, linewidth=0)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (largest probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name} ({rows[0]['n']} samples; bins of >= {min_count})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    note = f"points: mean of {len(runs)} seeds, bands: min-max of the accuracy over them" if len(runs) > 1 else ""
    if title or note:
        fig.suptitle(f"{title}\n{note}" if title and note else title or note)
    return _save(fig, path)
