"""Scoring a ``dask.array`` on Dask workers, with answers equal to one process's ``Predictor.predict`` exactly.

The task function, :func:`score_chunk`, is pure and knows nothing of Dask: rows ``[row, row + len(x))`` of a larger
input, scored with a :class:`dropcore.Predictor` built once per worker process from the model file's bytes (cached
by their SHA-256, so a worker never unpickles a Predictor and never rebuilds one per task).

Why the answers are exact:

- **Monte-Carlo dropout**: a sample's masks are keyed by its row in the whole input (``Context.row``), so a chunk
  scored from global row ``row`` draws the masks it would draw in the one-process run; the mean and standard
  deviation are taken per element, so chunking changes nothing there.
- **Plain predictions**: on the BLAS kernels (the generic target), a row's outputs may depend on the batch it was computed
  in (OpenBLAS picks its kernels and blocking by the batch's size: differences of ~3e-8 were measured), so
  :func:`predict` cuts the array at multiples of ``batch_size`` (rechunking if needed): every batch a worker runs
  is then exactly a batch of the one-process run. dropcore's own GEMMs (avx512, avx2) give the same rows at any batch
  size anyway. The thread count of a worker must not change a row either: true of dropcore's kernels, not of BLAS's.
"""
import hashlib
import threading

import numpy as np

from ..validation import check_int


#: Predictors kept per worker process (most recently used last): one per model being scored, a few at most.
KEEP_PREDICTORS = 4

_predictors = {}
_lock = threading.Lock()


def model_key(data):
    """The cache key of a model file's bytes: their SHA-256 in hex."""
    return hashlib.sha256(memoryview(data)).hexdigest()


def cached_predictor(data, key=None, threads=None):
    """This process's :class:`dropcore.Predictor` for the model file bytes ``data``, built on first use."""
    key = model_key(data) if key is None else key
    with _lock:  # two task threads asking at once build it once
        predictor = _predictors.pop(key, None)
        if predictor is None:
            from ..predictor import Predictor

            predictor = Predictor.from_bytes(bytes(data), threads=threads)
        _predictors[key] = predictor
        while len(_predictors) > KEEP_PREDICTORS:
            del _predictors[next(iter(_predictors))]
    return predictor


def score_chunk(x, data, key, row, batch_size=None, mc_samples=None, seed=None, threads=None):
    """The scoring task: the outputs for chunk ``x`` starting at global row ``row``, with the model whose file's
    bytes are ``data`` (``key``: their :func:`model_key`). With ``mc_samples``, ``(mean, std)`` stacked on a new
    first axis (one array per task)."""
    out = cached_predictor(data, key, threads).predict(x, batch_size, mc_samples, seed, row=row)
    return np.stack(out) if mc_samples is not None else out


def aligned_chunks(chunks, batch_size):
    """Sample chunks whose boundaries fall on multiples of ``batch_size``, near the given ones: each chunk's
    batches are then batches of the one-process run (see the module docstring)."""
    n = sum(chunks)
    bounds = np.cumsum(chunks)[:-1]
    cuts = sorted({int(round(b / batch_size)) * batch_size for b in bounds} - {0} | {n})
    cuts = [c for c in cuts if c <= n]
    if cuts[-1] != n:
        cuts.append(n)
    return tuple(np.diff([0] + cuts).tolist())


def _model_bytes(model, where):
    import os

    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as fh:
            return fh.read()
    from ..model import Model

    if isinstance(model, Model):
        from ..io import model_to_bytes

        return model_to_bytes(model)
    raise TypeError(f"{where}: `model` must be a model file's path or its bytes (or a dropcore Model); received "
                    f"{type(model).__name__}")


def predict(client, model, x, batch_size=None, mc_samples=None, seed=None):
    """Score the ``dask.array`` ``x`` on ``client``'s workers: a ``dask.array`` of probabilities, or
    ``(mean, std)`` with ``mc_samples`` Monte-Carlo dropout passes (``seed``: the masks; ``None`` draws one).

    ``model``: a model file's path or its bytes (or a :class:`dropcore.Model`, saved to bytes). The bytes are
    scattered to every worker once; each worker builds one Predictor from them. ``x`` is rechunked to one chunk
    along every axis but the first, and along the samples at multiples of ``batch_size`` (default 256). The answer
    equals ``Predictor(model).predict(x.compute(), batch_size, mc_samples, seed)`` exactly, whatever the chunking
    and the number of workers (see the module docstring for why). Registers :class:`~.workers` thread sizing on
    the workers.
    """
    import dask.array as da

    from .workers import register_threads_plugin

    where = "dropcore.distributed.predict"
    if not isinstance(x, da.Array):
        raise TypeError(f"{where}: `x` must be a dask.array chunked along the samples; received "
                        f"{type(x).__name__} (wrap NumPy data with dask.array.from_array(x, chunks=...))")
    if x.ndim < 2:
        raise ValueError(f"{where}: `x` must have a samples axis and the model's input axes; received shape "
                         f"{x.shape}")
    batch_size = 256 if batch_size is None else check_int(batch_size, "batch_size", 1, where)
    if mc_samples is not None:
        mc_samples = check_int(mc_samples, "mc_samples", 1, where)
        if seed is None:
            from ..model import _random_seed

            seed = _random_seed()  # drawn once here: every chunk must use the same masks' seed
        seed = check_int(seed, "seed", 0, where)
    data = _model_bytes(model, where)
    key = model_key(data)
    from ..io import load_model

    template = load_model(data, compile=False)  # the output shape and a check of the input shape, here
    if tuple(x.shape[1:]) != tuple(template.input_shape[1:]):
        raise ValueError(f"{where}: `x` has shape {x.shape}; the model expects (samples, "
                         f"{', '.join(map(str, template.input_shape[1:]))})")
    out_shape = tuple(template.output_shape[1:])
    x = x.astype(np.float32) if x.dtype != np.float32 else x
    x = x.rechunk((aligned_chunks(x.chunks[0], batch_size),) + tuple((s,) for s in x.shape[1:]))
    register_threads_plugin(client)
    # once per worker; tasks only name it. hash=False: a key of its own, since a key named by the content races
    # with the release of the same bytes scattered by an earlier call ("Key lost during replication")
    [data_future] = client.scatter([data], broadcast=True, hash=False)
    starts = np.concatenate([[0], np.cumsum(x.chunks[0])[:-1]]).tolist()
    blocks = x.to_delayed().ravel()
    from dask import delayed

    task = delayed(score_chunk, pure=True)
    parts = []
    for block, row, n in zip(blocks, starts, x.chunks[0]):
        result = task(block, data_future, key, int(row), batch_size, mc_samples, seed, 1)  # 1 kernel thread a task
        shape = (2, n) + out_shape if mc_samples is not None else (n,) + out_shape
        parts.append(da.from_delayed(result, shape=shape, dtype=np.float32))
    if mc_samples is None:
        return da.concatenate(parts, axis=0)
    stacked = da.concatenate(parts, axis=1)
    return stacked[0], stacked[1]
