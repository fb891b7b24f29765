"""Training and inference give the same bits at 1, 2, 3, 4 and 8 threads, on both fast kernel sets.

Each thread count runs in its own process, as a machine with that many CPUs would run it: dropcore holds its
threads to the CPUs a process may use, so the child reports that many CPUs (``threads.available_cpus``) and sets
``OMP_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` before anything starts a pool. On a machine with fewer cores the
threads take turns, which changes the timing, never the work's split: that depends on the shapes alone. Batches
smaller than the thread count are where a split by threads would show (the convolution splits rows then).
"""
import hashlib
import json
import os
import subprocess
import sys

import pytest

import dropcore

THREADS = (1, 2, 3, 4, 8)

_CHILD = r"""
import hashlib, json, sys
n, ops = int(sys.argv[1]), sys.argv[2]
from dropcore.kernels import threads
threads.available_cpus = lambda: n  # as on a machine with n CPUs (dropcore caps its threads at the CPU count)
import numpy as np
import dropcore
from dropcore import layers

assert dropcore.get_num_threads() == n
dropcore.set_random_seed(3)
model = dropcore.Sequential([
    layers.Input((14, 14, 2)), layers.Conv2D(8, 3, activation="relu"), layers.MaxPooling2D(2), layers.Dropout(0.3),
    layers.Conv2D(16, 3, padding="same"), layers.BatchNormalization(), layers.ReLU(), layers.SpatialDropout2D(0.2),
    layers.Flatten(), layers.Dense(32, activation="relu"), layers.Dropout(0.5), layers.Dense(5, activation="softmax")])
model.set_ops(ops)
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
rng = np.random.default_rng(0)
x, y = rng.standard_normal((24, 14, 14, 2)).astype(np.float32), rng.integers(0, 5, 24)
model.fit(x, y, batch_size=8, epochs=2, seed=1, verbose=0)
digest = hashlib.sha256()
for w in model.get_weights():
    digest.update(np.ascontiguousarray(w).tobytes())
preds = {"alone": model.predict(x[:1]), "three": model.predict(x[:3]), "all": model.predict(x, batch_size=24),
         "mc": np.concatenate(model.predict(x[:3], mc_samples=4, seed=2))}
print(json.dumps({"weights": digest.hexdigest(), "threads": dropcore.get_num_threads(),
                  **{k: hashlib.sha256(v.tobytes()).hexdigest() for k, v in preds.items()},
                  "alone_in_all": bool(np.array_equal(preds["alone"][0], preds["all"][0]))}))
"""


def _run(n, ops):
    env = dict(os.environ, OMP_NUM_THREADS=str(n), NUMBA_NUM_THREADS=str(n))
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(n), ops], capture_output=True, text=True, timeout=600,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("ops", ["cython", "numba"])
def test_training_and_inference_bits_do_not_depend_on_the_thread_count(ops):
    if ops == "cython" and not dropcore.info()["cython_kernels"]:
        pytest.skip(f"the Cython kernels are not built ({dropcore.info()['cython_error']})")
    runs = {n: _run(n, ops) for n in THREADS}
    for n, run in runs.items():
        assert run.pop("threads") == n
    one = runs[1]
    for n in THREADS[1:]:
        assert runs[n] == one, f"{ops} at {n} threads differs from 1 thread: " + ", ".join(
            k for k in one if runs[n][k] != one[k])
    if dropcore.info()["own_gemm"]:  # the vector targets: a sample's bits do not depend on its batch either
        assert one["alone_in_all"]
