"""``dropcore experiment {dropout,uncertainty,kfold}``: the dropout studies, each training several models (one after
another, or as tasks on a Dask cluster) and writing its results and plots."""
import argparse
import contextlib
from pathlib import Path

import numpy as np

from ..argtypes import float_in, int_at_least, positive_int
from .common import (MODEL_FILE, CommandError, add_data_args, add_training_args, load_data, plural, try_plot, verbose,
                     write_json)

#: seeds each experiment runs by default: the t quantile for 95% is 12.7 with two seeds, 4.3 with three, so two
#: seeds give intervals too wide to separate anything
DEFAULT_SEEDS = 3


@contextlib.contextmanager
def _runner(args):
    """``None`` (train here, one after another), or with ``--scheduler``/``--workers`` a runner sending each
    training to a Dask cluster as a task (the results are the same)."""
    from ..distributed import commands

    if not commands.uses_cluster(args):
        yield None
        return
    from ..distributed.sweep import dask_runner

    with commands.client_for(args) as client:
        where = args.scheduler or f"a local cluster of {args.workers} workers"
        print(f"Each training is a task on {where}", flush=True)
        yield dask_runner(client)


# --- dropout ------------------------------------------------------------------------------------------------
def cmd_experiment_dropout(args):
    from .. import experiments, plotting

    kinds = args.kinds is not None
    if kinds and args.variants:
        raise CommandError("pass either --kinds (kinds of dropout at the convolution place) or --variants "
                           "(places of plain dropout), not both")
    if kinds:
        names = experiments.parse_kinds(args.kinds)  # refuse a bad name before loading data and training
        if args.model == "mlp":
            raise CommandError("--kinds compares dropout at the convolution place: pass a CNN --model")
        placement = experiments.parse_variant(args.placement or "conv")
        if "conv" not in placement:
            raise CommandError(f"--placement {args.placement}: with --kinds it must include conv")
    elif args.placement is not None:
        raise CommandError("--placement goes with --kinds; without it, --variants chooses the places")
    else:
        variants = args.variants.split(",") if args.variants else None
        for v in variants or []:
            experiments.parse_variant(v)
    x, y, meta = load_data(args, "train")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    what = "kinds of dropout" if kinds else "dropout placement"
    print(f"Dropout experiment ({what}): {args.model} on {len(x)} samples of {meta['source']}, "
          f"{plural(args.epochs, 'epoch')}, {_seeds_text(args)}", flush=True)

    def on_run(row):
        print(f"  seed {row['seed']}, {row['label']}: train acc {row['train_accuracy']:.4f}, "
              f"val acc {row['val_accuracy']:.4f}, val loss {row['val_loss']:.4f}", flush=True)

    common = dict(model=args.model, rate=args.dropout, epochs=args.epochs, batch_size=args.batch_size,
                  optimizer=args.optimizer, learning_rate=args.lr, validation_split=args.validation_split,
                  seed=args.seed, seeds=args.seeds, verbose=verbose(args), on_run=on_run)
    with _runner(args) as runner:
        if kinds:
            result = experiments.dropout_kinds_experiment(x, y, kinds=names, placement=placement, runner=runner,
                                                          **common)
        else:
            result = experiments.dropout_experiment(x, y, variants=variants, runner=runner, **common)
    result["data"] = meta
    print(experiments.format_table(result, "kind" if kinds else "variant"))
    write_json(out / "results.json", result)
    png = try_plot(plotting.plot_experiment, result, out / "curves.png",
                   title=f"{args.model} on {len(x)} samples: {what}, {plural(args.seeds, 'seed')}")
    if png:
        print(f"Wrote {png}")
    return 0


# --- uncertainty --------------------------------------------------------------------------------------------
def cmd_experiment_uncertainty(args):
    from .. import plotting, uncertainty

    x, y, meta = load_data(args, "train")
    if x.ndim != 4:
        raise CommandError(f"the uncertainty experiment needs images; {meta['source']} holds feature rows")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Uncertainty experiment: {args.model} on {len(x)} samples of {meta['source']} "
          f"({args.test_size:g} held out), {plural(args.epochs, 'epoch')}, {_seeds_text(args)}", flush=True)

    def on_score(name, method, row):
        print(f"  {name}, {method}: accuracy {row['accuracy']:.4f}", flush=True)

    with _runner(args) as runner:
        result = uncertainty.uncertainty_experiment(
            x, y, model=args.model, epochs=args.epochs, batch_size=args.batch_size, mc_samples=args.mc_samples,
            rotation=args.rotation, noise=args.noise, test_size=args.test_size, bins=args.bins,
            optimizer=args.optimizer, learning_rate=args.lr, seed=args.seed, seeds=args.seeds,
            verbose=verbose(args), on_score=on_score, save_model=out / MODEL_FILE, rate=args.dropout, runner=runner)
    result["data"] = meta
    print(uncertainty.format_table(result))
    write_json(out / "results.json", result)
    png = try_plot(plotting.plot_reliability, result, out / "reliability.png",
                   title=f"{args.model} ({plural(args.epochs, 'epoch')}, {result['n_train']} training samples, "
                         f"{plural(args.seeds, 'seed')}): deterministic vs Monte-Carlo dropout")
    if png:
        print(f"Wrote {png}")
    return 0


def _seeds_text(args):
    last = args.seed + args.seeds - 1
    return f"seed {args.seed}" if args.seeds == 1 else f"{args.seeds} seeds ({args.seed} to {last})"


def _add_seeds(group):
    """``--seeds N``: the experiment repeated over N seeds from ``--seed``, summarized with 95% intervals."""
    group.add_argument("--seeds", type=int_at_least(1), default=DEFAULT_SEEDS, metavar="N",
                       help=f"repeat over N seeds, --seed, --seed+1, ... (each a new split, initial weights, "
                            f"shuffling and masks) and report the mean and 95%% interval, and the paired "
                            f"differences (default {DEFAULT_SEEDS}; 1: no interval)")


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, received {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, received {text!r}")
    return values


# --- kfold --------------------------------------------------------------------------------------------------
def _bundled_table(name):
    try:
        from sklearn import datasets
    except ImportError:
        raise CommandError(f"the built-in {name} data comes with scikit-learn: pip install scikit-learn "
                           "(or pip install dropcore[digits]), or pass --data FILE.csv") from None
    bunch = datasets.load_breast_cancer() if name == "breast-cancer" else datasets.load_iris()
    return np.asarray(bunch.data, np.float32), np.asarray(bunch.target, np.int64)


def cmd_experiment_kfold(args):
    from .. import data, experiments
    from ..data.formats import parse_label_column

    if args.data is not None:
        if args.dataset is not None:
            raise CommandError("pass either --data FILE.csv or --dataset, not both")
        x, y, _ = data.load_csv(args.data, label_column=parse_label_column(args.label_column))
        source = args.data
    else:
        source = args.dataset or "breast-cancer"
        x, y = _bundled_table(source)
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    print(f"{args.folds}-fold cross-validation of the dropout MLP on {source} ({len(x)} samples, "
          f"{x.shape[1]} features), {plural(args.epochs, 'epoch')}, seed {args.seed}", flush=True)

    def on_fold(row):
        print(f"  fold {row['fold']:>2}: accuracy {row['accuracy']:.4f} ({row['n_test']} test samples)", flush=True)

    with _runner(args) as runner:
        result = experiments.kfold_experiment(
            x, y, k=args.folds, seed=args.seed, epochs=args.epochs, batch_size=args.batch_size, rate=args.dropout,
            optimizer=args.optimizer, learning_rate=args.lr, verbose=0, on_fold=on_fold, runner=runner)
    print(f"Accuracy: mean {result['mean_accuracy']:.4f}, std {result['std_accuracy']:.4f} "
          f"over {result['k']} folds")
    if args.out:
        result["data"] = source
        write_json(Path(args.out) / "kfold.json", result)
    return 0


# --- parser -------------------------------------------------------------------------------------------------
def add_commands(sub):
    """Add ``experiment`` and its ``dropout``, ``uncertainty`` and ``kfold`` to ``sub`` (argparse subparsers)."""
    from .. import zoo
    from ..distributed.commands import add_cluster_args  # no Dask until a cluster is used

    p = sub.add_parser("experiment", help="dropout experiments")
    exp = p.add_subparsers(dest="experiment", metavar="EXPERIMENT", required=True)
    e = exp.add_parser("dropout", help="the same network without dropout and with dropout at different places, "
                                       "or with different kinds of dropout (--kinds)")
    e.add_argument("--model", default="mnist_cnn", choices=zoo.names(), help="(default mnist_cnn)")
    e.add_argument("--variants", metavar="V1,V2", help="comma-separated: none, visible, conv, dense or places "
                                                       "joined by + (default: all the usual ones)")
    e.add_argument("--kinds", metavar="K1,K2", help="compare kinds of dropout at the convolution place instead, "
                                                    f"comma-separated from none,{','.join(zoo.KINDS)} (maxpool: "
                                                    "dropout inside the max pooling)")
    e.add_argument("--placement", metavar="P1+P2",
                   help="with --kinds: the places with dropout, including conv; the others take plain Dropout in "
                        "every run (default conv)")
    add_data_args(e, "which files of MNIST/CIFAR-10 to read (default train)")
    g = add_training_args(e, epochs=10, batch_size=32)
    g.add_argument("--validation-split", type=float_in(0.0, 1.0, low_open=True), default=0.2, metavar="FRACTION",
                   help="fraction held out (stratified, seeded; default 0.2)")
    _add_seeds(g)
    add_cluster_args(e, "run each training (variant and seed)")
    e.add_argument("--out", metavar="DIR", default="dropout-experiment",
                   help="where results.json and curves.png go (default ./dropout-experiment)")
    e.set_defaults(handler=cmd_experiment_dropout)

    u = exp.add_parser("uncertainty", help="what Monte-Carlo dropout buys: calibration and error detection, "
                                           "deterministic vs MC dropout, on held-out and shifted images")
    u.add_argument("--model", default="mnist_cnn", choices=[n for n in zoo.names() if n != "mlp"],
                   help="(default mnist_cnn)")
    add_data_args(u, "which files of MNIST/CIFAR-10 to read (default train)")
    g = add_training_args(u, epochs=3, batch_size=64)
    g.add_argument("--test-size", type=float_in(0.0, 1.0, low_open=True), default=0.2, metavar="FRACTION",
                   help="fraction held out for scoring (stratified, seeded; default 0.2)")
    sc = u.add_argument_group("scoring")
    sc.add_argument("--mc-samples", type=_int_list, default=[1, 10, 50], metavar="T1,T2",
                    help="numbers of Monte-Carlo passes to compare (default 1,10,50)")
    sc.add_argument("--rotation", type=float_in(-360.0, 360.0, high_open=False), default=45.0, metavar="DEGREES",
                    help="also score the held-out images rotated by this much (default 45; 0: not)")
    sc.add_argument("--noise", type=float_in(0.0, None, high_open=False), default=0.5, metavar="STDDEV",
                    help="also score them with Gaussian noise of this standard deviation (default 0.5; 0: not)")
    sc.add_argument("--bins", type=positive_int, default=15, metavar="B", help="calibration bins (default 15)")
    _add_seeds(g)
    add_cluster_args(u, "train and score each seed")
    u.add_argument("--out", metavar="DIR", default="uncertainty-experiment",
                   help=f"where results.json, reliability.png and the trained {MODEL_FILE} go "
                        "(default ./uncertainty-experiment)")
    u.set_defaults(handler=cmd_experiment_uncertainty)

    k = exp.add_parser("kfold", help="stratified k-fold cross-validation of the tabular dropout MLP")
    k.add_argument("--data", metavar="FILE.csv", help="a CSV table (default: scikit-learn's breast-cancer data)")
    k.add_argument("--label-column", metavar="COL", help="the label column, an index or a header name (default last)")
    k.add_argument("--dataset", choices=("breast-cancer", "iris"), help="a table bundled with scikit-learn")
    k.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N rows")
    g = add_training_args(k, epochs=50, batch_size=16, quiet=False)  # one line per fold, never per epoch
    g.add_argument("--folds", type=int_at_least(2), default=10, metavar="K", help="(default 10)")
    add_cluster_args(k, "run each fold")
    k.add_argument("--out", metavar="DIR", help="also write DIR/kfold.json")
    k.set_defaults(handler=cmd_experiment_kfold)
