"""One measurement in a process of its own; prints its results as one JSON line (run by ``bench.runner``).

``python -m bench.worker model MODEL ENGINE THREADS REPEATS WARMUP LATENCY_REPEATS``: one engine on one model.
``python -m bench.worker breadth MODEL ENGINE THREADS REPEATS WARMUP LATENCY_REPEATS``: likewise, a breadth model.
``python -m bench.worker kernels IMPLS MODELS BATCH REPEATS THREADS``: kernel calls of the comma-separated kernel
sets ``IMPLS`` at the shapes of the comma-separated ``MODELS``.
``python -m bench.worker steps MODEL BATCH REPEATS THREADS``: each kernel call of the model's inference program.
"""
import json
import sys

from .measure import kernel_times, measure_engine
from .timing import threads as thread_limit


def main(argv):
    if argv[0] == "model":
        name, engine = argv[1], argv[2]
        threads, repeats, warmup, latency_repeats = (int(a) for a in argv[3:7])
        with thread_limit(threads):
            result = measure_engine(name, engine, threads, repeats, warmup, latency_repeats)
    elif argv[0] == "breadth":  # a breadth model (bench/breadth.py) on one engine
        from .breadth_bench import measure_engine as measure_breadth

        name, engine = argv[1], argv[2]
        threads, repeats, warmup, latency_repeats = (int(a) for a in argv[3:7])
        with thread_limit(threads):
            result = measure_breadth(name, engine, threads, repeats, warmup, latency_repeats)
    elif argv[0] == "kernels":
        impls, names = argv[1].split(","), argv[2].split(",")
        batch, repeats, threads = (int(a) for a in argv[3:6])
        with thread_limit(threads):
            result = kernel_times(names, batch, repeats, impls)
    elif argv[0] == "steps":
        from .scaling import program_steps

        batch, repeats, threads = (int(a) for a in argv[2:5])
        with thread_limit(threads):
            result = program_steps(argv[1], batch, repeats)
    else:
        raise SystemExit(f"unknown worker mode {argv[0]!r}: expected 'model', 'breadth', 'kernels' or 'steps'")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
