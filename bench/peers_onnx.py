"""The ONNX Runtime peer: the benchmark models exported with ``dropcore.onnx`` (the library's exporter).

The graph takes NHWC float32 input like dropcore, transposes it once to NCHW, and keeps Keras's channels-last
flatten order by permuting the Dense (Gemm) rows after a Flatten. Dropout is the identity at inference and is left
out; the softmax head is kept, so outputs are probabilities like ``model.predict``.
"""
OPSET = 17
IR_VERSION = 8  # what onnxruntime >= 1.16 reads: the IR version dropcore.onnx writes at this opset


def import_onnx():
    """``(onnx, onnxruntime)``, or an ImportError saying how to install them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ImportError("ONNX Runtime is not installed: pip install 'dropcore[onnx]' (onnx, onnxruntime)") from e
    return onnx, onnxruntime


def to_onnx(model):
    """An ``onnx.ModelProto`` computing ``model.predict`` (inference mode) with the same weights."""
    import_onnx()
    from dropcore.onnx import to_proto

    return to_proto(model, opset=OPSET)


class OnnxPeer:
    """An ONNX Runtime CPU session on the exported model, with ``threads`` intra-op threads."""

    def __init__(self, model, threads):
        _, ort = import_onnx()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(to_onnx(model).SerializeToString(), opts,
                                            providers=["CPUExecutionProvider"])

    def predict(self, x):
        return self.session.run(["output"], {"input": x})[0]  # dropcore.onnx's graph input and output


def version():
    try:
        onnx, ort = import_onnx()
    except ImportError:
        return None
    return f"{ort.__version__} (onnx {onnx.__version__})"
