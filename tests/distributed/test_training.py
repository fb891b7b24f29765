"""Data-parallel training under ``mpiexec -n 1`` and ``-n 2`` (the mpich wheel's launcher, from the venv's bin).

``train_script.py`` trains a small model (dropout, optionally batch normalization) for 300 steps of 31 samples
(split 15/16 over two ranks, the last batch of each epoch 10/11), weighted by class;
every rank passes a CSVLogger and starts from different initial weights, so the checks below fail if rank 0's
weights are not broadcast, if the callbacks run on every rank, or if the gradients are not averaged right.
"""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mpi4py", reason="data-parallel training needs mpi4py: pip install 'dropcore[mpi]'")

import dropcore  # noqa: E402
from dropcore.distributed import LocalComm  # noqa: E402
from dropcore.distributed.training import DataParallel, shard_bounds  # noqa: E402

SCRIPT = Path(__file__).with_name("train_script.py")
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def run(ranks, out, *args):
    """Run the training script on ``ranks`` ranks; each rank's weights (``get_weights`` order) and history."""
    out.mkdir(parents=True)
    assert MPIEXEC.exists(), f"{MPIEXEC} not found: the mpich wheel (extra 'mpi') brings it"
    proc = subprocess.run([str(MPIEXEC), "-n", str(ranks), sys.executable, str(SCRIPT), str(out), *args],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    weights, histories = [], []
    for r in range(ranks):
        with np.load(out / f"rank{r}.npz") as z:
            weights.append([z[f"arr_{i}"] for i in range(len(z.files))])
        histories.append(json.loads((out / f"history{r}.json").read_text()))
    return weights, histories


def assert_close_weights(reference, got, rtol=1e-5):
    """Each weight array within ``rtol`` of the reference, relative to the array's largest magnitude (float32
    sums over half batches round differently from sums over whole ones: ~1e-7 a step)."""
    for i, (a, b) in enumerate(zip(reference, got)):
        scale = float(np.abs(a).max())
        assert scale > 0, f"weight {i} is all zero"
        err = float(np.abs(a - b).max()) / scale
        assert err <= rtol, f"weight {i} {a.shape}: max |difference| / max |weight| = {err:.2e} > {rtol:g}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("mpi")
    # -n 1 first: the Numba kernels compile into their cache once, before two ranks start at the same time
    results = {name: run(ranks, base / name, *args) for name, ranks, args in [
        ("n1", 1, ()), ("n2", 2, ()), ("n2_again", 2, ()), ("n1_bn", 1, ("--bn", "--lazy")),
        ("n2_bn", 2, ("--bn", "--lazy"))]}
    results["dir"] = base
    return results


@pytest.mark.parametrize("bn", [False, True], ids=["dropout", "dropout+batchnorm"])
def test_every_rank_holds_the_same_weights(runs, bn):
    (w0, w1), _ = runs["n2_bn" if bn else "n2"]
    for i, (a, b) in enumerate(zip(w0, w1)):
        assert np.array_equal(a, b), f"weight {i} differs between rank 0 and rank 1"


@pytest.mark.parametrize("bn", [False, True], ids=["dropout", "dropout+batchnorm"])
def test_two_ranks_train_as_one_on_the_same_global_batches(runs, bn):
    (single,), _ = runs["n1_bn" if bn else "n1"]
    (two, _), _ = runs["n2_bn" if bn else "n2"]
    assert_close_weights(single, two)


def test_same_seed_and_ranks_are_bit_identical(runs):
    (a, _), _ = runs["n2"]
    (b, _), _ = runs["n2_again"]
    for i, (x, y) in enumerate(zip(a, b)):
        assert np.array_equal(x, y), f"weight {i} differs between two runs of -n 2 with the same seed"


def test_losses_are_the_global_batches_and_only_rank_0_logs(runs):
    _, (h1,) = runs["n1"]
    _, (h0, hr1) = runs["n2"]
    assert hr1["loss"] == h0["loss"], "every rank reports the summed loss of the global batches"
    np.testing.assert_allclose(h0["loss"], h1["loss"], rtol=1e-4)
    np.testing.assert_allclose(h0["accuracy"], h1["accuracy"], atol=1 / 300 + 1e-9)  # a sample may flip
    rows = (runs["dir"] / "n2" / "log.csv").read_text().splitlines()
    assert len(rows) == 1 + 30, f"the CSV log must be written by rank 0 alone: {len(rows)} lines"


def test_rank_0_callbacks_decide_for_every_rank(tmp_path):
    """Rank 0 alone runs the callbacks: its stop, its learning-rate schedule and its restored best weights must
    reach rank 1 (else rank 1 trains on and the run hangs, or the weights part)."""
    (single,), _ = run(1, tmp_path / "stop1", "--stop-at", "2")
    (w0, w1), (h0, h1) = run(2, tmp_path / "stop2", "--stop-at", "2")
    assert len(h0["loss"]) == len(h1["loss"]) == 3
    for i, (a, b) in enumerate(zip(w0, w1)):
        assert np.array_equal(a, b), f"weight {i} differs between rank 0 and rank 1"
    assert_close_weights(single, w0)  # rank 1 trained at rank 0's rates (fit ends broadcasting rank 0's weights)


def test_a_data_source_trains_the_same_way(tmp_path):
    """A sequence of batches, the same on every rank: each rank keeps its part of each."""
    (single,), _ = run(1, tmp_path / "src1", "--source", "--epochs", "10")
    (w0, w1), _ = run(2, tmp_path / "src2", "--source", "--epochs", "10")
    for i, (a, b) in enumerate(zip(w0, w1)):
        assert np.array_equal(a, b), f"weight {i} differs between rank 0 and rank 1"
    assert_close_weights(single, w0)


def _script():
    spec = importlib.util.spec_from_file_location("dropcore_train_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("bn", [False, True], ids=["dropout", "dropout+batchnorm"])
def test_fit_with_a_one_rank_comm_is_plain_fit(bn):
    script = _script()
    x, y = script.data()
    weights = []
    for comm in (None, LocalComm()):
        dropcore.set_random_seed(5)
        model = script.build(bn)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, batch_size=30, epochs=2, seed=3, verbose=0, comm=comm)
        weights.append(model.get_weights())
    for i, (a, b) in enumerate(zip(*weights)):
        assert np.array_equal(a, b), f"weight {i}"


def test_fit_refuses_what_is_not_a_comm():
    model = _script().build(False)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(TypeError, match="`comm` must be a dropcore.distributed.Comm"):
        model.fit(*_script().data(), comm=object(), verbose=0)


def test_mpi_comm_collectives():
    proc = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(SCRIPT.with_name("comm_script.py"))],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("ok") == 2, proc.stdout  # both ranks got through (their lines may interleave)


def test_shard_bounds_cover_uneven_batches():
    for total in (30, 31, 7, 2):
        for size in (1, 2, 3):
            if total < size:
                continue
            parts = [shard_bounds(total, r, size) for r in range(size)]
            assert parts[0][0] == 0 and parts[-1][1] == total
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            assert max(h - lo for lo, h in parts) - min(h - lo for lo, h in parts) <= 1


def test_a_batch_smaller_than_the_ranks_is_refused():
    class Four(LocalComm):
        rank, size = 1, 4

    dp = DataParallel(Four(), None, "fit")
    with pytest.raises(ValueError, match="a batch of 3 samples cannot be split over 4 ranks"):
        dp.shard(3)


def test_warming_the_kernels_changes_no_weight():
    from dropcore.distributed.training import warm_kernels

    model = _script().build(True)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.get_layer(index=1).weights["moving_mean"][...] = 0.5  # state that a training forward would move
    before = model.get_weights()
    warm_kernels(model)
    for i, (a, b) in enumerate(zip(before, model.get_weights())):
        assert np.array_equal(a, b), f"weight {i}"
