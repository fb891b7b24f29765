"""Training curves as PNG files: one run's loss and accuracy (``plot_history``), or several runs' validation curves
overlaid (``plot_curves``).

matplotlib is an optional extra (``pip install dropcore[plot]``), imported only when a plot is drawn. Figures are
drawn on matplotlib's Agg canvas directly, never through pyplot, so plotting from a script, a test or a notebook
neither opens a window nor changes the global backend.
"""
import os

from .callbacks import History, load_history
from .validation import invalid


def _figure(n_panels):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "dropcore.plotting needs matplotlib to draw training curves: pip install matplotlib "
            "(or pip install dropcore[plot])"
        ) from exc
    fig = Figure(figsize=(5.5 * n_panels, 4.0), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, axes


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
