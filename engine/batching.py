"""``BatchingPredictor``: dynamic batching, so concurrent single-sample callers share one kernel call.

At batch 1 a prediction is mostly fixed costs (Python per call, each kernel's start-up, reading every weight once
per call); many callers each predicting one sample pay them many times. A BatchingPredictor queues the callers'
samples, and a runner thread (or several) takes up to ``max_batch`` rows that arrived within ``max_delay_ms`` of the
first,
runs them as one batch and hands each caller its own rows.

Answers are identical (bit for bit) to :meth:`dropcore.Predictor.predict` on the caller's samples alone:
construction checks that the model's kernels give a row the same bits whatever batch it is in, and refuses
(``exact=True``, the default) when they do not. dropcore's own kernels (the avx512 and avx2 targets) always do; the
generic target's BLAS GEMMs do not (sgemv for a few rows, sgemm panels for more). Monte-Carlo dropout requests share
batches with requests asking for the same passes and seed: a sample's mask is keyed by its row in its own input, so
the program draws each request's masks apart (``Context.segments``), as they would be drawn alone.
"""
import threading
import time
from collections import deque

import numpy as np

from .errors import DeadlineExceeded
from .inference import check_stochastic, random_seed
from .predictor import Predictor
from .validation import check_float, check_int


class _Request:
    __slots__ = ("x", "mc", "deadline", "done", "result", "error", "abandoned")

    def __init__(self, x, mc, deadline):
        self.x, self.mc, self.deadline = x, mc, deadline  # mc: (mc_samples, seed), or None
        # held until the answer is in: a bare lock is a C-level handoff (an Event's wait is Python code, which
        # with 16 callers waking per batch cost a visible share of the runner's time)
        self.done = threading.Lock()
        self.done.acquire()
        self.result = self.error = None
        self.abandoned = False  # its caller gave up (deadline): skip it, drop its answer


class BatchingPredictor:
    """A :class:`dropcore.Predictor` whose concurrent plain predictions are coalesced into shared batches.

    ``model_or_path``: as for Predictor (a Model, a model file path or its bytes), or a Predictor to wrap.
    ``max_batch``: at most this many rows per coalesced kernel call (a request with more rows runs alone).
    ``max_delay_ms``: how long the first queued request waits for others before its batch runs.
    ``threads``: the kernel threads of each batch (as ``Predictor(threads=)``; only with a model or path).
    ``max_callers``: at most this many threads ever call at once (a server's request threads): a batch holding
    that many requests cannot grow, so it runs without waiting out ``max_delay_ms``.
    ``runners``: threads running batches (each with ``threads`` kernel threads): with 2, one batch computes
    while the next one gathers.
    ``exact``: refuse a model whose kernels do not give batch-independent bits (``ValueError``); with
    ``exact=False`` such a model is batched anyway and its answers may differ from unbatched ones in the last bits.

    Thread-safe; call :meth:`close` (or use ``with``) to stop the runner threads after the queued requests ran.
    """

    def __init__(self, model_or_path, max_batch=64, max_delay_ms=2.0, threads=None, exact=True, runners=1,
                 max_callers=None):
        where = "BatchingPredictor"
        self.max_batch = check_int(max_batch, "max_batch", 1, where)
        self.max_delay = check_float(max_delay_ms, "max_delay_ms", 0.0, 60_000.0, where=where) / 1000.0
        if isinstance(model_or_path, Predictor):
            if threads is not None:
                raise ValueError(f"{where}: `threads` is set on the Predictor given, received threads={threads!r} "
                                 f"as well")
            self.predictor = model_or_path
        else:
            self.predictor = Predictor(model_or_path, threads=threads)
        self.batch_invariant = self._batch_invariant()
        # Monte-Carlo requests share batches on the compiled program, whose mask steps run per request
        self._mc_batching = self.predictor.engine == "cython-program"
        if exact and not self.batch_invariant:
            raise ValueError(
                f"{where}: model '{self.predictor.name}' on the {self.predictor.kernels} kernels "
                f"({self.predictor.engine}) gives a sample different bits in different batches, so coalesced "
                f"answers would not equal unbatched ones; pass exact=False to batch anyway (answers then differ "
                f"in the last bits), or use Predictor")
        self.batches = 0  # coalesced kernel calls run so far
        self.batched_rows = 0  # rows they held
        # a deque under a Condition: a queue.SimpleQueue version (blocking get() in one runner, get(timeout=) in
        # the other) hung in a stress run with two runners, callers waiting and both runners idle; the cause was
        # not pinned down, and this version ran the same stress run cleanly
        self._queue = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._accepted = 0  # requests taken into the queue since the start (under _cond)
        self.runners = check_int(runners, "runners", 1, where)
        self.max_callers = None if max_callers is None else check_int(max_callers, "max_callers", 1, where)
        self._runners = [threading.Thread(target=self._run, name=f"dropcore-batching-{i}", daemon=True)
                         for i in range(self.runners)]
        for runner in self._runners:
            runner.start()

    @property
    def accepted(self):
        """Requests taken into the queue so far (answered or not): how a caller or a test knows that a request
        reached the queue, without timing it."""
        with self._cond:
            return self._accepted

    # --- what the wrapped Predictor says --------------------------------------------------------------------
    name = property(lambda self: self.predictor.name)
    input_shape = property(lambda self: self.predictor.input_shape)
    input_name = property(lambda self: self.predictor.input_name)
    output_shape = property(lambda self: self.predictor.output_shape)
    kernels = property(lambda self: self.predictor.kernels)
    engine = property(lambda self: self.predictor.engine)
    threads = property(lambda self: self.predictor.threads)

    def _batch_invariant(self):
        """Whether rows predicted alone and inside a batch of ``max_batch`` come out bit-identical (a probe on
        seeded random inputs: the kernels' blocking, not the data, decides the order of the sums)."""
        shape = (self.max_batch,) + tuple(self.predictor.input_shape[1:])
        probe = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        full = self.predictor.predict(probe, batch_size=self.max_batch)
        n = self.max_batch
        for start, size in {(0, 1), (n - 1, 1), (1, min(2, n - 1)), (n // 2, min(3, n - n // 2))}:
            if size > 0 and not np.array_equal(self.predictor.predict(probe[start:start + size]),
                                               full[start:start + size]):
                return False
        return True

    # --- callers --------------------------------------------------------------------------------------------
    def predict(self, x, batch_size=None, mc_samples=None, seed=None, deadline=None):
        """As :meth:`dropcore.Predictor.predict` (same arguments, identical answers). Inputs of at most
        ``max_batch`` rows wait for a shared batch: plain ones with plain ones, Monte-Carlo ones with those asking
        for the same passes and seed (each input's rows draw the masks they would alone). Larger inputs run on
        this thread."""
        x = self.predictor._model.check_input(x)  # bad input fails here, in its caller, never inside a shared batch
        mc = None
        if mc_samples is not None:
            # checked here, and the seed drawn here when not given: a shared batch's requests share (passes, seed)
            mc = (check_int(mc_samples, "mc_samples", 1, "predict"),
                  random_seed() if seed is None else check_int(seed, "seed", 0, "predict"))
            check_stochastic(self.predictor._model.layers, mc[0])
        if len(x) > self.max_batch or self.max_batch == 1 or (mc is not None and not self._mc_batching):
            return self.predictor.predict(x, batch_size, mc_samples, seed, deadline)
        if batch_size is not None:
            check_int(batch_size, "batch_size", 1, "predict")  # any batch size gives the same answer
        request = _Request(x, mc, None if deadline is None else float(deadline))
        with self._cond:
            if self._closed:
                raise RuntimeError("BatchingPredictor.predict: the predictor is closed")
            self._queue.append(request)
            self._accepted += 1
            self._cond.notify()
        timeout = -1 if request.deadline is None else max(0.0, request.deadline - time.monotonic())
        if not request.done.acquire(timeout=timeout):
            request.abandoned = True  # the runner skips it if it has not started it yet
            raise DeadlineExceeded("predict: the deadline passed while the request waited for its batch")
        if request.error is not None:
            raise request.error
        return request.result

    def close(self, timeout=None):
        """Stop taking requests, run the queued ones, then stop the runner thread (waits at most ``timeout``)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        end = None if timeout is None else time.monotonic() + timeout
        for runner in self._runners:
            runner.join(None if end is None else max(0.0, end - time.monotonic()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- the runner thread ----------------------------------------------------------------------------------
    def _take(self):
        """The next batch's requests (blocking), or ``None`` once closed and drained: the first request, then
        whatever arrives within ``max_delay`` of it, up to ``max_batch`` rows (or ``max_callers`` requests)."""
        most = self.max_callers or self.max_batch
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            taken, rows = [first], len(first.x)
            ready = time.monotonic() + self.max_delay
            while rows < self.max_batch and len(taken) < most:
                if not self._queue:
                    left = ready - time.monotonic()
                    if left <= 0 or self._closed:
                        break
                    self._cond.wait(left)
                    continue
                if rows + len(self._queue[0].x) > self.max_batch or self._queue[0].mc != first.mc:
                    break  # the first request of the next batch (first come, first served)
                request = self._queue.popleft()
                taken.append(request)
                rows += len(request.x)
            return taken

    def _run(self):
        while True:
            taken = self._take()
            if taken is None:
                return
            now = time.monotonic()
            live = []
            for request in taken:
                if request.abandoned:
                    continue
                if request.deadline is not None and now > request.deadline:
                    self._finish(request, error=DeadlineExceeded("predict: the deadline passed while the request "
                                                                 "waited for its batch"))
                else:
                    live.append(request)
            if live:
                self._predict(live)

    def _predict(self, requests):
        mc = requests[0].mc
        deadlines = [r.deadline for r in requests if r.deadline is not None]
        deadline = min(deadlines) if deadlines else None  # past it, each request is run again alone, with its own
        try:
            x = requests[0].x if len(requests) == 1 else np.concatenate([r.x for r in requests])
            if mc is None:
                y = self.predictor.predict(x, batch_size=len(x), deadline=deadline)
            else:
                ends = np.cumsum([len(r.x) for r in requests]).tolist()
                segments = [(stop - len(r.x), stop, 0) for r, stop in zip(requests, ends)]
                mean, std = self.predictor._predict_segments(x, segments, *mc, deadline=deadline)
        except BaseException as exc:  # noqa: BLE001 - reported to the callers, never kills the runner
            if len(requests) == 1:
                self._finish(requests[0], error=exc)
            else:  # one at a time, so a request that fails takes no other down with it
                for request in requests:
                    self._predict([request])
            return
        with self._cond:  # two runners may count at once
            self.batches += 1
            self.batched_rows += len(x)
        start = 0
        for request in requests:
            rows = slice(start, start + len(request.x))
            self._finish(request, result=y[rows] if mc is None else (mean[rows], std[rows]))
            start += len(request.x)

    @staticmethod
    def _finish(request, result=None, error=None):
        request.result, request.error = result, error
        request.done.release()
