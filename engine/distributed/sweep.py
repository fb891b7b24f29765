"""Experiment sweeps on Dask: each training of ``dropcore.experiments`` (a dropout variant or kind, a k-fold fold)
as one task on the cluster, with the data sent to the workers once.

Every task (:func:`dropcore.experiments.train_run`, :func:`~dropcore.experiments.train_fold`) seeds itself and
shares nothing, and the training kernels give the same bits on any number of threads, so the results equal the
serial run's whatever the number of workers and the order the tasks finish in. A task whose worker dies is run
again by Dask's scheduler from the same inputs, with the same result.
"""
import uuid

from .workers import one_worker_per_host, register_threads_plugin, warm_training_kernels


def dask_runner(client, progress=True):
    """A ``runner`` for :func:`dropcore.experiments.dropout_experiment` (and the kinds and k-fold experiments):

        with Client(...) as client:
            result = dropout_experiment(x, y, ..., runner=dask_runner(client))

    Each worker's kernels run on the cores it was given (:func:`register_threads_plugin`), and one worker per node
    compiles the training kernels before the others start (:func:`warm_training_kernels`); ``progress`` shows a
    bar counting finished tasks (tqdm)."""
    register_threads_plugin(client)
    client.run(warm_training_kernels, workers=one_worker_per_host(client))

    def run(task, items, data, settings):
        from distributed import as_completed
        from tqdm.auto import tqdm

        # once per worker, not once per task: the arrays travel with the first task otherwise
        shared = client.scatter(list(data), broadcast=True, hash=False)  # see scoring.predict
        tag = uuid.uuid4().hex[:8]
        futures = [client.submit(task, item, shared, settings, key=f"dropcore-{task.__name__}-{tag}-{i}")
                   for i, item in enumerate(items)]
        try:
            with tqdm(total=len(futures), desc=task.__name__, unit="task", disable=not progress) as bar:
                for _ in as_completed(futures):
                    bar.update(1)
            return client.gather(futures)  # in submission order; a failed task raises its exception here
        finally:
            client.cancel(futures + list(shared))

    return run

