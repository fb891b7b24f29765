"""Training curves as PNG files: one run's loss and accuracy (``plot_history``), or several runs' validation curves
overlaid (``plot_curves``).

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


def plot_experiment(result, path, title=None):
    """A dropout experiment's picture: each run's training and validation loss and accuracy per epoch (four
    panels) and its final overfitting gap (train − validation accuracy, both measured in inference mode after
    training) as bars. ``result``: what :func:`dropcore.experiments.dropout_experiment` or
    :func:`~dropcore.experiments.dropout_kinds_experiment` returned (or its results.json, loaded)."""
    runs = result.get("runs") if isinstance(result, dict) else None
    if not runs:
        raise invalid("result", "an experiment result with 'runs'", type(result).__name__, "plot_experiment")
    metrics = [("loss", "training loss (dropout on)"), ("val_loss", "validation loss"),
               ("accuracy", "training accuracy (dropout on)"), ("val_accuracy", "validation accuracy")]
    fig, axes = _figure(len(metrics) + 1, rows=2)
    for ax, (metric, label) in zip(axes, metrics):
        for run in runs:
            values = run["history"].get(metric)
            if values:
                ax.plot(range(1, len(values) + 1), values, "-", marker=".", label=run["label"])
        _label(ax, metric, max(len(r["history"].get(metric) or ()) for r in runs), legend_size="small")
        ax.set_title(label)
    ax = axes[-1]
    labels = [r["label"] for r in runs]
    gaps = [r["gap"] for r in runs]
    ax.bar(range(len(runs)), gaps, color=["tab:red" if g > 0 else "tab:blue" for g in gaps])
    ax.set_xticks(range(len(runs)), labels, rotation=30, ha="right", fontsize="small")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylabel("train acc − val acc")
    ax.set_title("overfitting gap after training")
    ax.grid(alpha=0.3, axis="y")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_reliability(result, path, title=None, min_count=10):
    """Reliability diagrams of :func:`dropcore.uncertainty.uncertainty_experiment`'s result: one panel per data
    set, each method's accuracy against its mean confidence in every bin of at least ``min_count`` samples (the
    accuracy of a bin of two samples is 0, 0.5 or 1: noise, not calibration), with its ECE (over all bins) in the
    legend. Perfect calibration is the diagonal."""
    datasets = result.get("datasets") if isinstance(result, dict) else None
    if not datasets:
        raise invalid("result", "an uncertainty experiment result with 'datasets'", type(result).__name__,
                      "plot_reliability")
    fig, axes = _figure(len(datasets))
    for ax, (name, d) in zip(axes, datasets.items()):
        ax.plot([0, 1], [0, 1], "--", color="gray", linewidth=1, label="perfect calibration")
        for method, row in d["methods"].items():
            bins = row["reliability"]
            pts = [(c, a) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"]) if n >= min_count]
            if pts:
                ax.plot(*zip(*pts), "-", marker=".", label=f"{method} (ECE {row['ece']:.3f})")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (largest probability)")
        ax.set_ylabel("accuracy")
        ax.set_title(f"{name} ({next(iter(d['methods'].values()))['n']} samples; bins of >= {min_count})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    return _save(fig, path)
