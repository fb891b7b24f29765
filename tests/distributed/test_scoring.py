"""Scoring on a local Dask cluster of two worker processes equals one process's ``Predictor.predict`` exactly."""
import os
import signal
import sys
import time

import numpy as np
import pytest

pytest.importorskip("distributed", reason="scoring on Dask needs dask.distributed: pip install 'dropcore[dask]'")

import cloudpickle  # noqa: E402  (comes with distributed)
import dask.array as da  # noqa: E402

import dropcore  # noqa: E402
from dropcore.distributed import predict  # noqa: E402
from dropcore.distributed.scoring import aligned_chunks  # noqa: E402
from dropcore.layers import Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D, SpatialDropout2D  # noqa: E402

# The workers cannot import this test module (pytest's importlib mode): ship its functions by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])



@pytest.fixture(scope="module")
def model_bytes():
    dropcore.set_random_seed(1)
    model = dropcore.Sequential([Input((12, 12, 2)), Conv2D(8, 3, activation="relu"), SpatialDropout2D(0.2),
                                 MaxPooling2D(2), Flatten(), Dense(32, activation="relu"), Dropout(0.5),
                                 Dense(5, activation="softmax")])
    return dropcore.model_to_bytes(model)


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(2).random((700, 12, 12, 2), dtype=np.float32)


@pytest.mark.parametrize("chunk", [64, 100])
def test_plain_predictions_equal_one_process(client, model_bytes, x, chunk):
    local = dropcore.Predictor.from_bytes(model_bytes)
    for batch_size in (None, 48):
        got = predict(client, model_bytes, da.from_array(x, chunks=(chunk, 12, 12, 2)), batch_size=batch_size)
        assert isinstance(got, da.Array)
        assert np.array_equal(got.compute(), local.predict(x, batch_size=batch_size))


@pytest.mark.parametrize("chunk", [64, 100])
def test_monte_carlo_equals_one_process(client, model_bytes, x, chunk):
    local = dropcore.Predictor.from_bytes(model_bytes)
    xs = da.from_array(x, chunks=(chunk, 6, 12, 2))  # not one chunk along the sample axes: rechunked
    mean, std = client.compute(list(predict(client, model_bytes, xs, mc_samples=5, seed=9)), sync=True)
    ref_mean, ref_std = local.predict(x, mc_samples=5, seed=9)
    assert np.array_equal(mean, ref_mean) and np.array_equal(std, ref_std)
    assert std.max() > 0.01, "dropout was active"
    other = client.compute(predict(client, model_bytes, xs, mc_samples=5, seed=10)[0], sync=True)
    assert not np.array_equal(other, mean), "the seed selects the masks"


def test_a_model_file_path_scores_the_same(client, model_bytes, x, tmp_path):
    path = tmp_path / "m.dropcore"
    path.write_bytes(model_bytes)
    got = predict(client, str(path), da.from_array(x[:130], chunks=50)).compute()
    assert np.array_equal(got, dropcore.Predictor(str(path)).predict(x[:130]))


def test_workers_run_one_thread_and_never_import_numba(client, model_bytes, x):
    predict(client, model_bytes, da.from_array(x, chunks=100)).compute()
    state = client.run(lambda: ("numba" in sys.modules, dropcore.get_num_threads()))
    assert len(state) == 2
    assert all(s == (False, 1) for s in state.values()), state


def test_chunks_are_cut_at_multiples_of_the_batch_size():
    assert aligned_chunks((64,) * 10 + (60,), 256) == (256, 256, 188)
    assert aligned_chunks((100,) * 7, 256) == (256, 256, 188)
    assert aligned_chunks((300, 300), 100) == (300, 300)
    assert aligned_chunks((50,), 256) == (50,)


def test_errors_name_the_argument(client, model_bytes, x):
    with pytest.raises(TypeError, match="`x` must be a dask.array"):
        predict(client, model_bytes, x)
    with pytest.raises(ValueError, match=r"the model expects \(samples, 12, 12, 2\)"):
        predict(client, model_bytes, da.zeros((10, 12, 12, 3), chunks=5))
    with pytest.raises(TypeError, match="`model` must be a model file's path or its bytes"):
        predict(client, 3, da.from_array(x, chunks=100))


def _gated(block, started, gate):
    """Say (a file) that a worker is working on a block, then hold it until the test opens the gate (a file): the
    kill below lands while work is in flight however loaded the machine is, with no timing involved."""
    open(started, "a").close()
    _wait_for(gate, "the test to open the gate")
    return block


def _wait_for(path, what, timeout=120):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what} ({path})")
        time.sleep(0.01)


def test_a_worker_killed_mid_run_changes_nothing(client, model_bytes, x, tmp_path):
    local = dropcore.Predictor.from_bytes(model_bytes)
    ref_mean, ref_std = local.predict(x, mc_samples=3, seed=4)
    started, gate = str(tmp_path / "started"), str(tmp_path / "gate")
    # meta given: Dask would otherwise call _gated on an empty block in this process to infer it
    xs = da.from_array(x, chunks=25).map_blocks(_gated, started, gate, meta=np.empty((0,) * x.ndim, np.float32))
    mean, std = predict(client, model_bytes, xs, batch_size=25, mc_samples=3, seed=4)
    future = client.compute(da.stack([mean, std]))
    _wait_for(started, "a worker to start on a block")
    assert not future.done()  # every block waits at the gate
    pids = client.run(os.getpid)
    victim = sorted(pids.values())[0]
    os.kill(victim, signal.SIGKILL)
    open(gate, "a").close()
    got_mean, got_std = future.result(timeout=120)
    assert np.array_equal(got_mean, ref_mean) and np.array_equal(got_std, ref_std)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it
    assert victim not in client.run(os.getpid).values()


def test_the_cli_helper_scores_on_a_running_scheduler(client, model_bytes, x, tmp_path):
    import argparse

    from dropcore.distributed import commands

    path = tmp_path / "m.dropcore"
    path.write_bytes(model_bytes)
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--mc-samples", type=int)
    parser.add_argument("--seed", type=int)
    commands.add_predict_args(parser)
    args = parser.parse_args(["--scheduler", client.scheduler.address, "--chunk-size", "90", "--mc-samples", "2"])
    assert commands.uses_cluster(args)
    mean, std = commands.predict_array(args, str(path), x[:200])
    ref = dropcore.Predictor(str(path)).predict(x[:200], mc_samples=2, seed=0)
    assert np.array_equal(mean, ref[0]) and np.array_equal(std, ref[1])
    probs, none = commands.predict_array(parser.parse_args(["--scheduler", client.scheduler.address]), str(path),
                                         x[:200])
    assert none is None and np.array_equal(probs, dropcore.Predictor(str(path)).predict(x[:200]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--scheduler", "tcp://x:1", "--workers", "2"])  # one or the other


def test_forked_workers_are_refused():
    import dask

    from dropcore.distributed import register_threads_plugin

    assert dask.config.get("distributed.worker.multiprocessing-method") == "spawn"  # LocalCluster's default
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
        with pytest.raises(RuntimeError, match="use 'spawn' or 'forkserver'"):
            register_threads_plugin(None)
