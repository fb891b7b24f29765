"""``Predictor``: inference only, on the ahead-of-time Cython kernels, safe to share between threads.

A Predictor owns a private copy of a model's graph and weights (frozen read-only), so training the original model
later changes nothing here, and nothing on the request path writes shared state: each call runs the model's
compiled inference program (``dropcore.program``) on its thread's own buffers, Monte-Carlo dropout included.
Neither importing dropcore nor predicting imports Numba (unless the Cython kernels were not built, in which case the
Predictor warns once and runs the executor on the Numba kernels; ``Predictor.engine`` says which runs).
"""
import copy
import os
from dataclasses import replace

import numpy as np

from . import workspace
from .errors import check_deadline
from .inference import Inference, monte_carlo
from .info import warn_if_no_cython
from .model import Model
from .validation import check_int


def _frozen_copy(model):
    """A new Model over deep copies of ``model``'s graph and layers, with read-only weights and no gradients."""
    if model.plan is None:
        raise ValueError(f"Predictor: Model '{model.name}' is not built yet, so it has no weights: give it an Input "
                         f"or call it on data first")
    inputs, outputs = copy.deepcopy((model.input, model.output))
    clone = Model(inputs, outputs, name=model.name)
    clone._seed = model.seed
    for layer in clone._layers:
        layer.grads = {}
        for w in layer.weights.values():
            w.flags.writeable = False  # any write on the request path would raise instead of racing
    return clone


class Predictor:
    """Run a trained model for inference: ``Predictor(model_or_path).predict(x)``.

    ``model_or_path``: a built :class:`dropcore.Model` (its weights are copied), the path of a model file written
    by :func:`dropcore.save_model`, or that file's bytes (see :meth:`from_bytes`). One Predictor may serve any number
    of threads at once.
    ``threads``: at most this many threads for each prediction (default: :func:`dropcore.get_num_threads`), e.g.
    one per request when a server runs several requests side by side.
    """

    def __init__(self, model_or_path, threads=None):
        if isinstance(model_or_path, (str, os.PathLike, bytes, bytearray, memoryview)):
            from .io import load_model

            model = load_model(model_or_path, compile=False)
        elif isinstance(model_or_path, Model):
            model = model_or_path
        else:
            raise TypeError(f"Predictor: expected a dropcore Model, a model file path or its bytes, received "
                            f"{type(model_or_path).__name__}")
        self._model = _frozen_copy(model)
        self.threads = None if threads is None else check_int(threads, "threads", 1, "Predictor")
        self.kernels = "cython" if warn_if_no_cython() else "numba"
        # The one inference path (dropcore.inference), its programs (plain and Monte-Carlo: the graph lowered into
        # direct kernel calls, conv + pool fused) compiled now, so that the first request compiles nothing.
        m = self._model
        self._inference = Inference(m.graph, m.plan, m.input.shape, m.layers, self.kernels, self.threads).compile()

    @classmethod
    def from_bytes(cls, data, threads=None):
        """A Predictor for the model file whose bytes are ``data`` (as :func:`dropcore.model_to_bytes` gives): how
        workers that received a model once build their own, with no file and no pickled Predictor."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"Predictor.from_bytes: expected the model file's bytes, received {type(data).__name__}")
        return cls(data, threads=threads)

    @property
    def engine(self):
        """What runs predictions: "cython-program" (the compiled inference program) or "executor" (the plan on
        the Numba kernels, when the Cython kernels are not built)."""
        return self._inference.engine

    @property
    def name(self):
        return self._model.name

    @property
    def input_name(self):
        """The name of the model's Input (``Input(shape, name=...)``, kept in the model file): what a protocol that
        names tensors, such as the Open Inference Protocol of ``dropcore serve``, calls the input."""
        return self._model.input.name

    @property
    def input_shape(self):
        return self._model.input_shape

    @property
    def output_shape(self):
        return self._model.output_shape

    def predict(self, x, batch_size=None, mc_samples=None, seed=None, deadline=None, row=0):
        """Outputs for ``x`` in batches of ``batch_size`` (default 256), as ``Model.predict``.

        With ``mc_samples=N``, Monte-Carlo dropout: dropout stays active (batch normalization on its moving
        statistics) and ``(mean, std)`` over the N passes is returned; the same ``seed`` gives the same result, equal
        to ``Model.predict(x, mc_samples=N, seed=seed)`` within float tolerance.
        ``deadline``: a ``time.monotonic()`` value; once it has passed the prediction stops before its next pass or
        batch and raises :class:`dropcore.errors.DeadlineExceeded` (a kernel call under way is not interrupted, so
        the overrun is at most one batch of one pass).
        ``row``: where ``x`` starts in a larger input scored in pieces (Monte-Carlo masks follow a sample's row in
        the whole input), so that the pieces' answers are the rows of the whole one's.
        """
        model = self._model
        x = model.check_input(x)
        batch_size = 256 if batch_size is None else check_int(batch_size, "batch_size", 1, "predict")
        row = check_int(row, "row", 0, "predict")
        if deadline is not None:
            deadline = float(deadline)
            check_deadline(deadline, "before it started")
        workspace.check(model, min(batch_size, len(x)), False, self._inference.program(mc=mc_samples is not None))
        return self._inference.predict(x, batch_size, mc_samples, seed, deadline, row)

    def _predict_segments(self, x, segments, mc_samples, seed, deadline=None):
        """Monte-Carlo ``(mean, std)`` for ``x``, checked and joined from several inputs: rows ``start:stop`` of each
        ``(start, stop, 0)`` in ``segments`` draw the masks they would draw alone, so each input's rows of the
        answer equal ``predict(that input, mc_samples=..., seed=...)`` (what :class:`BatchingPredictor` coalesces
        with). On the compiled program only (``engine == "cython-program"``), in one kernel call per pass."""
        program, model = self._inference.program(mc=True), self._model
        segments = tuple(segments)

        def forward(ctx):
            out = np.empty((len(x),) + program._output_shape, dtype=np.float32)
            program.run(x, out, replace(ctx, segments=segments))
            return out

        return self._inference.in_threads(lambda: monte_carlo(forward, model.layers, mc_samples, seed, deadline))
