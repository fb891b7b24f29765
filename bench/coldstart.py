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
