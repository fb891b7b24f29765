"""End-to-end benchmark of the reference models: dropcore against its NumPy reference engine, PyTorch and ONNX Runtime.

Every engine runs the same model (same weights, float32, same batch) with the same thread count. Training step =
forward + backward + SGD momentum update (dropcore: ``model.train_on_batch``; PyTorch: the equivalent ``nn.Module``
with ``cross_entropy`` on logits). Inference = ``predict`` at batch 256; latency = ``predict`` on one image
("dropcore": ``Model.predict``, which runs the model's compiled inference program on the Cython kernels when they
are built; "dropcore-cython": ``dropcore.Predictor``, the service API, on the same kernels, inference only).
Warm-up calls are excluded; each number is the median of the repeats in one process, the best of ``ROUNDS`` such
processes per engine; never two engines in one process (see :func:`measure_model`).
"""
import json
import os
import re
import textwrap

from . import coldstart, machine, models, peers_torch
from .measure import ENGINES, METRICS, OWN, ROUNDS, _engines_available, _run_worker, measure_model
from .timing import threads as thread_limit

def ratios(results):
    """``{model: {own engine: {peer: {metric: ratio}}}}``: images/s ratios (>1: dropcore faster) and latency ratios
    (<1: dropcore faster) of each dropcore engine to each peer measured."""
    out = {}
    for name, by_engine in results.items():
        for own in (e for e in OWN if e in by_engine):
            for peer, vals in by_engine.items():
                if peer in OWN:
                    continue
                r = {}
                for key, _ in METRICS:
                    a, b = by_engine[own].get(key), vals.get(key)
                    r[key] = None if a is None or b is None else a / b
                out.setdefault(name, {}).setdefault(own, {})[peer] = r
    return out


def targets(results, rat):
    """The issue's targets, each with the measured ratio and met / not met (reported, never asserted)."""
    rows = []

    def add(what, model, own, peer, key, goal, higher_better):
        r = rat.get(model, {}).get(own, {}).get(peer, {}).get(key)
        met = None if r is None else (r >= goal if higher_better else r <= goal)
        rows.append({"target": what, "model": model, "engine": own, "ratio": r, "goal": goal, "met": met})

    # The third wave's bar (first-class on AVX2 as on AVX-512), for every model; the first wave's was 1.5x PyTorch,
    # 0.8x ONNX Runtime's throughput and 1.5x its latency.
    for m in results:
        add("training @128 >= 2x PyTorch CPU", m, "dropcore", "torch", "train128", 2.0, True)
        if m in ("mnist_cnn", "cifar_cnn"):
            add("training @128 >= 4x NumPy reference", m, "dropcore", "reference", "train128", 4.0, True)
        for own in (e for e in OWN if e in results[m]):
            add("inference @256 >= 1.2x ONNX Runtime", m, own, "onnxruntime", "infer256", 1.2, True)
            add("latency @1 <= 0.9x ONNX Runtime's", m, own, "onnxruntime", "latency1", 0.9, False)
    return rows


def kernel_comparison(names, n, repeats, threads):
    """Each kernel call: Numba (and Cython) against the NumPy reference, in ms.

    Each kernel set runs in a process of its own: OpenBLAS's worker threads keep spinning for a while after each
    multi-threaded call and stalled the next Numba region by whole scheduler ticks (8 ms on a 2.6 ms kernel); a
    Numba kernel timed right after a Cython one ran up to 1.8x slower now and then, the same way.
    """
    times = {}
    for impls in (("reference",), ("numba",), ("cython",)):
        argv = ["kernels", ",".join(impls), ",".join(names), str(n), str(repeats), str(threads)]
        for case_id, by_impl in _run_worker(argv, threads).items():
            times.setdefault(case_id, {}).update(by_impl)
    rows = []
    for case_id, by_impl in times.items():
        row = {"kernel": case_id, **{impl + "_ms": ms for impl, ms in by_impl.items()}}
        row["speedup"] = row["reference_ms"] / row["numba_ms"]
        rows.append(row)
    return rows


def run(names, threads, repeats, quick=False, profile=False, kernels=False, log=print, scaling=None):
    """Measure everything; returns the JSON-able report. ``scaling``: ``(thread counts, instruction sets)`` for the
    scaling table and the inference steps' parallel efficiency (``bench.scaling``)."""
    warmup = 1 if quick else 2
    latency_repeats = max(10, 10 * repeats)
    avail = _engines_available()
    rounds = 1 if quick else ROUNDS
    report = {"machine": machine.info(threads), "settings": {"models": list(names), "repeats": repeats,
                                                              "rounds": rounds, "quick": quick, "threads": threads},
              "engines": avail, "results": {}}
    with thread_limit(threads):
        engines = [e for e in ENGINES if avail[e]]
        for name in names:
            log(f"measuring {name} on {', '.join(engines)} (a process each) ...")
            report["results"][name] = measure_model(name, engines, threads, repeats, warmup, latency_repeats, rounds)
        report["machine"]["load_average_at_end"] = os.getloadavg()[0]
        report["ratios"] = ratios(report["results"])
        report["targets"] = targets(report["results"], report["ratios"])
        report["cold_start"] = _cold_start(2 if quick else 5, log)
        if profile:
            report["profile"] = _profiles(names, repeats, avail["torch"], log)
        if kernels:
            log("timing kernels against the NumPy reference ...")
            report["kernels"] = kernel_comparison(names, 32, max(3, repeats), threads)
    if scaling:
        from . import scaling as sc

        counts, isas = scaling
        report["scaling"] = sc.sweep(names, counts, isas, engines, repeats, warmup, latency_repeats, rounds, log)
        if avail["dropcore-cython"]:
            report["efficiency"] = sc.efficiency(names, counts, max(5, repeats), log)
    return report


def _cold_start(runs, log):
    avail = coldstart.available()
    out = {}
    for how in ("predictor", "load_model"):
        if not avail[how]:
            out[how] = None
            continue
        log(f"cold start ({how}) ...")
        out[how] = coldstart.measure(runs, how)
    return out


def _profiles(names, repeats, with_torch, log):
    from . import ceilings
    from . import profile as prof

    log("measuring the ceilings the profile is read against (GEMM FLOP/s, copy bytes/s) ...")
    out = {"ceilings": ceilings.measure()}
    for name in names:
        for engine in ("dropcore", "reference"):
            model = models.build(name, ops=None if engine == "dropcore" else "reference")
            log(f"profiling a training step of {name} @128 ({engine}, kernels {model.ops}) ...")
            x, y = models.batch(name, 128)
            rows, total = prof.profile_training(model, x, y, max(3, repeats))
            out.setdefault(name, {})[engine] = {"rows": rows, "total_s": total, "kernels": model.ops}
        if with_torch:
            x, y = models.batch(name, 128)
            peer = peers_torch.TorchPeer(models.build(name), models.LEARNING_RATE, models.MOMENTUM)
            out[name]["torch_top_ops"] = prof.torch_top_ops(peer, x, y, max(3, repeats))
    return out


# --- presentation ---------------------------------------------------------------------------------------------
def _fmt(v, key):
    if v is None:
        return "—"
    return f"{v:.2f}" if key == "latency1" else f"{v:,.0f}"


def _fmt_ratio(v):
    return "—" if v is None else f"{v:.2f}×"


def results_table(report):
    """The main Markdown table: one row per (model, engine), then dropcore's ratio to each peer."""
    head = "| model | engine | " + " | ".join(label for _, label in METRICS) + " |"
    out = [head, "|" + " --- |" * 2 + " ---: |" * len(METRICS)]
    for name, by_engine in report["results"].items():
        for engine, vals in by_engine.items():
            out.append(f"| {name} | {engine} | " + " | ".join(_fmt(vals.get(k), k) for k, _ in METRICS) + " |")
        for own, by_peer in report["ratios"].get(name, {}).items():
            for peer, r in by_peer.items():
                out.append(f"| {name} | *{own} ÷ {peer}* | " + " | ".join(_fmt_ratio(r[k]) for k, _ in METRICS)
                           + " |")
    return "\n".join(out)


def targets_table(report):
    out = ["| target | model | engine | measured ratio | status |", "| --- | --- | --- | ---: | --- |"]
    for t in report["targets"]:
        status = "n/a (peer missing)" if t["met"] is None else ("met" if t["met"] else "**not met**")
        out.append(f"| {t['target']} | {t['model']} | {t['engine']} | {_fmt_ratio(t['ratio'])} | {status} |")
    return "\n".join(out)


def cold_start_text(report):
    lines = []
    labels = {"predictor": "dropcore.Predictor", "load_model": "dropcore.load_model + predict"}
    for how, label in labels.items():
        c = report["cold_start"].get(how)
        if c is None:
            lines.append(f"- cold start, {label}: n/a (the Cython kernels are not built)")
        else:
            lines.append(f"- cold start, {label}: {c['wall_s'] * 1e3:.0f} ms wall (median of {c['runs']} new "
                         f"processes; in the child: import {c['import_s'] * 1e3:.0f} ms, load "
                         f"{c['load_s'] * 1e3:.0f} ms, first prediction {c['first_predict_s'] * 1e3:.0f} ms; "
                         f"numba {'imported' if c['numba_imported'] else 'never imported'})")
    return "\n".join(lines)


def profile_text(report):
    from .profile import format_rows

    parts = []
    profiles = dict(report.get("profile", {}))
    ceil = profiles.pop("ceilings", None)
    if ceil and ceil.get("gemm_flops"):
        parts.append(f"Each layer's rate over its forward and backward, against this machine's ceilings measured in "
                     f"the same process: dropcore's GEMM on operands in cache, {ceil['gemm_flops'] / 1e9:.0f} GFLOP/s "
                     f"on the threads used, and a 64 MiB copy on one thread, {ceil['copy_bytes'] / 1e9:.1f} GB/s "
                     f"(read + written). FLOPs are the direct products' (a layer on Winograd's tiles does fewer, "
                     f"so its share can pass 100%); bytes count each array once (`bench/ceilings.py`).\n")
    for name, p in profiles.items():
        for engine in ("dropcore", "reference"):
            c = ceil if engine == "dropcore" else None
            label = f"dropcore ({p[engine].get('kernels', 'numba')} kernels)" if engine == "dropcore" else \
                "NumPy reference"
            parts.append(f"#### {name}, training step @128, {label}"
                         f"\n\n{format_rows(p[engine]['rows'], p[engine]['total_s'], c)}\n")
        if "torch_top_ops" in p:
            rows = ["| aten op | self ms / step | calls / step |", "| --- | ---: | ---: |"]
            rows += [f"| {r['op']} | {r['self_ms_per_step']:.2f} | {r['calls']} |" for r in p["torch_top_ops"]]
            parts.append(f"#### {name}, PyTorch's training step @128: top ops by self CPU time\n\n" + "\n".join(rows)
                         + "\n")
    return "\n".join(parts)


def kernels_text(report):
    rows = report.get("kernels")
    if not rows:
        return ""
    impls = [k[:-3] for k in rows[0] if k.endswith("_ms")]
    out = ["| kernel call (batch 32) | " + " | ".join(f"{i} ms" for i in impls) + " | reference ÷ numba |",
           "| --- |" + " ---: |" * (len(impls) + 1)]
    for r in rows:
        cells = " | ".join("—" if r.get(i + "_ms") is None else f"{r[i + '_ms']:.3f}" for i in impls)
        flag = "" if r["speedup"] > 1 else " **slower**"
        out.append(f"| {r['kernel']} | {cells} | {r['speedup']:.2f}×{flag} |")
    return "\n".join(out)


def markdown(report, command):
    st = report["settings"]
    method = (f"Each number: the median of {st['repeats']} timed calls (latency: {max(10, 10 * st['repeats'])}) after "
              f"warm-up, in a process running that engine alone; the best of {st.get('rounds', 1)} such processes.")
    parts = [f"## {machine.section(report['machine'])}", "", f"Command: `{command}`", "",
             f"Machine: {machine.line(report['machine'])}", "", method, "",
             results_table(report), "", "Ratios are dropcore ÷ peer: above 1 means dropcore is faster for "
             "images/s; for latency, below 1 means dropcore is faster.", "", cold_start_text(report), "",
             "### Targets", "", targets_table(report), ""]
    if report.get("profile"):
        parts += ["### Per-layer profile", "", profile_text(report)]
    if report.get("kernels"):
        parts += ["### Kernels against the NumPy reference", "", kernels_text(report), ""]
    if report.get("scaling"):
        from .scaling import efficiency_text, sweep_text

        parts += ["### Threads and instruction sets", "", sweep_text(report["scaling"]), ""]
        if report.get("efficiency"):
            parts += ["### Parallel efficiency of each inference step", "", "t(1 thread) / (T x t(T threads)) of "
                      "each kernel call of the Predictor's program.", "", efficiency_text(report["efficiency"])]
    return "\n".join(parts)


#: In a Markdown report, what follows this line is written by hand (the analysis of the gaps) and kept on rewrite.
KEEP_MARKER = "<!-- Everything below this line is written by hand and kept when the runner rewrites the file. -->"
#: Around each CPU's report: a rewrite replaces the section of the CPU (and target) it measured and keeps the others.
SECTION_START = "<!-- results for: {} -->"
SECTION_END = "<!-- end of results -->"
_SECTION = re.compile(r"<!-- results for: (.*?) -->\n.*?<!-- end of results -->\n", re.S)


def write_markdown(report, command, path):
    """Write the report to ``path`` as the section of its CPU and target (``machine.section``): that CPU's earlier
    section is replaced, other CPUs' sections are kept (the newest first), and so is any hand-written part after
    :data:`KEEP_MARKER` of the old file."""
    key = machine.section(report["machine"])
    sections, kept = [], ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
        if KEEP_MARKER in old:
            old, kept = old[:old.index(KEEP_MARKER)], "\n" + old[old.index(KEEP_MARKER):]
        sections = [m.group(0) for m in _SECTION.finditer(old) if m.group(1) != key]
    new = f"{SECTION_START.format(key)}\n{markdown(report, command)}\n{SECTION_END}\n"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join([new] + sections) + kept)
    os.replace(tmp, path)


def write_png(report, path):
    """A grouped bar chart (one panel per metric); returns False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    names = list(report["results"])
    engines = [e for e in ENGINES if any(e in report["results"][n] for n in names)]
    fig, axes = plt.subplots(1, len(METRICS), figsize=(4.2 * len(METRICS), 3.8))
    width = 0.8 / len(engines)
    for ax, (key, label) in zip(axes, METRICS):
        for i, eng in enumerate(engines):
            vals = [report["results"][n].get(eng, {}).get(key) or 0.0 for n in names]
            ax.bar([j + i * width for j in range(len(names))], vals, width, label=eng)
        ax.set_xticks([j + width * (len(engines) - 1) / 2 for j in range(len(names))], names, fontsize=8)
        ax.set_title(label + (" (lower is better)" if key == "latency1" else ""), fontsize=9)
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.suptitle("\n".join(textwrap.wrap(machine.line(report["machine"]), 160)), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def save_json(report, path):
    with open(path, "w") as f:
        json.dump(report, f, indent=2)
    return os.path.abspath(path)
