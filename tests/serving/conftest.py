"""Shared by the serving tests: saved models, a ``dropcore serve`` process on a free port, a small HTTP client."""
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest

import dropcore
from dropcore.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

pytest.importorskip("flask", reason="Flask is not installed (optional extra: pip install 'dropcore[serve]')")
pytest.importorskip("gunicorn", reason="gunicorn is not installed (optional extra: pip install 'dropcore[serve]')")
pytest.importorskip("prometheus_client", reason="prometheus_client is not installed (extra: dropcore[serve])")

NPY = "application/x-npy"
SHAPE = (10, 10, 1)


def _batch_invariant_kernels():
    try:
        from dropcore.kernels import cython_ops
    except ImportError:  # no Cython kernels: the Numba ones, whose dense runs on BLAS off the fast GEMM
        return False
    return cython_ops.HAVE_FAST_GEMM


#: For tests of exact batching: it needs kernels whose sums do not depend on the batch (dropcore's own, on the
#: avx512 and avx2 targets). The generic target's BLAS is refused by design (``exact=False`` batches it anyway).
needs_exact_batching = pytest.mark.skipif(
    not _batch_invariant_kernels(), reason="exact batching needs the avx512 or avx2 kernels; this process runs the "
    "generic target, whose BLAS sums depend on the batch (BatchingPredictor refuses it unless exact=False)")


def small_model():
    """A conv net with dropout (so Monte-Carlo dropout means something), trained for one epoch."""
    dropcore.set_random_seed(3)
    rng = np.random.default_rng(0)
    x, y = rng.random((64,) + SHAPE, dtype=np.float32), rng.integers(0, 3, 64)
    # named: a default name counts the models and inputs made before in the process (the v2 routes name both)
    model = dropcore.Sequential([Input(SHAPE, name="input"), Conv2D(4, 3, activation="relu"), MaxPooling2D(2),
                                 Dropout(0.3), Flatten(), Dense(3, activation="softmax")], name="small")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    return model


@pytest.fixture(scope="session")
def saved_model(tmp_path_factory):
    """``(path, model)`` of the small model saved to a file."""
    model = small_model()
    path = tmp_path_factory.mktemp("serving") / "small.dropcore"
    dropcore.save_model(model, path)
    return path, model


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class Client:
    """One keep-alive HTTP connection: ``call(method, path, body, headers)`` -> ``(status, headers, body)``."""

    def __init__(self, port, timeout=60):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def call(self, method, path, body=None, headers=None):
        self.conn.request(method, path, body=body, headers=headers or {})
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return resp.status, resp.getheader("Content-Type", ""), data

    def json(self, path, doc):
        status, _, data = self.call("POST", path, json.dumps(doc).encode(), {"Content-Type": "application/json"})
        return status, json.loads(data)

    def close(self):
        self.conn.close()


@contextmanager
def server(model_path, *args, ready_s=90):
    """A ``dropcore serve`` process (``python -m dropcore serve``) on a free port:
    yields ``(process, port)`` once ``/health`` answers; SIGTERM (then SIGKILL) on leaving."""
    port = free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "dropcore", "serve", str(model_path), "--port", str(port),
                             "--log-level", "warning", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    output = []  # the server's log, read as it comes: a full pipe would block the worker writing to it
    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + ready_s
        while True:
            if proc.poll() is not None:
                reader.join(10)
                pytest.fail(f"the server exited early ({proc.returncode}): {''.join(output)}")
            try:
                client = Client(port, timeout=2)
                ok = client.call("GET", "/health")[0] == 200
                client.close()
                if ok:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer /health within {ready_s} s")
            time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        reader.join(10)
        proc.stdout.close()


def tree_rss(pid):
    """Resident memory (bytes) of process ``pid`` and its children (the gunicorn master and its workers)."""
    def rss(p):
        try:
            with open(f"/proc/{p}/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            return 0

    def children(p):
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                return [int(c) for c in f.read().split()]
        except OSError:
            return []

    return rss(pid) + sum(rss(c) for c in children(pid))
