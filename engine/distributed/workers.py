"""Dask workers that behave: kernel threads sized to the cores each worker was given.

A Dask nanny starts each worker with ``OMP_NUM_THREADS=1`` (``distributed.nanny.pre-spawn-environ``) but says
nothing to Numba, and Numba and OpenMP otherwise count every core of the host: workers sharing a node would then
oversubscribe it. The plugin sets each worker's process-wide count (:func:`dropcore.set_num_threads`) to the
worker's ``nthreads``, the cores it was given, and :func:`dropcore.distributed.predict` runs each task's kernels on
one thread (a worker's ``nthreads`` tasks run side by side and fill those cores).

Workers must not be forked from a process whose kernels have run (OpenMP's and Numba's thread pools do not survive
a fork): ``distributed`` starts worker processes with ``spawn`` by default
(``distributed.worker.multiprocessing-method``), and :func:`register_threads_plugin` refuses ``fork``.
Scoring never imports Numba (the Predictor runs the ahead-of-time Cython kernels), so no worker compiles or races
on Numba's cache files while scoring.
"""

#: The plugin's name on the workers: registering it again replaces it (idempotent).
PLUGIN_NAME = "dropcore-threads"


def register_threads_plugin(client):
    """Register :class:`ThreadsPlugin` on every worker of ``client`` (now and when they restart)."""
    import dask

    method = dask.config.get("distributed.worker.multiprocessing-method", "spawn")
    if method == "fork":
        raise RuntimeError("dropcore.distributed: Dask is configured to fork its workers "
                           "(distributed.worker.multiprocessing-method='fork'); forked workers inherit thread pools "
                           "that do not survive a fork: use 'spawn' or 'forkserver'")
    from ._dask_plugin import ThreadsPlugin

    client.register_plugin(ThreadsPlugin(), name=PLUGIN_NAME)


def __getattr__(name):
    # The plugin subclasses distributed's WorkerPlugin: defined on first use, so importing dropcore.distributed
    # does not import distributed.
    if name == "ThreadsPlugin":
        from ._dask_plugin import ThreadsPlugin

        return ThreadsPlugin
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def warm_training_kernels():
    """Compile (or load from Numba's cache) the kernels a training runs: one step of a small network with every
    common kind of layer, on two samples. Run on one worker per node before a sweep's tasks start, so that the
    node's other workers load the cache it wrote instead of all compiling the same kernels at once and racing on
    its files. Leaves the global weight initializer's random state as it was."""
    import numpy as np

    from .. import initializers
    from ..layers import BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D
    from ..model import Sequential

    state = initializers._default_rng.bit_generator.state
    try:
        model = Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu"), BatchNormalization(),
                            MaxPooling2D(2), Dropout(0.25), Flatten(), Dense(8, activation="relu"), Dropout(0.5),
                            Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        model.train_on_batch(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 1]))
        model.evaluate(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 1]))
    finally:
        initializers._default_rng.bit_generator.state = state


def one_worker_per_host(client):
    """The address of one worker on each host of ``client``'s cluster."""
    first = {}
    for address, info in sorted(client.scheduler_info()["workers"].items()):
        first.setdefault(info.get("host", address), address)
    return list(first.values())
