"""``python -m bench``: measure the reference models end to end and print one table (see ``bench.runner``)."""
import argparse
import os
import shlex
import sys
import time

from . import models, runner


def _positive(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, received {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, received {text!r}")
    return v


def _models(text):
    from .breadth import MODELS as BREADTH

    names = [n.strip() for n in text.split(",") if n.strip()]
    known = list(models.MODELS) + list(BREADTH)
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(known)}, "
                                         f"received {text!r}")
    return names


def _thread_counts(text):
    counts = [_positive(t.strip()) for t in text.split(",") if t.strip()]
    if not counts:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive ints, received {text!r}")
    return counts


def _isas(text):
    from .scaling import ISA_ENV

    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in ISA_ENV]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"expected a comma-separated subset of {','.join(ISA_ENV)}, received "
                                         f"{text!r}")
    return names


def _default_threads():
    from dropcore.kernels.cpus import available_cpus

    return [available_cpus()]


def parser():
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--models", type=_models, default=None,
                   help=f"comma-separated subset of {','.join(models.MODELS)} (default: all), or of the breadth "
                   "models (resnet8, mobilenet, vgg_bn, inception, lenet5_tanh: the breadth table)")
    p.add_argument("--breadth", action="store_true", help="the breadth table instead (bench/breadth.py: five "
                   "CNNs from PyTorch through ONNX; latency @1 and throughput @64 against ONNX Runtime, training @64 "
                   "against PyTorch); --models may also name breadth models")
    p.add_argument("--unfolded", action="store_true", help="with --breadth: dropcore's programs without the "
                   "inference folds (batch norm, residual add, activations into the kernel), for a before/after")
    p.add_argument("--rounds", type=_positive, default=None, help="with --breadth: processes per engine and model, "
                   "in alternating order, each metric keeping its best (default 2; --quick: 1); more ride out a host "
                   "whose speed changes for seconds at a time")
    p.add_argument("--quick", action="store_true", help="fewer repeats and warm-ups (a smoke run, noisier)")
    p.add_argument("--repeats", type=_positive, default=None, help="timed repeats per measurement (default 5; "
                   "--quick: 2); latency uses 10x as many")
    p.add_argument("--threads", type=_thread_counts, default=None, help="threads for every engine, or a "
                   "comma-separated list (1,2,4,8: more than the cores included) for a scaling table with each "
                   "inference step's parallel efficiency; the main table uses the first (default: the CPUs this "
                   "process may use)")
    p.add_argument("--isa", type=_isas, default=None, help="comma-separated instruction sets (avx512, avx2, generic) "
                   "forced on every engine that can be held to one, for the scaling table")
    p.add_argument("--profile", action="store_true", help="also profile a training step per layer (forward and "
                   "backward), dropcore and NumPy reference, plus PyTorch's top ops")
    p.add_argument("--kernels", action="store_true", help="also time every kernel call against the NumPy reference")
    p.add_argument("--json", metavar="PATH", help="write the full report as JSON")
    p.add_argument("--png", metavar="PATH", help="write a bar chart (needs matplotlib)")
    p.add_argument("--markdown", metavar="PATH", help="write the report as Markdown")
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # python -m bench serve: the serving benchmark (bench/serve.py)
        from . import serve

        return serve.main(argv[1:])
    if argv[:1] == ["coldstart"]:  # python -m bench coldstart: first training batch and first prediction
        from . import coldstart

        return coldstart.main(argv[1:])
    args = parser().parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 5)
    command = "python -m bench " + shlex.join(argv)
    t0 = time.perf_counter()
    counts = args.threads or _default_threads()
    from .breadth import MODELS as BREADTH

    breadth = [n for n in args.models or () if n in BREADTH]
    if breadth and len(breadth) != len(args.models):
        parser().error(f"--models: the breadth models ({','.join(breadth)}) have a table of their own; name them "
                       f"apart from the reference models")
    if args.rounds and not (args.breadth or breadth):
        parser().error("--rounds: only the breadth table (--breadth) measures in rounds")
    if args.breadth or breadth:
        return _breadth(breadth or list(BREADTH), counts[0], repeats, args, t0)
    args.models = args.models or list(models.MODELS)
    report = runner.run(args.models, counts[0], repeats, quick=args.quick, profile=args.profile,
                        kernels=args.kernels, log=lambda m: print(m, file=sys.stderr, flush=True),
                        scaling=(counts, args.isa or [None]) if len(counts) > 1 or args.isa else None)
    report["command"] = command
    report["elapsed_s"] = time.perf_counter() - t0
    print(runner.markdown(report, command))
    print(f"\n(measured in {report['elapsed_s']:.0f} s)")
    if args.json:
        print(f"JSON: {runner.save_json(report, args.json)}")
    if args.markdown:
        runner.write_markdown(report, command, args.markdown)
        print(f"Markdown: {os.path.abspath(args.markdown)}")
    if args.png:
        if runner.write_png(report, args.png):
            print(f"PNG: {os.path.abspath(args.png)}")
        else:
            print("PNG: not written (matplotlib is not installed: pip install 'dropcore[plot]')")
    return 0


def _breadth(names, threads, repeats, args, t0):
    """The breadth table (``bench.breadth_bench``); its JSON with ``--json``."""
    from . import breadth_bench

    report = breadth_bench.run(names, threads, repeats, quick=args.quick, unfolded=args.unfolded,
                               log=lambda m: print(m, file=sys.stderr, flush=True), rounds=args.rounds)
    table = breadth_bench.markdown(report)
    print(table)
    print(f"\n(measured in {time.perf_counter() - t0:.0f} s, {threads} threads)")
    if args.json:
        print(f"JSON: {runner.save_json(report, args.json)}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
        print(f"Markdown: {os.path.abspath(args.markdown)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
