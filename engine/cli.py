"""The ``dropcore`` command: train, evaluate, predict, serve, bench, experiment {dropout,kfold,uncertainty},
export, import, info.

Usage errors exit with status 2 (argparse's message); a failure to run — a missing or malformed file, data that
does not fit the model, a missing optional extra — prints ``dropcore <command>: error: <message>`` and exits 1.
See docs/cli.md for every command with examples.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import optimizers
from .argtypes import float_in, int_at_least, positive_float, positive_int, rate
from .callbacks import Callback

FORMATS = ("mnist", "fashion-mnist", "mnist-npz", "cifar10", "csv", "digits")
MODEL_FILE = "model.dropcore"
LOSS = "sparse_categorical_crossentropy"


class CommandError(Exception):
    """A failure to report as ``dropcore <command>: error: ...`` with exit status 1."""


# --- data ---------------------------------------------------------------------------------------------------
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
        raise CommandError(f"--data {path}: no such file or directory")
    raise CommandError(f"--data {path}: cannot tell the data format; pass --format (one of {', '.join(FORMATS)})")


def load_data(args, default_kind):
    """``(x, y, meta)`` for ``--data/--format/--kind/--label-column/--limit``; the scikit-learn digits by default.

    ``meta`` has ``format``, ``source``, ``kind`` and ``num_classes`` (of the data set, not of the limited part).
    """
    from . import data

    fmt = args.format
    if args.data is None and fmt not in (None, "digits"):
        raise CommandError(f"--format {fmt} needs --data PATH")
    if args.data is not None and fmt == "digits":
        raise CommandError("--format digits reads scikit-learn's bundled digits and takes no --data")
    if args.data is None:
        fmt = "digits"
    elif fmt is None:
        fmt = _infer_format(args.data)
    kind = args.kind or default_kind
    classes = None
    try:
        if fmt == "digits":
            x, y = data.load_digits()
            kind = None
        elif fmt in ("mnist", "fashion-mnist"):
            x, y = data.load_mnist(args.data, kind=kind)
        elif fmt == "mnist-npz":
            x, y = data.load_mnist_npz(args.data, kind=kind)
        elif fmt == "cifar10":
            x, y = data.load_cifar10(args.data, kind=kind)
        else:
            x, y, classes = data.load_csv(args.data, label_column=_label_column(args.label_column))
            kind = None
    except data.DataError as exc:
        hint = ""
        if kind is not None and args.kind is None:
            other = "test" if kind == "train" else "train"
            hint = f" (reading the {kind} files; pass --kind {other} to read the {other} files)"
        raise CommandError(f"{exc}{hint}") from None
    num_classes = len(classes) if classes is not None else 10
    if args.skip:
        if args.skip >= len(x):
            raise CommandError(f"--skip {args.skip} leaves no samples: the data has {len(x)}")
        x, y = x[args.skip:], y[args.skip:]
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    source = "scikit-learn digits" if args.data is None else str(args.data)
    return x, y, {"format": fmt, "source": source, "kind": kind, "num_classes": max(num_classes, 2),
                  "classes": [str(c) for c in classes] if classes is not None else None}


def _label_column(text):
    if text is None:
        return -1
    try:
        return int(text)
    except ValueError:
        return text


def _add_data_args(p, kind_help):
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


# --- models -------------------------------------------------------------------------------------------------
def build_model(spec, input_shape, num_classes, dropout):
    """A zoo model by name, or a model from a JSON description file."""
    from . import zoo

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


def _load_model(path):
    import dropcore

    if not os.path.exists(path):
        raise CommandError(f"{path}: no such model file")
    loader = getattr(dropcore, "load_model", None)
    if loader is None:
        raise CommandError("this dropcore has no load_model (model files are not supported yet)")
    model = loader(path)
    if model.loss is None:  # a model saved before compile: evaluate still needs a loss
        model.compile(optimizer="sgd", loss=LOSS, metrics=["accuracy"])
    return model


def _plural(n, word):
    return f"{n} {word}{'' if n == 1 else 's'}"


def _verbose(args):
    return 2 if args.quiet else 1


# --- train --------------------------------------------------------------------------------------------------
def _callbacks(args, out, validating, initial_lr, previous=None):
    """The run's callbacks; ``previous``: a resumed run's earlier history (its logs continue it). The logs come
    before the checkpoint: a checkpoint of epoch k is only written once the logs hold epoch k."""
    from . import callbacks as cb

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
                cb.JSONLogger(out / "history.json", initial=previous), EpochCheckpoint(out)]
    return cbs


CHECKPOINT = "checkpoint-{epoch:04d}.dropcore"
SETTINGS = "train.json"


def _checkpoints(out):
    """``[(epochs done, path)]`` of the checkpoints in ``out``, oldest first."""
    found = []
    for path in Path(out).glob("checkpoint-*.dropcore"):
        stem = path.stem.split("-", 1)[1]
        if stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


class EpochCheckpoint(Callback):
    """After each epoch: the model with its optimizer state saved as ``checkpoint-<epochs done>.dropcore``
    (atomically), then the older checkpoints removed: a killed run resumes from the newest with ``--resume``."""

    def __init__(self, out):
        super().__init__()
        self.out = Path(out)

    def on_epoch_end(self, epoch, logs=None):
        path = self.out / CHECKPOINT.format(epoch=epoch + 1)
        self.model.save(path)
        for done, old in _checkpoints(self.out):
            if done < epoch + 1:
                old.unlink(missing_ok=True)


def _try_plot(plot, *args_, **kwargs):
    try:
        return plot(*args_, **kwargs)
    except ImportError as exc:
        print(f"note: no plot written: {exc}", file=sys.stderr)
        return None


def _settings(args):
    """What a resumed run needs to continue as the first one would have: the parsed options, as JSON."""
    return {k: v for k, v in vars(args).items() if k not in ("handler", "resume") and
            isinstance(v, (str, int, float, bool, type(None), list))}


def cmd_train(args):
    import dropcore

    from . import zoo
    from .distributed.commands import comm_from_environment

    comm = comm_from_environment()  # under mpiexec -n N (N > 1): data-parallel, else None
    root = comm is None or comm.rank == 0
    if args.resume is not None:
        return _resume(args, comm)
    x, y, meta = load_data(args, "train")
    out = Path(args.out) if args.out else None
    if out is not None and root:  # rank 0 alone writes the run's files
        out.mkdir(parents=True, exist_ok=True)
        for _, old in _checkpoints(out):  # a new run in an old directory: its checkpoints are not ours
            old.unlink()
    dropcore.set_random_seed(args.seed)
    if args.model_json is not None:
        args.model = args.model_json
        if not os.path.isfile(args.model_json):
            raise CommandError(f"--model-json {args.model_json}: no such file")
    if out is not None and root:
        _write_json(out / SETTINGS, _settings(args), say=False)
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
                        seed=args.seed, verbose=_verbose(args), callbacks=cbs, comm=comm)
    return _finish(args, out, model, meta, x, cbs, history) if root else 0


def _resume(args, comm=None):
    """``train --resume DIR``: the run's options from DIR/train.json, its newest checkpoint, and the epochs left."""
    import dropcore

    from . import zoo
    from .callbacks import load_history

    out = Path(args.resume)
    if not (out / SETTINGS).is_file():
        raise CommandError(f"--resume {out}: no {SETTINGS} there; expected a directory written by train --out")
    with open(out / SETTINGS, encoding="utf-8") as fh:
        settings = json.load(fh)
    run = argparse.Namespace(**dict(settings, out=str(out), resume=None, quiet=args.quiet or settings["quiet"]))
    checkpoints = _checkpoints(out)
    if (out / "run.json").is_file() and (out / MODEL_FILE).is_file() and not checkpoints:
        raise CommandError(f"--resume {out}: the run already finished ({out / MODEL_FILE} and run.json are there)")
    if not checkpoints:
        raise CommandError(f"--resume {out}: no checkpoint yet (the run stopped in its first epoch); run train again")
    done, path = checkpoints[-1]
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
                        seed=run.seed, verbose=_verbose(run), callbacks=cbs, initial_epoch=done, comm=comm)
    return _finish(run, out, model, meta, x, cbs, history) if root else 0


def _finish(args, out, model, meta, x, cbs, history):
    """Print the final metrics; with ``out``, write the model, the curves and run.json (the whole run's history,
    a resumed one's earlier epochs included)."""
    from . import plotting
    from .callbacks import JSONLogger

    logger = next((cb for cb in cbs if isinstance(cb, JSONLogger)), None)
    whole = logger.history if logger is not None else history
    final = {k: v[-1] for k, v in whole.history.items() if v}
    print("Final: " + " - ".join(f"{k}: {v:.4f}" for k, v in final.items()))
    if out is None:
        return 0
    model_path = out / MODEL_FILE
    model.save(model_path)  # atomic
    for _, checkpoint in _checkpoints(out):  # the run is over: model.dropcore is the last epoch's model
        checkpoint.unlink()
    written = [model_path, out / "history.json", out / "history.csv"]
    png = _try_plot(plotting.plot_history, whole, out / "curves.png", title=f"{model.name} on {meta['source']}")
    if png:
        written.append(png)
    optimizer = model.optimizer
    run = {"command": "train", "model": args.model, "data": meta, "samples": int(len(x)),
           "input_shape": list(x.shape[1:]), "epochs_run": len(whole.epoch), "batch_size": args.batch_size,
           "optimizer": type(optimizer).__name__, "learning_rate": optimizer.learning_rate, "dropout": args.dropout,
           "seed": args.seed, "validation_split": args.validation_split, "final": final}
    _write_json(out / "run.json", run, say=False)
    written.append(out / "run.json")
    print("Wrote " + ", ".join(str(p) for p in written))
    return 0


# --- evaluate / predict -------------------------------------------------------------------------------------
def cmd_evaluate(args):
    model = _load_model(args.model)
    x, y, meta = load_data(args, "test")
    res = model.evaluate(x, y, batch_size=args.batch_size, return_dict=True)
    res = {k: float(v) for k, v in res.items()}
    print(f"Evaluated {args.model} on {len(x)} samples of {meta['source']}"
          + (f" ({meta['kind']})" if meta["kind"] else ""))
    print(" - ".join(f"{k}: {v:.4f}" for k, v in res.items()))
    if args.output:
        _write_json(args.output, {"model": args.model, "data": meta, "samples": int(len(x)), **res})
    return 0


def _write_json(path, obj, say=True):
    """Write ``obj`` as JSON, atomically (a killed run never leaves half a file)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)
    if say:
        print(f"Wrote {path}")


def _read_image(path, shape, invert):
    """One image file as a float32 (H, W, C) array in [0, 1] fitted to the model's ``shape`` (H, W, C)."""
    h, w, c = shape
    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        with Image.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB")
            if im.size != (w, h):
                im = im.resize((w, h), Image.BILINEAR)
            img = np.asarray(im, dtype=np.float32) / np.float32(255.0)
    else:
        try:
            import matplotlib.image as mpimg
        except ImportError:
            raise CommandError(f"{path}: reading images needs Pillow or matplotlib (pip install pillow)") from None
        if not str(path).lower().endswith(".png"):
            raise CommandError(f"{path}: without Pillow only PNG images can be read (pip install pillow)")
        img = np.asarray(mpimg.imread(path), dtype=np.float32)  # PNG: floats in [0, 1]
        if img.ndim == 3 and img.shape[2] == 4:
            img = img[..., :3]
        if c == 1 and img.ndim == 3:
            img = img @ np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601 luma, as Pillow's "L"
        elif c == 3 and img.ndim == 2:
            img = np.repeat(img[..., None], 3, axis=2)
        if img.shape[:2] != (h, w):
            raise CommandError(f"{path}: the image is {img.shape[1]}x{img.shape[0]} pixels; the model expects "
                               f"{w}x{h} (install Pillow to resize automatically)")
    img = img.reshape(h, w, c)
    return 1.0 - img if invert else img


def _read_inputs(paths, input_shape, invert):
    """``(x, names)``: every sample of every INPUT (.npy arrays or image files)."""
    arrays, names = [], []
    for path in paths:
        if not os.path.isfile(path):
            raise CommandError(f"{path}: no such input file")
        if path.lower().endswith(".npy"):
            try:
                a = np.load(path, allow_pickle=False)
            except ValueError as exc:
                raise CommandError(f"{path}: cannot read as a .npy array without pickles ({exc})") from None
            if a.dtype == np.uint8:  # raw pixels: scale as the loaders do
                a = a.astype(np.float32) / np.float32(255.0)
            if tuple(a.shape) == tuple(input_shape):
                a = a[None]
            elif tuple(a.shape[1:]) != tuple(input_shape):
                raise CommandError(f"{path}: array of shape {a.shape}; the model expects (N, "
                                   f"{', '.join(map(str, input_shape))}) or one sample of shape {tuple(input_shape)}")
            arrays.append(np.asarray(a, np.float32))
            names += [f"{path}[{i}]" for i in range(len(a))] if len(a) > 1 else [path]
        else:
            if len(input_shape) != 3:
                raise CommandError(f"{path}: an image, but the model takes inputs of shape {tuple(input_shape)}")
            arrays.append(_read_image(path, input_shape, invert)[None])
            names.append(path)
    return np.concatenate(arrays), names


def cmd_predict(args):
    if (args.seed is not None) and args.mc_samples is None:
        raise CommandError("--seed only applies to Monte-Carlo dropout; pass --mc-samples N too")
    import dropcore

    from .distributed.commands import predict_array, uses_cluster

    if args.chunk_size is not None and not uses_cluster(args):
        raise CommandError("--chunk-size cuts the input into Dask tasks: it goes with --workers or --scheduler")
    model = _load_model(args.model)
    x, names = _read_inputs(args.inputs, model.input_shape[1:], args.invert)
    if uses_cluster(args):  # --scheduler / --workers: scored on Dask, the same numbers
        probs, std = predict_array(args, args.model, x)
    elif args.mc_samples:
        predictor = dropcore.Predictor(model)  # the inference engine: no kernel compilation on the way
        probs, std = predictor.predict(x, batch_size=args.batch_size, mc_samples=args.mc_samples,
                                       seed=0 if args.seed is None else args.seed)
    else:
        probs, std = dropcore.Predictor(model).predict(x, batch_size=args.batch_size), None
    classes = probs.argmax(axis=1)
    rows = []
    for i, name in enumerate(names):
        row = {"input": name, "class": int(classes[i]), "probability": float(probs[i, classes[i]]),
               "probabilities": [float(p) for p in probs[i]]}
        if std is not None:
            row["std"] = float(std[i, classes[i]])
            row["stds"] = [float(s) for s in std[i]]
        rows.append(row)
    width = max(len("input"), *(len(r["input"]) for r in rows))
    print(f"{'input':<{width}}  class  probability" + ("  std (MC)" if std is not None else ""))
    for r in rows:
        print(f"{r['input']:<{width}}  {r['class']:>5}  {r['probability']:>11.4f}"
              + (f"  {r['std']:>8.4f}" if std is not None else ""))
    if args.output:
        _write_predictions(args.output, rows, probs.shape[1], std is not None, args.mc_samples)
    return 0


def _write_predictions(path, rows, n_classes, mc, mc_samples):
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if str(path).lower().endswith(".json"):
        _write_json(path, {"mc_samples": mc_samples, "predictions": rows})
        return
    if not str(path).lower().endswith(".csv"):
        raise CommandError(f"--output {path}: expected a .csv or .json file name")
    import csv

    header = ["input", "class", "probability"] + [f"p{k}" for k in range(n_classes)]
    if mc:
        header += ["std"] + [f"std{k}" for k in range(n_classes)]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([r["input"], r["class"], r["probability"]] + r["probabilities"]
                       + ([r["std"]] + r["stds"] if mc else []))
    print(f"Wrote {path}")


# --- bench / info -------------------------------------------------------------------------------------------
def _bench_root():
    """The source checkout holding bench/ (the project's root, beside the engine/ directory), or None."""
    import dropcore

    root = Path(dropcore.__file__).resolve().parent.parent
    bench = root / "bench"
    return root if (bench / "__main__.py").is_file() else None


def cmd_bench(argv):
    root = _bench_root()
    if root is None:
        print("dropcore bench: error: the benchmarks live in the project's bench/ directory, which only a source "
              "checkout has (git clone, then pip install -e .); this installation has none", file=sys.stderr)
        return 1
    # Run from the caller's directory (so relative --json/--markdown paths land there), with the checkout's bench/
    # first on the path (before any `bench` in the caller's directory).
    code = f"import runpy, sys; sys.path.insert(0, {str(root)!r}); runpy.run_module('bench', run_name='__main__')"
    return subprocess.call([sys.executable, "-c", code, *argv])


def _basic_info():
    import numba
    import scipy

    import dropcore

    return {"dropcore": dropcore.__version__, "python": sys.version.split()[0], "numpy": np.__version__,
            "numba": numba.__version__, "scipy": scipy.__version__, "numba_threads": numba.get_num_threads()}


def _print_info(d, indent=""):
    for k, v in d.items():
        if isinstance(v, dict):
            print(f"{indent}{k}:")
            _print_info(v, indent + "  ")
        elif isinstance(v, (list, tuple)):
            print(f"{indent}{k}: {', '.join(map(str, v)) if v else '-'}")
        else:
            print(f"{indent}{k}: {v}")


def cmd_info(args):
    try:
        from .info import info
    except ImportError:
        info = _basic_info
    d = dict(info())
    if "numba_threads" not in d:  # the threads training runs on (info() itself avoids importing Numba)
        import numba

        d["numba_threads"] = numba.get_num_threads()
    if args.json:
        print(json.dumps(d, indent=1, default=str))
    else:
        _print_info(d)
    return 0


# --- experiments --------------------------------------------------------------------------------------------
def cmd_experiment_dropout(args):
    from . import experiments, plotting

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
          f"{_plural(args.epochs, 'epoch')}, seed {args.seed}", flush=True)

    def on_run(row):
        print(f"  {row['label']}: train acc {row['train_accuracy']:.4f}, val acc {row['val_accuracy']:.4f}",
              flush=True)

    common = dict(model=args.model, rate=args.dropout, epochs=args.epochs, batch_size=args.batch_size,
                  optimizer=args.optimizer, learning_rate=args.lr, validation_split=args.validation_split,
                  seed=args.seed, verbose=_verbose(args), on_run=on_run)
    with _runner(args) as runner:
        if kinds:
            result = experiments.dropout_kinds_experiment(x, y, kinds=names, placement=placement, runner=runner,
                                                          **common)
        else:
            result = experiments.dropout_experiment(x, y, variants=variants, runner=runner, **common)
    result["data"] = meta
    print(experiments.format_table(result, "kind" if kinds else "variant"))
    _write_json(out / "results.json", result)
    png = _try_plot(plotting.plot_experiment, result, out / "curves.png",
                    title=f"{args.model} on {len(x)} samples: {what}")
    if png:
        print(f"Wrote {png}")
    return 0


def cmd_experiment_uncertainty(args):
    from . import plotting, uncertainty

    x, y, meta = load_data(args, "train")
    if x.ndim != 4:
        raise CommandError(f"the uncertainty experiment needs images; {meta['source']} holds feature rows")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Uncertainty experiment: {args.model} on {len(x)} samples of {meta['source']} "
          f"({args.test_size:g} held out), {_plural(args.epochs, 'epoch')}, seed {args.seed}", flush=True)

    def on_score(name, method, row):
        print(f"  {name}, {method}: accuracy {row['accuracy']:.4f}", flush=True)

    result = uncertainty.uncertainty_experiment(
        x, y, model=args.model, epochs=args.epochs, batch_size=args.batch_size, mc_samples=args.mc_samples,
        rotation=args.rotation, noise=args.noise, test_size=args.test_size, bins=args.bins, optimizer=args.optimizer,
        learning_rate=args.lr, seed=args.seed, verbose=_verbose(args), on_score=on_score,
        save_model=out / MODEL_FILE, rate=args.dropout)
    result["data"] = meta
    print(uncertainty.format_table(result))
    _write_json(out / "results.json", result)
    png = _try_plot(plotting.plot_reliability, result, out / "reliability.png",
                    title=f"{args.model} ({_plural(args.epochs, 'epoch')}, {result['n_train']} training samples): "
                          f"deterministic vs Monte-Carlo dropout")
    if png:
        print(f"Wrote {png}")
    return 0


def _int_list(text):
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, received {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 1, received {text!r}")
    return values


@contextlib.contextmanager
def _runner(args):
    """``None`` (train here, one after another), or with ``--scheduler``/``--workers`` a runner sending each
    training to a Dask cluster as a task (the results are the same)."""
    from .distributed import commands

    if not commands.uses_cluster(args):
        yield None
        return
    from .distributed.sweep import dask_runner

    with commands.client_for(args) as client:
        where = args.scheduler or f"a local cluster of {args.workers} workers"
        print(f"Each training is a task on {where}", flush=True)
        yield dask_runner(client)


def _bundled_table(name):
    try:
        from sklearn import datasets
    except ImportError:
        raise CommandError(f"the built-in {name} data comes with scikit-learn: pip install scikit-learn "
                           "(or pip install dropcore[digits]), or pass --data FILE.csv") from None
    bunch = datasets.load_breast_cancer() if name == "breast-cancer" else datasets.load_iris()
    return np.asarray(bunch.data, np.float32), np.asarray(bunch.target, np.int64)


def cmd_experiment_kfold(args):
    from . import data, experiments

    if args.data is not None:
        if args.dataset is not None:
            raise CommandError("pass either --data FILE.csv or --dataset, not both")
        x, y, _ = data.load_csv(args.data, label_column=_label_column(args.label_column))
        source = args.data
    else:
        source = args.dataset or "breast-cancer"
        x, y = _bundled_table(source)
    if args.limit is not None:
        x, y = x[:args.limit], y[:args.limit]
    print(f"{args.folds}-fold cross-validation of the dropout MLP on {source} ({len(x)} samples, "
          f"{x.shape[1]} features), {_plural(args.epochs, 'epoch')}, seed {args.seed}", flush=True)

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
        _write_json(Path(args.out) / "kfold.json", result)
    return 0


# --- parser -------------------------------------------------------------------------------------------------
def _add_training_args(p, epochs, batch_size, quiet=True):
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


def build_parser():
    from . import zoo
    from .distributed.commands import add_cluster_args, add_predict_args  # no Dask until a cluster is used

    parser = argparse.ArgumentParser(
        prog="dropcore", description="Train, evaluate and run small CNNs on the CPU, and study dropout.",
        epilog="Examples:\n  dropcore train --epochs 3 --out runs/digits\n"
               "  dropcore evaluate runs/digits/model.dropcore\n  dropcore experiment dropout --epochs 10\n"
               "See docs/cli.md for every command.", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a zoo model or a JSON-described model")
    m = p.add_mutually_exclusive_group()
    m.add_argument("--model", default="mnist_cnn", metavar="NAME|FILE.json",
                   help=f"one of {', '.join(zoo.names())} or a JSON model description (default mnist_cnn)")
    m.add_argument("--model-json", metavar="FILE",
                   help='a JSON model description: a list of {"class": "Conv2D", "config": {...}} layers '
                        "(see docs/cli.md)")
    _add_data_args(p, "which files of MNIST/CIFAR-10 to read (default train)")
    g = _add_training_args(p, epochs=5, batch_size=32)
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

    p = sub.add_parser("evaluate", help="loss and accuracy of a saved model on a data set")
    p.add_argument("model", metavar="MODEL", help="a model file written by train --out or model.save")
    _add_data_args(p, "which files of MNIST/CIFAR-10 to read (default test)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--output", metavar="FILE.json", help="also write the results as JSON")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", help="classes and probabilities for .npy arrays or image files")
    p.add_argument("model", metavar="MODEL", help="a saved model file")
    p.add_argument("inputs", metavar="INPUT", nargs="+", help=".npy arrays (one sample or a batch) or images "
                                                               "(PNG; other formats and resizing with Pillow)")
    p.add_argument("--output", metavar="FILE", help="write the predictions as .csv or .json")
    p.add_argument("--mc-samples", type=positive_int, metavar="N",
                   help="Monte-Carlo dropout: average N stochastic passes, report the standard deviation too")
    p.add_argument("--seed", type=int_at_least(0), help="seed of the Monte-Carlo dropout masks (default 0)")
    p.add_argument("--invert", action="store_true", help="invert images (dark digits on a light background)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    add_predict_args(p)  # --scheduler ADDRESS | --workers N, --chunk-size ROWS
    p.set_defaults(handler=cmd_predict)

    sub.add_parser("bench", help="run the benchmarks (python -m bench); every argument is passed on",
                   add_help=False)

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
    _add_data_args(e, "which files of MNIST/CIFAR-10 to read (default train)")
    g = _add_training_args(e, epochs=10, batch_size=32)
    g.add_argument("--validation-split", type=float_in(0.0, 1.0, low_open=True), default=0.2, metavar="FRACTION",
                   help="fraction held out (stratified, seeded; default 0.2)")
    add_cluster_args(e, "run each training")
    e.add_argument("--out", metavar="DIR", default="dropout-experiment",
                   help="where results.json and curves.png go (default ./dropout-experiment)")
    e.set_defaults(handler=cmd_experiment_dropout)

    u = exp.add_parser("uncertainty", help="what Monte-Carlo dropout buys: calibration and error detection, "
                                           "deterministic vs MC dropout, on held-out and shifted images")
    u.add_argument("--model", default="mnist_cnn", choices=[n for n in zoo.names() if n != "mlp"],
                   help="(default mnist_cnn)")
    _add_data_args(u, "which files of MNIST/CIFAR-10 to read (default train)")
    g = _add_training_args(u, epochs=3, batch_size=64)
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
    u.add_argument("--out", metavar="DIR", default="uncertainty-experiment",
                   help=f"where results.json, reliability.png and the trained {MODEL_FILE} go "
                        "(default ./uncertainty-experiment)")
    u.set_defaults(handler=cmd_experiment_uncertainty)

    k = exp.add_parser("kfold", help="stratified k-fold cross-validation of the tabular dropout MLP")
    k.add_argument("--data", metavar="FILE.csv", help="a CSV table (default: scikit-learn's breast-cancer data)")
    k.add_argument("--label-column", metavar="COL", help="the label column, an index or a header name (default last)")
    k.add_argument("--dataset", choices=("breast-cancer", "iris"), help="a table bundled with scikit-learn")
    k.add_argument("--limit", type=positive_int, metavar="N", help="use only the first N rows")
    g = _add_training_args(k, epochs=50, batch_size=16, quiet=False)  # one line per fold, never per epoch
    g.add_argument("--folds", type=int_at_least(2), default=10, metavar="K", help="(default 10)")
    add_cluster_args(k, "run each fold")
    k.add_argument("--out", metavar="DIR", help="also write DIR/kfold.json")
    k.set_defaults(handler=cmd_experiment_kfold)

    from .onnx.commands import add_commands as add_onnx_commands  # imports no onnx until a command runs

    add_onnx_commands(sub)
    from .serving.commands import add_commands as add_serve_commands  # imports no Flask until it runs

    add_serve_commands(sub)

    p = sub.add_parser("info", help="versions, threads and the kernels in use")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_info)
    return parser


def main(argv=None):
    """Entry point of the ``dropcore`` command (and ``python -m dropcore``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # everything after "bench" belongs to the benchmark runner, --help included
        return cmd_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from . import errors
    from .data import DataError

    name = args.command + (f" {args.experiment}" if args.command == "experiment" else "")
    try:
        return args.handler(args)
    except (CommandError, DataError, errors.ModelFileError, errors.NumericalError, errors.WorkspaceLimitError,
            ValueError, TypeError, OSError, ImportError) as exc:
        print(f"dropcore {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dropcore {name}: interrupted", file=sys.stderr)
        return 130
