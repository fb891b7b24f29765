"""What the command families share: ``CommandError``, the ``--data`` and training option groups, reading the data and
a saved model, and writing a JSON result."""
import json
import os
import sys
from pathlib import Path

from .. import optimizers
from ..argtypes import int_at_least, positive_float, positive_int, rate
from ..utils import atomic_write

MODEL_FILE = "model.dropcore"
LOSS = "sparse_categorical_crossentropy"


class CommandError(Exception):
    """A failure to report as ``dropcore <command>: error: ...`` with exit status 1."""


# --- options ------------------------------------------------------------------------------------------------
def add_data_args(p, kind_help):
    """The ``data`` group: ``--data``, ``--format``, ``--kind``, ``--label-column``, ``--skip``, ``--limit``."""
    from ..data.formats import FORMATS  # the loaders are imported when a parser is built, not with the CLI

    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH",
                   help="an MNIST/Fashion-MNIST directory of IDX files, Keras's mnist.npz, a CIFAR-10 directory or a "
                        "CSV file (default: scikit-learn's 8x8 digits)")
    g.add_argument("--format", choices=FORMATS, help="the data format (default: inferred from PATH)")
    g.add_argument("--kind", choices=("train", "test"), help=kind_help)
    g.add_argument("--label-column", metavar="COL", help="CSV: the label column, an index or a header name "
                                                         "(default: the last column)")
    g.add_argument("--skip", type=positive_int, metavar="N", help="leave out the first N samples (before --limit): "
                                                                  "evaluate on what --limit N trained without")
    g.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N samples")


def add_training_args(p, epochs, batch_size, quiet=True):
    """The ``training`` group (``--epochs``, ``--batch-size``, ``--optimizer``, ``--lr``, ``--dropout``, ``--seed``,
    ``--quiet``); returned, for a command to add its own."""
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=epochs, metavar="N", help=f"(default {epochs})")
    g.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N",
                   help=f"(default {batch_size})")
    g.add_argument("--optimizer", choices=optimizers.NAMES,
                   help="(default: the model's own: Adam for the CNNs, SGD(0.1, momentum 0.9) for mlp)")
    g.add_argument("--lr", type=positive_float, metavar="RATE", help="learning rate (default: the optimizer's)")
    g.add_argument("--dropout", type=rate, metavar="RATE",
                   help="replace every dropout rate (0 removes the dropout layers)")
    g.add_argument("--seed", type=int_at_least(0), default=0, metavar="S",
                   help="seeds the weights, the shuffling and the dropout masks (default 0)")
    if quiet:
        g.add_argument("--quiet", action="store_true", help="no progress bar: one line per epoch")
    return g


def verbose(args):
    """``fit``'s verbosity for ``--quiet``."""
    return 2 if args.quiet else 1


# --- reading ------------------------------------------------------------------------------------------------
def load_data(args, default_kind):
    """``(x, y, meta)`` for the ``--data`` group's options (see :func:`dropcore.data.formats.load_data`)."""
    from ..data.formats import load_data as load

    return load(args.data, args.format, args.kind, default_kind=default_kind, label_column=args.label_column,
                skip=args.skip, limit=args.limit)


def load_model(path):
    """A saved model, compiled (a model saved before ``compile`` gets the loss evaluate needs)."""
    import dropcore

    if not os.path.exists(path):
        raise CommandError(f"{path}: no such model file")
    model = dropcore.load_model(path)
    if model.loss is None:  # a model saved before compile: evaluate still needs a loss
        model.compile(optimizer="sgd", loss=LOSS, metrics=["accuracy"])
    return model


# --- writing ------------------------------------------------------------------------------------------------
def write_json(path, obj, say=True):
    """Write ``obj`` as JSON, atomically (a killed run never leaves half a file)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
    if say:
        print(f"Wrote {path}")


def try_plot(plot, *args_, **kwargs):
    """``plot(...)``'s PNG path, or ``None`` with a note when matplotlib is missing."""
    try:
        return plot(*args_, **kwargs)
    except ImportError as exc:
        print(f"note: no plot written: {exc}", file=sys.stderr)
        return None


def plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"
