"""``python -m bench serve``: ``dropcore serve`` against the Flask + ONNX Runtime endpoint a user would write, where a
request's CPU goes, dynamic batching against its bound, and slow clients.

HTTP: single-image requests (``.npy`` and JSON) from ``--clients`` keep-alive clients in their own process, to
``dropcore serve`` and to the endpoints of ``bench.serve_peer`` (Flask + ONNX Runtime on the model exported with
``dropcore.onnx.export``; a bare endpoint answering a constant), all under gunicorn with the same workers and
threads. The servers run side by side and take turns within each repeat, so their ratio sees the same load; each
number is the median over the repeats, each ratio the median of the per-repeat ratios. Beside req/s: each server's
CPU microseconds per request (``bench.serve_load``), and the in-process breakdown of one request
(``bench.serve_cost``).

In process: ``--clients`` threads predicting single images through one ``Predictor`` and one
``BatchingPredictor``; the gain over the bound of what a batch saves per image, measured in the same run.

Slow clients: ``bench.slow_clients`` (32 connections sending a header line a second) against each server mode.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from . import serve_load
from .serve_load import build_model
from .serve_cost import bodies, breakdown

MODES = ("gthread", "asgi", "batching")  # dropcore serve as measured: --server gthread, --server asgi, --batching


def _commands(model_path, onnx_path, args, modes):
    from dropcore.serving.server import thread_plan

    shape = ["--workers", str(args.workers), "--threads", str(args.threads)]
    intra = thread_plan(args.workers, args.threads, False)[1]  # the kernel threads dropcore gives one prediction
    peer = "from bench.serve_peer import run; run({kind!r}, {port}, %d, %d, %r, %d)" % (
        args.workers, args.threads, onnx_path, intra)
    commands = {"flask-ort": lambda p: [sys.executable, "-c", peer.format(kind="flask-ort", port=p)],
                "bare": lambda p: [sys.executable, "-c", peer.format(kind="bare", port=p)]}
    for mode in modes:
        extra = {"gthread": ["--server", "gthread"], "asgi": ["--server", "asgi"], "batching": ["--batching"]}[mode]
        commands[f"dropcore {mode}"] = (lambda e: lambda p: [
            sys.executable, "-m", "dropcore", "serve", model_path, "--port", str(p), "--log-level", "warning", *shape,
            *e])(extra)
    return commands


def http_bench(model_path, onnx_path, shape, workdir, args, modes, log):
    """``{server: {payload: [report per repeat]}}`` for every server, single-image ``.npy`` and JSON requests."""
    x = np.random.default_rng(0).random((1,) + shape, dtype=np.float32)
    paths = {}
    for payload, (body, content_type) in bodies(x).items():
        paths[payload] = os.path.join(workdir, f"{payload}.http")
        with open(paths[payload], "wb") as f:
            f.write(serve_load.request_bytes(body, content_type, content_type))
    commands = _commands(model_path, onnx_path, args, modes)
    results = {s: {p: [] for p in paths} for s in commands}
    running = {}
    try:
        for name, command in commands.items():
            port = serve_load.free_port()
            running[name] = serve_load.start(command(port), port)
        for server in running.values():  # warm-up: every worker thread, both payloads
            for payload in paths:
                serve_load.load(server, paths[payload], args.clients, 1.0)
        for r in range(args.repeats):
            for payload in paths:  # the servers back to back per payload: their ratio sees the same load
                for name, server in running.items():
                    report = serve_load.load(server, paths[payload], args.clients, args.seconds)
                    results[name][payload].append(report)
                    log(f"  repeat {r + 1}: {name:22s} {payload:5s} {report['rps']:7.0f} req/s  p99 "
                        f"{report['p99_ms']:6.1f} ms  {report['cpu_us']:6.0f} us CPU/req  {report['statuses']}")
    finally:
        for server in running.values():
            serve_load.stop(server)
    return results


# --- in process: dynamic batching against its bound ------------------------------------------------------------
def _callers(predict, clients, seconds, images):
    """``clients`` threads calling ``predict`` on single images for ``seconds``: images/s, the process's CPU
    microseconds per image, p99 ms."""
    import threading

    stop_at = time.monotonic() + seconds
    lat = [[] for _ in range(clients)]

    def run(i):
        x = images[i % len(images)]
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            predict(x)
            lat[i].append(time.perf_counter() - t0)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    t0, cpu0 = time.perf_counter(), time.process_time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    all_lat = np.concatenate([np.asarray(a) for a in lat])
    return {"ips": len(all_lat) / elapsed, "cpu_us": cpu / len(all_lat) * 1e6,
            "p99_ms": float(np.percentile(all_lat, 99) * 1e3)}


def batching_bench(model_name, args, log):
    """In process, ``args.clients`` single-image callers, as in one ``dropcore serve`` worker on 2 cores (one kernel
    thread per prediction): ``Predictor(threads=1)`` unbatched against ``BatchingPredictor(threads=1)``. The gain is
    in CPU per image served (wall throughput depends on what else the machine runs); the bound is the CPU per image
    of predicting one alone over that inside a batch of the mean size batching reached, timed on the same Predictor
    in the same repeat. A list of per-repeat dicts."""
    import dropcore
    from dropcore.batching import BatchingPredictor

    from .serve_cost import per_call_us

    model, shape = build_model(model_name)
    images = [np.random.default_rng(i).random((1,) + shape, dtype=np.float32) for i in range(args.clients)]
    plain = dropcore.Predictor(model, threads=1)
    batcher = BatchingPredictor(model, max_batch=args.max_batch, max_delay_ms=args.max_delay_ms, threads=1,
                                max_callers=args.clients)
    rows = []
    try:
        _callers(plain.predict, args.clients, 1.0, images)
        _callers(batcher.predict, args.clients, 1.0, images)
        for r in range(args.repeats):
            unbatched = _callers(plain.predict, args.clients, args.seconds, images)
            b0, n0 = batcher.batches, batcher.batched_rows
            batched = _callers(batcher.predict, args.clients, args.seconds, images)
            size = max(1, round((batcher.batched_rows - n0) / max(1, batcher.batches - b0)))
            big = np.concatenate([images[i % len(images)] for i in range(size)])
            one_us = per_call_us(lambda: plain.predict(images[0]), 0.2, 3)
            batch_us = per_call_us(lambda: plain.predict(big), 0.2, 3) / size
            row = {"unbatched_ips": unbatched["ips"], "batched_ips": batched["ips"], "batch": size,
                   "unbatched_cpu": unbatched["cpu_us"], "batched_cpu": batched["cpu_us"],
                   "one_us": one_us, "batch_us": batch_us, "gain": unbatched["cpu_us"] / batched["cpu_us"],
                   "bound": one_us / batch_us, "unbatched_p99": unbatched["p99_ms"], "batched_p99": batched["p99_ms"]}
            row["fraction"] = row["gain"] / row["bound"]
            rows.append(row)
            log(f"  repeat {r + 1}: unbatched {unbatched['ips']:6.0f} img/s {unbatched['cpu_us']:5.0f} us CPU/img, "
                f"batched {batched['ips']:6.0f} img/s {batched['cpu_us']:5.0f} us CPU/img (mean batch {size}); "
                f"gain {row['gain']:.2f}x, bound {row['bound']:.2f}x ({one_us:.0f} us alone, {batch_us:.0f} us/image "
                f"in a batch of {size}): {row['fraction']:.2f}")
    finally:
        batcher.close()
    return rows


# --- report ----------------------------------------------------------------------------------------------------
def _median(values):
    return statistics.median(values)


def peer_markdown(http, costs, meta):
    lines = ["### HTTP: `dropcore serve` against Flask + ONNX Runtime", "",
             f"Single-image requests, {meta['clients']} keep-alive clients, every server under gunicorn "
             f"{meta['workers']} workers x {meta['threads']} threads on loopback; req/s median of {meta['repeats']} "
             f"repeats of {meta['seconds']:g} s, ratio the median of per-repeat ratios. CPU us/req: the server's "
             f"processes' CPU time per request answered.", "",
             "| model | payload | server | req/s | vs Flask + ORT | per-repeat | vs bare | CPU us/req | p99 ms | "
             "non-200 |", "|---|---|---|---:|---:|---|---:|---:|---:|---:|"]
    for model, by_server in http.items():
        for payload in ("npy", "json"):
            for server, by_payload in by_server.items():
                reports = by_payload[payload]
                ratios = [r["rps"] / p["rps"] for r, p in zip(reports, by_server["flask-ort"][payload])]
                bare = _median([r["rps"] / b["rps"] for r, b in zip(reports, by_server["bare"][payload])])
                bad = sum(v for r in reports for k, v in r["statuses"].items() if k != "200")
                lines.append(f"| {model} | {payload} | {server} | {_median(r['rps'] for r in reports):.0f} | "
                             f"**{_median(ratios):.2f}x** | {', '.join(f'{x:.2f}' for x in ratios)} | {bare:.2f}x | "
                             f"{_median(r['cpu_us'] for r in reports):.0f} | "
                             f"{_median(r['p99_ms'] for r in reports):.1f} | {bad} |")
    lines += ["", "Target: `dropcore serve` >= 1.2x Flask + ORT for `.npy` and JSON.", ""]
    if costs:
        lines += ["### Where a request's CPU goes (us per single-image request)", "",
                  "In process, one thread, median of repeats: parse (body to array), predict (one image), encode "
                  "(answer to bytes), app (the whole WSGI call; `app - parse - predict - encode` is the framework's "
                  "and the endpoint's own code). Server: the CPU per request measured under HTTP load above less the "
                  "app call (gunicorn's reading, parsing and writing, and thread handoffs).", "",
                  "| model | payload | endpoint | parse | predict | encode | app rest | app | server | total (HTTP) |",
                  "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for model, by_payload in costs.items():
            for payload, by_endpoint in by_payload.items():
                for endpoint, stages in by_endpoint.items():
                    server = f"dropcore {meta['modes'][0]}" if endpoint == "dropcore" else endpoint
                    cpu = _median(r["cpu_us"] for r in http[model][server][payload]) if server in http[model] else None
                    parts = [stages.get(k) for k in ("parse", "predict", "encode")]
                    rest = stages["app"] - sum(parts) if None not in parts else None
                    cells = [f"{v:.0f}" if v is not None else "" for v in (*parts, rest, stages["app"])]
                    server = f"{cpu - stages['app']:.0f}" if cpu is not None else ""
                    total = f"{cpu:.0f}" if cpu is not None else ""
                    lines.append(f"| {model} | {payload} | {endpoint} | {' | '.join(cells)} | {server} | {total} |")
        lines += [""]
    return lines


def batching_markdown(batch, meta):
    lines = [f"### Dynamic batching against its bound ({meta['batch_model']}, in process)", "",
             f"{meta['clients']} threads each predicting single images, as in one `dropcore serve` worker on 2 cores "
             f"(one kernel thread per prediction): `Predictor(threads=1)` unbatched against `BatchingPredictor("
             f"max_batch={meta['max_batch']}, max_delay_ms={meta['max_delay_ms']:g}, threads=1)`. Gain: CPU us per "
             f"image served, unbatched over batched (the process's CPU time; wall img/s shown too, but it depends on "
             f"what else runs). Bound: what a batch saves per image, the CPU us of predicting one image alone over "
             f"the per-image CPU us in a batch of the mean size batching reached, same Predictor, same repeat.", "",
             "| repeat | img/s unbatched | img/s batched | CPU us/img unbatched | CPU us/img batched | mean batch | "
             "gain | us alone | us/img in the batch | bound | gain / bound | p99 ms unbatched | p99 ms batched |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for i, r in enumerate(batch, 1):
        lines.append(f"| {i} | {r['unbatched_ips']:.0f} | {r['batched_ips']:.0f} | {r['unbatched_cpu']:.0f} | "
                     f"{r['batched_cpu']:.0f} | {r['batch']} | {r['gain']:.2f}x | {r['one_us']:.0f} | "
                     f"{r['batch_us']:.0f} | {r['bound']:.2f}x | {r['fraction']:.2f} | {r['unbatched_p99']:.1f} | "
                     f"{r['batched_p99']:.1f} |")
    lines += ["", f"Median gain / bound: **{_median(r['fraction'] for r in batch):.2f}** (target >= 0.9).", ""]
    return lines


def markdown(http, costs, batch, slow, meta):
    lines = ["## Serving (`python -m bench serve`, issues #25, #26)", "",
             f"Measured {meta['date']} on {meta['cpus']} CPUs (`{meta['command']}`) in {meta['elapsed']:.0f} s; "
             f"load average {meta['load'][0]:.1f} before the run, {meta['load'][1]:.1f} after (servers and clients "
             f"share these CPUs).", ""]
    if http:
        lines += peer_markdown(http, costs, meta)
    if batch:
        lines += batching_markdown(batch, meta)
    if slow:
        from .slow_clients import markdown as slow_markdown

        lines += slow_markdown(slow)
    return "\n".join(lines)


def _modes(text):
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(MODES)}, received {text!r}")
    return modes


def parser():
    p = argparse.ArgumentParser(prog="python -m bench serve", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=3.0, help="length of each timed run (default 3)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per configuration (default 3)")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients / callers (default 16)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers of every server (default 2)")
    p.add_argument("--threads", type=int, default=4, help="threads per worker of every server (default 4)")
    p.add_argument("--models", type=lambda t: t.split(","), default=["mnist_cnn", "cifar_cnn"],
                   help="comma-separated models served over HTTP: small, mnist_cnn, cifar_cnn (default "
                        "mnist_cnn,cifar_cnn)")
    p.add_argument("--server-modes", type=_modes, default=["asgi", "gthread"],
                   help="comma-separated dropcore serve modes to measure: gthread, asgi, batching (default "
                        "asgi,gthread; the first is the breakdown's)")
    p.add_argument("--batch-model", default="cifar_cnn", help="model of the in-process batching run (default "
                   "cifar_cnn)")
    p.add_argument("--max-batch", type=int, default=16, help="BatchingPredictor max_batch in process (default 16)")
    p.add_argument("--max-delay-ms", type=float, default=2.0, help="BatchingPredictor max_delay_ms (default 2)")
    p.add_argument("--only", choices=["http", "batching", "slow"], help="run one part only")
    p.add_argument("--markdown", metavar="PATH", help="write the section as Markdown")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    from dropcore.kernels.cpus import available_cpus

    def log(message):
        print(message, file=sys.stderr, flush=True)

    started, load_start = time.perf_counter(), os.getloadavg()[0]
    http, costs, batch, slow = {}, {}, None, None
    with tempfile.TemporaryDirectory(prefix="dropcore-bench-serve-") as workdir:
        if args.only in (None, "http"):
            import dropcore
            from dropcore.onnx import export

            for name in args.models:
                model, shape = build_model(name)
                model_path, onnx_path = (os.path.join(workdir, f"{name}.{ext}") for ext in ("dropcore", "onnx"))
                dropcore.save_model(model, model_path)
                export(model, onnx_path)
                log(f"HTTP, {name}: dropcore serve ({', '.join(args.server_modes)}), Flask + ORT, bare")
                http[name] = http_bench(model_path, onnx_path, shape, workdir, args, args.server_modes, log)
                log(f"in process, {name}: the request-cost breakdown")
                x = np.random.default_rng(0).random((1,) + shape, dtype=np.float32)
                costs[name] = breakdown(model_path, onnx_path, x)
        if args.only in (None, "batching"):
            log(f"in process, {args.batch_model}: unbatched vs BatchingPredictor, and the bound")
            batch = batching_bench(args.batch_model, args, log)
        if args.only in (None, "slow"):
            from .slow_clients import bench_modes

            log("slow clients: 32 connections sending a header line a second")
            slow = bench_modes(workdir, log)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": available_cpus(),
            "command": "python -m bench serve " + " ".join(argv), "repeats": args.repeats, "seconds": args.seconds,
            "clients": args.clients, "workers": args.workers, "threads": args.threads,
            "load": (load_start, os.getloadavg()[0]), "elapsed": time.perf_counter() - started,
            "batch_model": args.batch_model, "modes": args.server_modes, "max_batch": args.max_batch,
            "max_delay_ms": args.max_delay_ms}
    text = markdown(http, costs, batch, slow, meta)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
        print(f"Markdown: {os.path.abspath(args.markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
