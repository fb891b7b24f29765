"""The ``dropcore`` command: train, evaluate, predict, serve, bench, experiment {dropout,kfold,uncertainty},
export, import, info.

Usage errors exit with status 2 (argparse's message); a failure to run — a missing or malformed file, data that
does not fit the model, a missing optional extra — prints ``dropcore <command>: error: <message>`` and exits 1.
See docs/cli.md for every command with examples.

This module assembles the parser and runs a command; each family of commands lives in its own module and adds
itself with ``add_commands(sub)``: :mod:`.train`, :mod:`.inference` (evaluate, predict), :mod:`.experiments`,
:mod:`.info` (info, bench), and outside this package ``dropcore.onnx.commands`` (export, import) and
``dropcore.serving.commands`` (serve). :mod:`.common` holds what they share. A command imports its heavy
dependencies (onnx, Flask, Dask) only when it runs.
"""
import argparse
import sys

from . import experiments, inference, info, train
from .common import CommandError

__all__ = ["CommandError", "build_parser", "main"]


def build_parser():
    """The ``dropcore`` argument parser, every command family added in the order ``--help`` lists them."""
    from ..onnx.commands import add_commands as add_onnx_commands  # imports no onnx until a command runs
    from ..serving.commands import add_commands as add_serve_commands  # imports no Flask until it runs

    parser = argparse.ArgumentParser(
        prog="dropcore", description="Train, evaluate and run small CNNs on the CPU, and study dropout.",
        epilog="Examples:\n  dropcore train --epochs 3 --out runs/digits\n"
               "  dropcore evaluate runs/digits/model.dropcore\n  dropcore experiment dropout --epochs 10\n"
               "See docs/cli.md for every command.", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    train.add_commands(sub)
    inference.add_commands(sub)
    info.add_bench_command(sub)
    experiments.add_commands(sub)
    add_onnx_commands(sub)
    add_serve_commands(sub)
    info.add_commands(sub)
    return parser


def main(argv=None):
    """Entry point of the ``dropcore`` command (and ``python -m dropcore``); returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "bench":  # everything after "bench" belongs to the benchmark runner, --help included
        return info.cmd_bench(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    from .. import errors
    from ..data import DataError

    name = args.command + (f" {args.experiment}" if args.command == "experiment" else "")
    try:
        return args.handler(args)
    except (CommandError, DataError, errors.ModelFileError, errors.NumericalError, errors.WorkspaceLimitError,
            ValueError, TypeError, OSError, ImportError) as exc:
        print(f"dropcore {name}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"dropcore {name}: interrupted", file=sys.stderr)
        return 130
