"""Data-parallel training: the hooks ``Model.fit(..., comm=...)`` calls, free of any particular engine.

Every rank runs the same ``fit`` on the same data with the same seed, so every rank draws the same shuffled global
batches. Each global batch of ``B`` samples is cut into ``size`` contiguous parts (sizes differing by at most one);
rank ``r`` runs forward and backward on its part only, with:

- its output gradient scaled by ``1 / B`` (not by its own part's size), so that the ranks' gradients *summed* are
  the full batch's gradient (dropcore's losses are means over the batch) whatever the split;
- its dropout masks keyed by the global row of its first sample (``Context.row``): a sample gets the mask it would
  get in a one-process run, whichever rank holds it;
- one ``allreduce_sum`` a step, of every gradient and the step's loss and metric sums packed into one buffer; the
  finiteness checks run on the reduced values, so every rank raises (or not) together;
- batch normalization's statistics summed over the ranks (``BatchNormalization`` reads ``sync_comm``).

Rank 0's weights are broadcast at the start; only rank 0 runs the callbacks (checkpoints, loggers) and shows
progress, and what its callbacks decide (``stop_training``, the learning rate, restored best weights) is broadcast
to the others. At the end, every rank checks that the ranks' weights agree (a hash each), and raises if not.
"""
import hashlib
from contextlib import contextmanager

import numpy as np

from .comm import check_comm


def shard_bounds(total, rank, size):
    """Rows ``[lo, hi)`` of a global batch of ``total`` samples that ``rank`` of ``size`` trains on."""
    return rank * total // size, (rank + 1) * total // size


def share_cores(local_size):
    """Hold dropcore's kernel threads to this rank's share of the cores when ``local_size`` ranks share a node:
    every rank otherwise runs one thread per core, and N ranks oversubscribe the node N times (measured: 2 ranks of
    2 threads on 2 cores trained 30x slower than 2 ranks of 1 thread, MPI's busy-waiting included). Only ever
    lowers the count; returns it."""
    from ..kernels.cpus import available_cpus
    from ..kernels.threads import get_num_threads, set_process_threads

    share = max(1, available_cpus() // max(1, int(local_size)))
    if get_num_threads() > share:
        set_process_threads(share)
    return get_num_threads()


def warm_kernels(model):
    """One forward and backward pass of ``model``'s training plan on two zero samples, so that its kernels are
    compiled (or loaded from Numba's cache); the weights and moving statistics are left as they were (the
    gradients it leaves are overwritten by the first real step)."""
    from ..layers.base import Context

    saved = [(w, w.copy()) for la in model.layers for w in la.weights.values()]
    x = np.zeros((2,) + tuple(model.input.shape), dtype=np.float32)
    from ..kernels.threads import engine_call

    with engine_call(model.kernel_set.name):
        out, tape = model.plan.forward(model.kernel_set, x, Context(training=True, dropout=True), keep_backprop=True,
                                        logits=model.fuses_loss)
        model.plan.backward(tape, np.ones_like(out), model.kernel_set)
    for w, copy in saved:
        np.copyto(w, copy)


class DataParallel:
    """The state of one data-parallel ``fit``: see the module docstring. Built by :func:`data_parallel`."""

    def __init__(self, comm, model, where):
        self.comm, self.model, self.where = comm, model, where
        self.rank, self.size = comm.rank, comm.size
        self._buffer = None

    @property
    def is_root(self):
        return self.rank == 0

    # --- start ----------------------------------------------------------------------------------------------
    def start(self, seed):
        """Rank 0's seed on every rank (returned), before ``fit`` draws anything from it; this rank's kernel
        threads held to its share of the node's cores (:func:`share_cores`)."""
        share_cores(getattr(self.comm, "local_size", 1))
        return self.comm.bcast(seed)

    def begin(self):
        """Once the model is built (a Sequential without an Input builds on the data): its kernels warmed, and
        rank 0's weights and optimizer state on every rank."""
        model, opt = self.model, self.model.optimizer
        shapes = [w.shape for la in model.layers for w in la.weights.values()]
        self._agree(self.comm.bcast(shapes) == shapes, "the models differ between ranks (not the same weights' "
                                                       "shapes); build the same model on every rank")
        state = opt.get_state()
        self._agree(self.comm.bcast([a.shape for a in state]) == [a.shape for a in state],
                    "the optimizer state differs between ranks; start every rank from the same model file")
        self.warm_kernels()
        for layer in model.layers:
            for w in layer.weights.values():
                self.comm.bcast(w)
        for a in state:
            self.comm.bcast(a)
        opt.iterations = self.comm.bcast(opt.iterations)
        self._digest_at = self._digest()

    def _agree(self, ok, problem):
        """Raise on every rank (not only where it was found, which would leave the others waiting) when ``ok``
        is false on any rank."""
        bad = np.array([0.0 if ok else 1.0])
        self.comm.allreduce_sum(bad)
        if bad[0]:
            raise ValueError(f"{self.where}: {problem} ({int(bad[0])} of {self.size} ranks differ from rank 0)")

    def warm_kernels(self):
        """Compile the training kernels once per node before the ranks train: the node's first rank runs one
        throwaway forward and backward pass (Numba compiles and writes its ``cache=True`` files), the others wait,
        then load what it wrote instead of all compiling the same kernels at once and racing on the files."""
        local_rank = getattr(self.comm, "local_rank", 0)
        if getattr(self.comm, "local_size", 1) == 1:
            return
        if local_rank == 0:
            warm_kernels(self.model)
        self.comm.barrier()
        if local_rank != 0:
            warm_kernels(self.model)

    @contextmanager
    def running(self):
        """Around the training loop: batch normalization synchronised over the ranks, and back to its own batch
        statistics on leaving, an error included."""
        self.sync_batch_norm(True)
        try:
            yield
        finally:
            self.sync_batch_norm(False)

    def sync_batch_norm(self, on):
        """Hand (or take back) the communicator to the model's batch normalization layers."""
        for layer in self.model.layers:
            if layer.batch_statistics:
                layer.sync_comm = self.comm if on else None

    # --- each step ------------------------------------------------------------------------------------------
    def shard(self, total):
        """This rank's rows ``[lo, hi)`` of a global batch of ``total`` samples."""
        if total < self.size:
            raise ValueError(f"{self.where}: a batch of {total} samples cannot be split over {self.size} ranks; "
                             f"expected every batch (the last one included) to hold at least one sample per rank: "
                             f"choose batch_size and the number of samples accordingly")
        return shard_bounds(total, self.rank, self.size)

    def allreduce(self, grads, loss_sum, metric_sum):
        """The gradients summed over the ranks (views of one reused buffer) and the summed loss and metric."""
        n = sum(g.size for g in grads)
        if self._buffer is None or self._buffer.size != n + 2:
            self._buffer = np.empty(n + 2, dtype=np.float32)
        buf, out, at = self._buffer, [], 0
        for g in grads:
            view = buf[at:at + g.size].reshape(g.shape)
            np.copyto(view, g)
            out.append(view)
            at += g.size
        buf[n], buf[n + 1] = loss_sum, metric_sum
        self.comm.allreduce_sum(buf)
        return out, float(buf[n]), float(buf[n + 1])

    # --- callbacks ------------------------------------------------------------------------------------------
    def callbacks(self, cbs):
        """The callbacks this rank runs: all of them on rank 0, only the History (``cbs[0]``) elsewhere."""
        return cbs if self.is_root else cbs[:1]

    def after_callbacks(self):
        """Rank 0's callbacks' decisions on every rank: ``stop_training`` and the learning rate."""
        model = self.model
        model.stop_training, model.optimizer.learning_rate = self.comm.bcast(
            (model.stop_training, model.optimizer.learning_rate))
        self._digest_at = self._digest()  # what finish compares

    def _digest(self):
        """A hash of this rank's weights (every layer's, the moving statistics included)."""
        h = hashlib.blake2b(digest_size=16)
        for layer in self.model.layers:
            for w in layer.weights.values():
                h.update(np.ascontiguousarray(w).data)
        return h.hexdigest()

    def finish(self):
        """At the end of ``fit``, after the callbacks' ``on_train_end``: check that every rank ended the last epoch
        with the same weights (raising on every rank if not), then hand rank 0's weights to the others if one of
        its callbacks changed them (``EarlyStopping(restore_best_weights=True)``)."""
        self._agree(self.comm.bcast(self._digest_at) == self._digest_at,
                    "the ranks' weights diverged during training; every rank must run the same fit on the same data")
        if self.comm.bcast(self.is_root and self._digest() != self._digest_at):
            for layer in self.model.layers:
                for w in layer.weights.values():
                    self.comm.bcast(w)


def data_parallel(comm, model, where):
    """The :class:`DataParallel` hooks for ``fit``'s ``comm``, or ``None`` for one process (``None`` or a comm of
    size 1: the ordinary path, so ``mpiexec -n 1`` trains exactly as without MPI)."""
    if comm is None:
        return None
    comm = check_comm(comm, where)
    if comm.size == 1:
        return None
    return DataParallel(comm, model, where)
