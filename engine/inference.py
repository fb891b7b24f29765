"""The one inference path of a built model, which ``Model.predict``, ``evaluate``, validation in ``fit`` and
:class:`dropcore.Predictor` all run: :class:`Inference`.

It owns what a prediction decides: the model's compiled program on the Cython kernels (``dropcore.program``) or,
on the reference kernels or without the Cython kernels, the executor's training plan in inference mode on a kernel
set; the loop over batches; the deadline; each sample's row in the whole input (Monte-Carlo masks follow it); a
final softmax left out for a loss fused with it (``logits``); and Monte-Carlo dropout, the mean and standard
deviation over passes with dropout active.
"""
from contextlib import nullcontext

import numpy as np

from .errors import check_deadline
from .kernels import threads as thread_pools
from .layers.base import INFERENCE, Context
from .validation import check_int


def random_seed():
    """A fresh seed for a prediction or a model that was given none."""
    return int(np.random.SeedSequence().entropy % (2**32))


class Inference:
    """What runs the predictions of one built graph: ``graph`` (planned), its training ``plan``, ``sample_shape``,
    its ``layers``, the kernel set ``kernels`` the executor runs on ("cython", "numba" or "reference": the
    reference runs the executor as asked; the others the compiled program, when the Cython kernels are built) and at
    most ``threads`` threads per call (``None``: the process's count).

    Programs are compiled on first use (:meth:`compile` does it now, for a service) and read the weights by
    reference, so a model training between two predictions needs no recompiling. Holds no per-call state: any number
    of threads may predict at once.
    """

    def __init__(self, graph, plan, sample_shape, layers, kernels, threads=None):
        self.graph, self.plan, self.sample_shape = graph, plan, tuple(sample_shape)
        self.layers, self.kernels, self.threads = list(layers), kernels, threads
        self._programs = {}  # (mc, logits) -> Program, or None without the Cython kernels

    def program(self, mc=False, logits=False):
        """The compiled program (with dropout active for ``mc``; without a final softmax for ``logits``), or
        ``None``: on the reference kernels, or without the Cython kernels (then :func:`dropcore.info` warns once)."""
        if self.kernels == "reference":
            return None
        key = (mc, logits)
        if key not in self._programs:  # two threads racing here compile the same program: either is right
            from .info import warn_if_no_cython
            from .program import compile_program

            self._programs[key] = compile_program(self.graph, self.sample_shape, mc, logits) \
                if warn_if_no_cython() else None
        return self._programs[key]

    def compile(self):
        """Compile the plain and the Monte-Carlo programs now, so that the first prediction compiles nothing (without
        the Cython kernels: load the executor's kernel set now)."""
        if self.program() is None:
            from .ops import get_ops

            get_ops(self.kernels)
        self.program(mc=True)
        return self

    @property
    def engine(self):
        """"cython-program" (the compiled program) or "executor" (the plan on ``kernels``)."""
        return "executor" if self.program() is None else "cython-program"

    def outputs(self, x, batch_size, ctx=INFERENCE, logits=False, deadline=None):
        """One pass over the checked float32 ``x`` in batches of ``batch_size``, dropout active where
        ``ctx.dropout`` (``ctx.row``: where ``x`` starts in the whole input)."""
        program = self.program(mc=ctx.dropout, logits=logits)
        if program is not None:
            return program.predict(x, batch_size, ctx, deadline)
        from .ops import get_ops

        ops = get_ops(self.kernels)
        with thread_pools.engine_call(ops.name, self.threads):
            return forward_batches(self.plan, ops, x, batch_size, ctx, logits, deadline)

    def predict(self, x, batch_size, mc_samples=None, seed=None, deadline=None, row=0):
        """The outputs for the checked ``x``, or ``(mean, std)`` over ``mc_samples`` Monte-Carlo passes (pass ``i``
        draws the masks of ``(seed, step=i)``; ``x``'s first sample is row ``row`` of the whole input)."""
        if mc_samples is None and self.threads is None:  # a plain prediction, the serving path: straight to the
            program = self.program()  # program, without the Monte-Carlo and thread wrappers (1-2 us at batch 1)
            if program is not None:
                return program.predict(x, batch_size, INFERENCE, deadline)
        return self.in_threads(lambda: monte_carlo(
            lambda ctx: self.outputs(x, batch_size, ctx.at_row(row), deadline=deadline), self.layers, mc_samples,
            seed, deadline))

    def in_threads(self, run):
        """``run()`` with this calling thread's OpenMP regions held to ``threads`` (the process cap still holds)."""
        with nullcontext() if self.threads is None else thread_pools.threads(self.threads, "openmp"):
            return run()


def predict_outputs(plan, ops, x, batch_size, mc_samples=None, seed=None, deadline=None, row=0):
    """Run the executor's ``plan`` on checked ``x`` in batches, on the kernel set ``ops``: the outputs, or
    ``(mean, std)`` over ``mc_samples`` dropout passes (``x``'s first sample at ``row`` of the whole input). Holds
    no state, so concurrent calls never interact; the tests' reference for the compiled programs."""
    return monte_carlo(lambda ctx: forward_batches(plan, ops, x, batch_size, ctx.at_row(row), deadline=deadline),
                       [step.layer for step in plan.steps], mc_samples, seed, deadline)


def monte_carlo(forward, layers, mc_samples=None, seed=None, deadline=None):
    """``forward(ctx)`` in inference mode, or ``(mean, std)`` over ``mc_samples`` passes with dropout active:
    pass ``i`` draws the masks of ``(seed, step=i)``. ``layers``: the model's, of which one must draw noise for
    Monte-Carlo passes to differ (else a ValueError, not a silent std of 0). ``deadline``: a ``time.monotonic()``
    value; past it, ``DeadlineExceeded`` is raised before the next pass (and before the next batch, by the forwards
    given it)."""
    if mc_samples is None:
        return forward(INFERENCE)
    n = check_int(mc_samples, "mc_samples", 1, "predict")
    check_stochastic(layers, n)
    seed = random_seed() if seed is None else check_int(seed, "seed", 0, "predict")
    mean = m2 = None
    for i in range(n):  # Welford's running mean and variance: one pass per sample, no stack of outputs
        check_deadline(deadline, f"after {i} of mc_samples={n} passes")
        y = forward(Context(training=False, dropout=True, seed=seed, step=i)).astype(np.float64)
        if mean is None:
            mean, m2 = y, np.zeros_like(y)
        else:
            delta = y - mean
            mean += delta / (i + 1)
            m2 += delta * (y - mean)
    return mean.astype(np.float32), np.sqrt(m2 / n).astype(np.float32)


def check_stochastic(layers, mc_samples):
    """Raise a ValueError naming the fix when none of ``layers`` draws noise in a Monte-Carlo pass: every pass would
    be the same and the standard deviation 0 (a PyTorch model exported in eval mode has lost its Dropout nodes)."""
    if not any(layer.stochastic for layer in layers):
        raise ValueError(
            f"predict: mc_samples={mc_samples} needs a layer that draws noise in Monte-Carlo passes (Dropout, "
            f"SpatialDropout2D, AlphaDropout, GaussianDropout, GaussianNoise, DropBlock2D or MaxPoolingDropout2D, "
            f"with a rate above 0); this model has none, so every pass would be the same and the std 0. A model "
            f"exported from PyTorch in eval mode has lost its Dropout: put its Dropout modules in train mode and "
            f"export with training=torch.onnx.TrainingMode.PRESERVE, or add Dropout layers and train")


def forward_batches(plan, ops, x, batch_size, ctx, logits=False, deadline=None):
    """The executor's ``plan`` in inference mode over ``x`` in batches (masks keyed by row in the whole input)."""
    out = None
    for start in range(0, len(x), batch_size):
        if start:
            check_deadline(deadline, f"after {start} of {len(x)} samples")
        y, _ = plan.forward(ops, x[start:start + batch_size], ctx.at_row(start), logits=logits)
        if out is None:
            out = np.empty((len(x),) + y.shape[1:], np.float32)
        out[start:start + len(y)] = y
    return out
