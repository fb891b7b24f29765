"""The training loop of ``Model.fit``: the batches of an epoch, the callbacks, progress and validation.

``Model.fit`` checks its arguments and leaves the loop here; one optimizer step is ``Model._train_batch`` (the
model's own job: its plan, loss and optimizer), so data parallelism (``dp``, ``dropcore.distributed.training``)
hooks in at the same points in both.
"""
from contextlib import nullcontext

from . import workspace
from .data.batches import ArrayBatches, SourceBatches, is_source, sample_weights
from .callbacks import Callback, History
from .errors import NumericalError
from .progress import EpochProgress
from .validation import invalid


def run_epochs(model, batches, val, callbacks, dp, initial_epoch, epochs, verbose, batch_size, where):
    """Train ``model`` from epoch ``initial_epoch`` to ``epochs`` on ``batches``; returns the :class:`History`."""
    from .kernels.threads import engine_call  # on use: importing dropcore loads no kernels

    if dp is not None:
        dp.begin()  # the model is built now: rank 0's weights everywhere
    history = History()
    cbs = [history] + list(callbacks or [])
    for cb in cbs:
        if not isinstance(cb, Callback):
            raise invalid("callbacks", "a list of dropcore.callbacks.Callback", cb, where)
        cb.set_model(model)
    if dp is not None:
        cbs = dp.callbacks(cbs)  # checkpoints and logs are written once, by rank 0
    model.stop_training = False
    for _ in range(initial_epoch):
        batches.skip_epoch()
    for cb in cbs:
        cb.on_train_begin()
    with engine_call(model.kernel_set.name), (nullcontext() if dp is None else dp.running()):
        for epoch in range(initial_epoch, epochs):
            for cb in cbs:
                cb.on_epoch_begin(epoch)
            if dp is not None:
                dp.after_callbacks()  # a learning-rate schedule ran on rank 0
            progress = EpochProgress(epoch, epochs, batches.steps, verbose, has_metric=model.metric is not None)
            loss_sum = metric_sum = 0.0
            seen = 0
            for b, (xb, yb, wb) in enumerate(batches.epoch()):
                try:
                    bl, bm = model._train_batch(xb, yb, wb, dp)
                except NumericalError as exc:
                    progress.close()
                    raise NumericalError(f"{where}: {exc} at epoch {epoch + 1}, batch {b + 1}; training stopped "
                                         f"and the weights are those from before this batch") from None
                loss_sum += bl
                metric_sum += bm or 0.0
                seen += len(xb)
                logs = {"loss": loss_sum / seen}
                if model.metric is not None:
                    logs["accuracy"] = metric_sum / seen
                progress.update(logs)
                for cb in cbs:
                    cb.on_train_batch_end(b, logs)
            if val is not None and (dp is None or dp.is_root):  # only rank 0's callbacks read it
                vres = model._evaluate_arrays(val[0], val[1], max(batch_size, 256))
                logs.update({"val_" + k: v for k, v in vres.items()})
            progress.close(logs)
            for cb in cbs:
                cb.on_epoch_end(epoch, logs)
            if dp is not None:
                dp.after_callbacks()  # rank 0's early stopping or schedule decides for every rank
            if model.stop_training:
                break
    for cb in cbs:
        cb.on_train_end()
    if dp is not None:
        dp.finish()
    return history


def training_batches(model, x, y, batch_size, shuffle, rng, val, validation_split, class_weight, sample_weight,
                      steps_per_epoch, epochs, where):
    """``(batches, validation arrays)`` for ``model.fit``: arrays cut into batches, or a data source's batches."""
    if is_source(x):
        unsupported = {"y": y, "sample_weight": sample_weight, "class_weight": class_weight}
        for arg, value in unsupported.items():
            if value is not None:
                raise ValueError(f"{where}: `{arg}` cannot be given with a data source `x` "
                                 f"({type(x).__name__}); its batches carry (x, y[, sample_weight])")
        if validation_split:
            raise ValueError(f"{where}: `validation_split` needs arrays; with a data source `x` give "
                             f"`validation_data`")
        return SourceBatches(x, steps_per_epoch, model._check_xy, where, epochs, shuffle, rng), val
    if y is None:
        raise ValueError(f"{where}: `y` is required when `x` is an array; received y=None")
    x, y = model._check_xy(x, y)
    w = sample_weights(y, sample_weight, class_weight, where)
    if val is None and validation_split > 0:
        n_train = int(len(x) * (1.0 - validation_split))
        if n_train < 1 or n_train == len(x):
            raise ValueError(f"{where}: validation_split={validation_split} leaves {n_train} of {len(x)} samples "
                             f"for training; expected both parts non-empty")
        val = (x[n_train:], y[n_train:])
        x, y = x[:n_train], y[:n_train]
        w = None if w is None else w[:n_train]
    workspace.check(model, min(batch_size, len(x)), True)
    batches = ArrayBatches(x, y, w, batch_size, shuffle, rng)
    if steps_per_epoch is not None:
        raise ValueError(f"{where}: `steps_per_epoch` is for data sources; arrays are cut into "
                         f"{batches.steps} batches of {batch_size}")
    return batches, val
