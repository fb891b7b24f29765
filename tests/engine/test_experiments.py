"""The dropout-placement experiment and k-fold cross-validation, on small data made here."""
from pathlib import Path

import numpy as np
import pytest

from dropcore import experiments
from dropcore.testing import striped_images


@pytest.fixture(scope="module")
def images():
    """Three classes of 8x8 images told apart by which third of the picture is bright."""
    return striped_images(150, 8, background=0.3, stripe=0.7)


@pytest.fixture(scope="module")
def table():
    """Two Gaussian blobs in 5 dimensions, 40 and 32 rows (unbalanced, so stratification matters)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(0.0, 1.0, (40, 5)), rng.normal(2.5, 1.0, (32, 5))]).astype(np.float32)
    y = np.array([0] * 40 + [1] * 32)
    order = rng.permutation(len(y))
    return x[order] * 50.0 + 10.0, y[order]  # far from standardized: the experiment scales each fold


def run_small(images, **kw):
    """One seed: these tests look at the runs themselves (test_experiments_seeds.py looks at several)."""
    x, y = images
    return experiments.dropout_experiment(x, y, epochs=2, batch_size=16, seed=0, **dict({"seeds": 1}, **kw))


def test_dropout_experiment_reports_every_variant(images):
    res = run_small(images)
    assert [r["variant"] for r in res["runs"]] == ["none", "visible", "conv", "dense", "conv+dense",
                                                   "visible+conv+dense"]
    assert res["n_train"] == 120 and res["n_val"] == 30 and res["model"] == "mnist_cnn"
    for r in res["runs"]:
        assert r["gap"] == pytest.approx(r["train_accuracy"] - r["val_accuracy"])
        assert 0.0 <= r["train_accuracy"] <= 1.0 and 0.0 <= r["val_accuracy"] <= 1.0
        assert r["train_loss"] > 0 and r["val_loss"] > 0
        assert sorted(r["history"]) == ["accuracy", "loss", "val_accuracy", "val_loss"]
        assert len(r["history"]["loss"]) == 2
        # the reported validation numbers are those of the last epoch
        assert r["val_accuracy"] == pytest.approx(r["history"]["val_accuracy"][-1])
    by = {r["variant"]: r for r in res["runs"]}
    assert by["none"]["train_loss"] != by["conv+dense"]["train_loss"]  # the variants really differ
    table = experiments.format_table(res)
    assert all(name in table for name in by) and f"{by['none']['val_accuracy']:.4f}" in table


def test_dropout_experiment_is_reproducible(images):
    a = run_small(images, variants=["none", "dense"])
    b = run_small(images, variants=["none", "dense"])
    assert a == b
    c = experiments.dropout_experiment(*images, variants=["none", "dense"], epochs=2, batch_size=16, seed=1,
                                       seeds=1)
    assert c["runs"][1]["history"]["loss"] != a["runs"][1]["history"]["loss"]


def test_dropout_experiment_without_dropout_matches_a_plain_run(images):
    """The "none" variant is the same network with no Dropout layer: with a rate override it does not change."""
    a = run_small(images, variants=["none"])
    b = run_small(images, variants=["none"], rate=0.3)
    assert b["runs"][0].pop("rate") == 0.3 and a["runs"][0].pop("rate") is None  # asked for, and unused
    assert a["runs"] == b["runs"]


def test_dropout_experiment_mlp_and_validation_data(table):
    x, y = table
    res = experiments.dropout_experiment(x[:50], y[:50], model="mlp", epochs=2, batch_size=8,
                                         validation_data=(x[50:], y[50:]), seeds=1)
    assert [r["variant"] for r in res["runs"]] == ["none", "visible", "dense", "visible+dense"]
    assert res["n_train"] == 50 and res["n_val"] == 22


@pytest.mark.parametrize("kwargs, match", [
    ({"variants": ["none", "input"]}, r"Invalid value for `variants`.*Received: variants='input'"),
    ({"variants": []}, r"Invalid value for `variants`"),
    ({"rate": 0.0}, r"Invalid value for `rate`: expected a float in \(0.0, 1.0\)"),
    ({"model": "vgg"}, r"Invalid value for `model`"),
    ({"validation_split": 1.0}, r"Invalid value for `validation_split`"),
])
def test_dropout_experiment_bad_arguments(images, kwargs, match):
    with pytest.raises(ValueError, match=match):
        run_small(images, **kwargs)


def test_kinds_experiment_runs_each_kind_on_the_same_network(images):
    x, y = images
    res = experiments.dropout_kinds_experiment(x, y, epochs=2, batch_size=16, rate=0.3, seed=0, seeds=1)
    assert [r["label"] for r in res["runs"]] == ["none", "dropout", "spatial", "gaussian", "alpha", "dropblock",
                                                 "maxpool"]
    assert res["placement"] == ["conv"] and res["n_train"] == 120
    by = {r["label"]: r for r in res["runs"]}
    assert by["none"]["placement"] == [] and all(r["placement"] == ["conv"] for r in res["runs"][1:])
    losses = [r["history"]["loss"][0] for r in res["runs"]]
    assert len(set(losses)) == len(losses)  # every kind trains differently...
    plain = run_small(images, variants=["none", "conv"], rate=0.3)["runs"]  # ...and two are the placement runs
    for mine, theirs in zip((by["none"], by["dropout"]), plain):
        assert {k: mine[k] for k in ("train_loss", "val_loss", "history")} == \
            {k: theirs[k] for k in ("train_loss", "val_loss", "history")}
    table = experiments.format_table(res, "kind")
    assert table.splitlines()[1].startswith("kind") and all(k in table for k in by)


def test_kinds_experiment_keeps_other_places_plain_and_checks_its_arguments(images):
    x, y = images
    res = experiments.dropout_kinds_experiment(x, y, kinds="none,maxpool", placement=("conv", "dense"), epochs=1,
                                               batch_size=16, seeds=1)
    assert [r["placement"] for r in res["runs"]] == [["dense"], ["conv", "dense"]]
    with pytest.raises(ValueError, match=r"Invalid value for `kinds`.* \(not 'mc'\). Received: kinds='dropout,mc'"):
        experiments.dropout_kinds_experiment(x, y, kinds="dropout,mc")
    with pytest.raises(ValueError, match=r"Invalid value for `placement`: expected places that include 'conv'"):
        experiments.dropout_kinds_experiment(x, y, placement=("dense",))
    with pytest.raises(ValueError, match=r"Invalid value for `model`: expected a CNN"):
        experiments.dropout_kinds_experiment(x.reshape(150, -1), y, model="mlp")


def test_variant_names_round_trip():
    assert experiments.parse_variant("dense+visible") == ("visible", "dense")
    assert experiments.variant_name(("dense", "visible")) == "visible+dense"
    assert experiments.parse_variant("none") == () and experiments.variant_name(()) == "none"


def test_kfold_gives_k_folds_with_consistent_summary(table):
    x, y = table
    res = experiments.kfold_experiment(x, y, k=4, epochs=10, batch_size=8, seed=0)
    folds = res["folds"]
    assert [f["fold"] for f in folds] == [1, 2, 3, 4] and res["k"] == 4
    assert sum(f["n_test"] for f in folds) == len(y)
    assert all(f["n_train"] + f["n_test"] == len(y) for f in folds)
    accs = np.array([f["accuracy"] for f in folds])
    assert res["mean_accuracy"] == pytest.approx(accs.mean())
    assert res["std_accuracy"] == pytest.approx(accs.std())
    assert res["mean_accuracy"] >= 0.85  # well-separated blobs: the standardized MLP learns them


@pytest.fixture(scope="module")
def kfold_default(table):
    x, y = table
    return experiments.kfold_experiment(x, y, k=3, epochs=3, batch_size=8, seed=0)


def test_kfold_is_reproducible_and_seed_dependent(table, kfold_default):
    x, y = table
    a = kfold_default
    assert a == experiments.kfold_experiment(x, y, k=3, epochs=3, batch_size=8, seed=0)
    b = experiments.kfold_experiment(x, y, k=3, epochs=3, batch_size=8, seed=5)
    assert [f["loss"] for f in a["folds"]] != [f["loss"] for f in b["folds"]]


def test_kfold_with_a_custom_build_fn(table, kfold_default):
    import dropcore
    from dropcore.layers import Dense, Input

    x, y = table
    shapes = []

    def build(input_shape, num_classes):
        shapes.append((input_shape, num_classes))
        net = dropcore.Sequential([Input(input_shape), Dense(num_classes, activation="softmax")])
        return net.compile(optimizer=dropcore.optimizers.SGD(0.05), loss="sparse_categorical_crossentropy",
                           metrics=["accuracy"])

    res = experiments.kfold_experiment(x, y, k=3, epochs=3, batch_size=8, seed=0, build_fn=build)
    assert shapes == [((5,), 2)] * 3 and len(res["folds"]) == 3
    assert [f["loss"] for f in res["folds"]] != [f["loss"] for f in kfold_default["folds"]]  # not the mlp
    assert res == experiments.kfold_experiment(x, y, k=3, epochs=3, batch_size=8, seed=0, build_fn=build)
    with pytest.raises(ValueError, match=r"Invalid value for `build_fn`: expected None or a callable"):
        experiments.kfold_experiment(x, y, k=3, build_fn="mlp")
    with pytest.raises(ValueError, match=r"`build_fn`: expected a callable returning a dropcore model.*'str'"):
        experiments.kfold_experiment(x, y, k=3, build_fn=lambda shape, n: "mlp")


def test_kfold_bad_arguments(table, images):
    x, y = table
    with pytest.raises(ValueError, match=r"Invalid value for `k`: expected an integer in \[2, 72\]"):
        experiments.kfold_experiment(x, y, k=100)
    with pytest.raises(ValueError, match=r"Invalid value for `k`: expected an integer >= 2"):
        experiments.kfold_experiment(x, y, k=1)
    with pytest.raises(ValueError, match=r"Invalid value for `x`: expected feature rows of shape \(N, F\)"):
        experiments.kfold_experiment(*images, k=3)


# --- plots of the histories (dropcore.plotting) ----------------------------------------------------------------
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path):
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _fake_history(shift):
    epochs = np.arange(1, 6)
    return {"loss": list(1.0 / epochs), "accuracy": list(1 - 0.5 / epochs), "val_loss": list(1.2 / epochs + shift),
            "val_accuracy": list(0.9 - 0.5 / epochs - shift)}


def test_plot_history_and_overlaid_curves(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the optional matplotlib")
    from dropcore import callbacks, plotting

    res = {"runs": [{"variant": "none", "history": _fake_history(0.1)},
                    {"variant": "conv+dense", "history": _fake_history(0.0)}]}
    hist = res["runs"][0]["history"]
    w2, h2 = _png_size(plotting.plot_history(hist, tmp_path / "one.png"))  # loss and accuracy: two panels
    callbacks.save_history(hist, tmp_path / "h.json")
    assert _png_size(plotting.plot_history(str(tmp_path / "h.json"), tmp_path / "from_file.png")) == (w2, h2)
    loss_only = {k: v for k, v in hist.items() if "accuracy" not in k}
    w1, _ = _png_size(plotting.plot_history(loss_only, tmp_path / "loss.png"))
    assert w1 < w2  # one panel is narrower than two
    runs = {r["variant"]: r["history"] for r in res["runs"]}
    path = plotting.plot_curves(runs, tmp_path / "sub" / "overlay.png", metrics="val_accuracy")
    assert _png_size(tmp_path / "sub" / "overlay.png") == (w1, h2) and str(path).endswith("overlay.png")


def test_plot_errors_are_explained(tmp_path, monkeypatch):
    from dropcore import plotting

    with pytest.raises(ValueError, match=r"plot_history: the history has no 'loss' values; keys: \['accuracy'\]"):
        plotting.plot_history({"accuracy": [0.5]}, tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"plot_curves: no run has any of \['val_f1'\]"):
        plotting.plot_curves({"a": {"loss": [1.0]}}, tmp_path / "x.png", metrics="val_f1")
    with pytest.raises(ValueError, match=r"Invalid value for `runs`: expected a non-empty dict"):
        plotting.plot_curves({}, tmp_path / "x.png")
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # as if matplotlib were not installed
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.figure", None)
    monkeypatch.setitem(__import__("sys").modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"needs matplotlib .*pip install matplotlib"):
        plotting.plot_history({"loss": [1.0, 0.5]}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --- runs elsewhere: each training is a pure task ---------------------------------------------------------------
def _process_runner(task, items, data, settings):
    """Every task in a fresh process (spawned: nothing inherited but the arguments), as a cluster would run it."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from itertools import repeat

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(task, items, repeat(data), repeat(settings)))


def test_runs_in_other_processes_give_the_serial_results(images, table):
    x, y = images
    kw = dict(kinds="none,dropblock,maxpool", epochs=1, batch_size=16, seed=3, seeds=2)
    seen = []
    assert experiments.dropout_kinds_experiment(x, y, runner=_process_runner, on_run=seen.append, **kw) == \
        experiments.dropout_kinds_experiment(x, y, **kw)
    assert [(r["seed"], r["label"]) for r in seen] == [(s, k) for s in (3, 4) for k in ("none", "dropblock",
                                                                                        "maxpool")]
    xt, yt = table
    assert experiments.kfold_experiment(xt, yt, k=3, epochs=2, runner=_process_runner) == \
        experiments.kfold_experiment(xt, yt, k=3, epochs=2)
    with pytest.raises(ValueError, match=r"Invalid value for `runner`: expected None or a callable"):
        experiments.kfold_experiment(xt, yt, k=3, runner="dask")
    with pytest.raises(ValueError, match="runner returned 1 results for 3 tasks"):
        experiments.kfold_experiment(xt, yt, k=3, runner=lambda task, items, data, settings: [None])
