"""Cold starts: a new process imports dropcore, loads a saved mnist_cnn and returns its first prediction
(:func:`measure`), or builds the Keras MNIST CNN and trains its first batch (:func:`measure_training`), beside
PyTorch and Keras doing the same.

The parent times the whole child process (interpreter start included); the child reports where its time went.
``python -m bench coldstart`` prints them side by side.
"""
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

from . import models

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import dropcore
t1 = time.perf_counter()
path, how = sys.argv[1], sys.argv[2]
run = dropcore.Predictor(path).predict if how == "predictor" else dropcore.load_model(path).predict
t2 = time.perf_counter()
y = run(np.zeros((1, 28, 28, 1), np.float32))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "shape": list(y.shape),
                  "numba_imported": "numba" in sys.modules}))
"""


def available():
    """``{"predictor": bool, "load_model": bool}``: the Predictor path needs the Cython kernels built."""
    import dropcore

    return {"predictor": dropcore.info()["cython_kernels"], "load_model": True}


def measure(runs, how):
    """Median wall time of ``runs`` fresh processes (``how``: "predictor" or "load_model"), with the child's split."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mnist_cnn.dropcore")
        models.build("mnist_cnn").save(path)
        walls, splits = [], []
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, "-c", _CHILD, path, how], capture_output=True, text=True,
                                  timeout=300, env=os.environ.copy())
            walls.append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise RuntimeError(f"cold-start child ({how}) failed:\n{proc.stderr.strip()[-2000:]}")
            splits.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    med = statistics.median
    return {"wall_s": med(walls), "runs": runs, "numba_imported": any(s["numba_imported"] for s in splits),
            **{k: med(s[k] for s in splits) for k in ("import_s", "load_s", "first_predict_s")}}


# The Keras MNIST CNN (keras-team's mnist_convnet and the classic mnist_cnn example), one training batch of 64, the
# same code on dropcore and on Keras 3 (argv: the API, then "default" or a kernel set for dropcore, the threads for
# Keras's torch backend).
_TRAIN_KERAS_STYLE = r"""
import json, os, sys, time
os.environ.setdefault("KERAS_BACKEND", "torch")
t0 = time.perf_counter()
import importlib
import numpy as np
api = importlib.import_module(sys.argv[1])
layers = api.layers
t1 = time.perf_counter()
model = api.Sequential([
    layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"),
    layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(), layers.Dense(128, activation="relu"),
    layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
if sys.argv[1] == "keras":
    import torch
    torch.set_num_threads(int(sys.argv[2]))
elif sys.argv[2] != "default":
    model.set_ops(sys.argv[2])
model.compile(optimizer="adam", loss="categorical_crossentropy")
rng = np.random.default_rng(0)
x, y = rng.random((64, 28, 28, 1), dtype=np.float32), np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
t2 = time.perf_counter()
model.train_on_batch(x, y)
t3 = time.perf_counter()
extra = {} if sys.argv[1] == "keras" else {"kernels": model.ops, "numba_imported": "numba" in sys.modules}
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "first_batch_s": t3 - t2, **extra}))
"""

_TRAIN_TORCH = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import torch
from torch import nn
t1 = time.perf_counter()
torch.set_num_threads(int(sys.argv[1]))
model = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
                      nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters())
rng = np.random.default_rng(0)
x, y = torch.from_numpy(rng.random((64, 1, 28, 28), dtype=np.float32)), torch.from_numpy(rng.integers(0, 10, 64))
t2 = time.perf_counter()
opt.zero_grad()
nn.functional.cross_entropy(model(x), y).backward()
opt.step()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "build_s": t2 - t1, "first_batch_s": t3 - t2}))
"""

#: (label, child code, its arguments ("{threads}" filled in), whether each run gets an empty Numba cache (cold) or
#: the one the first run filled (warm), the module that must be installed)
TRAINING = (
    ("dropcore (default kernels), empty Numba cache", _TRAIN_KERAS_STYLE, ("dropcore", "default"), "cold", None),
    ("dropcore (default kernels), second run", _TRAIN_KERAS_STYLE, ("dropcore", "default"), "warm", None),
    ("dropcore ops='numba', empty Numba cache", _TRAIN_KERAS_STYLE, ("dropcore", "numba"), "cold", "numba"),
    ("dropcore ops='numba', cache from a previous run", _TRAIN_KERAS_STYLE, ("dropcore", "numba"), "warm", "numba"),
    ("PyTorch", _TRAIN_TORCH, ("{threads}",), "cold", "torch"),
    ("Keras 3 (torch backend)", _TRAIN_KERAS_STYLE, ("keras", "{threads}"), "cold", "keras"),
)


def _installed(module):
    import importlib.util

    return module is None or importlib.util.find_spec(module) is not None


def measure_training(runs, threads, cold_numba_runs=1, log=print):
    """``{label: {"wall_s", "runs", split...}}`` for every engine of :data:`TRAINING` that is installed: the median
    wall time of ``runs`` new processes from start to the end of their first training batch (a cold Numba set
    compiles for half a minute: ``cold_numba_runs`` of those). Each child gets ``threads`` threads."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="dropcore-coldstart-") as tmp:
        warm_cache = os.path.join(tmp, "warm")
        for row, (label, code, args, cache, module) in enumerate(TRAINING):
            if not _installed(module):
                out[label] = None
                continue
            argv = [sys.executable, "-c", code, *(a.format(threads=threads) for a in args)]
            n = cold_numba_runs if ("numba" in args and cache == "cold") else runs
            log(f"training cold start: {label} ({n} new processes) ...")
            walls, splits = [], []
            for i in range(n):
                cache_dir = warm_cache if cache == "warm" else os.path.join(tmp, f"cold-{row}-{i}")
                env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir, OMP_NUM_THREADS=str(threads),
                           NUMBA_NUM_THREADS=str(threads))
                if cache == "warm" and i == 0:  # fill the cache the timed runs then read
                    subprocess.run(argv, capture_output=True, timeout=600, env=env, check=True)
                t = time.perf_counter()
                proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
                walls.append(time.perf_counter() - t)
                if proc.returncode != 0:
                    raise RuntimeError(f"training cold-start child ({label}) failed:\n{proc.stderr.strip()[-2000:]}")
                splits.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            med = statistics.median
            out[label] = {"wall_s": med(walls), "runs": n,
                          **{k: med(s[k] for s in splits) for k in ("import_s", "build_s", "first_batch_s")},
                          **{k: splits[0][k] for k in ("kernels", "numba_imported") if k in splits[0]}}
    return out


def training_text(results, threads):
    """The Markdown table of :func:`measure_training`'s results, with each row's ratio to PyTorch's wall time."""
    torch_wall = (results.get("PyTorch") or {}).get("wall_s")
    lines = [f"Time from a new process's start to the end of its first training batch (the Keras MNIST CNN, batch "
             f"64, Adam, {threads} threads; median of new processes, interpreter start included):", "",
             "| engine | processes | wall s | import s | build s | first batch s | vs PyTorch | Numba imported |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    for label, r in results.items():
        if r is None:
            lines.append(f"| {label} | not installed | | | | | | |")
            continue
        ratio = f"{r['wall_s'] / torch_wall:.2f}x" if torch_wall else "n/a"
        numba = {True: "yes", False: "no"}.get(r.get("numba_imported"), "")
        lines.append(f"| {label} | {r['runs']} | {r['wall_s']:.2f} | {r['import_s']:.2f} | {r['build_s']:.2f} | "
                     f"{r['first_batch_s']:.2f} | {ratio} | {numba} |")
    return "\n".join(lines)


def main(argv=None):
    """``python -m bench coldstart``: training and inference cold starts, dropcore beside PyTorch and Keras."""
    import argparse

    from dropcore.kernels.cpus import available_cpus

    from . import machine

    p = argparse.ArgumentParser(prog="python -m bench coldstart", description=main.__doc__)
    p.add_argument("--runs", type=int, default=5, help="new processes per measurement (default 5)")
    p.add_argument("--threads", type=int, default=available_cpus(), help="threads for every engine")
    p.add_argument("--markdown", metavar="PATH", help="also write the section as Markdown")
    args = p.parse_args(argv)

    def log(message):
        print(message, file=sys.stderr, flush=True)

    training = measure_training(args.runs, args.threads, log=log)
    lines = [f"### Cold starts: {machine.line(machine.info(args.threads))}", "", training_text(training, args.threads),
             ""]
    avail = available()
    for how, label in (("predictor", "dropcore.Predictor"), ("load_model", "dropcore.load_model + predict")):
        if not avail[how]:
            lines.append(f"- inference cold start, {label}: n/a (the Cython kernels are not built)")
            continue
        log(f"inference cold start ({how}) ...")
        c = measure(args.runs, how)
        lines.append(f"- inference cold start, {label}: {c['wall_s'] * 1e3:.0f} ms wall (median of {c['runs']} new "
                     f"processes; first prediction {c['first_predict_s'] * 1e3:.0f} ms; numba "
                     f"{'imported' if c['numba_imported'] else 'never imported'})")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        print(f"Markdown: {os.path.abspath(args.markdown)}")
    return 0
