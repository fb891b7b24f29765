"""Scaling: the engines at several thread counts (more than the cores included) and instruction sets, and each
inference step's parallel efficiency.

``python -m bench --threads 1,2,4,8 --isa avx2,avx512`` measures every model on every engine but the NumPy
reference once per (instruction set, thread count), each engine in processes of its own as the main table does.
An instruction set is forced on every engine that lets one force it: dropcore's compiled kernels
(``DROPCORE_ISA``), Numba (``NUMBA_CPU_NAME``) and PyTorch (``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA``);
ONNX Runtime picks its kernels at run time and has no such switch, so its rows use the CPU's best.

Parallel efficiency of an inference step at T threads: its time at 1 thread over T times its time at T threads
(1.0: perfect scaling). Measured on the Predictor's program, kernel by kernel, at batch 256 and at batch 1.
"""
import statistics
import time

from .measure import ENGINES, INFER_BATCH, _run_worker, measure_model

#: Environment variables that hold each engine to an instruction set.
ISA_ENV = {
    "avx512": {"DROPCORE_ISA": "avx512", "ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"},
    "avx2": {"DROPCORE_ISA": "avx2", "NUMBA_CPU_NAME": "haswell", "ATEN_CPU_CAPABILITY": "avx2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "generic": {"DROPCORE_ISA": "generic", "NUMBA_CPU_NAME": "x86-64", "ATEN_CPU_CAPABILITY": "default",
                "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
#: The engines a sweep measures (the NumPy reference's scaling is NumPy's, not dropcore's).
SWEEP_ENGINES = tuple(e for e in ENGINES if e != "reference")


def _env(isa, threads):
    """The children's variables: the instruction set, and Numba's pool large enough for ``threads``."""
    env = dict(ISA_ENV[isa]) if isa else {}
    env["NUMBA_NUM_THREADS"] = str(threads)
    return env


def sweep(names, thread_counts, isas, engines, repeats, warmup, latency_repeats, rounds, log):
    """``[{isa, threads, model, engine, infer256, latency1, train128, ...}]`` for every combination."""
    rows = []
    engines = [e for e in SWEEP_ENGINES if e in engines]
    for isa in isas:
        for threads in thread_counts:
            for name in names:
                log(f"scaling: {name} at {threads} threads{', ' + isa if isa else ''} ...")
                res = measure_model(name, engines, threads, repeats, warmup, latency_repeats, rounds,
                                    _env(isa, threads))
                rows += [dict(vals, isa=isa or "best", threads=threads, model=name, engine=engine)
                         for engine, vals in res.items()]
    return rows


def program_steps(name, batch, repeats):
    """``[(step, median seconds)]``: each kernel call of the model's inference program (the Predictor's), timed
    alone on its real input, in this process."""
    import dropcore

    from . import models

    program = dropcore.Predictor(models.build(name))._inference.program()
    x = models.batch(name, batch)[0]
    out = []
    for call in program.step_calls(x):
        if call.run is None:
            continue
        times = []
        for _ in range(repeats + 2):  # two warm-up calls
            t = time.perf_counter()
            call()
            times.append(time.perf_counter() - t)
        out.append((f"{len(out) + 1}. {call.name}", statistics.median(times[2:])))
    return out


def efficiency(names, thread_counts, repeats, log):
    """``{model: {batch: {threads: [(step, seconds)]}}}`` of the inference program's steps, each thread count in a
    process of its own."""
    out = {}
    for name in names:
        for batch in (INFER_BATCH, 1):
            for threads in sorted(set(thread_counts) | {1}):
                log(f"efficiency: {name} @{batch} at {threads} threads ...")
                steps = _run_worker(["steps", name, str(batch), str(repeats), str(threads)], threads,
                                    {"NUMBA_NUM_THREADS": str(threads)})
                out.setdefault(name, {}).setdefault(str(batch), {})[str(threads)] = steps
    return out


def efficiency_text(eff):
    """One Markdown table per model and batch: each step's time at 1 thread and its efficiency at each count."""
    parts = []
    for name, by_batch in eff.items():
        for batch, by_threads in by_batch.items():
            counts = sorted(int(t) for t in by_threads)
            one = dict(by_threads["1"])
            head = "| step | ms at 1 thread | " + " | ".join(f"efficiency at {t}" for t in counts if t > 1) + " |"
            parts += [f"**{name} @{batch}**", "", head, "| --- | ---: |" + " ---: |" * (len(counts) - 1)]
            for step, t1 in by_threads["1"]:
                cells = []
                for t in counts:
                    if t == 1:
                        continue
                    tt = dict(by_threads[str(t)]).get(step)
                    cells.append("—" if not tt else f"{t1 / (t * tt):.2f}")
                parts.append(f"| {step} | {one[step] * 1e3:.3f} | " + " | ".join(cells) + " |")
            parts.append("")
    return "\n".join(parts)


def sweep_text(rows):
    """The sweep as a Markdown table, with each dropcore row's ratio to its own 2-thread figure."""
    head = ("| isa | threads | model | engine | infer img/s @256 | latency ms @1 | train img/s @128 |\n"
            "| --- | ---: | --- | --- | ---: | ---: | ---: |")
    lines = [head]
    for r in rows:
        def num(key, fmt):
            return "—" if r.get(key) is None else fmt.format(r[key])
        lines.append(f"| {r['isa']} | {r['threads']} | {r['model']} | {r['engine']} | "
                     f"{num('infer256', '{:,.0f}')} | {num('latency1', '{:.3f}')} | {num('train128', '{:,.0f}')} |")
    return "\n".join(lines)
