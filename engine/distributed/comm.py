"""The communicator data-parallel training talks to: ``Comm`` (the interface), ``LocalComm`` (one process, for
tests and for code that takes a comm either way) and ``MPIComm`` (mpi4py, imported only when one is built).

Collectives work in place on NumPy buffers (``Allreduce`` with ``MPI.IN_PLACE``, ``Bcast``), so a training step
packs its gradients into one float32 buffer and makes one call; Python objects go through pickling ``bcast``.
"""
import numpy as np


class Comm:
    """What a communicator provides: ``rank``, ``size``, :meth:`allreduce_sum`, :meth:`bcast`, :meth:`barrier`, and
    ``local_size`` / ``local_rank``: how many ranks share this rank's node (its cores, its Numba cache files) and
    this rank's number among them.

    Every method is a collective: every rank must call it, in the same order, or the run hangs.
    """

    rank = 0
    size = 1
    local_size = 1
    local_rank = 0

    def allreduce_sum(self, array):
        """Replace the contiguous NumPy ``array`` by its element-wise sum over all ranks (in place); returns it."""
        raise NotImplementedError

    def bcast(self, value, root=0):
        """Rank ``root``'s ``value`` on every rank: a NumPy array is overwritten in place (same shape and dtype on
        every rank) and returned; any other object is pickled from ``root`` and returned."""
        raise NotImplementedError

    def barrier(self):
        """Wait until every rank has called it."""
        raise NotImplementedError


def _check_buffer(array, where):
    if not isinstance(array, np.ndarray) or not array.flags.c_contiguous or not array.flags.writeable:
        raise TypeError(f"{where}: expected a writeable C-contiguous NumPy array (collectives work in place), "
                        f"received {type(array).__name__}"
                        + (f" (contiguous={array.flags.c_contiguous}, writeable={array.flags.writeable})"
                           if isinstance(array, np.ndarray) else ""))
    return array


class LocalComm(Comm):
    """The one-process communicator: rank 0 of 1, every collective the identity."""

    def allreduce_sum(self, array):
        return _check_buffer(array, "LocalComm.allreduce_sum")

    def bcast(self, value, root=0):
        if root != 0:
            raise ValueError(f"LocalComm.bcast: `root` must be 0 (the only rank); received root={root!r}")
        return value

    def barrier(self):
        pass


class MPIComm(Comm):
    """A communicator over MPI (mpi4py): ``MPIComm()`` spans ``MPI.COMM_WORLD``, or give an ``mpi4py`` ``comm``.

    Launch the script with ``mpiexec -n N python train.py``; needs the ``mpi`` extra (``pip install
    dropcore[mpi]``).
    """

    def __init__(self, comm=None):
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError("dropcore.distributed.MPIComm needs mpi4py: pip install 'dropcore[mpi]'") from exc
        self._MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks that share this node's memory and cores
        self.local_size, self.local_rank = node.Get_size(), node.Get_rank()
        node.Free()

    def allreduce_sum(self, array):
        _check_buffer(array, "MPIComm.allreduce_sum")
        if self.size > 1:
            self.comm.Allreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM)
        return array

    def bcast(self, value, root=0):
        if isinstance(value, np.ndarray):
            if self.size > 1:
                self.comm.Bcast(_check_buffer(value, "MPIComm.bcast"), root=root)
            return value
        return self.comm.bcast(value, root=root)

    def barrier(self):
        self.comm.Barrier()

    def __repr__(self):
        return f"MPIComm(rank={self.rank}, size={self.size}, local_size={self.local_size})"


def check_comm(comm, where):
    """``comm`` when it provides the :class:`Comm` interface, else a clear error."""
    missing = [name for name in ("rank", "size", "allreduce_sum", "bcast", "barrier") if not hasattr(comm, name)]
    if missing:
        raise TypeError(f"{where}: `comm` must be a dropcore.distributed.Comm (rank, size, allreduce_sum, bcast, "
                        f"barrier), e.g. MPIComm(); received {type(comm).__name__} without {', '.join(missing)}")
    return comm
