"""Cold start: a new process imports dropcore, loads a saved mnist_cnn and returns its first prediction.

The parent times the whole child process (interpreter start included); the child reports where its time went.
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
if how == "predictor":
    P = dropcore.Predictor
    p = P.load(path) if hasattr(P, "load") else P(path)
    run = p.predict if hasattr(p, "predict") else p
else:
    run = dropcore.load_model(path).predict
t2 = time.perf_counter()
y = np.asarray(run(np.zeros((1, 28, 28, 1), np.float32)))
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2, "shape": list(y.shape)}))
"""


def available():
    """``{"predictor": bool, "load_model": bool}``: which cold-start paths exist in this dropcore."""
    import dropcore

    can_save = hasattr(dropcore.Model, "save") or hasattr(dropcore, "save_model")
    return {"predictor": can_save and hasattr(dropcore, "Predictor"),
            "load_model": can_save and hasattr(dropcore, "load_model")}


def _save(model, path):
    import dropcore

    if hasattr(model, "save"):
        model.save(path)
    else:
        dropcore.save_model(model, path)


def measure(runs, how):
    """Median wall time of ``runs`` fresh processes (``how``: "predictor" or "load_model"), with the child's split."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mnist_cnn.dropcore")
        _save(models.build("mnist_cnn"), path)
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
    return {"wall_s": med(walls), "runs": runs,
            **{k: med(s[k] for s in splits) for k in ("import_s", "load_s", "first_predict_s")}}
