"""``dropcore train`` and ``train --resume``: build or load a model, fit it, and write the run's directory (the
model, its history, curves, run.json and a checkpoint after every epoch)."""
import argparse
import json
import os
from pathlib import Path

from ..argtypes import float_in, int_at_least, rate
from .common import (LOSS, MODEL_FILE, CommandError, add_data_args, add_training_args, load_data, try_plot, verbose,
                     write_json)

SETTINGS = "train.json"


def build_model(spec, input_shape, num_classes, dropout):
    """A zoo model by name, or a model from a JSON description file."""
    from .. import zoo

    if spec in zoo.names():
        if len(input_shape) == 1 and spec != "mlp":
            raise CommandError(f"--model {spec} takes images, but the data are rows of {input_shape[0]} features: "
                               "use --model mlp (or a JSON description of a dense network)")
        return zoo.build(spec, input_shape, num_classes, dropout=dropout)
    if spec.lower().endswith(".json") or os.path.isfile(spec):
        model = zoo.from_json(spec, input_shape=input_shape, dropout=dropout)
        outputs = model.output_shape[-1]
        if outputs < num_classes:
            raise CommandError(f"{spec}: the model has {outputs} outputs but the data has {num_classes} classes")
        return model
    raise CommandError(f"--model {spec!r}: expected one of {', '.join(zoo.names())} or a .json model description")


def _callbacks(args, out, validating, initial_lr, previous=None):
    """The run's callbacks; ``previous``: a resumed run's earlier history (its logs continue it). The logs come
    before the checkpoint: a checkpoint of epoch k is only written once the logs hold epoch k."""
    from .. import callbacks as cb

    cbs = []
    if args.patience is not None:
        cbs.append(cb.EarlyStopping(monitor="val_loss" if validating else "loss", patience=args.patience,
                                    restore_best_weights=True, verbose=1))
    if args.lr_schedule == "step":  # halve the rate every quarter of the run
        cbs.append(cb.LearningRateScheduler(cb.StepDecay(initial_lr, drop=0.5, epochs_drop=max(1, args.epochs // 4))))
    elif args.lr_schedule == "cosine":
        cbs.append(cb.LearningRateScheduler(cb.CosineDecay(initial_lr, decay_epochs=args.epochs)))
    if out is not None:
        cbs += [cb.CSVLogger(out / "history.csv", initial=previous),
                cb.JSONLogger(out / "history.json", initial=previous), cb.EpochCheckpoint(out)]
    return cbs


def _settings(args):
    """What a resumed run needs to continue as the first one would have: the parsed options, as JSON."""
    return {k: v for k, v in vars(args).items() if k not in ("handler", "resume") and
            isinstance(v, (str, int, float, bool, type(None), list))}


def cmd_train(args):
    import dropcore

    from .. import zoo
    from ..callbacks import checkpoints
    from ..distributed.commands import comm_from_environment

    comm = comm_from_environment()  # under mpiexec -n N (N > 1): data-parallel, else None
    root = comm is None or comm.rank == 0
    if args.resume is not None:
        return _resume(args, comm)
    x, y, meta = load_data(args, "train")
    out = Path(args.out) if args.out else None
    if out is not None and root:  # rank 0 alone writes the run's files
        out.mkdir(parents=True, exist_ok=True)
        for _, old in checkpoints(out):  # a new run in an old directory: its checkpoints are not ours
            old.unlink()
    dropcore.set_random_seed(args.seed)
    if args.model_json is not None:
        args.model = args.model_json
        if not os.path.isfile(args.model_json):
            raise CommandError(f"--model-json {args.model_json}: no such file")
    if out is not None and root:
        write_json(out / SETTINGS, _settings(args), say=False)
    model = build_model(args.model, x.shape[1:], meta["num_classes"], args.dropout)
    name = args.model if args.model in zoo.names() else None
    optimizer = zoo.make_optimizer(args.optimizer, args.lr, name, args.momentum)
    model.compile(optimizer=optimizer, loss=LOSS, metrics=["accuracy"])
    if not args.quiet and root:
        model.summary()
    cbs = _callbacks(args, out, args.validation_split > 0, optimizer.learning_rate)
    if root:
        print(f"Training {model.name} on {len(x)} samples of {meta['source']} "
              f"({', '.join(map(str, x.shape[1:]))}; {meta['num_classes']} classes), "
              f"{type(optimizer).__name__} lr={optimizer.learning_rate:g}, seed {args.seed}"
              + (f", data-parallel on {comm.size} ranks" if comm is not None else ""), flush=True)
    history = model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, validation_split=args.validation_split,
                        seed=args.seed, verbose=verbose(args), callbacks=cbs, comm=comm)
    return _finish(args, out, model, meta, x, cbs, history) if root else 0


def _resume(args, comm=None):
    """``train --resume DIR``: the run's options from DIR/train.json, its newest checkpoint, and the epochs left."""
    import dropcore

    from .. import zoo
    from ..callbacks import checkpoints, load_history

    out = Path(args.resume)
    if not (out / SETTINGS).is_file():
        raise CommandError(f"--resume {out}: no {SETTINGS} there; expected a directory written by train --out")
    with open(out / SETTINGS, encoding="utf-8") as fh:
        settings = json.load(fh)
    run = argparse.Namespace(**dict(settings, out=str(out), resume=None, quiet=args.quiet or settings["quiet"]))
    found = checkpoints(out)
    if (out / "run.json").is_file() and (out / MODEL_FILE).is_file() and not found:
        raise CommandError(f"--resume {out}: the run already finished ({out / MODEL_FILE} and run.json are there)")
    if not found:
        raise CommandError(f"--resume {out}: no checkpoint yet (the run stopped in its first epoch); run train again")
    done, path = found[-1]
    x, y, meta = load_data(run, "train")
    model = dropcore.load_model(path)  # the weights and the optimizer's state after `done` epochs
    previous = None
    if (out / "history.json").is_file():  # the logs may hold one epoch more than the checkpoint: drop it
        previous = {k: v[:done] for k, v in load_history(out / "history.json").items()}
    name = run.model if run.model in zoo.names() else None
    initial_lr = zoo.make_optimizer(run.optimizer, run.lr, name, run.momentum).learning_rate
    cbs = _callbacks(run, out, run.validation_split > 0, initial_lr, previous)
    root = comm is None or comm.rank == 0
    if root:
        print(f"Resuming {model.name} from {path.name} ({done} of {run.epochs} epochs done), seed {run.seed}",
              flush=True)
    history = model.fit(x, y, batch_size=run.batch_size, epochs=run.epochs, validation_split=run.validation_split,
                        seed=run.seed, verbose=verbose(run), callbacks=cbs, initial_epoch=done, comm=comm)
    return _finish(run, out, model, meta, x, cbs, history) if root else 0


def _finish(args, out, model, meta, x, cbs, history):
    """Print the final metrics; with ``out``, write the model, the curves and run.json (the whole run's history,
    a resumed one's earlier epochs included)."""
    from .. import plotting
    from ..callbacks import JSONLogger, checkpoints

    logger = next((cb for cb in cbs if isinstance(cb, JSONLogger)), None)
    whole = logger.history if logger is not None else history
    final = {k: v[-1] for k, v in whole.history.items() if v}
    print("Final: " + " - ".join(f"{k}: {v:.4f}" for k, v in final.items()))
    if out is None:
        return 0
    model_path = out / MODEL_FILE
    model.save(model_path)  # atomic
    for _, checkpoint in checkpoints(out):  # the run is over: model.dropcore is the last epoch's model
        checkpoint.unlink()
    written = [model_path, out / "history.json", out / "history.csv"]
    png = try_plot(plotting.plot_history, whole, out / "curves.png", title=f"{model.name} on {meta['source']}")
    if png:
        written.append(png)
    optimizer = model.optimizer
    run = {"command": "train", "model": args.model, "data": meta, "samples": int(len(x)),
           "input_shape": list(x.shape[1:]), "epochs_run": len(whole.epoch), "batch_size": args.batch_size,
           "optimizer": type(optimizer).__name__, "learning_rate": optimizer.learning_rate, "dropout": args.dropout,
           "seed": args.seed, "validation_split": args.validation_split, "final": final}
    write_json(out / "run.json", run, say=False)
    written.append(out / "run.json")
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


def add_commands(sub):
    """Add ``train`` to ``sub`` (an argparse subparsers object)."""
    from .. import zoo

    p = sub.add_parser("train", help="train a zoo model or a JSON-described model")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--model", default="mnist_cnn", metavar="NAME|FILE.json",
                   help=f"one of {', '.join(zoo.names())} or a JSON model description (default mnist_cnn)")
    m.add_argument("--model-json", metavar="FILE",
                   help='a JSON model description: a list of {"class": "Conv2D", "config": {...}} layers '
                        "(see docs/cli.md)")
    add_data_args(p, "which files of MNIST/CIFAR-10 to read (default train)")
    g = add_training_args(p, epochs=5, batch_size=32)
    g.add_argument("--momentum", type=rate, metavar="M", help="SGD momentum (only with the SGD optimizer)")
    g.add_argument("--validation-split", type=float_in(0.0, 1.0), default=0.2, metavar="FRACTION",
                   help="fraction held out for validation, taken from the end (default 0.2; 0: none)")
    g.add_argument("--patience", type=int_at_least(0), metavar="N",
                   help="early stopping: stop after N epochs without improvement, keep the best weights")
    g.add_argument("--lr-schedule", choices=("constant", "step", "cosine"), default="constant",
                   help="step: halve the rate every quarter of the epochs; cosine: anneal towards 0 "
                        "(default constant)")
    p.add_argument("--out", metavar="DIR", help=f"write DIR/{MODEL_FILE}, history.json, history.csv, curves.png "
                                                "and run.json; a checkpoint after every epoch")
    p.add_argument("--resume", metavar="DIR", help="continue the run that train --out DIR started and was stopped "
                   "(killed, interrupted) from its last checkpoint, with its options: it ends as the uninterrupted "
                   "run would have")
    p.set_defaults(handler=cmd_train)
