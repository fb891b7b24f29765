"""The ``dropcore export`` and ``dropcore import`` commands (``add_commands`` adds them to the CLI's parser).

Neither imports onnx until it runs, so the CLI starts (and ``dropcore --help`` works) without the onnx extra; run
without it, they fail with an ImportError saying ``pip install "dropcore[onnx]"``.
"""
import sys



def _opset(text):
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer opset, received {text!r}") from None
    return value


def cmd_export(args):
    """``dropcore export MODEL.dropcore OUT.onnx``: the saved model as an ONNX file (checked by onnx.checker)."""
    from .. import io
    from . import export

    model = io.load_model(args.model, compile=False)
    proto = export(model, args.output, opset=args.opset, mc_dropout=args.mc_dropout)
    print(f"Wrote {args.output} (ONNX opset {proto.opset_import[0].version}, IR version {proto.ir_version}, "
          f"{len(proto.graph.node)} nodes; input 'input' {_shape(model.input_shape)} NHWC"
          + (", 'training_mode' (bool) switches its Dropout nodes on" if args.mc_dropout else "") + ")")
    return 0


def cmd_import(args):
    """``dropcore import MODEL.onnx OUT.dropcore``: the ONNX model converted once into a dropcore model file."""
    from .. import io
    from . import load

    report = []
    model = load(args.model, report=report)
    io.save_model(model, args.output)
    drop = sum(1 for la in model.layers if la.stochastic)
    print(f"Wrote {args.output}: {len(model.layers)} layers, input {_shape(model.input_shape)} (channels last), "
          f"output {_shape(model.output_shape)}"
          + (f"; {drop} Dropout layer{'s' if drop > 1 else ''} (predict --mc-samples N for Monte-Carlo dropout)"
             if drop else ""))
    if not drop:
        print(f"warning: {args.model} has no Dropout with a rate above 0, so Monte-Carlo dropout (--mc-samples) is "
              f"refused on this model. A PyTorch model exported in eval mode loses its Dropout: put its Dropout "
              f"modules in train mode and export with training=torch.onnx.TrainingMode.PRESERVE", file=sys.stderr)
    print(import_report(model, report), file=sys.stderr)
    return 0


def import_report(model, report):
    """What ``dropcore import`` tells on stderr: a table of which ONNX nodes became which layers (``report``, from
    ``load(..., report=)``), what the inference program folds or fuses, and which of its steps run without a
    compiled kernel."""
    kinds = {la.name: type(la).__name__ for la in model.layers}
    rows = [(name, op, ", ".join(f"{n} ({kinds[n]})" for n in layers) if layers else "-") for name, op, layers
            in report]
    width = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(("ONNX node", "op"))]
    lines = [f"{'ONNX node':<{width[0]}}  {'op':<{width[1]}}  dropcore layer"]
    lines += [f"{a:<{width[0]}}  {b:<{width[1]}}  {c}" for a, b, c in rows]
    program = model._inference_program()
    if program is None:
        lines.append("inference: the Cython kernels are not built, so predictions run the layers one by one on the "
                     "Numba kernels (nothing folded)")
        return "\n".join(lines)
    what = {"kernel->batch_norm (folded)": "folded into", "conv->add (residual)": "added in the step of",
            "linear kernel->relu": "applied in the kernel of", "conv->max_pool": "pooled in the kernel of"}
    fused = [f"{b} {what.get(rule, 'fused into')} {a}" for rule, a, b in program.fused]
    lines.append(f"inference: {len(program.steps)} steps; " + (f"{len(fused)} fused: " + "; ".join(fused)
                                                               if fused else "nothing fused"))
    slow = program.uncompiled_layers
    lines.append("without a compiled kernel: " + (", ".join(f"{layer} ({step})" for step, layer in slow)
                                                  if slow else "none"))
    return "\n".join(lines)


def _shape(shape):
    return "(N, " + ", ".join(map(str, shape[1:])) + ")"


def add_commands(sub):
    """Add the ``export`` and ``import`` subcommands to ``sub`` (an argparse subparsers object)."""
    p = sub.add_parser("export", help="write a saved dropcore model as an ONNX file (needs dropcore[onnx])")
    p.add_argument("model", metavar="MODEL", help="a dropcore model file (.dropcore)")
    p.add_argument("output", metavar="OUT", help="the ONNX file to write (.onnx)")
    p.add_argument("--opset", type=_opset, default=17, metavar="N", help="the ONNX opset (13 or more; default 17)")
    p.add_argument("--mc-dropout", action="store_true",
                   help="keep each Dropout as an ONNX Dropout switched by a boolean 'training_mode' input "
                        "(Monte-Carlo dropout in onnxruntime); default: dropout is left out, as at inference")
    p.set_defaults(handler=cmd_export)

    p = sub.add_parser("import", help="convert an ONNX model (e.g. from PyTorch) into a dropcore model file "
                                      "(needs dropcore[onnx])")
    p.add_argument("model", metavar="MODEL", help="an ONNX file (.onnx); external data must lie beside it")
    p.add_argument("output", metavar="OUT", help="the dropcore model file to write (.dropcore)")
    p.set_defaults(handler=cmd_import)
