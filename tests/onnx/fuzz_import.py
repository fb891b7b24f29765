"""One ONNX fuzz case, run the way the fuzzers need it: import the bytes, run what loads, judge the outcome.

A case passes when the importer refuses the bytes with an OnnxImportError naming the file, or builds a model that
predicts finite values (or raises one of dropcore's own errors) that agree with ONNX Runtime on the same file.
Anything else is a finding: a bare KeyError, IndexError, ZeroDivisionError, MemoryError... from the importer or the
model, a refusal that only wraps such a crash, non-finite values where ONNX Runtime computes finite ones, or values
that differ from ONNX Runtime's.

Three ways to use it:

- ``python tests/onnx/fuzz_import.py --worker``: the cases of ``tests/onnx/test_import_fuzz.py``, one after
  another, in a process that test kills when a case passes its deadline (a hang) and restarts when it dies;
- ``python tests/onnx/fuzz_import.py CORPUS_DIR [-max_total_time=300 ...]``: a coverage-guided run with atheris
  (``pip install 'dropcore[fuzz]'``), by hand, outside CI. The corpus starts from the seed models
  (``--seeds CORPUS_DIR`` writes them); libFuzzer's flags apply (``-timeout``, ``-rss_limit_mb``...).
- :func:`run_case` from Python.
"""
import os
import pickle
import resource
import struct
import sys
import tempfile
import traceback

import numpy as np

#: exceptions that, wrapped in a refusal (by the importer's catch-all, or the reader's), mean a crash, not a check
CRASHES = ("KeyError", "IndexError", "ZeroDivisionError", "MemoryError", "AttributeError", "TypeError",
           "OverflowError", "RecursionError", "UnboundLocalError", "AssertionError", "StopIteration")
#: and these, from a converter only (ValueErrors are let through: dropcore's layers validate their arguments with
#: them, saying what they expected)
CONVERTER_CRASHES = CRASHES + ("AxisError", "UnicodeDecodeError")
BATCH = 2
#: predict's workspace limit while the cases run: a model whose input alone is larger is refused before it runs
#: (its input could not be made here); the workspace of predict counts the input, so no model that runs needs more
WORKSPACE_LIMIT = 256 * 2**20
SEED = 20261207


class Finding(AssertionError):
    """The case found a bug: the message says what and where."""


def dropcore_errors():
    """The exceptions a model built from a damaged file may raise: dropcore's own (engine/errors.py, the
    importer's)."""
    from dropcore import errors
    from dropcore.onnx import OnnxImportError

    return (OnnxImportError, errors.NumericalError, errors.ModelFileError, errors.WorkspaceLimitError,
            errors.NotCompiledError, errors.DeadlineExceeded)


def run_case(data, workdir):
    """Import ``data`` (ONNX bytes) from a file in ``workdir`` and run what loads: ``("refused", message)`` or
    ``("ran", x, y)`` (x the input in dropcore's layout, y the prediction). Raises :class:`Finding` for a bug."""
    import dropcore
    import dropcore.onnx as dx
    from dropcore import workspace

    path = os.path.join(workdir, "mutant.onnx")
    with open(path, "wb") as f:
        f.write(data)
    try:
        model = dx.load(path)
    except dx.OnnxImportError as exc:
        message = str(exc)
        if path not in message:
            raise Finding(f"the refusal does not name the file: {message[:2000]}") from None
        crashed = [name for name in CONVERTER_CRASHES if f"cannot be converted ({name}:" in message] + \
            [name for name in CRASHES if f"{name}: " in message]
        if crashed:
            raise Finding(f"the refusal wraps a crash ({crashed[0]}) instead of saying what was expected: "
                          f"{message[:2000]}") from None
        return "refused", message
    except Exception as exc:  # noqa: BLE001 - the point: anything else is an importer bug
        raise Finding(f"loading raised {type(exc).__name__}: {exc}\n{traceback.format_exc()[-3000:]}") from None
    shape = tuple(model.input_shape[1:])
    dropcore.set_workspace_limit(WORKSPACE_LIMIT)
    if BATCH * 4 * np.prod(shape, dtype=np.float64) > WORKSPACE_LIMIT:
        # An input too large to make here: the workspace check that predict makes first must refuse the model
        try:
            workspace.check(model, BATCH, training=False)
        except dropcore.WorkspaceLimitError as exc:
            return "refused", f"predict: {type(exc).__name__}: {exc}"
        raise Finding(f"a model whose input takes {BATCH * 4 * np.prod(shape, dtype=np.float64):.0f} bytes for "
                      f"{BATCH} samples passes predict's workspace check (limit {WORKSPACE_LIMIT} bytes)")
    x = np.random.default_rng(SEED).normal(0, 1, (BATCH,) + shape).astype(np.float32)
    try:
        y = np.asarray(model.predict(x))
    except Exception as exc:  # noqa: BLE001
        if isinstance(exc, dropcore_errors()):
            return "refused", f"predict: {type(exc).__name__}: {exc}"
        raise Finding(f"the loaded model's predict raised {type(exc).__name__}: {exc}\n"
                      f"{traceback.format_exc()[-3000:]}") from None
    return "ran", x, y


def onnx_runtime(data, x):
    """ONNX Runtime's output for ``x`` (dropcore's layout, transposed to the file's as the importer read it):
    ``None`` when ONNX Runtime refuses the file or the input. May crash the process on a hostile file."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        layouts = _layouts(session, x)  # names not UTF-8 make get_inputs raise
    except Exception:  # noqa: BLE001 - its checks are not ours
        return None
    outputs = []
    for layout in layouts:
        try:
            feeds = {i.name: layout if i.type == "tensor(float)" else np.array(False) for i in session.get_inputs()}
            outputs.append(np.asarray(session.run(None, feeds)[0]))
        except Exception:  # noqa: BLE001
            continue
    return outputs or None


def _layouts(session, x):
    """``x`` in each layout the file's data input may have: NCHW where the importer made it NHWC, or as it is."""
    floats = [i for i in session.get_inputs() if i.type == "tensor(float)"]
    if len(floats) != 1:
        return []
    dims = list(floats[0].shape)[1:]
    fits = lambda a: len(dims) == a.ndim - 1 and all(not isinstance(d, int) or d == n for d, n in  # noqa: E731
                                                     zip(dims, a.shape[1:]))
    candidates = [x] + ([x.transpose(0, 3, 1, 2)] if x.ndim == 4 else [])
    return [np.ascontiguousarray(c) for c in candidates if fits(c)]


#: float constants of magnitudes outside this range (zero aside) make a model's values hang on float32 rounding
#: (x * 1e-30, then / 1e-30): its agreement with ONNX Runtime is not checked, only that it predicts finite values
SANE_MAGNITUDES = (1e-6, 1e6)


def extreme_constants(data):
    """Whether a float initializer of the ONNX file ``data`` has a value outside :data:`SANE_MAGNITUDES`."""
    import onnx
    from onnx import numpy_helper

    for tensor in onnx.load_from_string(data).graph.initializer:
        try:
            array = np.abs(numpy_helper.to_array(tensor))
        except Exception:  # noqa: BLE001 - unreadable: the importer refused it anyway
            continue
        if array.dtype.kind == "f" and array.size:
            values = array[array != 0]
            if values.size and (values.min() < SANE_MAGNITUDES[0] or values.max() > SANE_MAGNITUDES[1]):
                return True
    return False


def judge(y, references, agree=True):
    """Raise :class:`Finding` unless dropcore's ``y`` is finite (or ONNX Runtime's is not either, or, when it
    refused the file, ``agree`` is false: extreme constants) and, with ``agree``, agrees with one of ONNX Runtime's
    ``references`` (one per input layout that fits; ``None``: it refused the file)."""
    if references is None:
        if agree and not np.isfinite(y).all():  # extreme constants: the file's own arithmetic may overflow
            raise Finding(f"non-finite predictions ({np.count_nonzero(~np.isfinite(y))} of {y.size}) from a model "
                          f"ONNX Runtime refuses")
        return
    problems = []
    for ref in references:
        if ref.size != y.size:
            problems.append(f"ONNX Runtime gives shape {ref.shape}, dropcore {y.shape}")
            continue
        ref = ref.reshape(y.shape) if ref.ndim != y.ndim else ref
        if ref.shape != y.shape:
            ref = np.moveaxis(ref, 1, -1) if ref.ndim == 4 else ref
        if ref.shape != y.shape:
            problems.append(f"ONNX Runtime gives shape {ref.shape}, dropcore {y.shape}")
            continue
        if not np.isfinite(ref).all():
            return  # the file's own weights overflow: nothing finite to compare
        if not np.isfinite(y).all():
            problems.append(f"dropcore predicts {np.count_nonzero(~np.isfinite(y))} non-finite values where ONNX "
                            f"Runtime's are finite")
            continue
        if not agree:
            return
        scale = max(1.0, float(np.abs(ref).max()))
        worst = float(np.abs(y.astype(np.float64) - ref).max()) / scale
        if worst <= 1e-4:
            return
        problems.append(f"dropcore's predictions differ from ONNX Runtime's by {worst:.3g} (relative to the "
                        f"largest, {scale:.3g})")
    if problems:
        raise Finding("; ".join(problems))


def check(data, workdir):
    """One whole case in this process: :func:`run_case`, then ONNX Runtime's opinion on what ran."""
    result = run_case(data, workdir)
    if result[0] == "ran":
        judge(result[2], onnx_runtime(data, result[1]), agree=not extreme_constants(data))
    return result[0]


# --- the seed models: small, so that the graph is a fair share of the bytes, and between them most ops ------------
def _graph(nodes, inits, in_shape, out_shape, opset):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    arrays = {k: (rng.normal(0, 0.3, v).astype(np.float32) if isinstance(v, tuple) else np.asarray(v))
              for k, v in inits.items()}
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        initializer=[numpy_helper.from_array(v, k) for k, v in arrays.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    proto.ir_version = 8
    return proto


def exported_seed():
    """A dropcore model (conv, batch norm, pooling, dropout, dense) as ``dropcore.onnx.export`` writes it."""
    import onnx

    import dropcore
    import dropcore.onnx as dx
    from dropcore.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D

    dropcore.set_random_seed(0)
    model = dropcore.Sequential([Input((6, 6, 2)), Conv2D(3, 3, padding="same", activation="relu"),
                                 BatchNormalization(), MaxPooling2D(2), Dropout(0.3), Flatten(),
                                 Dense(3, activation="softmax")])
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "seed.onnx")
        dx.export(model, path)
        return onnx.load(path)


def nhwc_seed():
    """tf2onnx's layout: an NHWC input, each NCHW op between Transposes, MatMul + Add, a Reshape by a constant."""
    from onnx import helper

    nodes = [
        helper.make_node("Transpose", ["x"], ["t0"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["t0", "w", "b"], ["c"], name="conv", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Transpose", ["r"], ["t1"], perm=[0, 2, 3, 1]),
        helper.make_node("Transpose", ["t1"], ["t2"], perm=[0, 3, 1, 2]),
        helper.make_node("MaxPool", ["t2"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Transpose", ["p"], ["t3"], perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t3", "shape"], ["f"], name="flat"),
        helper.make_node("MatMul", ["f", "w2"], ["m"], name="dense"),
        helper.make_node("Add", ["m", "b2"], ["a"]),
        helper.make_node("Softmax", ["a"], ["y"], axis=-1),
    ]
    inits = {"w": (3, 2, 3, 3), "b": (3,), "shape": np.array([-1, 12], np.int64), "w2": (12, 4), "b2": (4,)}
    return _graph(nodes, inits, ["N", 4, 4, 2], ["N", 4], 17)


def shape_arithmetic_seed():
    """PyTorch's ``x.view(x.size(0), -1)`` (Shape, Gather, Unsqueeze, Squeeze, Concat), asymmetric pads, "same"
    average pooling, ReduceMean, Selu, Div and Mul by constants."""
    from onnx import helper

    nodes = [
        helper.make_node("Mul", ["x", "scale"], ["xs"]),
        helper.make_node("Conv", ["xs", "w"], ["c"], name="conv", kernel_shape=[3, 3], pads=[2, 0, 1, 1]),
        helper.make_node("Selu", ["c"], ["s"]),
        helper.make_node("AveragePool", ["s"], ["a"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER"),
        helper.make_node("Div", ["a", "two"], ["d"]),
        helper.make_node("ReduceMean", ["d", "hw"], ["r"], keepdims=1),
        helper.make_node("Shape", ["r"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "first"], ["n1"]),
        helper.make_node("Squeeze", ["n1", "first"], ["n0"]),
        helper.make_node("Unsqueeze", ["n0", "first"], ["n2"]),
        helper.make_node("Concat", ["n2", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["r", "target"], ["f"]),
        helper.make_node("Sigmoid", ["f"], ["y"]),
    ]
    inits = {"scale": np.float32(0.5), "w": (4, 2, 3, 3), "two": np.float32(2.0), "hw": np.array([2, 3], np.int64),
             "zero": np.array(0, np.int64), "first": np.array([0], np.int64), "minus1": np.array([-1], np.int64)}
    return _graph(nodes, inits, ["N", 2, 6, 7], ["N", 4], 18)


def branches_seed():
    """Two convolution branches concatenated, batch norm, LeakyRelu, Pad, a depthwise convolution, a residual Add,
    global pooling, Flatten, Gemm (transB), Dropout with its ratio as an input, Softmax."""
    from onnx import helper

    nodes = [
        helper.make_node("Conv", ["x", "wa", "ba"], ["ca"], name="conv_a", kernel_shape=[3, 3],
                         auto_pad="SAME_UPPER"),
        helper.make_node("Conv", ["x", "wb"], ["cb"], name="conv_b", kernel_shape=[1, 1]),
        helper.make_node("Concat", ["ca", "cb"], ["cat"], axis=1),
        helper.make_node("BatchNormalization", ["cat", "g", "beta", "mean", "var"], ["bn"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["bn"], ["lr"], alpha=0.2),
        helper.make_node("Pad", ["lr", "pads"], ["pd"], mode="constant"),
        helper.make_node("Conv", ["pd", "wd"], ["dw"], name="depthwise", kernel_shape=[3, 3], group=4),
        helper.make_node("Add", ["dw", "lr"], ["res"]),
        helper.make_node("GlobalAveragePool", ["res"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "wg", "bg"], ["gm"], transB=1),
        helper.make_node("Dropout", ["gm", "ratio"], ["dr"]),
        helper.make_node("Softmax", ["dr"], ["y"], axis=1),
    ]
    inits = {"wa": (2, 3, 3, 3), "ba": (2,), "wb": (2, 3, 1, 1), "g": (4,), "beta": (4,), "mean": (4,),
             "var": np.full(4, 0.7, np.float32), "pads": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
             "wd": (4, 1, 3, 3), "wg": (3, 4), "bg": (3,), "ratio": np.float32(0.25)}
    return _graph(nodes, inits, ["N", 3, 5, 5], ["N", 3], 17)


SEEDS = {"exported": exported_seed, "nhwc": nhwc_seed, "shape_arithmetic": shape_arithmetic_seed,
         "branches": branches_seed}


# --- the worker of tests/onnx/test_import_fuzz.py ------------------------------------------------------------------
def _send(out, message):
    blob = pickle.dumps(message)
    out.write(struct.pack("<Q", len(blob)) + blob)
    out.flush()


def _receive(inp):
    head = inp.read(8)
    if len(head) < 8:
        return None
    return pickle.loads(inp.read(struct.unpack("<Q", head)[0]))


def limit_memory(extra_bytes):
    """Cap this process's address space at what it maps now plus ``extra_bytes``: a huge allocation a damaged
    file asks for fails (MemoryError) instead of exhausting the machine."""
    with open("/proc/self/status") as f:
        size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (size + extra_bytes, size + extra_bytes))


def worker():
    """Read cases (bytes) from stdin; for each, write ``("refused", message)``, ``("ran", x, y)`` or
    ``("finding", message)``, then, after a run, ``("onnxruntime", outputs, agree)`` (:func:`judge`'s arguments) in a
    second message (ONNX Runtime may crash on a hostile file: the first message is out by then). Messages are
    length-prefixed pickles on the original stdout; the
    libraries' own output goes to stderr."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    import dropcore.onnx  # noqa: F401 - imported before the memory cap, as the cases will need it
    import onnxruntime  # noqa: F401
    limit_memory(4 << 30)
    with tempfile.TemporaryDirectory() as workdir:
        for make in SEEDS.values():  # kernels that compile on first use (Numba's) do so before the first deadline
            run_case(make().SerializeToString(), workdir)
        _send(out, ("ready",))
        while (case := _receive(sys.stdin.buffer)) is not None:
            try:
                result = run_case(case, workdir)
            except Finding as exc:
                _send(out, ("finding", str(exc)))
                continue
            _send(out, result)
            if result[0] == "ran":
                _send(out, ("onnxruntime", onnx_runtime(case, result[1]), not extreme_constants(case)))


# --- the coverage-guided run ----------------------------------------------------------------------------------------
def atheris_main(argv):
    import atheris

    with atheris.instrument_imports():
        import dropcore.onnx  # noqa: F401
        import dropcore.onnx.import_ops  # noqa: F401
        import dropcore.onnx.importer  # noqa: F401
        import dropcore.onnx.reading  # noqa: F401
    workdir = tempfile.mkdtemp(prefix="onnx-fuzz-")

    def one_input(data):
        check(data, workdir)

    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def write_seeds(folder):
    """The seed models as files in ``folder`` (an atheris corpus)."""
    os.makedirs(folder, exist_ok=True)
    for name, make in SEEDS.items():
        with open(os.path.join(folder, f"{name}.onnx"), "wb") as f:
            f.write(make().SerializeToString())


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    elif sys.argv[1:2] == ["--seeds"]:
        write_seeds(sys.argv[2])
    else:
        atheris_main(sys.argv)
