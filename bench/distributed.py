"""Data-parallel training throughput: ``mnist_cnn`` on synthetic data at 1 and 2 MPI ranks, one thread each, and
what the gradient Allreduce costs a step.

``python -m bench.distributed [--ranks 1,2] [--batch 128] [--steps 40] [--json FILE]`` launches, for each rank
count R, ``mpiexec -n R python -m bench.distributed --child ...`` (the mpich wheel's launcher beside this Python)
twice: with the global batch fixed at ``--batch`` (strong scaling: each rank trains ``batch / R`` samples a step)
and with ``--batch`` samples per rank (weak scaling: the global batch grows with R). Each child:

1. trains a few steps to warm up (the Numba kernels load from their cache), then times ``--steps`` steps of
   ``fit`` (Adam, dropout on) and reports samples a second over the global batches;
2. times the Allreduce alone, on a buffer the size of the packed gradients (``count_params + 2`` floats), after a
   barrier: the communication part of a step; and, in the timed steps, the median time rank 0 spends in the
   step's Allreduce (copying into the buffer and waiting for the slower rank included);
3. at R = 1 also times one step's compute alone (``train_on_batch``) at the per-rank batch and at batches 64, 16
   and 2 (what 2, 8 and 64 ranks train on a global batch of 128), for the cost model in
   ``bench/RESULTS.md`` ("Data-parallel training").

Needs the ``mpi`` extra. The numbers are noisy on a shared machine: run it on an idle one.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _child(args):
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import numpy as np

    import dropcore
    from dropcore import zoo
    from dropcore.distributed import MPIComm

    comm = MPIComm()
    dropcore.set_num_threads(1)
    global_batch = args.batch * comm.size if args.weak else args.batch
    rng = np.random.default_rng(0)
    n = global_batch * args.steps
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, n)
    dropcore.set_random_seed(1)
    model = zoo.build("mnist_cnn", (28, 28, 1), 10)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    comm_arg = comm if comm.size > 1 else None
    model.fit(x[:global_batch * 3], y[:global_batch * 3], batch_size=global_batch, epochs=1, seed=2, verbose=0,
              comm=comm_arg)  # warm-up: kernels loaded, buffers sized
    from dropcore.distributed.training import DataParallel

    in_step = []  # time in the step's Allreduce, waiting for the slowest rank included
    plain = DataParallel.allreduce

    def timed(self, *a):
        t = time.perf_counter()
        try:
            return plain(self, *a)
        finally:
            in_step.append(time.perf_counter() - t)

    DataParallel.allreduce = timed
    comm.barrier()
    t0 = time.perf_counter()
    model.fit(x, y, batch_size=global_batch, epochs=1, seed=3, verbose=0, comm=comm_arg)
    comm.barrier()
    seconds = time.perf_counter() - t0
    DataParallel.allreduce = plain

    params = sum(w.size for w in model.trainable_weights)
    buf = np.ones(params + 2, dtype=np.float32)
    times = []
    for _ in range(args.allreduce_repeats):
        comm.barrier()
        t = time.perf_counter()
        comm.allreduce_sum(buf)
        times.append(time.perf_counter() - t)
    allreduce = float(np.median(times))

    compute, by_batch = None, {}
    if comm.size == 1:  # one step's compute alone, at the per-rank batch and at the smaller ones of more ranks
        for b in sorted({args.batch, 64, 16, 2}):
            xb, yb = x[:b], y[:b]
            model.train_on_batch(xb, yb)
            steps = []
            for _ in range(10):
                t = time.perf_counter()
                model.train_on_batch(xb, yb)
                steps.append(time.perf_counter() - t)
            by_batch[b] = 1e3 * float(np.median(steps))
        compute = by_batch[args.batch] / 1e3
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "weak": args.weak, "global_batch": global_batch,
                          "per_rank_batch": global_batch // comm.size, "steps": args.steps,
                          "seconds": seconds, "samples_per_s": n / seconds, "step_ms": 1e3 * seconds / args.steps,
                          "allreduce_ms": 1e3 * allreduce, "gradient_bytes": 4 * (params + 2),
                          "allreduce_in_step_ms": 1e3 * float(np.median(in_step)) if in_step else 0.0,
                          "compute_step_ms": None if compute is None else 1e3 * compute,
                          "compute_ms_by_batch": by_batch}), flush=True)


def run(ranks, batch, steps, weak, repeats=20):
    """One child run on ``ranks`` ranks: its JSON result."""
    cmd = [str(MPIEXEC), "-n", str(ranks), "-genv", "NUMBA_NUM_THREADS", "1", "-genv", "OMP_NUM_THREADS", "1",
           sys.executable, "-m", "bench.distributed", "--child", "--batch", str(batch), "--steps", str(steps),
           "--allreduce-repeats", str(repeats)] + (["--weak"] if weak else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                          timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.distributed", description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", default="1,2", help="comma-separated rank counts (default 1,2)")
    p.add_argument("--batch", type=int, default=128, help="global batch (strong) / per-rank batch (weak)")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--weak", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--allreduce-repeats", type=int, default=20, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)
    if not MPIEXEC.exists():
        sys.exit(f"{MPIEXEC} not found: pip install 'dropcore[mpi]' (the mpich wheel brings mpiexec)")
    rows = []
    print(f"{'scaling':<7} {'ranks':>5} {'global':>6} {'per rank':>8} {'samples/s':>10} {'step ms':>8} "
          f"{'allreduce ms':>12} {'in step ms':>10} {'grad MB':>7} {'compute ms (1 rank)':>19}")
    for weak in (False, True):
        for ranks in [int(r) for r in args.ranks.split(",")]:
            r = run(ranks, args.batch, args.steps, weak)
            rows.append(r)
            compute = "" if r["compute_step_ms"] is None else f"{r['compute_step_ms']:.1f}"
            print(f"{'weak' if weak else 'strong':<7} {r['ranks']:>5} {r['global_batch']:>6} "
                  f"{r['per_rank_batch']:>8} {r['samples_per_s']:>10.0f} {r['step_ms']:>8.1f} "
                  f"{r['allreduce_ms']:>12.3f} {r['allreduce_in_step_ms']:>10.2f} {r['gradient_bytes'] / 1e6:>7.2f} "
                  f"{compute:>19}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
