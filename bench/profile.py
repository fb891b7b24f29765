"""Per-layer profile of a training step: forward and backward time of each plan step, plus loss and optimizer.

Each layer's ``forward`` is wrapped (an instance attribute shadowing the method, removed afterwards) so that it
times itself and returns a backprop closure that times itself too; the loss and the optimizer update are wrapped
the same way. ``model.train_on_batch`` then runs unchanged, so the profile measures the real step.
"""
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

from dropcore.graph import describe


@contextmanager
def _timed(obj, attr, times, key):
    original = getattr(obj, attr)

    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        out = original(*args, **kwargs)
        times[key].append(time.perf_counter() - t)
        return out

    setattr(obj, attr, wrapper)
    try:
        yield
    finally:
        delattr(obj, attr)  # the class's method shows through again


@contextmanager
def _timed_layer(layer, fwd, bwd):
    original = layer.forward

    def forward(*args, **kwargs):
        t = time.perf_counter()
        y, backprop = original(*args, **kwargs)
        fwd[layer.name].append(time.perf_counter() - t)

        def timed_backprop(dy):
            t0 = time.perf_counter()
            dx = backprop(dy)
            bwd[layer.name].append(time.perf_counter() - t0)
            return dx

        return y, timed_backprop

    layer.forward = forward
    try:
        yield
    finally:
        del layer.forward


def profile_training(model, x, y, repeats, warmup=2):
    """Median per-step times (seconds) of ``model.train_on_batch(x, y)``: a list of row dicts and the total."""
    fwd, bwd, other = defaultdict(list), defaultdict(list), defaultdict(list)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    totals = []
    wrappers = [_timed_layer(la, fwd, bwd) for la in model.layers]
    wrappers += [_timed(model.loss, "per_sample", other, "loss"), _timed(model.optimizer, "apply", other, "optimizer")]
    for w in wrappers:
        w.__enter__()
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            model.train_on_batch(x, y)
            totals.append(time.perf_counter() - t)
    finally:
        for w in reversed(wrappers):
            w.__exit__(None, None, None)
    med = statistics.median
    total = med(totals)
    rows = []
    for step, label in zip(model._plan.steps, describe(model._plan)):
        name = step.layer.name
        f = med(fwd[name]) if fwd[name] else 0.0
        b = med(bwd[name]) if bwd[name] else 0.0
        rows.append({"step": label, "forward_s": f, "backward_s": b})
    rows.append({"step": "loss (fused softmax cross-entropy)", "forward_s": med(other["loss"]), "backward_s": 0.0})
    rows.append({"step": "optimizer (SGD momentum update)", "forward_s": med(other["optimizer"]), "backward_s": 0.0})
    rest = total - sum(r["forward_s"] + r["backward_s"] for r in rows)
    rows.append({"step": "other (checks, snapshots, Python)", "forward_s": max(rest, 0.0), "backward_s": 0.0})
    return rows, total


def torch_top_ops(peer, x, y, repeats, top=12):
    """PyTorch's own profile of its training step: the ``top`` aten ops by self CPU time (ms per step)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        peer.train_step(x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            peer.train_step(x, y)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [{"op": e.key, "self_ms_per_step": e.self_cpu_time_total / 1e3 / repeats, "calls": e.count // repeats}
            for e in rows]


def format_rows(rows, total):
    """A Markdown table of a profile."""
    out = ["| step | forward ms | backward ms | share of step |", "| --- | ---: | ---: | ---: |"]
    for r in rows:
        t = r["forward_s"] + r["backward_s"]
        out.append(f"| {r['step']} | {r['forward_s'] * 1e3:.2f} | {r['backward_s'] * 1e3:.2f} | "
                   f"{100 * t / total:.0f}% |")
    out.append(f"| **total step** | | | {total * 1e3:.1f} ms |")
    return "\n".join(out)
