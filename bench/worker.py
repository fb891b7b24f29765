"""One engine on one reference model, in a process of its own; prints its results as one JSON line.

``python -m bench.worker MODEL ENGINE THREADS REPEATS WARMUP LATENCY_REPEATS`` (run by ``runner.measure_model``).
"""
import json
import sys

from .runner import measure_engine
from .timing import threads as thread_limit


def main(argv):
    name, engine = argv[0], argv[1]
    threads, repeats, warmup, latency_repeats = (int(a) for a in argv[2:6])
    with thread_limit(threads):
        result = measure_engine(name, engine, threads, repeats, warmup, latency_repeats)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
