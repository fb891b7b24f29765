"""HTTP load for ``python -m bench serve``: servers started and stopped in their own processes, a load generator in
another, and the CPU time each server's processes spent per request.

The load comes from ``clients`` threads on raw keep-alive sockets sending prebuilt request bytes (minimal parsing,
so the client takes little CPU). A server's CPU per request is the user + system time of its process tree (master
and workers, from ``/proc``) over a timed run divided by the requests answered: on a machine whose cores the
clients share, it says what a request costs the server whatever the throughput.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TICK = os.sysconf("SC_CLK_TCK")


def _client(port, request, stop_at, latencies, statuses):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)  # a server that stops answering fails the run
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    try:
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            sock.sendall(request)
            while b"\r\n\r\n" not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            lower = head.lower()
            at = lower.index(b"content-length:") + 15
            end = lower.find(b"\r\n", at)
            length = int(lower[at:end if end >= 0 else None])
            while len(buf) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("the server closed the connection")
                buf += chunk
            buf = buf[length:]
            latencies.append(time.perf_counter() - t0)
            statuses[int(head[9:12])] = statuses.get(int(head[9:12]), 0) + 1
    finally:
        sock.close()


def load_main(port, request_path, clients, seconds):
    """Run ``clients`` threads sending the request bytes in ``request_path`` for ``seconds``; print a JSON report."""
    with open(request_path, "rb") as f:
        request = f.read()
    stop_at = time.monotonic() + seconds
    latencies, statuses = [[] for _ in range(clients)], [{} for _ in range(clients)]
    threads = [threading.Thread(target=_client, args=(port, request, stop_at, latencies[i], statuses[i]))
               for i in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    lat = np.concatenate([np.asarray(a) for a in latencies]) if any(latencies) else np.zeros(1)
    merged = {}
    for s in statuses:
        for k, v in s.items():
            merged[k] = merged.get(k, 0) + v
    print(json.dumps({"requests": int(sum(merged.values())), "seconds": elapsed,
                      "rps": sum(merged.values()) / elapsed,
                      "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
                      "statuses": {str(k): v for k, v in merged.items()}}))


def request_bytes(body, content_type, accept, path="/predict"):
    """A whole HTTP/1.1 POST with ``body``."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nAccept: {accept}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def tree_cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` and its children (a gunicorn master and its workers)."""
    pids, total = {pid}, 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[1]) == pid:  # ppid
                pids.add(int(entry))
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return total


def load(server, request_path, clients, seconds):
    """One timed run of the load generator (its own process) against ``server`` (``(process, port)``): its report,
    plus ``cpu_us``, the server's CPU microseconds per request answered."""
    proc, port = server
    code = f"from bench.serve_load import load_main; load_main({port}, {request_path!r}, {clients}, {seconds})"
    cpu0 = tree_cpu_seconds(proc.pid)
    out = subprocess.run([sys.executable, "-c", code], cwd=_ROOT, capture_output=True, text=True, check=True)
    cpu = tree_cpu_seconds(proc.pid) - cpu0
    report = json.loads(out.stdout)
    report["cpu_us"] = cpu / max(report["requests"], 1) * 1e6
    return report


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command, port, env=None):
    """Start the server ``command`` and wait until ``GET /health`` answers 200: ``(process, port)``."""
    proc = subprocess.Popen(command, cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {command} exited: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, port
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server {command} did not start")


def stop(server):
    proc = server[0]
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def build_model(name):
    """``(model, sample shape)``: the zoo's "mnist_cnn" and "cifar_cnn", or "small" (the serving tests' 10x10x1 conv
    net with dropout: the prediction is a small part of a request, so its numbers are the server's own cost)."""
    import dropcore
    from dropcore import zoo
    from dropcore.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

    dropcore.set_random_seed(0)
    if name == "cifar_cnn":
        return zoo.build("cifar_cnn", (32, 32, 3), 10), (32, 32, 3)
    if name == "mnist_cnn":
        return zoo.build("mnist_cnn", (28, 28, 1), 10), (28, 28, 1)
    if name != "small":
        raise ValueError(f"--models: expected small, mnist_cnn or cifar_cnn, received {name!r}")
    return dropcore.Sequential([Input((10, 10, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2), Dropout(0.3),
                                Flatten(), Dense(3, activation="softmax")], name="small"), (10, 10, 1)
