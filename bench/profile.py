"""Per-layer profile of a training step: forward and backward time of each plan step, plus loss and optimizer.

Each layer's ``forward`` is wrapped (an instance attribute shadowing the method, removed afterwards) so that it
times itself and returns a backprop closure that times itself too; the loss and the optimizer update are wrapped
the same way. ``model.train_on_batch`` then runs unchanged, so the profile measures the real step.
"""
import statistics
import time
from collections import defaultdict
from contextlib import contextmanager

import numpy as np

from dropcore.graph import describe

from .ceilings import layer_work, timed_rate


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
def _timed_layer(layer, fwd, bwd, shapes):
    original = layer.forward

    def forward(ops, x, *args, **kwargs):
        t = time.perf_counter()
        y, backprop = original(ops, x, *args, **kwargs)
        fwd[layer.name].append(time.perf_counter() - t)
        # what the layer's FLOPs and bytes are worked out from; a view of its input (Flatten) moves no bytes; a layer
        # of several inputs (Add, Concatenate) gets the list of their shapes
        several = isinstance(x, (list, tuple))
        shapes[layer.name] = ([a.shape for a in x] if several else x.shape, y.shape,
                              not several and np.shares_memory(x, y))

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
    """Median per-step times (seconds) of ``model.train_on_batch(x, y)``: a list of row dicts and the total. A
    layer's row also has its FLOPs and bytes (``ceilings.layer_work``), forward and backward."""
    fwd, bwd, other, shapes = defaultdict(list), defaultdict(list), defaultdict(list), {}
    for _ in range(warmup):
        model.train_on_batch(x, y)
    totals = []
    wrappers = [_timed_layer(la, fwd, bwd, shapes) for la in model.layers]
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
    for i, (step, label) in enumerate(zip(model.plan.steps, describe(model.plan))):
        name = step.layer.name
        f = med(fwd[name]) if fwd[name] else 0.0
        b = med(bwd[name]) if bwd[name] else 0.0
        row = {"step": label, "forward_s": f, "backward_s": b}
        if name in shapes:
            x_shape, y_shape, view = shapes[name]
            work = layer_work(step.layer, x_shape, y_shape, first=i == 0, view=view)
            row.update(zip(("forward_flops", "backward_flops", "forward_bytes", "backward_bytes"), work))
        rows.append(row)
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


def format_rows(rows, total, ceilings=None):
    """A Markdown table of a profile; with ``ceilings`` (``ceilings.measure()``), each layer's rate over forward
    and backward against the GEMM's FLOP/s and the copy's bytes/s."""
    gemm, copy = (ceilings or {}).get("gemm_flops"), (ceilings or {}).get("copy_bytes")
    head = "| step | forward ms | backward ms | share of step |"
    rule = "| --- | ---: | ---: | ---: |"
    if ceilings:
        head += " GFLOP/s | of GEMM | GB/s | of copy |"
        rule += " ---: | ---: | ---: | ---: |"
    out = [head, rule]
    for r in rows:
        t = r["forward_s"] + r["backward_s"]
        line = f"| {r['step']} | {r['forward_s'] * 1e3:.2f} | {r['backward_s'] * 1e3:.2f} | {100 * t / total:.0f}% |"
        if ceilings:
            flops = timed_rate(r.get("forward_flops", 0) + r.get("backward_flops", 0), t)
            nbytes = timed_rate(r.get("forward_bytes", 0) + r.get("backward_bytes", 0), t)
            line += (f" {flops / 1e9:.0f} | {flops / gemm:.0%} |" if flops and gemm else " | |")
            line += (f" {nbytes / 1e9:.1f} | {nbytes / copy:.0%} |" if nbytes and copy else " | |")
        out.append(line)
    out.append(f"| **total step** | | | {total * 1e3:.1f} ms |" + (" | | | |" if ceilings else ""))
    return "\n".join(out)
