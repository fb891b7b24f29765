"""``dropcore evaluate`` and ``dropcore predict``: a saved model on a data set, or on ``.npy`` arrays and image files
(read here), with the predictions printed and written as CSV or JSON."""
import os
from pathlib import Path

import numpy as np

from ..argtypes import int_at_least, positive_int
from ..utils import atomic_write
from .common import CommandError, add_data_args, load_data, load_model, write_json


# --- evaluate -----------------------------------------------------------------------------------------------
def cmd_evaluate(args):
    model = load_model(args.model)
    x, y, meta = load_data(args, "test")
    res = model.evaluate(x, y, batch_size=args.batch_size, return_dict=True)
    res = {k: float(v) for k, v in res.items()}
    print(f"Evaluated {args.model} on {len(x)} samples of {meta['source']}"
          + (f" ({meta['kind']})" if meta["kind"] else ""))
    print(" - ".join(f"{k}: {v:.4f}" for k, v in res.items()))
    if args.output:
        write_json(args.output, {"model": args.model, "data": meta, "samples": int(len(x)), **res})
    return 0


# --- predict: the inputs ------------------------------------------------------------------------------------
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


# --- predict ------------------------------------------------------------------------------------------------
def cmd_predict(args):
    if (args.seed is not None) and args.mc_samples is None:
        raise CommandError("--seed only applies to Monte-Carlo dropout; pass --mc-samples N too")
    import dropcore

    from ..distributed.commands import predict_array, uses_cluster

    if args.chunk_size is not None and not uses_cluster(args):
        raise CommandError("--chunk-size cuts the input into Dask tasks: it goes with --workers or --scheduler")
    model = load_model(args.model)
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
        write_json(path, {"mc_samples": mc_samples, "predictions": rows})
        return
    if not str(path).lower().endswith(".csv"):
        raise CommandError(f"--output {path}: expected a .csv or .json file name")
    import csv

    header = ["input", "class", "probability"] + [f"p{k}" for k in range(n_classes)]
    if mc:
        header += ["std"] + [f"std{k}" for k in range(n_classes)]
    with atomic_write(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            w.writerow([r["input"], r["class"], r["probability"]] + r["probabilities"]
                       + ([r["std"]] + r["stds"] if mc else []))
    print(f"Wrote {path}")


def add_commands(sub):
    """Add ``evaluate`` and ``predict`` to ``sub`` (an argparse subparsers object)."""
    from ..distributed.commands import add_predict_args  # no Dask until a cluster is used

    p = sub.add_parser("evaluate", help="loss and accuracy of a saved model on a data set")
    p.add_argument("model", metavar="MODEL", help="a model file written by train --out or model.save")
    add_data_args(p, "which files of MNIST/CIFAR-10 to read (default test)")
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
