"""The data sets the ``dropcore`` command reads: the format names, the format a path holds, and :func:`load_data`,
the one loader behind the ``--data/--format/--kind/--label-column/--skip/--limit`` options.

Its messages name those options: a wrong choice of them raises :class:`~dropcore.data.DataError` saying which.
"""
from pathlib import Path

from .errors import DataError

FORMATS = ("mnist", "fashion-mnist", "mnist-npz", "cifar10", "csv", "digits")


def _infer_format(path):
    p = Path(path)
    if p.is_file():
        name = p.name.lower()
        if name.endswith(".npz"):
            return "mnist-npz"
        if name.endswith((".csv", ".csv.gz", ".tsv")):
            return "csv"
    elif p.is_dir():
        names = {q.name for q in p.iterdir()}
        if any(n.startswith(("train-images-idx3", "t10k-images-idx3")) for n in names):
            return "mnist"
        if names & {"cifar-10-batches-bin", "cifar-10-batches-py"} or any(n.startswith(("data_batch", "test_batch"))
                                                                          for n in names):
            return "cifar10"
    else:
        raise DataError(f"--data {path}: no such file or directory")
    raise DataError(f"--data {path}: cannot tell the data format; pass --format (one of {', '.join(FORMATS)})")


def load_data(path=None, fmt=None, kind=None, *, default_kind, label_column=None, skip=None, limit=None):
    """``(x, y, meta)`` from ``path`` in format ``fmt`` (default: inferred from ``path``); the scikit-learn digits
    without ``path``.

    ``kind``: ``"train"`` or ``"test"`` files of MNIST/CIFAR-10 (default ``default_kind``); ``label_column``: a CSV
    column, its index or header name as text (default the last); ``skip`` then ``limit``: leave out the first
    ``skip`` samples, keep the first ``limit`` of the rest. ``meta`` has ``format``, ``source``, ``kind``,
    ``num_classes`` (of the data set, not of the limited part) and ``classes`` (a CSV's labels, else ``None``).
    """
    from . import cifar, digits, mnist, tabular

    if path is None and fmt not in (None, "digits"):
        raise DataError(f"--format {fmt} needs --data PATH")
    if path is not None and fmt == "digits":
        raise DataError("--format digits reads scikit-learn's bundled digits and takes no --data")
    if path is None:
        fmt = "digits"
    elif fmt is None:
        fmt = _infer_format(path)
    chosen, kind = kind, kind or default_kind
    classes = None
    try:
        if fmt == "digits":
            x, y = digits.load_digits()
            kind = None
        elif fmt in ("mnist", "fashion-mnist"):
            x, y = mnist.load_mnist(path, kind=kind)
        elif fmt == "mnist-npz":
            x, y = mnist.load_mnist_npz(path, kind=kind)
        elif fmt == "cifar10":
            x, y = cifar.load_cifar10(path, kind=kind)
        else:
            x, y, classes = tabular.load_csv(path, label_column=parse_label_column(label_column))
            kind = None
    except DataError as exc:
        hint = ""
        if kind is not None and chosen is None:
            other = "test" if kind == "train" else "train"
            hint = f" (reading the {kind} files; pass --kind {other} to read the {other} files)"
        raise DataError(f"{exc}{hint}") from None
    num_classes = len(classes) if classes is not None else 10
    if skip:
        if skip >= len(x):
            raise DataError(f"--skip {skip} leaves no samples: the data has {len(x)}")
        x, y = x[skip:], y[skip:]
    if limit is not None:
        x, y = x[:limit], y[:limit]
    source = "scikit-learn digits" if path is None else str(path)
    return x, y, {"format": fmt, "source": source, "kind": kind, "num_classes": max(num_classes, 2),
                  "classes": [str(c) for c in classes] if classes is not None else None}


def parse_label_column(text):
    """``--label-column COL`` as ``load_csv`` takes it: an index if ``text`` is an integer, else a header name;
    ``-1`` (the last column) for ``None``."""
    if text is None:
        return -1
    try:
        return int(text)
    except ValueError:
        return text
