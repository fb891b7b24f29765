"""Measuring one engine on one model, each engine in processes of its own (``bench.worker``): what the runner's
main table and the scaling sweep (``bench.scaling``) both take. See ``bench.runner`` for what each number means.
"""
import json
import os
import subprocess
import sys

from . import models, peers_onnx, peers_torch
from .timing import median_seconds

TRAIN_BATCHES = (32, 128)
INFER_BATCH = 256
ENGINES = ("dropcore", "dropcore-cython", "reference", "torch", "onnxruntime")
#: The engines that are dropcore (the others are its peers): the Model (trains on the Numba kernels), the Predictor.
OWN = ("dropcore", "dropcore-cython")
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METRICS = (("train32", "train img/s @32"), ("train128", "train img/s @128"), ("infer256", "infer img/s @256"),
           ("latency1", "latency ms @1"))


def _engines_available():
    import dropcore

    out = {"dropcore": True, "reference": True, "dropcore-cython": dropcore.info()["cython_kernels"]}
    out["torch"] = peers_torch.version() is not None
    out["onnxruntime"] = peers_onnx.version() is not None
    return out


def _tasks(engine, name, threads, xs):
    """``{metric: (fn, images per call or None for latency)}`` for one engine on one model."""
    tasks = {}
    if engine in ("dropcore", "reference"):
        ops = None if engine == "dropcore" else "reference"  # dropcore: its default kernels, as users get them
        for n in TRAIN_BATCHES:
            model, (x, y) = models.build(name, ops=ops), xs[n]
            tasks[f"train{n}"] = (lambda m=model, x=x, y=y: m.train_on_batch(x, y), n)
        predict = models.build(name, ops=ops).predict
    elif engine == "torch":
        peers_torch.set_threads(threads)
        for n in TRAIN_BATCHES:
            peer, (x, y) = peers_torch.TorchPeer(models.build(name), models.LEARNING_RATE, models.MOMENTUM), xs[n]
            tasks[f"train{n}"] = (lambda p=peer, x=x, y=y: p.train_step(x, y), n)
        predict = peers_torch.TorchPeer(models.build(name), models.LEARNING_RATE, models.MOMENTUM).predict
    elif engine == "dropcore-cython":  # inference only: the Predictor on the ahead-of-time kernels
        import dropcore

        predict = dropcore.Predictor(models.build(name)).predict
    else:
        predict = peers_onnx.OnnxPeer(models.build(name), threads).predict  # inference only: no training rows
    x256, x1 = xs[INFER_BATCH][0], xs[1][0]
    tasks["infer256"] = (lambda: predict(x256), INFER_BATCH)
    tasks["latency1"] = (lambda: predict(x1), None)
    return tasks


def measure_engine(name, engine, threads, repeats, warmup, latency_repeats):
    """``{metric: value}`` (images/s; latency in ms; None where it does not apply) for one engine, in this process."""
    xs = {n: models.batch(name, n) for n in TRAIN_BATCHES + (INFER_BATCH, 1)}
    out = {k: None for k, _ in METRICS}
    for key, (fn, n) in _tasks(engine, name, threads, xs).items():
        reps, warm = (latency_repeats, max(warmup, 3)) if key == "latency1" else (repeats, warmup)
        med = median_seconds(fn, reps, warm)
        out[key] = 1e3 * med if n is None else n / med
    return out


#: Processes per engine and model: the engines run in turn, in reverse order on every other round.
ROUNDS = 2


def measure_model(name, engines, threads, repeats, warmup, latency_repeats, rounds=ROUNDS, env=None):
    """``{engine: {metric: value}}`` for one model, each engine measured in new processes of its own.

    Never two engines in one process: their thread pools (OpenMP teams, ONNX Runtime's spinning workers, OpenBLAS)
    keep spinning after a call and steal the cores from whichever engine runs next. Measured on this 2-core machine:
    interleaved in one process, dropcore's inference ran at half its speed and PyTorch's training at 0.7x.
    Every child gets the same thread count (``OMP_NUM_THREADS`` and each engine's own setting). Each engine runs
    in ``rounds`` processes, the rounds alternating the engines' order; every metric keeps its best round's median
    (a burst of load from elsewhere slows one round, not the engine). ``env``: more variables for the children
    (an instruction set forced, see ``bench.scaling``).
    """
    runs = {e: [] for e in engines}
    for r in range(rounds):
        for engine in (engines if r % 2 == 0 else engines[::-1]):
            runs[engine].append(_run_worker(["model", name, engine, str(threads), str(repeats), str(warmup),
                                             str(latency_repeats)], threads, env))
    out = {}
    for engine, results in runs.items():
        out[engine] = {}
        for key, _ in METRICS:
            vals = [res[key] for res in results if res[key] is not None]
            best = (min if key == "latency1" else max)(vals) if vals else None
            out[engine][key] = best
    return out


def kernel_times(names, n, repeats, impls):
    """``{case id: {impl: ms}}``: each kernel call of the models' training steps, for the kernel sets ``impls``."""
    from dropcore.kernels.threads import blas_single_thread

    from . import cases

    sets = cases.kernel_sets()
    out = {}
    for case in cases.all_cases(names, n):
        row = out.setdefault(case.id, {})
        for impl in impls:
            if impl not in sets or not case.supported_by(sets[impl]):
                continue
            fn = case.bind(sets[impl])
            if impl == "reference":  # NumPy with its own BLAS threads
                t = median_seconds(fn, repeats, 1)
            else:  # Numba and Cython call BLAS from every thread of their own pool
                with blas_single_thread():
                    t = median_seconds(fn, repeats, 1)
            row[impl] = 1e3 * t
    return out


def _run_worker(argv, threads, env=None):
    """Run ``python -m bench.worker *argv`` with ``threads`` OpenMP threads (and the variables ``env``); its JSON
    result."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", "bench.worker", *argv], capture_output=True, text=True, env=env,
                          cwd=_ROOT, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {' '.join(argv)} failed:\n{proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
