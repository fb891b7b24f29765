"""What ``dropcore predict`` and ``dropcore train`` call to run past one process (wired in ``dropcore.cli``).

- ``predict --scheduler ADDRESS`` scores on a running Dask cluster, ``predict --workers N`` on a local one of N
  worker processes (one thread each): :func:`add_predict_args`, :func:`uses_cluster`, :func:`predict_array`.
- ``mpiexec -n N dropcore train ...``: :func:`comm_from_environment` gives ``fit`` its communicator when the
  process was started by an MPI launcher for more than one rank.
"""
import os

from ..argtypes import positive_int

#: Environment variables MPI launchers set to the number of ranks: MPICH/Hydra and Intel MPI (``PMI_SIZE``),
#: Open MPI (``OMPI_COMM_WORLD_SIZE``), Slurm's PMI2/PMIx (``PMIX_SIZE`` is not universal, ``SLURM_NTASKS`` is not a
#: launch by itself: neither counts), MVAPICH2 (``MV2_COMM_WORLD_SIZE``).
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launched_ranks(environ=None):
    """The number of ranks an MPI launcher started this process among (1 when not launched by one)."""
    environ = os.environ if environ is None else environ
    for name in SIZE_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) >= 1:
            return int(value)
    return 1


def comm_from_environment(environ=None):
    """An :class:`~dropcore.distributed.MPIComm` when this process runs under ``mpiexec`` with more than one rank,
    else ``None`` (one process: ``fit`` trains as usual, and mpi4py is not imported)."""
    size = launched_ranks(environ)
    if size == 1:
        return None
    try:
        from .comm import MPIComm

        comm = MPIComm()
    except ImportError as exc:
        raise ImportError(f"this process was started by an MPI launcher for {size} ranks, but mpi4py is not "
                          f"installed: pip install 'dropcore[mpi]'") from exc
    if comm.size != size:
        raise RuntimeError(f"the MPI launcher announced {size} ranks but MPI.COMM_WORLD has {comm.size}: mpi4py was "
                           f"probably built against another MPI than the mpiexec that started this process")
    return comm


# --- predict --------------------------------------------------------------------------------------------------
def add_cluster_args(parser, what):
    """``--scheduler ADDRESS`` / ``--workers N`` (one of the two): run ``what`` on a Dask cluster."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--scheduler", metavar="ADDRESS",
                       help=f"{what} on the Dask cluster whose scheduler is at ADDRESS (tcp://host:8786); needs "
                            f"pip install 'dropcore[dask]'")
    group.add_argument("--workers", type=positive_int, metavar="N",
                       help=f"{what} on a local Dask cluster of N worker processes, one thread each")


def add_predict_args(parser):
    """Add ``--scheduler ADDRESS`` / ``--workers N`` (one of the two) and ``--chunk-size`` to ``dropcore predict``."""
    add_cluster_args(parser, "score")
    parser.add_argument("--chunk-size", type=positive_int, metavar="ROWS",
                        help="samples per Dask task (default: 4 batches); cut at multiples of --batch-size")


def uses_cluster(args):
    """Whether a command's arguments ask for a Dask cluster (``--scheduler`` or ``--workers``)."""
    return getattr(args, "scheduler", None) is not None or getattr(args, "workers", None) is not None


def client_for(args):
    """A Dask ``Client`` on ``--scheduler``'s cluster or on a new local cluster of ``--workers`` processes (closed
    with the client): use it as a context manager."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ImportError("--scheduler/--workers need Dask: pip install 'dropcore[dask]'") from exc
    if args.scheduler is not None:
        return Client(args.scheduler)
    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    return _ClosingClient(Client(cluster), cluster)


class _ClosingClient:
    """A client and the local cluster it was made for, both closed on leaving the ``with`` block."""

    def __init__(self, client, cluster):
        self.client, self.cluster = client, cluster

    def __enter__(self):
        return self.client

    def __exit__(self, *exc):
        self.client.close()
        self.cluster.close()


def predict_array(args, model_path, x):
    """``(probabilities, std or None)`` for the NumPy array ``x`` scored on the cluster ``args`` names, equal to
    ``Predictor(model_path).predict`` on ``x``: ``args.batch_size``, ``args.mc_samples``, ``args.seed`` (default 0,
    as the local path), ``args.chunk_size``."""
    import dask.array as da

    from .scoring import predict

    batch_size = args.batch_size or 256
    chunk = getattr(args, "chunk_size", None) or 4 * batch_size
    with client_for(args) as client:
        # the chunks go to the workers as data (scattered), not inside the task graph
        pieces = [x[i:i + chunk] for i in range(0, len(x), chunk)]
        xs = da.concatenate([da.from_delayed(f, shape=p.shape, dtype=p.dtype)
                             for f, p in zip(client.scatter(pieces, hash=False), pieces)])
        mc = getattr(args, "mc_samples", None)
        if mc:
            seed = 0 if args.seed is None else args.seed
            mean, std = predict(client, model_path, xs, batch_size, mc, seed)
            mean, std = client.compute([mean, std], sync=True)
            return mean, std
        return predict(client, model_path, xs, batch_size).compute(), None
