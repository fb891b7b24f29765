"""``python -m bench.slow_clients MODEL [serve flags]``: valid-request latency while slow clients hold connections.

``--slow`` clients (default 32) each open a connection to ``dropcore serve`` and send a request's header lines one
per second for ``--seconds`` (default 10), never finishing it; meanwhile one client sends valid single-sample JSON
requests back to back, each on a new connection. Prints their count and latency percentiles. Every flag after the
model not listed below goes to ``dropcore serve`` (e.g. ``--workers 1 --threads 4 --server asgi``). ``python -m
bench serve`` runs it for each server mode (:func:`bench_modes`).
"""
import argparse
import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(port, method, path, body=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def _wait_ready(port, proc, seconds=90):
    deadline = time.monotonic() + seconds
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"dropcore serve exited with {proc.returncode}")
        try:
            status, body = _call(port, "GET", "/health", timeout=2)
            if status == 200:
                return json.loads(body)["input_shape"]
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"dropcore serve did not answer /health within {seconds} s")
        time.sleep(0.1)


def _slow_client(port, stop):
    try:
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: slow\r\n")
            while time.monotonic() < stop:
                time.sleep(1)
                s.sendall(b"X-Slow: 1\r\n")
    except OSError:  # the server gave up on this connection: what a defense does
        pass


def measure(model, serve_flags, slow=32, seconds=10.0):
    """Serve ``model`` with ``serve_flags``; ``slow`` clients send header lines for ``seconds`` while one client sends
    valid requests: ``{"flags", "slow", "requests", "failed", "p50_ms", "p99_ms", "max_ms"}``."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dropcore", "serve", model, "--port", str(port),
                             "--log-level", "error", *serve_flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        shape = _wait_ready(port, proc)
        body = json.dumps({"instances": np.zeros([1, *shape]).tolist()}).encode()
        stop = time.monotonic() + seconds
        slow_threads = [threading.Thread(target=_slow_client, args=(port, stop)) for _ in range(slow)]
        for thread in slow_threads:
            thread.start()
        time.sleep(0.5)  # the slow clients have connected and started their headers
        latencies, failures = [], 0
        while time.monotonic() < stop:
            start = time.monotonic()
            try:
                failures += _call(port, "POST", "/predict", body)[0] != 200
            except OSError:
                failures += 1
            latencies.append(time.monotonic() - start)
        for thread in slow_threads:
            thread.join()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    ms = np.array(latencies) * 1000
    return {"flags": " ".join(serve_flags) or "(defaults)", "slow": slow, "seconds": seconds, "requests": len(ms),
            "failed": failures, "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "max_ms": float(ms.max())}


#: The server modes ``python -m bench serve`` measures (each ``dropcore serve`` flag set, in one worker and in two)
MODES = (["--server", "gthread", "--workers", "1", "--threads", "4"],
         ["--server", "asgi", "--workers", "1", "--threads", "4"],
         ["--server", "gthread", "--workers", "2", "--threads", "4"],
         ["--server", "asgi", "--workers", "2", "--threads", "4"])


def bench_modes(workdir, log, slow=32, seconds=10.0):
    """:func:`measure` for each of :data:`MODES` on the serving tests' small model: the list of reports."""
    import os

    import dropcore

    from .serve_load import build_model

    path = os.path.join(workdir, "slow-clients-small.dropcore")
    dropcore.save_model(build_model("small")[0], path)
    reports = []
    for flags in MODES:
        reports.append(measure(path, flags, slow, seconds))
        log("  " + line(reports[-1]))
    return reports


def line(r):
    return (f"{r['slow']} slow clients, serve {r['flags']}: {r['requests']} valid requests, {r['failed']} failed; "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, max {r['max_ms']:.1f} ms")


def markdown(reports):
    """The slow-clients table of ``python -m bench serve``."""
    r0 = reports[0]
    lines = ["### Slow clients (`python -m bench.slow_clients`)", "",
             f"{r0['slow']} clients each send a request's header lines one a second for {r0['seconds']:g} s, never "
             f"finishing; one client meanwhile sends valid single-sample JSON requests back to back, each on a new "
             f"connection (the serving tests' small model).", "",
             "| `dropcore serve` flags | valid requests | failed | p50 ms | p99 ms | max ms |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in reports:
        lines.append(f"| `{r['flags']}` | {r['requests']} | {r['failed']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['max_ms']:.1f} |")
    return lines + ["", "Target: p99 under 1 s with 32 slow clients on 2 cores.", ""]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--slow", type=int, default=32, help="slow clients (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long they send headers (default 10)")
    args, serve_flags = parser.parse_known_args(argv)
    print(line(measure(args.model, serve_flags, args.slow, args.seconds)))


if __name__ == "__main__":
    main()
