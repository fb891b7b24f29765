"""The breadth table (issue 24): each breadth model (``bench.breadth``) on dropcore, ONNX Runtime and PyTorch.

Per model: latency at batch 1 (dropcore's ``Predictor``, the inference object as ONNX Runtime's session is one,
against that session on the same ONNX file), inference throughput at batch 64 (against ONNX Runtime) and a training
step at batch 64 (``Model.train_on_batch``: forward + backward + SGD with momentum, against PyTorch training the
module the file was exported from), and the geometric mean of each ratio. A Predictor's weights are read-only, so
its program folds batch norms once; ``Model.predict`` on a model that may train derives them before each call. Each
engine runs in processes of its own with the same thread count (``bench.measure``'s rule), in
``rounds`` rounds alternating their order; each metric keeps its best round's median.
"""
import math
import os

from .measure import _run_worker
from .timing import median_seconds

ENGINES = ("dropcore", "onnxruntime", "torch")
BATCH = 64
METRICS = (("latency1", "latency ms @1"), ("infer64", f"infer img/s @{BATCH}"), ("train64", f"train img/s @{BATCH}"))
#: (metric, peer, column title, ratio as dropcore/peer for latency, peer-relative speed otherwise)
RATIOS = (("latency1", "onnxruntime", "latency, dropcore / ORT"), ("infer64", "onnxruntime",
          f"throughput @{BATCH} vs ORT"), ("train64", "torch", f"training @{BATCH} vs PyTorch"))


def _tasks(name, engine, threads):
    from . import breadth

    x1, _ = breadth.batch(name, 1, seed=1)
    x, y = breadth.batch(name, BATCH, seed=2)
    if engine == "dropcore":
        import dropcore

        predict = dropcore.Predictor(breadth.dropcore_model(name)).predict
        trainer = breadth.dropcore_model(name)
        return {"latency1": lambda: predict(x1), "infer64": lambda: predict(x),
                "train64": lambda: trainer.train_on_batch(x, y)}
    if engine == "onnxruntime":
        peer = breadth.OnnxBreadthPeer(name, threads)
        a1, a = peer.layout(x1), peer.layout(x)
        return {"latency1": lambda: peer.predict(a1), "infer64": lambda: peer.predict(a)}
    from .peers_torch import set_threads

    set_threads(threads)
    infer, trainer = breadth.TorchBreadthPeer(name), breadth.TorchBreadthPeer(name)
    return {"latency1": lambda: infer.predict(x1), "infer64": lambda: infer.predict(x),
            "train64": lambda: trainer.train_step(x, y)}


#: Set in a worker's environment (``--unfolded``): its programs apply only the inference rules older than the
#: folds (ReLU into the kernel, max pooling into the convolution), for a before/after table.
UNFOLDED_ENV = "DROPCORE_BENCH_UNFOLDED"


def measure_engine(name, engine, threads, repeats, warmup, latency_repeats):
    """``{metric: value}`` (latency in ms, else images/s; ``None`` where the engine does not do it), in this
    process; with the dropcore engine also ``uncompiled``: its program's steps without a compiled kernel."""
    if os.environ.get(UNFOLDED_ENV):
        from dropcore import fusion

        fusion.INFERENCE = (fusion.RELU_INTO_KERNEL, fusion.POOL_INTO_CONV)
    out = {k: None for k, _ in METRICS}
    for key, fn in _tasks(name, engine, threads).items():
        if key == "latency1":
            out[key] = 1e3 * median_seconds(fn, latency_repeats, max(warmup, 3))
        else:
            out[key] = BATCH / median_seconds(fn, repeats, warmup)
    if engine == "dropcore":
        from . import breadth

        import dropcore

        program = dropcore.Predictor(breadth.dropcore_model(name))._inference.program()
        out["steps"] = None if program is None else program.steps
        out["uncompiled"] = None if program is None else program.uncompiled
    return out


def measure_model(name, threads, repeats, warmup, latency_repeats, rounds, unfolded=False):
    """``{engine: {metric: value}}``, every engine in ``rounds`` processes of its own (dropcore's without the folds
    with ``unfolded``)."""
    env = {UNFOLDED_ENV: "1"} if unfolded else None
    runs, failed = {e: [] for e in ENGINES}, {}
    for r in range(rounds):
        for engine in (ENGINES if r % 2 == 0 else ENGINES[::-1]):
            try:
                runs[engine].append(_run_worker(["breadth", name, engine, str(threads), str(repeats), str(warmup),
                                                 str(latency_repeats)], threads, env))
            except RuntimeError as exc:  # one engine failing leaves the rest of the table measured
                failed[engine] = str(exc).strip().splitlines()[-1]
    out = {}
    for engine, results in runs.items():
        if not results:
            out[engine] = {**{k: None for k, _ in METRICS}, "error": failed[engine]}
            continue
        out[engine] = {}
        for key, _ in METRICS:
            vals = [res[key] for res in results if res[key] is not None]
            out[engine][key] = ((min if key == "latency1" else max)(vals)) if vals else None
        for key in ("steps", "uncompiled"):
            if key in results[0]:
                out[engine][key] = results[0][key]
    return out


def ratios(results):
    """``{model: {metric: ratio}}``: latency as dropcore's / ORT's (< 1: dropcore faster), throughput and training
    as dropcore's images/s over the peer's (> 1: dropcore faster), and ``"geomean"`` over the models."""
    out = {}
    for name, by_engine in results.items():
        row = {}
        for key, peer, _ in RATIOS:
            a, b = by_engine["dropcore"].get(key), by_engine.get(peer, {}).get(key)
            row[key] = None if not a or not b else a / b
        out[name] = row
    geo = {}
    for key, _, _ in RATIOS:
        vals = [r[key] for r in out.values() if r[key]]
        geo[key] = math.exp(sum(map(math.log, vals)) / len(vals)) if vals else None
    out["geomean"] = geo
    return out


def run(names, threads, repeats, quick=False, log=print, unfolded=False, rounds=None):
    """Measure the breadth models; the JSON-able report (``unfolded``: dropcore without its inference folds;
    ``rounds``: processes per engine and model, default 2, or 1 with ``quick``)."""
    from . import machine
    from .timing import threads as thread_limit

    warmup, default_rounds = (1, 1) if quick else (2, 2)
    rounds = rounds or default_rounds
    report = {"machine": machine.info(threads), "settings": {"models": list(names), "repeats": repeats,
                                                              "rounds": rounds, "threads": threads, "batch": BATCH,
                                                              "unfolded": unfolded},
              "results": {}}
    with thread_limit(threads):
        for name in names:
            log(f"measuring {name} on {', '.join(ENGINES)} (a process each) ...")
            report["results"][name] = measure_model(name, threads, repeats, warmup, max(10, 10 * repeats), rounds,
                                                    unfolded)
    report["ratios"] = ratios(report["results"])
    return report


def _r(v):
    return "—" if v is None else f"{v:.2f}×"


def markdown(report):
    """The issue's table (ratios and their geometric mean), then the measured values, then what ran uncompiled."""
    out = ["| model | " + " | ".join(t for _, _, t in RATIOS) + " |", "| --- |" + " ---: |" * len(RATIOS)]
    for name, row in report["ratios"].items():
        label = "**geomean**" if name == "geomean" else name
        out.append(f"| {label} | " + " | ".join(_r(row[k]) for k, _, _ in RATIOS) + " |")
    out += ["", "| model | engine | " + " | ".join(t for _, t in METRICS) + " |", "| --- | --- |"
            + " ---: |" * len(METRICS)]
    for name, by_engine in report["results"].items():
        for engine, vals in by_engine.items():
            cells = ["—" if vals.get(k) is None else (f"{vals[k]:.3f}" if k == "latency1" else f"{vals[k]:,.0f}")
                     for k, _ in METRICS]
            out.append(f"| {name} | {engine} | " + " | ".join(cells) + " |")
    out.append("")
    for name, by_engine in report["results"].items():
        for engine, vals in by_engine.items():
            if vals.get("error"):
                out.append(f"- {name}, {engine}: failed ({vals['error']})")
        un = by_engine["dropcore"].get("uncompiled")
        if by_engine["dropcore"].get("error"):
            continue
        if un is None:
            out.append(f"- {name}: no compiled program (the Cython kernels are not built)")
        else:
            out.append(f"- {name}: program steps without a compiled kernel: {', '.join(un) or 'none'}")
    return "\n".join(out)
