"""BatchingPredictor: coalesced answers identical to unbatched ones, under concurrency, with errors and deadlines."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dropcore
from dropcore import zoo
from dropcore.batching import BatchingPredictor
from dropcore.errors import DeadlineExceeded

from .conftest import SHAPE, needs_exact_batching, small_model


@pytest.fixture(scope="module")
def cifar():
    dropcore.set_random_seed(0)
    return zoo.build("cifar_cnn", (32, 32, 3), 10)


def _concurrent(fn, items, workers=16):
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(fn, items, timeout=120))


@needs_exact_batching
@pytest.mark.parametrize("which, runners", [("small", 1), ("cifar", 1), ("cifar", 2)])
def test_concurrent_answers_identical_to_unbatched(which, runners, cifar):
    model = cifar if which == "cifar" else small_model()
    plain = dropcore.Predictor(model)
    rng = np.random.default_rng(7)
    xs = [rng.random((int(n),) + model.input_shape[1:], dtype=np.float32) for n in rng.integers(1, 6, 200)]
    with BatchingPredictor(model, max_batch=16, max_delay_ms=5, runners=runners) as batching:
        # a deadline, so that a lost request fails the test (DeadlineExceeded) instead of hanging it
        ys = _concurrent(lambda x: batching.predict(x, deadline=time.monotonic() + 60), xs)
        assert batching.batches < len(xs)  # requests really were coalesced
        assert batching.batched_rows == sum(len(x) for x in xs)  # none lost
    for x, y in zip(xs, ys):
        assert np.array_equal(y, plain.predict(x))  # bit for bit


def _every_kind_of_noise():
    """Masks of every shape: per element, per channel (a noise shape), Gaussian, blocks, inside the pooling."""
    from dropcore.layers import (Conv2D, Dense, DropBlock2D, Dropout, Flatten, GaussianDropout, GaussianNoise,
                                 Input, MaxPoolingDropout2D, SpatialDropout2D)

    dropcore.set_random_seed(2)
    return dropcore.Sequential([Input((12, 12, 2)), GaussianNoise(0.1), Conv2D(6, 3, activation="relu"),
                                SpatialDropout2D(0.3), DropBlock2D(0.2, 3), MaxPoolingDropout2D(0.2, 2), Flatten(),
                                GaussianDropout(0.2), Dense(16, activation="relu"), Dropout(0.5),
                                Dense(4, activation="softmax")])


@needs_exact_batching
@pytest.mark.parametrize("which", ["small", "cifar", "every kind"])
def test_mc_dropout_coalesced_by_passes_and_seed_identical_to_alone(which, cifar):
    """Requests asking for the same passes and seed share batches, each drawing the masks it draws alone; other
    seeds and pass counts never mix with them."""
    model = {"cifar": cifar, "small": small_model(), "every kind": _every_kind_of_noise()}[which]
    plain = dropcore.Predictor(model)
    rng = np.random.default_rng(8)
    asks = [(rng.random((int(n),) + model.input_shape[1:], dtype=np.float32), int(t), int(s))
            for n, t, s in zip(rng.integers(1, 5, 96), rng.choice([3, 4], 96), rng.choice([9, 10], 96))]
    with BatchingPredictor(model, max_batch=16, max_delay_ms=5) as batching:
        answers = _concurrent(lambda a: batching.predict(a[0], mc_samples=a[1], seed=a[2],
                                                         deadline=time.monotonic() + 60), asks)
        assert batching.batches < len(asks) and batching.batched_rows == sum(len(a[0]) for a in asks)
    for (x, t, seed), (mean, std) in zip(asks, answers):
        want = plain.predict(x, mc_samples=t, seed=seed)
        assert np.array_equal(mean, want[0]) and np.array_equal(std, want[1])  # bit for bit


@needs_exact_batching
def test_segments_draw_each_inputs_masks_and_large_inputs_bypass():
    model = small_model()
    plain = dropcore.Predictor(model)
    rng = np.random.default_rng(8)
    a, b = rng.random((3,) + SHAPE, dtype=np.float32), rng.random((2,) + SHAPE, dtype=np.float32)
    mean, std = plain._predict_segments(np.concatenate([a, b]), [(0, 3, 0), (3, 5, 0)], 6, 2)
    for part, rows in ((a, slice(0, 3)), (b, slice(3, 5))):
        want = plain.predict(part, mc_samples=6, seed=2)
        assert np.array_equal(mean[rows], want[0]) and np.array_equal(std[rows], want[1])
    joined = plain.predict(np.concatenate([a, b]), mc_samples=6, seed=2)  # one input: b's rows draw rows 3, 4
    assert not np.array_equal(joined[0][3:], mean[3:])
    with BatchingPredictor(model, max_batch=4) as batching:
        big = rng.random((9,) + SHAPE, dtype=np.float32)  # more than max_batch: runs alone, same answer
        assert np.array_equal(batching.predict(big), plain.predict(big))
        assert np.array_equal(batching.predict(big, mc_samples=3, seed=1)[1], plain.predict(big, mc_samples=3,
                                                                                               seed=1)[1])


@needs_exact_batching
def test_bad_requests_fail_alone(monkeypatch):
    model = small_model()
    batching = BatchingPredictor(model, max_batch=32, max_delay_ms=20)
    good = np.random.default_rng(1).random((2,) + SHAPE, dtype=np.float32)
    with pytest.raises(ValueError, match=r"has shape \(1, 3\)"):  # checked in the caller, before any batch
        batching.predict(np.zeros((1, 3), np.float32))
    # a failure inside a shared batch: that batch is rerun one request at a time, only the bad one fails
    real = batching.predictor.predict
    poisoned = np.full((1,) + SHAPE, 0.123, np.float32)

    def flaky(x, *args, **kwargs):
        if any(np.array_equal(row, poisoned[0]) for row in x):
            raise MemoryError("simulated")
        return real(x, *args, **kwargs)

    monkeypatch.setattr(batching.predictor, "predict", flaky)
    barrier = threading.Barrier(6)

    def call(x):
        barrier.wait()
        try:
            return batching.predict(x)
        except MemoryError as exc:
            return exc

    results = _concurrent(call, [good] * 5 + [poisoned], workers=6)
    assert isinstance(results[-1], MemoryError)
    for y in results[:-1]:
        assert np.array_equal(y, real(good))
    batching.close()
    assert not any(r.is_alive() for r in batching._runners)
    with pytest.raises(RuntimeError, match="closed"):
        batching.predict(good)


@needs_exact_batching
def test_deadline_while_queued_and_close_drains():
    model = small_model()
    batching = BatchingPredictor(model, max_batch=64, max_delay_ms=500)  # the first request waits up to 0.5 s
    x = np.zeros((1,) + SHAPE, np.float32)
    t0 = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        batching.predict(x, deadline=time.monotonic() + 0.05)
    assert time.monotonic() - t0 < 0.4  # the caller was answered at its deadline, not at the batch's
    results = []
    threads = [threading.Thread(target=lambda: results.append(batching.predict(x))) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60  # generous on a loaded machine: waits on the queue, not on a guess of time
    while batching.accepted < 1 + len(threads):  # the expired request, then the three
        assert time.monotonic() < deadline, "the requests never reached the queue"
        time.sleep(0.001)
    batching.close()  # queued requests still run
    for t in threads:
        t.join(10)
    assert len(results) == 3


def test_arguments_checked_and_inexact_kernels_refused(monkeypatch):
    model = small_model()
    with pytest.raises(ValueError, match="max_batch"):
        BatchingPredictor(model, max_batch=0)
    with pytest.raises(ValueError, match="max_delay_ms"):
        BatchingPredictor(model, max_delay_ms=-1)
    predictor = dropcore.Predictor(model)
    real = predictor.predict

    def batch_dependent(x, *args, **kwargs):  # what a GEMM whose sums depend on the batch size looks like
        return real(x, *args, **kwargs) + np.float32(len(x) * 1e-7)

    monkeypatch.setattr(predictor, "predict", batch_dependent)
    with pytest.raises(ValueError, match="different bits in different batches"):
        BatchingPredictor(predictor)
    inexact = BatchingPredictor(predictor, exact=False)
    assert not inexact.batch_invariant
    inexact.close()
