"""A Hypothesis-driven fuzz of the ONNX importer that runs what it loads.

Each example mutates one of four small seed models (``fuzz_import.SEEDS``, between them most ops the importer
converts): byte flips anywhere in the file, a truncation anywhere, or structural mutations through the onnx protobuf
API (wrong, huge, negative or zero dims; wrong dtypes; missing or non-finite initializers; cycles; unknown ops and
domains; attributes out of range; dangling inputs; graph inputs and outputs changed; opsets changed). The case runs
in a worker process (``fuzz_import.py --worker``) under a deadline and a memory cap: it must be refused with an
OnnxImportError that names the file and does not merely wrap a crash, or load, predict finite values (or raise a
dropcore error) and agree with ONNX Runtime on the same file. ``DROPCORE_ONNX_FUZZ_EXAMPLES`` sets the number of
examples (CI: the default, small; more by hand, e.g. 2000).
"""
import importlib.util
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
pytest.importorskip("onnxruntime", reason="the fuzz compares with onnxruntime (dropcore[onnx])")

from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

HARNESS = Path(__file__).with_name("fuzz_import.py")
_spec = importlib.util.spec_from_file_location("fuzz_import", HARNESS)
fuzz_import = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fuzz_import)

FUZZ_EXAMPLES = int(os.environ.get("DROPCORE_ONNX_FUZZ_EXAMPLES", "100"))
CASE_S = 60  # a case's deadline: ~0.1 s normally; generous for a loaded 2-core machine, a hang fails the test
STARTUP_S = 300  # the worker's imports and its warm-up on the seeds (Numba's kernels compile then), loaded


class Worker:
    """``fuzz_import.py --worker`` in its own process: :meth:`run` sends one case and reads its outcome within
    ``CASE_S``; a worker that hangs is killed, one that dies is restarted for the next case."""

    def __init__(self, folder):
        self.folder, self.proc = folder, None

    def start(self):
        self.log = open(os.path.join(self.folder, "worker.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, str(HARNESS), "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        assert self.receive(STARTUP_S) == ("ready",), "the fuzz worker did not start"

    def stop(self):
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.proc.stdin.close()
            self.proc.stdout.close()
            self.log.close()
            self.proc = None

    def receive(self, seconds):
        """The next message, or ``("died", log)`` / ``("hang", seconds)``."""
        try:
            head = self._read(8, seconds)
            return pickle.loads(self._read(struct.unpack("<Q", head)[0], seconds))
        except EOFError:
            self.proc.wait(timeout=30)
            code = self.proc.returncode
            self.stop()
            return "died", f"exit code {code}; its log ends: {Path(self.folder, 'worker.log').read_text()[-2000:]}"
        except TimeoutError:
            self.stop()
            return "hang", seconds

    def _read(self, n, seconds):
        import time

        deadline, out, fd = time.monotonic() + seconds, b"", self.proc.stdout.fileno()
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, n - len(out))
            if not chunk:
                raise EOFError
            out += chunk
        return out

    def run(self, data):
        """``(outcome, (ONNX Runtime's outputs or None, whether to compare with them))`` for one case."""
        if self.proc is None:
            self.start()
        blob = pickle.dumps(data)
        try:
            self.proc.stdin.write(struct.pack("<Q", len(blob)) + blob)
            self.proc.stdin.flush()
        except BrokenPipeError:
            return self.receive(1), (None, False)
        first = self.receive(CASE_S)
        if first[0] != "ran":
            return first, (None, False)
        second = self.receive(CASE_S)  # ONNX Runtime crashing or hanging on the file is not dropcore's fault
        return first, (second[1:] if second[0] == "onnxruntime" else (None, True))


@pytest.fixture(scope="module")
def worker():
    with tempfile.TemporaryDirectory() as folder:
        w = Worker(folder)
        try:
            yield w
        finally:
            w.stop()


SEED_BYTES = {name: make().SerializeToString() for name, make in fuzz_import.SEEDS.items()}

# --- structural mutations: each draws its parameters and edits the ModelProto in place, returning what it did -------
INTS = [0, 1, -1, 2, 3, 7, 2**31 - 1, 2**31, 10**9, 2**40, 2**62, -(2**62), 2**63 - 1, -(2**63)]
FLOATS = [0.0, -0.0, 1.0, -1.0, 0.5, 1.5, 1e-30, 1e30, 3e38, float("nan"), float("inf"), float("-inf")]
DTYPES = [TensorProto.UNDEFINED, TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16,
          TensorProto.INT64, TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL,
          TensorProto.STRING, TensorProto.COMPLEX64, 99]
OPS = ["Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax",
       "BatchNormalization", "Gemm", "MatMul", "Relu", "Sigmoid", "Tanh", "Softmax", "Selu", "LeakyRelu", "Add", "Sub",
       "Mul", "Div", "Sum", "Flatten", "Reshape", "Transpose", "Gather", "Concat", "Pad", "Dropout", "Identity",
       "Constant", "Shape", "Cast", "Unsqueeze", "Squeeze", "Hardmax", "Loop", "If", "NotAnOp", ""]
ATTRIBUTES = ["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad", "axis", "axes", "perm", "alpha",
              "beta", "gamma", "transA", "transB", "epsilon", "momentum", "keepdims", "ceil_mode",
              "count_include_pad", "to", "ratio", "mode", "value", "value_float", "value_ints", "start", "end",
              "allowzero", "training_mode", "storage_order"]
attribute_values = st.one_of(
    st.sampled_from(INTS), st.sampled_from(FLOATS),
    st.lists(st.sampled_from(INTS), min_size=0, max_size=9),
    st.lists(st.sampled_from(INTS[:7]), min_size=1, max_size=9),
    st.lists(st.sampled_from(FLOATS), min_size=1, max_size=3),
    st.sampled_from([b"SAME_LOWER", b"SAME_UPPER", b"VALID", b"NOTSET", b"reflect", b"", b"\xff"]))


def _pick(draw, items):
    return items[draw(st.integers(0, len(items) - 1))] if len(items) else None


def _dims(draw, dims):
    dims = list(dims)
    how = draw(st.sampled_from(["set", "set", "add", "remove", "swap"]))
    if how == "set" and dims:
        dims[draw(st.integers(0, len(dims) - 1))] = draw(st.sampled_from(INTS + [-5, 4, 5]))
    elif how == "add":
        dims.insert(draw(st.integers(0, len(dims))), draw(st.sampled_from([1, 2, 3, 0, 10**6])))
    elif how == "remove" and dims:
        dims.pop(draw(st.integers(0, len(dims) - 1)))
    elif len(dims) > 1:
        dims.reverse()
    return dims


def initializer_dims(draw, proto):
    t = _pick(draw, proto.graph.initializer)
    if t is None:
        return "no initializer"
    old = list(t.dims)
    t.ClearField("dims")
    t.dims.extend(_dims(draw, old))
    return f"initializer '{t.name}' dims {old} -> {list(t.dims)}"


def initializer_dtype(draw, proto):
    t = _pick(draw, proto.graph.initializer)
    if t is None:
        return "no initializer"
    t.data_type = draw(st.sampled_from(DTYPES))
    return f"initializer '{t.name}' data_type -> {t.data_type}"


def initializer_values(draw, proto):
    graph = proto.graph
    if not graph.initializer:
        return "no initializer"
    i = draw(st.integers(0, len(graph.initializer) - 1))
    try:
        array = numpy_helper.to_array(graph.initializer[i]).copy()
    except Exception:  # noqa: BLE001 - broken by a mutation before: as good a case as any
        return f"initializer '{graph.initializer[i].name}' unreadable, left so"
    if array.size == 0:
        return "empty initializer"
    j = draw(st.integers(0, array.size - 1))
    if array.dtype.kind not in "fiu":  # bool, complex, strings: what byte flips and dtype changes are for
        return f"initializer '{graph.initializer[i].name}' of {array.dtype}, left so"
    pool = FLOATS if array.dtype.kind == "f" else [v for v in INTS if np.iinfo(array.dtype).min <= v <=
                                                    np.iinfo(array.dtype).max]
    array.reshape(-1)[j] = draw(st.sampled_from(pool))
    graph.initializer[i].CopyFrom(numpy_helper.from_array(array, graph.initializer[i].name))
    return f"initializer '{graph.initializer[i].name}' value {j} -> {array.reshape(-1)[j]}"


def initializer_missing(draw, proto):
    graph = proto.graph
    if not graph.initializer:
        return "no initializer"
    t = graph.initializer.pop(draw(st.integers(0, len(graph.initializer) - 1)))
    return f"initializer '{t.name}' removed"


def _value_info(draw, proto):
    infos = list(proto.graph.input) + list(proto.graph.output)
    return infos[draw(st.integers(0, len(infos) - 1))]


def io_dims(draw, proto):
    info = _value_info(draw, proto)
    shape = info.type.tensor_type.shape
    old = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in shape.dim]
    new = _dims(draw, [d if isinstance(d, int) else 0 for d in old])
    if draw(st.booleans()) and new:
        new[draw(st.integers(0, len(new) - 1))] = draw(st.sampled_from(["N", "height", ""]))
    shape.ClearField("dim")
    for d in new:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        else:
            dim.dim_value = d
    return f"'{info.name}' shape {old} -> {new}"


def io_dtype(draw, proto):
    info = _value_info(draw, proto)
    info.type.tensor_type.elem_type = draw(st.sampled_from(DTYPES))
    return f"'{info.name}' elem_type -> {info.type.tensor_type.elem_type}"


def node_op(draw, proto):
    node = _pick(draw, proto.graph.node)
    old, node.op_type = node.op_type, draw(st.sampled_from(OPS))
    return f"node {node.name or node.output[0]!r} op {old} -> {node.op_type!r}"


def node_domain(draw, proto):
    node = _pick(draw, proto.graph.node)
    node.domain = draw(st.sampled_from(["com.microsoft", "ai.onnx.ml", "x.y", ""]))
    return f"node {node.name or node.output[0]!r} domain -> {node.domain!r}"


def attribute(draw, proto):
    node = _pick(draw, proto.graph.node)
    names = [a.name for a in node.attribute]
    name = draw(st.sampled_from(names + ATTRIBUTES) if names and draw(st.booleans()) else st.sampled_from(ATTRIBUTES))
    kept = [a for a in node.attribute if a.name != name]
    node.ClearField("attribute")
    node.attribute.extend(kept)
    if draw(st.integers(0, 4)) == 0:
        return f"node {node.name or node.output[0]!r} attribute {name} removed"
    value = draw(attribute_values)
    kind = onnx.AttributeProto.INTS if value == [] else None  # an empty list says nothing of its type
    node.attribute.append(helper.make_attribute(name, value, attr_type=kind))
    return f"node {node.name or node.output[0]!r} attribute {name}={value!r}"


def rewire(draw, proto):
    """Dangling inputs, cycles (an input from a later node), inputs dropped, added or swapped."""
    nodes = proto.graph.node
    i = draw(st.integers(0, len(nodes) - 1))
    node = nodes[i]
    how = draw(st.sampled_from(["dangling", "cycle", "drop", "extra", "swap", "self"]))
    names = [o for n in nodes for o in n.output] + [t.name for t in proto.graph.initializer] + ["x"]
    if how == "dangling" and node.input:
        node.input[draw(st.integers(0, len(node.input) - 1))] = "nowhere"
    elif how == "cycle" and node.input:
        later = [o for n in nodes[i:] for o in n.output]
        node.input[draw(st.integers(0, len(node.input) - 1))] = _pick(draw, later)
    elif how == "self" and node.input:
        node.input[0] = node.output[0]
    elif how == "drop" and node.input:
        del node.input[draw(st.integers(0, len(node.input) - 1))]
    elif how == "extra":
        node.input.append(draw(st.sampled_from(names + [""])))
    elif len(node.input) > 1:
        node.input[0], node.input[1] = node.input[1], node.input[0]
    return f"node {node.name or node.output[0]!r} inputs ({how}) -> {list(node.input)}"


def nodes_edit(draw, proto):
    """Nodes deleted, duplicated, moved; outputs renamed or added."""
    nodes = proto.graph.node
    i = draw(st.integers(0, len(nodes) - 1))
    how = draw(st.sampled_from(["delete", "duplicate", "move", "rename_output", "extra_output"]))
    if how == "delete":
        del nodes[i]
    elif how == "duplicate":
        nodes.insert(draw(st.integers(0, len(nodes))), nodes[i])
    elif how == "move":
        node = onnx.NodeProto()
        node.CopyFrom(nodes[i])
        del nodes[i]
        nodes.insert(draw(st.integers(0, len(nodes))), node)
    elif how == "rename_output":
        nodes[i].output[0] = draw(st.sampled_from(["x", "y", "renamed", nodes[-1].output[0]]))
    else:
        nodes[i].output.append("spare")
    return f"node #{i}: {how}"


def graph_output(draw, proto):
    """The graph's output moved to an intermediate value (a legitimate model, to compare with ONNX Runtime), or
    more outputs."""
    names = [o for n in proto.graph.node for o in n.output]
    out = proto.graph.output
    if draw(st.booleans()):
        name = draw(st.sampled_from(names))
        out[0].CopyFrom(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        return f"graph output -> '{name}'"
    out.append(helper.make_tensor_value_info(draw(st.sampled_from(names)), TensorProto.FLOAT, None))
    return "a second graph output"


def versions(draw, proto):
    if draw(st.booleans()):
        proto.opset_import[0].version = draw(st.sampled_from([1, 6, 7, 9, 10, 11, 12, 13, 18, 21, 22, 99]))
        return f"opset -> {proto.opset_import[0].version}"
    proto.ir_version = draw(st.sampled_from([0, 3, 4, 7, 10, 11, 99]))
    return f"ir_version -> {proto.ir_version}"


STRUCTURAL = [initializer_dims, initializer_dtype, initializer_values, initializer_missing, io_dims, io_dtype,
              node_op, node_domain, attribute, attribute, rewire, nodes_edit, graph_output, versions]


class Mutant:
    """A mutated file's bytes; shown (in a failure) by what was done to which seed."""

    def __init__(self, data, what):
        self.data, self.what = data, what

    def __repr__(self):
        return f"Mutant({self.what!r}, {len(self.data)} bytes)"


@st.composite
def mutants(draw):
    """A :class:`Mutant` of one seed model."""
    seed = draw(st.sampled_from(sorted(SEED_BYTES)))
    data = SEED_BYTES[seed]
    kind = draw(st.sampled_from(["flip", "truncate", "structure", "structure", "structure"]))
    # Positions uniform over the file (Hypothesis's own integers favour the ends): a Random it seeds and shrinks
    rnd = draw(st.randoms(use_true_random=False))
    if kind == "flip":  # anywhere in the file, weights included
        out = bytearray(data)
        spots = sorted(rnd.randrange(len(data)) for _ in range(draw(st.integers(1, 3))))
        for i in spots:
            out[i] ^= rnd.randrange(1, 256)
        return Mutant(bytes(out), f"{seed}: bytes changed at {spots}")
    if kind == "truncate":
        n = rnd.randrange(len(data))
        return Mutant(data[:n], f"{seed}: truncated to {n} of {len(data)} bytes")
    proto = onnx.load_from_string(data)
    done = [draw(st.sampled_from(STRUCTURAL))(draw, proto) for _ in range(draw(st.integers(1, 3)))]
    return Mutant(proto.SerializeToString(), f"{seed}: " + "; ".join(done))


def assert_case_passes(worker, data, what):
    """Run one case in the worker and fail with ``what`` unless it is refused cleanly or runs right."""
    (outcome, *rest), (references, agree) = worker.run(data)
    if outcome == "hang":
        pytest.fail(f"{what}: no outcome within {rest[0]} s (a hang)")
    if outcome == "died":
        pytest.fail(f"{what}: the worker died importing or running it ({rest[0]})")
    if outcome == "finding":
        pytest.fail(f"{what}: {rest[0]}")
    if outcome == "ran":
        try:
            fuzz_import.judge(rest[1], references, agree)
        except fuzz_import.Finding as exc:
            pytest.fail(f"{what}: {exc}")
    return outcome, rest


def test_every_seed_loads_and_agrees_with_onnxruntime(worker):
    for name, data in SEED_BYTES.items():
        outcome, _ = assert_case_passes(worker, data, name)
        assert outcome == "ran", name


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(mutant=mutants())
def test_mutants_are_refused_clearly_or_run_right(worker, mutant):
    outcome, _ = assert_case_passes(worker, mutant.data, mutant.what)
    event(f"{mutant.what.split(': ')[1].split(' ')[0]}: {outcome}")  # --hypothesis-show-statistics tallies these


# --- what the fuzz found, each kept as a case with the message it now gets -------------------------------------------
def _seed(name):
    return onnx.load_from_string(SEED_BYTES[name])


def _refusal(proto, tmp_path):
    import dropcore.onnx as dx

    path = tmp_path / "found.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(dx.OnnxImportError) as info:
        dx.load(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_initializer_whose_data_does_not_fit_its_dims(tmp_path):
    proto = _seed("nhwc")
    shape = next(t for t in proto.graph.initializer if t.name == "shape")
    shape.ClearField("dims")
    shape.dims.append(1)  # 16 bytes of data: two int64 values where the dims say one
    assert ("initializer 'shape': dims [1] of INT64 need 1 values (8 bytes); its data holds 16 bytes of raw data"
            in _refusal(proto, tmp_path))


def test_graph_input_of_no_element_type(tmp_path):
    proto = _seed("branches")
    proto.graph.input[0].type.tensor_type.elem_type = TensorProto.UNDEFINED
    assert "input 'x' has element type UNDEFINED; dropcore takes float32 (FLOAT)" in _refusal(proto, tmp_path)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_weights(tmp_path, value):
    proto = _seed("branches")
    i = next(i for i, t in enumerate(proto.graph.initializer) if t.name == "wb")
    w = numpy_helper.to_array(proto.graph.initializer[i]).copy()
    w[1, 2, 0, 0] = value
    proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, "wb"))
    # the index is in dropcore's layout: (kh, kw, in, out) for ONNX's (out, in, kh, kw)
    assert (f"node 'conv_b' (Conv, opset 17): weight 'kernel' of the Conv2D 'conv_b' holds 1 non-finite value "
            f"({value} at index (0, 0, 2, 1)); expected finite numbers") in _refusal(proto, tmp_path)


def test_transpose_whose_perm_does_not_fit_the_rank(tmp_path):
    proto = _seed("nhwc")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    del dims[0]  # rank 3 now; the Transpose still permutes 4 axes
    message = _refusal(proto, tmp_path)
    assert "(Transpose, opset 17): perm=[0, 3, 1, 2] on input 'x' of rank 3: expected a permutation of [0, 1, 2]" \
        in message


def test_gather_out_of_range_on_a_shape(tmp_path):
    proto = _seed("shape_arithmetic")
    i = next(i for i, t in enumerate(proto.graph.initializer) if t.name == "zero")
    proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array(7, np.int64), "zero"))
    message = _refusal(proto, tmp_path)
    assert ("(Gather, opset 18): axis=0 with indices 7 on the constant 'shape' of shape [4]: expected an axis of it "
            "and integer indices within its size there") in message
    assert "Unsqueeze" not in message  # the nodes after it are skipped, not reported as faults of their own


def test_node_name_not_utf8_still_loads(tmp_path):
    import dropcore.onnx as dx

    proto = _seed("exported")
    node = next(n for n in proto.graph.node if n.op_type == "BatchNormalization")
    node.name = "bn_AAAA"
    data = proto.SerializeToString().replace(b"bn_AAAA", b"bn_\xff\xfe\xa5A")
    path = tmp_path / "name.onnx"
    path.write_bytes(data)
    model = dx.load(path)
    assert any(layer.name.startswith("bn_") for layer in model.layers)
    x = np.random.default_rng(0).normal(size=(2,) + model.input_shape[1:]).astype(np.float32)
    assert np.isfinite(model.predict(x)).all()


def test_flattening_a_huge_nchw_input_is_refused_before_allocating(tmp_path):
    proto = _seed("branches")
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = 2**31 - 1  # the convolutions and global pooling take it; nothing allocates but a Flatten
    del proto.graph.output[0].type.tensor_type.shape.dim[:]
    proto.graph.node[9].input[0] = "res"  # Flatten the (N, 4, 2**31 - 1, 5) tensor itself
    message = _refusal(proto, tmp_path)
    assert f"flattens to {4 * (2**31 - 1) * 5} features per sample; dropcore reorders at most 67108864" in message


def test_a_model_too_large_to_run_is_refused_by_predicts_workspace_check(worker):
    """An input of 2**31 - 1 rows loads (nothing in it needs memory until it runs); predict's workspace check
    refuses it before an input could even be made."""
    proto = _seed("branches")
    proto.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 2**31 - 1
    outcome, rest = assert_case_passes(worker, proto.SerializeToString(), "huge input")
    assert outcome == "refused" and "predict: WorkspaceLimitError" in rest[0], rest


def test_auto_pad_of_no_known_value(tmp_path):
    """Read as NOTSET, it would pad otherwise than the file says (ONNX Runtime refuses it)."""
    proto = _seed("branches")
    attr = next(a for a in proto.graph.node[0].attribute if a.name == "auto_pad")
    attr.s = b"SAME_\xffPPER"
    assert "node 'conv_a' (Conv, opset 17): auto_pad='SAME_\ufffdPPER': expected NOTSET, SAME_UPPER, SAME_LOWER or " \
        "VALID" in _refusal(proto, tmp_path)


def test_concat_of_constants_of_different_ranks(tmp_path):
    proto = _seed("shape_arithmetic")
    i = next(i for i, t in enumerate(proto.graph.initializer) if t.name == "minus1")
    proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.array(-1, np.int64), "minus1"))
    assert ("(Concat, opset 18): axis=0 on constants of shapes [[1], []]: expected one rank, an axis of it, and the "
            "same sizes on the other axes") in _refusal(proto, tmp_path)


def test_non_finite_scale(tmp_path):
    proto = _seed("shape_arithmetic")
    i = next(i for i, t in enumerate(proto.graph.initializer) if t.name == "scale")
    proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.float32(np.nan), "scale"))
    assert ("(Mul, opset 18): the constant 'scale' holds 1 non-finite value (nan at index ()); expected finite "
            "numbers") in _refusal(proto, tmp_path)


def test_squeeze_of_a_scalar_constant(tmp_path):
    proto = _seed("shape_arithmetic")
    proto.graph.node[8].op_type = "Squeeze"  # the Unsqueeze of the batch size (a scalar) made a Squeeze
    assert ("(Squeeze, opset 18): axes=[0] on the constant 'n' of shape []: expected axes of it, each of size 1"
            in _refusal(proto, tmp_path))

