"""``dropcore info`` (versions, threads, the kernels in use) and ``dropcore bench`` (the source checkout's benchmark
runner, every argument passed on)."""
import json
import subprocess
import sys
from pathlib import Path


def _bench_root():
    """The source checkout holding bench/ (the project's root, beside the engine/ directory), or None."""
    import dropcore

    root = Path(dropcore.__file__).resolve().parent.parent
    bench = root / "bench"
    return root if (bench / "__main__.py").is_file() else None


def cmd_bench(argv):
    """``dropcore bench ARGS...``: ``python -m bench ARGS...`` of the source checkout; its exit status."""
    root = _bench_root()
    if root is None:
        print("dropcore bench: error: the benchmarks live in the project's bench/ directory, which only a source "
              "checkout has (git clone, then pip install -e .); this installation has none", file=sys.stderr)
        return 1
    # Run from the caller's directory (so relative --json/--markdown paths land there), with the checkout's bench/
    # first on the path (before any `bench` in the caller's directory).
    code = f"import runpy, sys; sys.path.insert(0, {str(root)!r}); runpy.run_module('bench', run_name='__main__')"
    return subprocess.call([sys.executable, "-c", code, *argv])


def _print_info(d, indent=""):
    for k, v in d.items():
        if isinstance(v, dict):
            print(f"{indent}{k}:")
            _print_info(v, indent + "  ")
        elif isinstance(v, (list, tuple)):
            print(f"{indent}{k}: {', '.join(map(str, v)) if v else '-'}")
        else:
            print(f"{indent}{k}: {v}")


def cmd_info(args):
    from ..info import info

    d = dict(info())
    if "numba_threads" not in d:  # the threads training runs on (info() itself avoids importing Numba)
        import numba

        d["numba_threads"] = numba.get_num_threads()
    if args.json:
        print(json.dumps(d, indent=1, default=str))
    else:
        _print_info(d)
    return 0


def add_bench_command(sub):
    """Add ``bench`` to ``sub``: only for ``dropcore --help`` (``main`` hands ``bench ...`` to :func:`cmd_bench`
    before parsing, so the benchmark runner parses its own arguments, ``--help`` included)."""
    sub.add_parser("bench", help="run the benchmarks (python -m bench); every argument is passed on",
                   add_help=False)


def add_commands(sub):
    """Add ``info`` to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser("info", help="versions, threads and the kernels in use")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_info)
