"""An inference program: a model's graph lowered into a flat list of Cython kernel calls on reused buffers.

Why: a service's requests are small, and at batch 1 the per-layer Python of the training executor (the plan's
bookkeeping, each layer's ``forward`` and closure, each kernel wrapper's checks and allocations: 3-5 us a layer)
was a third of a prediction. A program works the geometry out once per batch size and binds each step to the
kernel that suits it; a prediction is then one loop of kernel calls on preallocated buffers. It starts from the
unfused graph and applies the inference fusion rules (``dropcore.fusion``): a batch normalization is folded into
the convolution or dense layer before it, a residual ``Add`` runs in the step of the convolution producing one of
its operands, a convolution and the max pooling after it run in one pass (the convolution's output never goes to
memory: cifar's first layer writes 59 MB at batch 256 otherwise), a ReLU goes into the kernel before it, and
Dropout is the identity (no step at all).

Each layer lowers itself (``Layer.lower``, ``dropcore.lowering``): to its bound Cython kernels, or to its own
forward on the "cython" kernel set (Cython forwards, the NumPy reference for the rest) where it has none, so every
graph, branches included, compiles. With ``mc=True`` the dropout layers lower to Monte-Carlo kernels that draw
their masks from each call's context: MC dropout runs on the Cython kernels too, without Numba.

Weights are bound by reference and whatever derives from them (batch normalization's scale, a folded kernel's
weights: ``dropcore.folding``) is worked out per call, so a program stays right while its model trains: every
weight update in dropcore is in place. Only read-only weights (a Predictor's) are derived from once.

Buffers: steps share them, a step's output going into memory whose value no later step reads, and a batch whose
buffers would not stay in cache runs in tiles of rows that do (``Program.tile_rows``): the same bits, since every
kernel gives a row the same result in any batch.

Thread safety: the bound kernels are shared and read-only; the buffers are per thread (each thread keeps those of
its last two batch sizes, up to ``KEEP_BYTES`` each: a service holds its intermediate activations per serving
thread).
"""
import threading
from collections import namedtuple
from dataclasses import replace

import numpy as np

from . import fusion
from .kernels.alignment import aligned_empty
from .errors import check_deadline
from .layers.base import INFERENCE
from .lowering import Lowering

#: Per thread, the buffers of at most this many batch sizes are kept between calls, and only sets of at most
#: ``KEEP_BYTES`` (``mnist_cnn`` at batch 256 needs about 30 MB).
KEEP_SIZES = 2
KEEP_BYTES = 128 * 2**20

#: A batch whose buffers would take more than this many bytes runs through the program in tiles of rows whose
#: buffers fit in it (see :meth:`Program.tile_rows`), of at least ``MIN_TILE`` rows, unless the weights are more
#: than ``1 / TILE_WEIGHT_SHARE`` of a tile's buffers (each tile reads them again).
TILE_BYTES = 8 * 2**20
MIN_TILE = 8
TILE_WEIGHT_SHARE = 4


def _lower(graph, lowering, logits, fused=None, layers=None):
    """The graph's steps, fused with the inference rules and lowered: ``(ops, output_id)`` with each op
    ``(kernel, input ids, output id, several_inputs)``. ``fused``: a list that gets the fusions made
    (``fusion.apply``'s log); ``layers``: a list that gets each op's layer."""
    steps, output_id = graph.copy_steps(), graph.output_id
    if not lowering.mc:
        steps, output_id = fusion.remove_identities(steps, output_id)
    steps = fusion.apply(fusion.INFERENCE, steps, output_id, fused)
    if logits and steps:  # a fused loss takes the logits: the final softmax/sigmoid is left out
        last = steps[-1]
        if last.layer.pure_activation:
            steps.pop()
            output_id = last.inputs[0]
        elif "activation" in last.layer.OPTIONS:
            last.set_option("activation", "linear")
    ops, alias, fresh = [], {}, -1
    for step in steps:
        ins = tuple(alias.get(t, t) for t in step.inputs)
        kernels = step.layer.lower(lowering, step)
        if not kernels:  # the identity (a linear Activation, a Dropout with rate 0)
            alias[step.output] = ins[0]
            continue
        several = step.layer.n_inputs != 1
        for j, kernel in enumerate(kernels):
            out = step.output if j == len(kernels) - 1 else fresh
            fresh -= 1
            ops.append((kernel, ins, out, several and j == 0))
            if layers is not None:
                layers.append(step.layer)
            ins = (out,)
    return ops, alias.get(output_id, output_id)


class StepCall(namedtuple("StepCall", "name layer source run inputs output ctx")):
    """One step of a program bound to its arrays (:meth:`Program.step_calls`): its ``name`` (as
    :attr:`Program.steps`), ``layer`` name, ``source`` (:attr:`Program.step_sources`), bound ``run`` (``None`` for a
    reshape, whose ``output`` is a view of its input), ``inputs``, ``output`` buffer and the ``ctx`` it reads (or
    ``None``). Calling it runs the step once."""

    __slots__ = ()

    def __call__(self):
        if self.run is not None:
            self.run(*self.inputs, self.output, *(() if self.ctx is None else (self.ctx,)))


class Program:
    """A compiled inference program (see the module docstring); built by :func:`compile_program`."""

    def __init__(self, ops, input_id, output_id, sample_shape, fused=(), layers=None):
        #: the fusions the inference rules made: ``(rule name, producer layer, consumer layer)`` each
        self.fused = list(fused)
        layers = list(layers) if layers is not None else [None] * len(ops)
        #: the name of the layer each of :attr:`steps` runs (a fused step: the layer the others went into)
        self.step_layers = [getattr(layer, "name", None) for layer in layers]
        slots = {input_id: 0}
        for _, ins, out, _ in ops:
            slots.setdefault(out, len(slots))
        self._names = [kernel.name for kernel, _, _, _ in ops]
        # how each step is called: (bind, input slots, output slot, several inputs, uses ctx)
        self._wiring = [(kernel.bind, tuple(slots[t] for t in ins), slots[out], several, kernel.uses_ctx)
                        for kernel, ins, out, several in ops]
        self._nslots = len(slots)
        self._views = [kernel.name == "reshape" for kernel, _, _, _ in ops]  # steps whose output aliases its input
        self._out_slot = slots[output_id]
        self._last = self._writer_of_output(ops, input_id, output_id)
        self._sample_shape = tuple(sample_shape)
        self._bound = {}  # batch size -> [(run, y_shape)], shared by all threads
        self._last_reader = self._lifetimes()
        #: bytes of the weights the program's layers hold (each tile of a large batch reads them again)
        self.weight_bytes = sum(int(w.nbytes) for layer in {id(l): l for l in layers if l is not None}.values()
                                for w in layer.get_weights())
        self._local = threading.local()
        # Bound once at batch 1 (every kernel checks its operands' shapes), for the output's shape.
        shapes = [(1,) + self._sample_shape] + [None] * (self._nslots - 1)
        #: the module each of :attr:`steps`'s kernels is defined in ("" for a reshape, which runs nothing):
        #: ``dropcore.kernels...`` for a compiled kernel, ``dropcore.lowering`` for a layer's own forward
        self.step_sources = []
        for (run, shape), (_, _, slot, _, _) in zip(self._bind(1), self._wiring):
            shapes[slot] = shape
            self.step_sources.append(_source(run))
        self._compiled = [not source or source.startswith("dropcore.kernels") for source in self.step_sources]
        self._output_shape = tuple(shapes[self._out_slot][1:])
        #: bytes of the intermediate buffers one sample of a batch takes (steps share them: :meth:`_shared_buffers`)
        self.buffer_bytes = sum(block.nbytes for block in self._shared_buffers(self._bind(1))[1])
        #: bytes one sample needs while this program runs: its share of the intermediate buffers (the last kernel
        #: writes the caller's array, counted once as the output), the input and output, and the largest scratch a
        #: layer's kernel takes (``Layer.workspace_bytes``: an im2col panel). The workspace limit checks
        #: predictions against it (``dropcore.workspace``), not against the training plan's estimate: the program
        #: keeps its buffers between calls, so that it allocates nothing per call.
        self.sample_bytes = self.buffer_bytes + 4 * (int(np.prod(self._sample_shape)) +
                                                     int(np.prod(self._output_shape)))
        self.sample_bytes += max((layer.workspace_bytes(shape[1:]) for layer, (run, shape) in
                                  zip(layers, self._bind(1)) if layer is not None and run is not None), default=0)

    @staticmethod
    def _writer_of_output(ops, input_id, output_id):
        """The index of the kernel whose output is the program's output (through reshapes only): it writes the
        caller's array directly. -1 when the output is a reshape of the input."""
        producer = {out: i for i, (_, _, out, _) in enumerate(ops)}
        t = output_id
        while t != input_id:
            i = producer[t]
            if ops[i][0].name != "reshape":
                return i
            t = ops[i][1][0]
        return -1

    @property
    def steps(self):
        """The kernel calls (and reshapes) a prediction runs, in order: e.g. ``["conv2d+max_pool2d", "reshape",
        "dense", "softmax"]``."""
        return list(self._names)

    @property
    def uncompiled(self):
        """The steps (as :attr:`steps` names them) that run without a compiled kernel: NumPy's, or a layer's own
        forward on the NumPy reference (reshapes, which run nothing, are not listed)."""
        return [name for name, ok in zip(self._names, self._compiled) if not ok]

    @property
    def uncompiled_layers(self):
        """``(step name, layer name)`` for each of :attr:`uncompiled`."""
        return [(name, layer) for name, layer, ok in zip(self._names, self.step_layers, self._compiled) if not ok]

    def step_calls(self, x, ctx=INFERENCE):
        """The steps of a run on the checked float32 batch ``x``, one :class:`StepCall` each, for tools that time or
        examine them one at a time (``bench.scaling``, ``dropcore.compiled_paths``). Each reads its real inputs:
        call them in order, since a step reads what the ones before it wrote (on this thread's buffers)."""
        bound = self._bind(len(x))
        buffers = self._buffers(len(x), bound)
        values = [None] * self._nslots
        values[0] = np.ascontiguousarray(x)
        calls = []
        for i, ((run, shape), (_, ins, slot, _, uses_ctx)) in enumerate(zip(bound, self._wiring)):
            inputs = tuple(values[j] for j in ins)
            if run is None:
                values[slot] = inputs[0].reshape(shape)
            else:  # (the last kernel writes the caller's array in a run: here an array of its own)
                values[slot] = aligned_empty(shape) if i == self._last else buffers[i]
            calls.append(StepCall(self._names[i], self.step_layers[i], self.step_sources[i], run, inputs,
                                  values[slot], ctx if uses_ctx else None))
        return calls

    def _bind(self, n):
        bound = self._bound.get(n)
        if bound is None:
            shapes, bound = [None] * self._nslots, []
            shapes[0] = (n,) + self._sample_shape
            for bind, ins, out, several, _ in self._wiring:
                run, shape = bind([shapes[i] for i in ins] if several else shapes[ins[0]])
                shapes[out] = tuple(shape)
                bound.append((run, tuple(shape)))
            self._bound[n] = bound  # two threads racing here both bind the same thing
        return bound
    def _buffers(self, n, bound):
        """This thread's intermediate buffers for batches of ``n``: kept for the next call (fresh 30-60 MB
        outputs cost page faults on every call) for the last ``KEEP_SIZES`` batch sizes (full batches and the
        last, partial one), unless they are larger than ``KEEP_BYTES`` (a one-off huge batch is not held)."""
        kept = getattr(self._local, "buffers", None)
        if kept is None:
            kept = self._local.buffers = {}
        buffers = kept.get(n)
        if buffers is not None:
            if next(reversed(kept)) != n:
                kept[n] = kept.pop(n)  # most recently used last
            return buffers
        buffers, blocks = self._shared_buffers(bound)
        if sum(block.nbytes for block in blocks) <= KEEP_BYTES:
            kept[n] = buffers
            while len(kept) > KEEP_SIZES:
                del kept[next(iter(kept))]
        return buffers

    def predict(self, x, batch_size, ctx=INFERENCE, deadline=None):
        """The outputs for the checked float32 batch ``x``, in batches of ``batch_size``; ``ctx`` selects the
        Monte-Carlo dropout masks of a program compiled with ``mc=True``. Past ``deadline`` (``time.monotonic()``)
        it stops before the next batch (:class:`~dropcore.errors.DeadlineExceeded`)."""
        out = np.empty((len(x),) + self._output_shape, dtype=np.float32)
        step = self.tile_rows(min(batch_size, len(x)))  # (a tile: every kernel gives each row the same bits)
        if len(x) <= step:  # one batch (a request): no slicing
            self.run(x, out, ctx)
            return out
        for start in range(0, len(x), step):
            if start:
                check_deadline(deadline, f"after {start} of {len(x)} samples")
            # masks keyed by each sample's row in the whole input: the same answer at any batch size
            self.run(x[start:start + step], out[start:start + step], ctx.at_row(start))
        return out

    def run(self, x, out, ctx=INFERENCE):
        """Fill ``out`` (C-contiguous float32, the model's output shape for ``len(x)`` samples) with the outputs
        for the checked float32 batch ``x``."""
        bound = self._bind(len(x))
        buffers = self._buffers(len(x), bound)
        values = [None] * self._nslots
        values[0] = np.ascontiguousarray(x)
        last = self._last
        for i, ((run, shape), (_, ins, slot, several, uses_ctx)) in enumerate(zip(bound, self._wiring)):
            if run is None:
                values[slot] = values[ins[0]].reshape(shape)
                continue
            y = out.reshape(shape) if i == last else buffers[i]  # the last kernel writes the caller's array
            if uses_ctx and ctx.segments is not None:
                self._run_segments(i, [values[j] for j in ins], y, ctx)
            elif several:
                run(*[values[j] for j in ins], y, *((ctx,) if uses_ctx else ()))
            elif uses_ctx:
                run(values[ins[0]], y, ctx)
            else:
                run(values[ins[0]], y)
            values[slot] = y
        if last < 0:  # nothing but reshapes
            out[...] = values[self._out_slot].reshape(out.shape)


    def _run_segments(self, i, inputs, y, ctx):
        """Step ``i`` (one that draws masks) on each of ``ctx.segments`` apart: rows ``start:stop`` as an input of
        their own starting at ``row``, with the step bound for that many rows (its masks' shapes are)."""
        several = self._wiring[i][3]
        for start, stop, row in ctx.segments:
            run = self._bind(stop - start)[i][0]
            at = replace(ctx, row=row, segments=None)
            parts = [a[start:stop] for a in inputs]
            if several:
                run(*parts, y[start:stop], at)
            else:
                run(parts[0], y[start:stop], at)

    def _lifetimes(self):
        """For each step, the index of the last step that reads its output (reshapes alias their input: a read of
        a reshape is a read of the buffer under it); the program's output never ends (``len(steps)``)."""
        owner = {0: None}  # slot -> the step whose buffer holds it (None: the caller's input)
        last = list(range(len(self._wiring)))
        for i, (_, ins, slot, _, _) in enumerate(self._wiring):
            for j in ins:
                if owner.get(j) is not None:
                    last[owner[j]] = max(last[owner[j]], i)
            owner[slot] = owner.get(ins[0]) if self._views[i] else i
        if owner.get(self._out_slot) is not None:
            last[owner[self._out_slot]] = len(self._wiring)
        return last

    def _shared_buffers(self, bound):
        """Each step's output buffer (``None`` for a reshape and for the last kernel, which writes the caller's
        array), and the memory blocks under them: ``(buffers, blocks)``. Steps share memory: a step takes the
        smallest free block that holds its output, a block being free once the last step reading what it holds has
        run (so never one of the step's own inputs), else a new block. Why: with a buffer per step, a batch of 64
        through the breadth MobileNet wrote 75 MB of buffers, each cold in cache; shared, 33 MB, and a tile of 16
        rows (``tile_rows``) 8 MB."""
        free, buffers, releases, blocks = [], [None] * len(bound), {}, []
        for i, (run, shape) in enumerate(bound):
            if run is not None and i != self._last:
                need = int(np.prod(shape))
                fits = [k for k, block in enumerate(free) if block.size >= need]
                if fits:
                    block = free.pop(min(fits, key=lambda k: free[k].size))
                else:
                    block = aligned_empty(need)
                    blocks.append(block)
                buffers[i] = block[:need].reshape(shape)
                releases.setdefault(self._last_reader[i], []).append(block)
            free.extend(releases.pop(i, ()))
        return buffers, blocks

    def tile_rows(self, n):
        """Rows of a batch of ``n`` that go through the program at a time: ``n``, or a tile of fewer rows when the
        batch's buffers (:attr:`buffer_bytes` a sample) exceed ``TILE_BYTES``; the largest power of two, at least
        ``MIN_TILE``, whose buffers fit, unless the weights exceed ``1 / TILE_WEIGHT_SHARE`` of its buffers.

        Why: a layer then reads what the one before it wrote from cache instead of memory. Measured on the Zen 3
        (one thread, ``Predictor.predict`` at batch 64, ``python -m bench --breadth``'s models, shared buffers):
        MobileNet 1.24x faster in tiles of 16 (its depthwise layers at stride 2 twice as fast), the inception 1.08x
        in 8, ResNet-8 1.05x in 32; on two threads, once the depthwise kernels had their 8-chain tiles (which took
        most of what MobileNet's tiles saved), 1.05x, 0.98x and 1.05x. Where it does not pay, the rule keeps the
        whole batch: VGG (1.6 MB of weights, compute-bound 3x3 layers: 0.99-1.01x in any tile), the zoo's
        ``mnist_cnn`` (4.7 MB of dense weights, 0.94-0.98x at batch 256), and batches whose buffers fit anyway
        (LeNet-5's at 64: 0.89x in tiles of 8, each kernel call's cost paid 8 times)."""
        per = max(self.buffer_bytes, 1)
        if n * per <= TILE_BYTES:
            return n
        rows = MIN_TILE
        while 2 * rows * per <= TILE_BYTES:
            rows *= 2
        if rows >= n or self.weight_bytes * TILE_WEIGHT_SHARE > rows * per:
            return n
        return rows


def _source(run):
    """The module a bound ``run`` is defined in, seen through wrappers that set ``__wrapped__`` ("" for ``None``, a
    reshape)."""
    while run is not None and hasattr(run, "__wrapped__"):
        run = run.__wrapped__
    return "" if run is None else getattr(run, "__module__", None) or "?"


def compile_program(graph, sample_shape, mc=False, logits=False):
    """Lower a built model's :class:`~dropcore.graph.Graph` into a :class:`Program` on the Cython kernels, or
    ``None`` when they are not built.

    ``mc``: dropout layers stay active (Monte-Carlo dropout; their masks come from the ``ctx`` of each call).
    ``logits``: leave out the final softmax/sigmoid (for a loss fused with it).
    """
    try:
        from .kernels import cython_ops as cy
    except ImportError:
        return None
    from .ops import get_ops

    fused, layers = [], []
    ops, output_id = _lower(graph, Lowering(cy, get_ops("cython"), mc), logits, fused, layers)
    return Program(ops, graph.input_id, output_id, sample_shape, fused, layers)
