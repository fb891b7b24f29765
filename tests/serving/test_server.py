"""``dropcore serve`` as a process (gunicorn, 2 workers, each ``--server`` kind): a bounded load test, the limits
over HTTP, metrics summed over workers, and SIGTERM draining a request under way. Correctness and boundedness
only, never speed."""
import argparse
import io
import json
import os
import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dropcore
from dropcore import zoo
from dropcore.serving import commands

from .conftest import NPY, SHAPE, Client, needs_exact_batching, npy, server, tree_rss

CLIENTS = 16
ROUNDS = 12  # requests per client per kind cycle below: 16 x 12 x 12 = 2,304 requests, a few seconds


@pytest.fixture(scope="module", params=["asgi", "gthread"])
def loaded(saved_model, request):
    """A two-worker server of each kind (``--server``): the load, metrics and deadline tests run on both."""
    path, _ = saved_model
    with server(path, "--server", request.param, "--workers", 2, "--threads", 4, "--max-instances", 32,
                "--max-body-bytes", 256 * 1024, "--max-mc-samples", 10**6, "--timeout-ms", 2000) as (proc, port):
        yield proc, port, dropcore.Predictor(path)


def _requests(rng):
    """``(kind, method, path, body, headers, expected status, x or None, mc)`` for one cycle of each kind."""
    x = rng.random((int(rng.integers(1, 5)),) + SHAPE, dtype=np.float32)
    j = {"Content-Type": "application/json"}
    n = {"Content-Type": NPY}
    nan = x.copy()
    nan[0, 1, 2, 0] = np.nan
    return [
        ("json", "/predict", json.dumps({"instances": x.tolist()}), j, 200, x, None),
        ("npy", "/predict", npy(x), {**n, "Accept": NPY}, 200, x, None),
        ("npy64-json-out", "/predict", npy(x.astype(np.float64)), n, 200, x, None),
        ("mc-npy", "/predict?mc_samples=3&seed=5", npy(x), {**n, "Accept": NPY}, 200, x, 3),
        ("bad-shape", "/predict", json.dumps({"instances": [[1, 2]]}), j, 400, None, None),
        ("nan", "/predict", npy(nan), n, 400, None, None),
        ("bad-json", "/predict", b"{instances", j, 400, None, None),
        ("too-many", "/predict", npy(np.zeros((33,) + SHAPE, np.float32)), n, 400, None, None),
        ("bad-npy", "/predict", b"\x93NUMPY garbage", n, 400, None, None),
        ("bad-mc", "/predict", json.dumps({"instances": x.tolist(), "mc_samples": "x"}), j, 400, None, None),
        ("too-large", "/predict", b"0" * (256 * 1024 + 1), n, 413, None, None),
        ("not-found", "/nowhere", None, {}, 404, None, None),
    ]


def _client(port, seed, rounds):
    """One client's requests on one keep-alive connection: the mismatches it saw, and its /predict count."""
    rng = np.random.default_rng(seed)
    client, problems, predicts = Client(port), [], 0
    try:
        for _ in range(rounds):
            for kind, path, body, headers, want, x, mc in _requests(rng):
                status, ctype, data = client.call("GET" if body is None else "POST", path, body, headers)
                predicts += path.startswith("/predict")
                if status != want:
                    problems.append((kind, status, data[:200]))
                    continue
                if want >= 400:
                    if "error" not in json.loads(data):
                        problems.append((kind, "no error reason", data[:200]))
                    continue
                got_npy = ctype == NPY
                got = np.load(io.BytesIO(data)) if got_npy else json.loads(data)
                if mc:
                    mean, std = _predictor.predict(x, mc_samples=mc, seed=5)
                    ok = np.array_equal(got, np.stack([mean, std]))
                else:
                    want_y = _predictor.predict(x)
                    ok = np.array_equal(got if got_npy else np.asarray(got["predictions"], np.float32), want_y)
                if not ok:
                    problems.append((kind, "answer differs from the Predictor's"))
    finally:
        client.close()
    return problems, predicts


_predictor = None


def test_load_16_clients_mixed_requests(loaded):
    global _predictor
    proc, port, _predictor = loaded
    _client(port, 0, 1)  # warm-up: every worker thread's buffers, every code path
    rss_before = tree_rss(proc.pid)
    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(lambda s: _client(port, s, ROUNDS), range(1, CLIENTS + 1), timeout=600))
    problems = [p for ps, _ in results for p in ps]
    assert not problems, problems[:10]  # no 5xx, every bad request its 4xx, every answer the Predictor's
    rss_after = tree_rss(proc.pid)
    # bounded: per-thread buffers of small batches, nothing per request (2,300 requests, ~15 MB of bodies)
    assert rss_after < rss_before + 64 * 2**20, (rss_before, rss_after)
    assert proc.poll() is None


def test_metrics_sum_over_workers(loaded):
    proc, port, _ = loaded
    client = Client(port)
    before = _predict_count(client)
    for _ in range(20):
        client.json("/predict", {"instances": np.zeros((1,) + SHAPE).tolist()})
    # every scrape (whichever worker answers) counts every worker's requests
    counts = {_predict_count(Client(port)) for _ in range(6)}
    assert counts == {before + 20}, counts
    client.close()


def _predict_count(client):
    text = client.call("GET", "/metrics")[2].decode()
    return sum(float(v) for v in re.findall(r'dropcore_http_requests_total\{[^}]*route="/predict"[^}]*\} (\S+)',
                                            text))


def test_deadline_503_over_http(loaded):
    _, port, _ = loaded
    client = Client(port)
    t0 = time.monotonic()
    status, body = client.json("/predict", {"instances": np.zeros((32,) + SHAPE).tolist(), "mc_samples": 10**6})
    assert status == 503 and "deadline of 2000 ms" in body["error"], body
    assert time.monotonic() - t0 < 10  # stopped near its deadline, not after a million passes
    assert client.json("/predict", {"instances": np.zeros((1,) + SHAPE).tolist()})[0] == 200  # nothing stuck
    client.close()


@pytest.mark.parametrize("mode", ["asgi", "gthread"])
def test_sigterm_drains_a_request_under_way(tmp_path, mode):
    dropcore.set_random_seed(0)
    path = tmp_path / "cifar.dropcore"
    dropcore.save_model(zoo.build("cifar_cnn", (32, 32, 3), 10), path)
    x = np.random.default_rng(0).random((256, 32, 32, 3), dtype=np.float32)
    with server(path, "--server", mode, "--workers", 1, "--threads", 2, "--max-instances", 256, "--max-body-bytes",
                8 * 2**20, "--max-mc-samples", 400, "--timeout-ms", 120_000, "--grace", 60) as (proc, port):
        answer = {}

        def slow():  # 100 passes over 256 CIFAR images: ~2.5 s of CPU (tens of seconds on a loaded machine)
            t = time.monotonic()
            answer["status"], _, data = Client(port, timeout=120).call(
                "POST", "/predict?mc_samples=100&seed=1", npy(x), {"Content-Type": NPY, "Accept": NPY})
            answer["seconds"], answer["data"] = time.monotonic() - t, data

        worker = json.loads(Client(port).call("GET", "/health")[2])["pid"]
        before = _cpu_seconds(worker)
        thread = threading.Thread(target=slow)
        thread.start()
        deadline = time.monotonic() + 60
        while _cpu_seconds(worker) - before < 0.3:  # the worker is computing the request: it has spent CPU on it
            assert thread.is_alive() and time.monotonic() < deadline, answer
            time.sleep(0.01)
        assert thread.is_alive(), answer  # still under way when SIGTERM comes: the drain is what is tested
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        thread.join(60)
        assert code == 0 and time.monotonic() - sent < 60
        assert answer["status"] == 200, answer.get("data", b"")[:200]
        mean_std = np.load(io.BytesIO(answer["data"]))
        want = dropcore.Predictor(path).predict(x, mc_samples=100, seed=1)
        np.testing.assert_array_equal(mean_std, np.stack(want))  # the drained answer is the right one


def _cpu_seconds(pid):
    """CPU time process ``pid`` has used so far (user + system, from /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        pytest.skip("needs /proc to see the worker computing (Linux)")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_serve_command_arguments(monkeypatch):
    parser = argparse.ArgumentParser(prog="dropcore")
    commands.add_commands(parser.add_subparsers(dest="command"))
    seen = {}
    import dropcore.serving.server as server_mod

    monkeypatch.setattr(server_mod, "serve", lambda model, **kw: seen.update(model=model, **kw) or 0)
    args = parser.parse_args(["serve", "m.dropcore", "--port", "9000", "--workers", "3", "--batching",
                              "--max-instances", "7", "--timeout-ms", "250"])
    assert args.handler(args) == 0
    assert seen["model"] == "m.dropcore" and seen["port"] == 9000 and seen["workers"] == 3 and seen["batching"]
    assert seen["max_instances"] == 7 and seen["timeout_ms"] == 250.0 and seen["max_mc_samples"] == 100
    assert seen["exact"] is True  # --inexact-batching not given
    assert seen["server"] == "asgi" and seen["max_connections"] == 1000  # the defaults
    args = parser.parse_args(["serve", "m", "--server", "gthread", "--max-connections", "64"])
    assert args.handler(args) == 0 and seen["server"] == "gthread" and seen["max_connections"] == 64
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "m", "--server", "tornado"])
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "m", "--max-instances", "0"])


def test_thread_plan_does_not_oversubscribe():
    from dropcore.serving.server import thread_plan

    assert thread_plan(2, 4, False, cpus=2) == (1, 1)
    assert thread_plan(1, 4, False, cpus=8) == (8, 2)
    assert thread_plan(2, 4, True, cpus=8) == (4, 4)
    assert thread_plan(4, 1, False, cpus=2) == (1, 1)


def test_missing_model_file_fails_in_the_master(tmp_path):
    from dropcore.serving.server import serve

    with pytest.raises(OSError):
        serve(tmp_path / "missing.dropcore")
    bad = tmp_path / "bad.dropcore"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError):
        serve(bad)


@needs_exact_batching
def test_batching_server_under_load(saved_model):
    global _predictor
    path, _ = saved_model
    _predictor = dropcore.Predictor(path)
    with server(path, "--workers", 2, "--threads", 4, "--batching", "--max-instances", 32,
                "--max-body-bytes", 256 * 1024, "--max-mc-samples", 10**6, "--timeout-ms", 2000) as (proc, port):
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = list(pool.map(lambda s: _client(port, s, 3), range(100, 100 + CLIENTS), timeout=600))
        problems = [p for ps, _ in results for p in ps]
        assert not problems, problems[:10]  # coalesced answers equal the Predictor's bit for bit, bad ones 4xx
        assert Client(port).call("GET", "/metadata")[2].count(b'"max_batch":64') == 1
