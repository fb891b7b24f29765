"""Callbacks: early stopping, checkpoints, learning-rate schedules, CSV and JSON logs."""
import csv
import math
import os

import numpy as np
import pytest

import dropcore
from dropcore.callbacks import (Callback, CosineDecay, CSVLogger, EarlyStopping, JSONLogger, LearningRateScheduler,
                                ModelCheckpoint, StepDecay, load_history, save_history)
from dropcore.layers import Dense, Input


def tiny_model(optimizer="sgd"):
    dropcore.set_random_seed(0)
    model = dropcore.Sequential([Input((4,)), Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(48, 4)).astype(np.float32), rng.integers(0, 3, 48)


def mark_weights(model, value):
    """Give every weight the value ``value`` so the epoch the weights come from can be read back."""
    model.set_weights([np.full_like(w, value) for w in model.get_weights()])


def drive(callback, model, values, monitor="val_loss"):
    """Run ``callback`` through crafted epochs (weights marked with the epoch); return the epochs that ran."""
    callback.set_model(model)
    model.stop_training = False
    callback.on_train_begin()
    ran = []
    for epoch, value in enumerate(values):
        callback.on_epoch_begin(epoch)
        mark_weights(model, epoch)
        callback.on_epoch_end(epoch, {"loss": 1.0, monitor: value})
        ran.append(epoch)
        if model.stop_training:
            break
    callback.on_train_end()
    return ran


# --- EarlyStopping ------------------------------------------------------------------------------------------
def test_early_stopping_stops_after_patience_epochs_without_improvement_and_restores_best():
    model = tiny_model()
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    ran = drive(es, model, [1.0, 0.8, 0.9, 0.85, 0.7, 0.6])
    assert ran == [0, 1, 2, 3]  # epochs 2 and 3 did not beat 0.8: stop after epoch 3, never reach 0.7
    assert es.stopped_epoch == 3 and es.best_epoch == 1 and es.best == 0.8
    for w in model.get_weights():
        np.testing.assert_array_equal(w, 1.0)  # the weights marked at epoch 1


def test_early_stopping_patience_zero_stops_at_first_non_improvement_without_restoring():
    model = tiny_model()
    es = EarlyStopping(monitor="val_loss", patience=0)
    assert drive(es, model, [1.0, 0.9, 0.95, 0.5]) == [0, 1, 2]
    for w in model.get_weights():
        np.testing.assert_array_equal(w, 2.0)  # restore_best_weights=False: the last epoch's weights stay


def test_early_stopping_min_delta_and_max_mode():
    model = tiny_model()
    es = EarlyStopping(monitor="val_loss", patience=1, min_delta=0.1)
    assert drive(es, model, [1.0, 0.95, 0.5]) == [0, 1]  # 0.95 is better, but by less than min_delta
    es = EarlyStopping(monitor="val_accuracy", patience=1)  # "auto" maximizes accuracies
    assert drive(es, model, [0.5, 0.6, 0.7, 0.65], monitor="val_accuracy") == [0, 1, 2, 3]
    assert es.best == 0.7 and es.best_epoch == 2
    es = EarlyStopping(monitor="val_accuracy", patience=1, mode="min")
    assert drive(es, model, [0.5, 0.6, 0.4], monitor="val_accuracy") == [0, 1]


def test_early_stopping_restores_best_even_when_training_runs_to_the_end():
    model = tiny_model()
    es = EarlyStopping(patience=5, restore_best_weights=True)
    assert drive(es, model, [1.0, 0.5, 0.7]) == [0, 1, 2]
    for w in model.get_weights():
        np.testing.assert_array_equal(w, 1.0)


def test_early_stopping_inside_fit(data):
    x, y = data
    model = tiny_model()
    # No epoch can beat the first by 100: training stops after the second of ten epochs.
    history = model.fit(x, y, epochs=10, verbose=0, seed=0,
                        callbacks=[EarlyStopping(monitor="loss", min_delta=100.0, patience=1)])
    assert history.epoch == [0, 1]


def test_early_stopping_names_a_missing_monitor(data):
    x, y = data
    model = tiny_model()
    with pytest.raises(ValueError, match=r"'val_loss' is not in the epoch's logs; available: accuracy, loss"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[EarlyStopping()])


@pytest.mark.parametrize("kwargs, arg", [({"patience": -1}, "patience"), ({"mode": "best"}, "mode"),
                                         ({"monitor": ""}, "monitor"), ({"min_delta": float("nan")}, "min_delta")])
def test_early_stopping_rejects_bad_arguments(kwargs, arg):
    with pytest.raises(ValueError, match=f"Invalid value for `{arg}`"):
        EarlyStopping(**kwargs)


# --- ModelCheckpoint ----------------------------------------------------------------------------------------
def test_checkpoint_save_best_only_writes_only_improving_epochs(tmp_path):
    model = tiny_model()
    ckpt = ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.dropcore"), save_best_only=True)
    drive(ckpt, model, [1.0, 0.8, 0.9, 0.7])
    names = sorted(os.listdir(tmp_path))
    assert names == ["ckpt-01-1.00.dropcore", "ckpt-02-0.80.dropcore", "ckpt-04-0.70.dropcore"]
    assert [os.path.basename(p) for p in ckpt.saved] == names
    for name, epoch in zip(names, (0, 1, 3)):
        for w in dropcore.load_model(tmp_path / name).get_weights():
            np.testing.assert_array_equal(w, float(epoch))


def test_checkpoint_one_file_keeps_the_best_model(tmp_path):
    model = tiny_model()
    path = tmp_path / "best.dropcore"
    ckpt = ModelCheckpoint(path, monitor="val_accuracy", save_best_only=True)
    drive(ckpt, model, [0.5, 0.9, 0.8, 0.85], monitor="val_accuracy")
    assert len(ckpt.saved) == 2
    for w in dropcore.load_model(path).get_weights():
        np.testing.assert_array_equal(w, 1.0)  # epoch 1 had the best accuracy; later epochs did not overwrite
    assert os.listdir(tmp_path) == ["best.dropcore"]  # no temporary file left behind


def test_checkpoint_every_epoch_in_fit(tmp_path, data):
    x, y = data
    model = tiny_model()
    ckpt = ModelCheckpoint(str(tmp_path / "sub" / "e{epoch}.dropcore"))
    model.fit(x, y, epochs=3, verbose=0, seed=0, callbacks=[ckpt])
    assert sorted(os.listdir(tmp_path / "sub")) == ["e1.dropcore", "e2.dropcore", "e3.dropcore"]
    for a, b in zip(dropcore.load_model(tmp_path / "sub" / "e3.dropcore").get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_bad_filepath_field_is_explained(tmp_path):
    model = tiny_model()
    ckpt = ModelCheckpoint(str(tmp_path / "m-{val_acc}.dropcore"))
    with pytest.raises(ValueError, match="cannot fill filepath"):
        drive(ckpt, model, [1.0])


# --- schedules ----------------------------------------------------------------------------------------------
def test_step_decay_rates():
    assert [StepDecay(0.1, drop=0.5, epochs_drop=2)(e) for e in range(6)] == \
        pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_cosine_decay_rates():
    sched = CosineDecay(1.0, decay_epochs=4, alpha=0.1)
    expected = [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(e, 4) / 4)) for e in range(7)]
    got = [sched(e) for e in range(7)]
    assert got == pytest.approx(expected)
    assert got[0] == pytest.approx(1.0) and got[2] == pytest.approx(0.55) and got[4:] == pytest.approx([0.1] * 3)


class RecordRate(Callback):
    """The optimizer's learning rate seen by every batch."""

    def __init__(self):
        super().__init__()
        self.rates = []

    def on_train_batch_end(self, batch, logs=None):
        self.rates.append(self.model.optimizer.learning_rate)


def test_scheduler_sets_the_optimizer_rate_each_epoch(data):
    x, y = data
    model = tiny_model(dropcore.optimizers.SGD(0.2))
    sched = LearningRateScheduler(StepDecay(0.2, drop=0.5, epochs_drop=1))
    record = RecordRate()
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, seed=0, callbacks=[sched, record])
    assert sched.rates == pytest.approx([0.2, 0.1, 0.05])
    assert record.rates == pytest.approx([0.2] * 3 + [0.1] * 3 + [0.05] * 3)  # 3 batches per epoch
    assert model.optimizer.learning_rate == pytest.approx(0.05)


def test_scheduler_accepts_one_argument_schedules_and_passes_the_current_rate():
    model = tiny_model(dropcore.optimizers.SGD(0.1))
    seen = []
    sched = LearningRateScheduler(lambda epoch, lr: seen.append(lr) or lr * 0.5)
    sched.set_model(model)
    sched.on_train_begin()
    for e in range(3):
        sched.on_epoch_begin(e)
    assert seen == pytest.approx([0.1, 0.05, 0.025])
    sched = LearningRateScheduler(lambda epoch: 0.01 * (epoch + 1))
    sched.set_model(model)
    sched.on_epoch_begin(4)
    assert model.optimizer.learning_rate == pytest.approx(0.05)


def test_scheduler_rejects_bad_rates_and_schedules():
    model = tiny_model()
    sched = LearningRateScheduler(lambda epoch: -1.0)
    sched.set_model(model)
    with pytest.raises(ValueError, match=r"value at epoch 0.*Received: learning_rate=-1.0"):
        sched.on_epoch_begin(0)
    with pytest.raises(ValueError, match="Invalid value for `schedule`"):
        LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="Invalid value for `epochs_drop`"):
        StepDecay(0.1, epochs_drop=0)
    with pytest.raises(ValueError, match="Invalid value for `initial_lr`"):
        CosineDecay(0.0, decay_epochs=3)


# --- CSV and JSON logs --------------------------------------------------------------------------------------
def test_csv_logger_writes_one_row_per_epoch(tmp_path, data):
    x, y = data
    model = tiny_model()
    path = tmp_path / "log.csv"
    history = model.fit(x, y, epochs=3, verbose=0, seed=0, validation_split=0.25, callbacks=[CSVLogger(path)])
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "2"]
    for i, key in enumerate(rows[0][1:], start=1):
        assert [float(r[i]) for r in rows[1:]] == history.history[key]  # exact: written with repr
    # append=True continues the file without a second header
    model.fit(x, y, epochs=1, verbose=0, seed=0, validation_split=0.25, callbacks=[CSVLogger(path, append=True)])
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 5 and rows[4][0] == "0" and rows[0][0] == "epoch"
    assert load_history(path)["loss"][:3] == history.history["loss"]


def test_json_logger_and_history_files_round_trip(tmp_path, data):
    x, y = data
    model = tiny_model()
    path = tmp_path / "h.json"
    history = model.fit(x, y, epochs=2, verbose=0, seed=0, callbacks=[JSONLogger(path)])
    loaded = load_history(path)
    assert loaded == {"epoch": [0, 1], **history.history}
    save_history(history.history, tmp_path / "plain.json")
    assert load_history(tmp_path / "plain.json") == history.history
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object of lists"):
        load_history(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="Invalid value for `history`"):
        save_history([1, 2], tmp_path / "x.json")
