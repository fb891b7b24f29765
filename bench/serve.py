"""``python -m bench serve``: dropcore's server against a bare endpoint of the same framework, and dynamic batching.

HTTP: ``dropcore serve`` (gunicorn + Flask, gthread workers) answering ``cifar_cnn`` single-image requests, as
``.npy`` and as JSON, against a bare Flask app under the same gunicorn settings that reads the same body and
returns a constant (what the framework alone costs). The load comes from a separate process of ``--clients``
threads on raw keep-alive sockets (prebuilt request bytes, minimal parsing, so the client takes little CPU).
Servers and payloads alternate within each repeat; each number is the median over the repeats.

In process (no HTTP): ``--clients`` threads each predicting single CIFAR images on one ``Predictor`` (unbatched)
or one ``BatchingPredictor``: throughput and p99 latency.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (32, 32, 3)


# --- the bare endpoint ----------------------------------------------------------------------------------------
def run_bare(port, workers, threads):
    """A Flask app that reads the request body and answers a constant, under gunicorn like ``dropcore serve``."""
    from flask import Flask, Response, request
    from gunicorn.app.base import BaseApplication

    constant = json.dumps({"predictions": [[0.1] * 10]}, separators=(",", ":")).encode()

    class Bare(BaseApplication):
        def load_config(self):
            for key, value in {"bind": f"127.0.0.1:{port}", "workers": workers, "threads": threads,
                               "worker_class": "gthread", "loglevel": "warning", "accesslog": None,
                               "keepalive": 5, "control_socket_disable": True}.items():
                self.cfg.set(key, value)

        def load(self):
            app = Flask("bare")

            @app.get("/health")
            def health():
                return Response(b'{"status":"ok"}', content_type="application/json")

            @app.post("/predict")
            def predict():
                request.get_data()
                return Response(constant, content_type="application/json")

            return app

    Bare().run()


# --- the load generator (its own process) -----------------------------------------------------------------------
def _run_all(threads):
    """Start ``threads`` together, wait for all of them; the seconds that took."""
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def _client(port, request, stop_at, latencies, statuses):
    sock = socket.create_connection(("127.0.0.1", port))
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
            length = int(lower[at:lower.index(b"\r\n", at) if b"\r\n" in lower[at:] else None])
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
    elapsed = _run_all(threads)
    lat = np.concatenate([np.asarray(a) for a in latencies]) if any(latencies) else np.zeros(1)
    merged = {}
    for s in statuses:
        for k, v in s.items():
            merged[k] = merged.get(k, 0) + v
    print(json.dumps({"requests": int(len(lat)), "seconds": elapsed, "rps": len(lat) / elapsed,
                      "p50_ms": float(np.percentile(lat, 50) * 1e3), "p99_ms": float(np.percentile(lat, 99) * 1e3),
                      "statuses": {str(k): v for k, v in merged.items()}}))


def _request_bytes(body, content_type, accept):
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nAccept: {accept}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


def _load(port, request_path, clients, seconds):
    code = f"from bench.serve import load_main; load_main({port}, {request_path!r}, {clients}, {seconds})"
    out = subprocess.run([sys.executable, "-c", code], cwd=_ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


# --- servers ---------------------------------------------------------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command, port):
    proc = subprocess.Popen(command, cwd=_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server {command} exited: {proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server {command} did not start")


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_bench(model_path, shape, workdir, workers, threads, clients, seconds, repeats, log):
    """``{server: {payload: [report per repeat]}}`` for the bare app and ``dropcore serve`` (plain and
    ``--batching``), single-image ``.npy`` and JSON requests."""
    import io

    x = np.random.default_rng(0).random((1,) + shape, dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, x)
    npy_body, json_body = buffer.getvalue(), json.dumps({"instances": x.tolist()}).encode()
    payloads = {"npy": _request_bytes(npy_body, "application/x-npy", "application/x-npy"),
                "json": _request_bytes(json_body, "application/json", "application/json")}
    paths = {}
    for name, data in payloads.items():
        paths[name] = os.path.join(workdir, f"{name}.http")
        with open(paths[name], "wb") as f:
            f.write(data)
    common = ["--workers", str(workers), "--threads", str(threads)]
    servers = {
        "bare": lambda p: [sys.executable, "-c", f"from bench.serve import run_bare; run_bare({p}, {workers}, "
                                                 f"{threads})"],
        "dropcore": lambda p: [sys.executable, "-m", "dropcore", "serve", model_path, "--port", str(p),
                               "--log-level", "warning", *common],
        "dropcore-batching": lambda p: [sys.executable, "-m", "dropcore", "serve", model_path, "--port",
                                        str(p), "--log-level", "warning", "--batching", *common],
    }
    results = {s: {p: [] for p in payloads} for s in servers}
    running = {}
    try:
        for name, command in servers.items():
            port = _free_port()
            running[name] = (_start(command(port), port), port)
        for name, (_, port) in running.items():  # warm-up: every worker thread, both payloads
            for payload in payloads:
                _load(port, paths[payload], clients, 1.0)
        for r in range(repeats):
            for payload in payloads:  # the servers back to back per payload: their ratio sees the same load
                for name, (_, port) in running.items():
                    report = _load(port, paths[payload], clients, seconds)
                    results[name][payload].append(report)
                    log(f"  repeat {r + 1}: {name:18s} {payload:5s} {report['rps']:8.0f} req/s  p99 "
                        f"{report['p99_ms']:6.1f} ms  {report['statuses']}")
    finally:
        for proc, _ in running.values():
            _stop(proc)
    return results


# --- in process: dynamic batching ------------------------------------------------------------------------------
def build_model(name):
    """``(model, sample shape)``: "small" is the serving tests' model (a 10x10x1 conv net with dropout: the
    prediction is a small part of a request, so the numbers are the server's own cost); "mnist_cnn" (the issue's
    0.1 ms model) and "cifar_cnn" are the zoo's."""
    import dropcore
    from dropcore import zoo
    from dropcore.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

    dropcore.set_random_seed(0)
    if name == "cifar_cnn":
        return zoo.build("cifar_cnn", SHAPE, 10), SHAPE
    if name == "mnist_cnn":
        return zoo.build("mnist_cnn", (28, 28, 1), 10), (28, 28, 1)
    if name != "small":
        raise ValueError(f"--http-models: expected small, mnist_cnn or cifar_cnn, received {name!r}")
    return dropcore.Sequential([Input((10, 10, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2), Dropout(0.3),
                                Flatten(), Dense(3, activation="softmax")], name="small"), (10, 10, 1)


def _callers(predict, clients, seconds, images):
    """``clients`` threads calling ``predict`` on single images for ``seconds``: (images/s, p99 ms)."""
    stop_at = time.monotonic() + seconds
    lat = [[] for _ in range(clients)]

    def run(i):
        x = images[i % len(images)]
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            predict(x)
            lat[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    elapsed = _run_all(threads)
    all_lat = np.concatenate([np.asarray(a) for a in lat])
    return {"ips": len(all_lat) / elapsed, "p99_ms": float(np.percentile(all_lat, 99) * 1e3),
            "p50_ms": float(np.percentile(all_lat, 50) * 1e3)}


def batching_bench(clients, seconds, repeats, max_batch, max_delay_ms, log):
    """``{config: [report per repeat]}``: unbatched Predictor (kernel threads 1 and all CPUs) and
    BatchingPredictor on cifar_cnn, ``clients`` concurrent single-image callers."""
    import dropcore
    from dropcore import zoo
    from dropcore.batching import BatchingPredictor

    dropcore.set_random_seed(0)
    model = zoo.build("cifar_cnn", SHAPE, 10)
    images = [np.random.default_rng(i).random((1,) + SHAPE, dtype=np.float32) for i in range(clients)]
    configs = {"Predictor, 1 kernel thread per call": dropcore.Predictor(model, threads=1),
               "Predictor, all kernel threads per call": dropcore.Predictor(model),
               f"BatchingPredictor(max_batch={max_batch}, max_delay_ms={max_delay_ms:g}, max_callers={clients})":
                   BatchingPredictor(model, max_batch=max_batch, max_delay_ms=max_delay_ms, max_callers=clients),
               "BatchingPredictor(max_batch=8, max_delay_ms=1, threads=1, runners=2)":
                   BatchingPredictor(model, max_batch=8, max_delay_ms=1, threads=1, runners=2)}
    results = {name: [] for name in configs}
    try:
        for p in configs.values():
            _callers(p.predict, clients, 1.0, images)  # warm-up
        for r in range(repeats):
            for name, p in configs.items():
                report = _callers(p.predict, clients, seconds, images)
                results[name].append(report)
                log(f"  repeat {r + 1}: {name:45s} {report['ips']:8.0f} img/s  p99 {report['p99_ms']:6.2f} ms")
    finally:
        for p in configs.values():
            if hasattr(p, "close"):
                p.close()
    return results


# --- report ----------------------------------------------------------------------------------------------------
def _median(reports, key):
    return statistics.median(r[key] for r in reports)


def markdown(http, batch, meta):
    lines = [f"## Serving (`python -m bench serve`, issue #17)", "",
             f"Measured {meta['date']} on {meta['cpus']} CPUs (`{meta['command']}`), {meta['repeats']} repeats of "
             f"{meta['seconds']:g} s after a warm-up, median shown; load average {meta['load'][0]:.1f} before the "
             f"run (the servers and the clients share these CPUs: ratios compare runs made back to back within each "
             f"repeat).", ""]
    for model, by_server in (http or {}).items():
        lines += [f"### HTTP: {model}, single-image requests, {meta['clients']} keep-alive clients, gunicorn "
                  f"{meta['workers']} workers x {meta['threads']} threads, loopback", "",
                  "| server | payload | req/s | vs bare (median of per-repeat ratios) | per-repeat ratios | p50 ms | "
                  "p99 ms | non-200 |", "|---|---|---:|---:|---|---:|---:|---:|"]
        for server, by_payload in by_server.items():
            for payload, reports in by_payload.items():
                ratios = [r["rps"] / b["rps"] for r, b in zip(reports, by_server["bare"][payload])]
                bad = sum(v for r in reports for k, v in r["statuses"].items() if k != "200")
                lines.append(f"| {server} | {payload} | {_median(reports, 'rps'):.0f} | "
                             f"{statistics.median(ratios):.2f}x | {', '.join(f'{x:.2f}' for x in ratios)} | "
                             f"{_median(reports, 'p50_ms'):.1f} | {_median(reports, 'p99_ms'):.1f} | {bad} |")
        lines += [""]
    if http:
        lines += ["The bare endpoint reads the same body and answers a constant JSON body (no parsing, no "
                  "prediction). Targets: `.npy` >= 0.8x bare, JSON >= 0.6x bare.", ""]
    if batch:
        unbatched = [n for n in batch if n.startswith("Predictor")]
        lines += [f"### In process: cifar_cnn, {meta['clients']} concurrent single-image callers, no HTTP", "",
                  "Ratios: median over the repeats of this configuration's number over the unbatched one's in the "
                  "same repeat (1t: `Predictor(threads=1)`; all: `Predictor()`, all kernel threads per call).", "",
                  "| predictor | img/s | p50 ms | p99 ms | img/s vs 1t | p99 vs 1t | img/s vs all | p99 vs all |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]

        def ratio(name, base, key):
            return statistics.median(a[key] / b[key] for a, b in zip(batch[name], batch[base]))

        for name in batch:
            lines.append(f"| {name} | {_median(batch[name], 'ips'):.0f} | {_median(batch[name], 'p50_ms'):.2f} | "
                         f"{_median(batch[name], 'p99_ms'):.2f} | " + " | ".join(
                             f"{ratio(name, base, 'ips'):.2f}x | {ratio(name, base, 'p99_ms'):.2f}x"
                             for base in unbatched) + " |")
        lines += ["", "Target: batching >= 2x the throughput of unbatched at a p99 latency no worse than 2x. "
                  "Batched answers are bit-identical to unbatched ones (checked by the BatchingPredictor at "
                  "construction and in tests/serving).", ""]
    return "\n".join(lines)


def parser():
    p = argparse.ArgumentParser(prog="python -m bench serve", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="length of each timed run (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default 3)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients / callers (default 16)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers of both servers (default 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker (default 4)")
    p.add_argument("--max-batch", type=int, default=16, help="BatchingPredictor max_batch in process (default 16)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="BatchingPredictor max_delay_ms (default 2)")
    p.add_argument("--only", choices=["http", "batching"], help="run one half only")
    p.add_argument("--http-models", type=lambda t: t.split(","), default=["small", "mnist_cnn", "cifar_cnn"],
                   help="comma-separated models served over HTTP: small, mnist_cnn, cifar_cnn (default all)")
    p.add_argument("--markdown", metavar="PATH", help="write the section as Markdown")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    from dropcore.kernels.cpus import available_cpus

    def log(message):
        print(message, file=sys.stderr, flush=True)

    http, batch = {}, None
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="dropcore-bench-serve-") as workdir:
        if args.only != "batching":
            import dropcore  # noqa: F401  (the models below)

            for name in args.http_models:
                model, shape = build_model(name)
                model_path = os.path.join(workdir, f"{name}.dropcore")
                dropcore.save_model(model, model_path)
                log(f"HTTP, {name}: bare vs dropcore serve")
                http[name] = http_bench(model_path, shape, workdir, args.workers, args.threads, args.clients,
                                        args.seconds, args.repeats, log)
        if args.only != "http":
            log("in process: unbatched vs BatchingPredictor")
            batch = batching_bench(args.clients, args.seconds, args.repeats, args.max_batch, args.max_delay_ms, log)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": available_cpus(),
            "command": "python -m bench serve " + " ".join(sys.argv[1:] if argv is None else argv),
            "repeats": args.repeats, "seconds": args.seconds, "clients": args.clients, "workers": args.workers,
            "threads": args.threads, "load": (load_start, os.getloadavg()[0])}
    text = markdown(http, batch, meta)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
        print(f"Markdown: {os.path.abspath(args.markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
