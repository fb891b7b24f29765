"""A soak of ``dropcore serve`` (one worker, loopback): valid and hostile requests, mixed, from a few clients at
once, for ``DROPCORE_SOAK_SECONDS`` (CI: 20 s; the full soak is 600). No answer may be a 5xx, every hostile request
gets its 4xx JSON error, every valid one the Predictor's answer (the same inputs throughout, so the answers are
unchanged from start to end), the worker never restarts, and its memory grows by less than 30 MB after warm-up."""
import io
import json
import os
import threading
import time

import numpy as np

import dropcore

from .conftest import NPY, SHAPE, npy, server, tree_rss
from .test_hostile import BODY_TIMEOUT_S, CASES, LIMITS, exchange, post

SOAK_S = float(os.environ.get("DROPCORE_SOAK_SECONDS", "20"))
WARM_UP_S = min(30.0, max(10.0, SOAK_S / 10))  # allocator pools and caches fill first (~15 MB): growth counts after
CLIENTS = 4
RSS_GROWTH_LIMIT = 30 * 2**20
#: hostile cases held to their body timeout: sent, but less often, so that the soak is mostly answers
SLOW = {"content-length-over-the-body-then-silence"}


def valid_requests(predictor):
    """``(request bytes, expected answer)`` for a pool of valid requests: JSON and .npy, plain and Monte-Carlo with
    a seed, batches of 1 to 4. Computed once, in this process: the server must give these exact answers all along."""
    rng = np.random.default_rng(26)
    pool = []
    for i in range(24):
        x = rng.random((1 + i % 4,) + SHAPE, dtype=np.float32)
        if i % 3 == 2:
            mean, std = predictor.predict(x, mc_samples=5, seed=i)
            body = json.dumps({"instances": x.tolist(), "mc_samples": 5, "seed": i}).encode()
            pool.append((post(body), ("json", {"mean": mean, "std": std})))
        elif i % 3 == 1:
            pool.append((post(npy(x), NPY, extra=b"Accept: application/x-npy\r\n"), ("npy", predictor.predict(x))))
        else:
            pool.append((post(json.dumps({"instances": x.tolist()}).encode()), ("json",
                                                                                  {"predictions": predictor.predict(x)})))
    return pool


def wrong_answer(answer, want):
    """Why ``answer`` (status, headers, body) is not ``want``, or None."""
    status, _, body = answer
    if status != 200:
        return f"status {status}: {body[:200]!r}"
    kind, expected = want
    if kind == "npy":
        got = np.load(io.BytesIO(body))
        return None if np.array_equal(got, expected) else "a different .npy answer"
    doc = json.loads(body)
    if doc.keys() != expected.keys():
        return f"keys {sorted(doc)}"
    for key, value in expected.items():
        if not np.array_equal(np.asarray(doc[key], np.float32), value):
            return f"a different {key!r}"
    return None


def refusal_problem(answer, case):
    """Why ``answer`` is not the hostile ``case``'s 4xx JSON error, or None."""
    _, _, _, statuses, reason = case
    status, headers, body = answer
    if status not in statuses or headers.get("content-type") != "application/json":
        return f"status {status} ({headers.get('content-type')}): {body[:200]!r}"
    error = json.loads(body).get("error", "")
    # where gunicorn's workers word it apart (test_hostile's {server mode: words}), either wording will do here
    words = list(reason.values()) if isinstance(reason, dict) else [reason]
    return None if any(w in error for w in words) else f"error {error[:200]!r} lacks {words[0]!r}"


class Tally:
    """Counts and problems from every client thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"valid": 0, "hostile": 0}
        self.statuses = {}
        self.problems = []

    def add(self, kind, status, problem, label):
        with self.lock:
            self.counts[kind] += 1
            self.statuses[status] = self.statuses.get(status, 0) + 1
            if problem and len(self.problems) < 20:
                self.problems.append(f"{label}: {problem}")


def client(port, pool, until, seed, tally):
    """Requests until ``until`` (time.monotonic()): two valid for each hostile one, on new connections."""
    rng = np.random.default_rng(seed)
    fast = [c for c in CASES if c[0] not in SLOW]
    slow = [c for c in CASES if c[0] in SLOW]
    while time.monotonic() < until:
        roll = rng.random()
        kind, label = ("valid", "valid request") if roll < 2 / 3 else ("hostile", None)
        try:
            if kind == "valid":
                data, want = pool[rng.integers(len(pool))]
                answer = exchange(port, data)
                tally.add(kind, answer[0], wrong_answer(answer, want), label)
            else:
                case = slow[0] if slow and roll > 0.995 else fast[rng.integers(len(fast))]
                label = case[0]
                answer = exchange(port, case[1], case[2], timeout=BODY_TIMEOUT_S + 10)
                tally.add(kind, answer[0], refusal_problem(answer, case), label)
        except BaseException as exc:  # noqa: BLE001 - exchange's pytest.fail (a hang, a closed connection) included
            tally.add(kind, "no answer", f"{type(exc).__name__}: {exc}", label)


def health_pid(port):
    status, _, body = exchange(port, b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n")
    assert status == 200, body
    return json.loads(body)["pid"]


def run_clients(port, pool, seconds, tally, seed):
    until = time.monotonic() + seconds
    threads = [threading.Thread(target=client, args=(port, pool, until, seed + i, tally)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
        assert not t.is_alive(), "a soak client did not finish"


def test_soak_mixed_requests(saved_model):
    path, _ = saved_model
    predictor = dropcore.Predictor(path)
    pool = valid_requests(predictor)
    with server(path, "--workers", 1, "--threads", 4, "--body-timeout-s", BODY_TIMEOUT_S,
                "--max-body-bytes", LIMITS.max_body_bytes, "--max-instances", LIMITS.max_instances,
                "--max-mc-samples", LIMITS.max_mc_samples) as (proc, port):
        pid = health_pid(port)
        warm = Tally()
        run_clients(port, pool, WARM_UP_S, warm, seed=0)
        before = tree_rss(proc.pid)
        tally = Tally()
        samples, start = [], time.monotonic()
        sampler_stop = threading.Event()

        def sample():  # the memory through the soak, for the report
            while not sampler_stop.wait(max(1.0, SOAK_S / 20)):
                samples.append(tree_rss(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run_clients(port, pool, SOAK_S, tally, seed=100)
        elapsed = time.monotonic() - start
        sampler_stop.set()
        sampler.join(10)
        after = tree_rss(proc.pid)
        assert health_pid(port) == pid, "the worker restarted during the soak"
        assert proc.poll() is None
    growth = after - before
    statuses = {str(k): v for k, v in sorted(tally.statuses.items(), key=lambda kv: str(kv[0]))}
    report = (f"soak {elapsed:.0f} s after {WARM_UP_S:.0f} s of warm-up, {CLIENTS} clients: "
              f"{tally.counts['valid']} valid and {tally.counts['hostile']} hostile requests "
              f"({sum(tally.counts.values()) / elapsed:.0f}/s), statuses {statuses};"
              f" RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MB (max {max(samples + [after]) / 2**20:.1f} MB;"
              f" through the soak: {' '.join(f'{m / 2**20:.0f}' for m in samples)})")
    print(report)
    for problems in (warm.problems, tally.problems):
        assert not problems, report + "\n" + "\n".join(problems)
    assert not [s for s in tally.statuses if s == "no answer" or s >= 500], report
    assert tally.counts["valid"] > 0 and tally.counts["hostile"] > 0, report
    assert growth < RSS_GROWTH_LIMIT, report
