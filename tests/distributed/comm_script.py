"""Run by ``test_training.py`` under ``mpiexec -n 2``: exercises MPIComm's collectives, exits non-zero on a
mismatch (an AssertionError's traceback names it)."""
import numpy as np

from dropcore.distributed import MPIComm, comm_from_environment

comm = comm_from_environment()
assert isinstance(comm, MPIComm), f"comm_from_environment() under mpiexec -n 2 gave {comm!r}"
assert (comm.size, comm.local_size) == (2, 2) and comm.local_rank == comm.rank, comm
a = np.full(5, comm.rank + 1, dtype=np.float32)
assert comm.allreduce_sum(a) is a and a.tolist() == [3.0] * 5, a  # in place: 1 + 2
b = np.arange(4.0) if comm.rank == 0 else np.zeros(4)
comm.bcast(b)
assert b.tolist() == [0.0, 1.0, 2.0, 3.0], b
assert comm.bcast({"from": comm.rank}) == {"from": 0}
comm.barrier()
print("ok", comm.rank, flush=True)
