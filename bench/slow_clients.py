"""``python -m bench.slow_clients MODEL [serve flags]``: valid-request latency while slow clients hold connections.

``--slow`` clients (default 32) each open a connection to ``dropcore serve`` and send a request's header lines one
per second for ``--seconds`` (default 10), never finishing it; meanwhile one client sends valid single-sample JSON
requests back to back, each on a new connection. Prints their count and latency percentiles. Every flag after the
model not listed below goes to ``dropcore serve`` (e.g. ``--workers 1 --threads 4``).
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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--slow", type=int, default=32, help="slow clients (default 32)")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long they send headers (default 10)")
    args, serve_flags = parser.parse_known_args(argv)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dropcore", "serve", args.model, "--port", str(port),
                             "--log-level", "error", *serve_flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        shape = _wait_ready(port, proc)
        body = json.dumps({"instances": np.zeros([1, *shape]).tolist()}).encode()
        stop = time.monotonic() + args.seconds
        slow = [threading.Thread(target=_slow_client, args=(port, stop)) for _ in range(args.slow)]
        for thread in slow:
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
        for thread in slow:
            thread.join()
        ms = np.array(latencies) * 1000
        print(f"{args.slow} slow clients, serve {' '.join(serve_flags) or '(defaults)'}: {len(ms)} valid requests, "
              f"{failures} failed; p50 {np.percentile(ms, 50):.1f} ms, p99 {np.percentile(ms, 99):.1f} ms, "
              f"max {ms.max():.1f} ms")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
