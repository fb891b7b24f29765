"""Run by the tests under ``mpiexec -n N``: trains a small model data-parallel and saves each rank's weights.

300 samples in batches of 31 (uneven splits over the ranks), weighted by class, 10 steps an epoch.

``python train_script.py OUT_DIR [--bn] [--epochs E] [--batch B]``: writes ``OUT_DIR/rank{r}.npz`` (every
weight, in ``get_weights`` order) and ``OUT_DIR/history{r}.json``.
"""
import argparse
import json
import os
import sys

import numpy as np

import dropcore
from dropcore.distributed import comm_from_environment
from dropcore.layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D


class StopAt(dropcore.callbacks.Callback):
    """Stops training at the end of epoch ``epoch``."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            self.model.stop_training = True


class Batches:
    """A ``keras.utils.PyDataset``-style sequence: batch ``i`` of ``(x, y)``."""

    def __init__(self, x, y, size):
        self.x, self.y, self.size = x, y, size

    def __len__(self):
        return -(-len(self.x) // self.size)

    def __getitem__(self, i):
        return self.x[i * self.size:(i + 1) * self.size], self.y[i * self.size:(i + 1) * self.size]


def build(bn, lazy=False):
    """The model; ``lazy``: no Input, so that it is built (its weights drawn) on the first batch ``fit`` sees."""
    layers = ([] if lazy else [Input((8, 8, 1))]) + [Conv2D(6, 3, activation="relu")]
    if bn:
        layers.append(BatchNormalization())
    layers += [MaxPooling2D(2), Dropout(0.25), Flatten(), Dense(16, activation="relu"), Dropout(0.5),
               Dense(4, activation="softmax")]
    return dropcore.Sequential(layers)


def data(n=300):
    rng = np.random.default_rng(3)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = (x[:, :4, :4, 0].mean(axis=(1, 2)) * 4 + x[:, 4:, 4:, 0].mean(axis=(1, 2)) * 2).astype(np.int64) % 4
    return x, y


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--bn", action="store_true")
    p.add_argument("--lazy", action="store_true", help="a Sequential without Input, built inside fit")
    p.add_argument("--source", action="store_true", help="fit on a sequence of (x, y) batches, not arrays")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=31)  # 300 samples: every split over 2 ranks uneven (15/16, 10/11)
    p.add_argument("--stop-at", type=int, help="a callback stops training after this epoch (0-based), a schedule "
                                               "lowers the learning rate each epoch, and early stopping restores "
                                               "epoch 0's weights at the end")
    args = p.parse_args(argv)
    comm = comm_from_environment()
    rank = 0 if comm is None else comm.rank
    dropcore.set_random_seed(100 + rank)  # different initial weights per rank: rank 0's must win the broadcast
    model = build(args.bn, args.lazy)
    model.compile(optimizer=dropcore.optimizers.SGD(0.05, momentum=0.9), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    x, y = data()
    log = os.path.join(args.out, "log.csv")
    callbacks = [dropcore.callbacks.CSVLogger(log)]  # every rank passes them; rank 0 alone runs them
    if args.stop_at is not None:
        callbacks += [StopAt(args.stop_at), dropcore.callbacks.LearningRateScheduler(lambda epoch: 0.05 / (1 + epoch)),
                      # only epoch 0 "improves" by 10: its weights are restored at the end, on rank 0
                      dropcore.callbacks.EarlyStopping("loss", min_delta=10.0, patience=100, restore_best_weights=True)]
    if args.source:  # a sequence of batches, which fit shuffles each epoch (the same order on every rank)
        hist = model.fit(Batches(x, y, args.batch), epochs=args.epochs, seed=11, verbose=0, comm=comm,
                         callbacks=callbacks)
    else:
        hist = model.fit(x, y, batch_size=args.batch, epochs=args.epochs, seed=11, verbose=0, comm=comm,
                         callbacks=callbacks, class_weight={0: 1.0, 1: 2.0, 2: 0.5, 3: 1.5})
    np.savez(os.path.join(args.out, f"rank{rank}.npz"), *model.get_weights())
    with open(os.path.join(args.out, f"history{rank}.json"), "w") as fh:
        json.dump(hist.history, fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
