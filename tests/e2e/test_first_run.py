"""A new process with an empty Numba cache trains its first batch of the Keras MNIST CNN without compiling anything
(the default kernels are compiled ahead of time), and whatever does compile says so on stderr.

Time itself is measured by ``python -m bench coldstart``, not asserted here.
"""
import json
import os
import subprocess
import sys

import pytest

import dropcore

_FIRST_BATCH = r"""
import json, sys
import numpy as np
import dropcore
from dropcore import layers

ops = sys.argv[1]
model = dropcore.Sequential([
    layers.Input((28, 28, 1)), layers.Conv2D(32, 3, activation="relu"), layers.Conv2D(64, 3, activation="relu"),
    layers.MaxPooling2D(2), layers.Dropout(0.25), layers.Flatten(), layers.Dense(128, activation="relu"),
    layers.Dropout(0.5), layers.Dense(10, activation="softmax")])
if ops != "default":
    model.set_ops(ops)
model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
rng = np.random.default_rng(0)
x = rng.random((64, 28, 28, 1), dtype=np.float32)
y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, 64)]
history = model.fit(x, y, batch_size=64, epochs=1, verbose=0)
print(json.dumps({"ops": model.ops, "loss": history.history["loss"][0], "numba_imported": "numba" in sys.modules}))
"""

_ONE_KERNEL = r"""
import numpy as np
from dropcore.ops import get_ops
print(float(get_ops("numba").relu(np.array([-1.0, 2.0], np.float32)).sum()))
"""


def _run(code, cache, *args):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_first_training_batch_on_an_empty_cache_compiles_nothing(tmp_path):
    if not dropcore.info()["cython_kernels"]:
        pytest.skip(f"the Cython kernels are not built ({dropcore.info()['cython_error']}): training runs on Numba")
    proc = _run(_FIRST_BATCH, tmp_path / "numba-cache", "default")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ops"] == "cython" and out["loss"] > 0
    assert not out["numba_imported"], "the default kernels imported Numba"
    assert "compiling" not in proc.stderr, proc.stderr
    assert not list((tmp_path / "numba-cache").glob("**/*.nbi")), "something was compiled and cached"


def test_compiling_says_so_once_and_a_cached_run_says_nothing(tmp_path):
    cache = tmp_path / "numba-cache"
    first = _run(_ONE_KERNEL, cache)
    notices = [line for line in first.stderr.splitlines() if line.startswith("dropcore: compiling")]
    assert len(notices) == 1, first.stderr
    assert "dropcore.kernels.activation" in notices[0] and str(cache) in notices[0]
    assert first.stdout.strip() == "2.0"
    again = _run(_ONE_KERNEL, cache)
    assert "compiling" not in again.stderr, again.stderr
    assert again.stdout.strip() == "2.0"
