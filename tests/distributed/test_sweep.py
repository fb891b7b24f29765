"""Experiment sweeps on a local Dask cluster of two worker processes give the serial run's results."""
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

pytest.importorskip("distributed", reason="sweeps on Dask need dask.distributed: pip install 'dropcore[dask]'")

from dropcore import cli, experiments  # noqa: E402
from dropcore.distributed.sweep import dask_runner  # noqa: E402
from dropcore.testing import striped_images  # noqa: E402


@pytest.fixture(scope="module")
def images():
    return striped_images(150, 8, background=0.3, stripe=0.7)


def test_kinds_and_kfold_sweeps_equal_the_serial_runs(client, images):
    x, y = images
    kw = dict(kinds="none,dropout,spatial,dropblock", epochs=2, batch_size=16, seed=5, seeds=2)
    swept = experiments.dropout_kinds_experiment(x, y, runner=dask_runner(client, progress=False), **kw)
    assert swept == experiments.dropout_kinds_experiment(x, y, **kw)
    assert len(swept["runs"]) == 8 and swept["seeds"] == [5, 6]  # every (kind, seed) a task of its own
    table = x.reshape(150, -1)[:, ::4]
    assert experiments.kfold_experiment(table, y, k=4, epochs=3, runner=dask_runner(client, progress=False)) == \
        experiments.kfold_experiment(table, y, k=4, epochs=3)


def test_uncertainty_seeds_on_dask_equal_the_serial_run(client, images, tmp_path):
    from dropcore import uncertainty

    x, y = images
    kw = dict(epochs=1, batch_size=16, mc_samples=(1, 3), rotation=20, noise=0.2, seed=4, seeds=2)
    swept = uncertainty.uncertainty_experiment(x, y, runner=dask_runner(client, progress=False),
                                               save_model=tmp_path / "dask.dropcore", **kw)
    assert swept == uncertainty.uncertainty_experiment(x, y, save_model=tmp_path / "serial.dropcore", **kw)
    # the first seed's network comes back from its worker as bytes, saved here as the serial run saves it
    import dropcore

    a, b = (dropcore.load_model(tmp_path / f"{name}.dropcore") for name in ("dask", "serial"))
    for wa, wb in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(wa, wb)
    np.testing.assert_array_equal(a.predict(x[:20]), b.predict(x[:20]))


def test_a_worker_killed_mid_sweep_changes_nothing(client, images):
    x, y = images
    kw = dict(variants=["none", "conv", "dense", "conv+dense"], epochs=4, batch_size=8, seed=1, seeds=1)
    expected = experiments.dropout_experiment(x, y, **kw)
    address, pid = next(iter(client.run(os.getpid).items()))
    killed = []

    def kill_it_while_it_trains():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any("train_run" in key for key in client.processing().get(address, ())):
                os.kill(pid, signal.SIGKILL)  # a training is under way there: killed mid-task, whenever in it
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_it_while_it_trains)
    killer.start()
    got = experiments.dropout_experiment(x, y, runner=dask_runner(client, progress=False), **kw)
    killer.join()
    assert killed, "the worker never got a training to run"
    assert got == expected
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_the_cli_sweeps_on_a_local_cluster(tmp_path, capsys):
    args = ["experiment", "dropout", "--variants", "none,dense", "--epochs", "1", "--limit", "200", "--seeds", "2",
            "--quiet"]
    assert cli.main(args + ["--out", str(tmp_path / "serial")]) == 0
    assert cli.main(args + ["--workers", "2", "--out", str(tmp_path / "dask")]) == 0
    assert "Each training is a task on a local cluster of 2 workers" in capsys.readouterr().out
    serial, dask = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("serial", "dask"))
    assert serial == dask and len(dask["runs"]) == 4


def test_the_kernels_are_warmed_on_one_worker_per_host(client):
    from dropcore.distributed.workers import one_worker_per_host, warm_training_kernels

    workers = one_worker_per_host(client)
    assert len(workers) == 1 and workers[0] in client.scheduler_info()["workers"]  # one host here
    import dropcore

    dropcore.set_random_seed(4)
    expected = dropcore.initializers.GlorotUniform()((3, 3))
    dropcore.set_random_seed(4)
    warm_training_kernels()  # trains a small network, and leaves the initializers' random state as it was
    np.testing.assert_array_equal(dropcore.initializers.GlorotUniform()((3, 3)), expected)
