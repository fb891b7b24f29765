"""The engine-free core: the communicator interface, launcher detection, and imports that stay lazy."""
import subprocess
import sys

import numpy as np
import pytest

from dropcore.distributed import LocalComm, comm_from_environment
from dropcore.distributed.comm import check_comm
from dropcore.distributed.commands import launched_ranks


def test_importing_dropcore_imports_neither_dask_nor_mpi4py():
    code = ("import sys, dropcore, dropcore.distributed; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'mpi4py')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_local_comm_is_the_identity():
    comm = LocalComm()
    a = np.arange(6, dtype=np.float32)
    assert comm.allreduce_sum(a) is a and a.tolist() == list(range(6))
    assert comm.bcast({"k": 1}) == {"k": 1}
    assert (comm.rank, comm.size, comm.local_size) == (0, 1, 1)
    comm.barrier()
    with pytest.raises(TypeError, match="writeable C-contiguous"):
        comm.allreduce_sum(np.zeros((4, 4), np.float32)[:, ::2])
    with pytest.raises(ValueError, match="`root` must be 0"):
        comm.bcast(1, root=1)


def test_check_comm_names_what_is_missing():
    with pytest.raises(TypeError, match="received dict without rank, size, allreduce_sum, bcast, barrier"):
        check_comm({}, "fit")


def test_launcher_detection():
    assert launched_ranks({}) == 1
    assert launched_ranks({"PMI_SIZE": "4"}) == 4
    assert launched_ranks({"OMPI_COMM_WORLD_SIZE": "3"}) == 3
    assert comm_from_environment({"PMI_SIZE": "1"}) is None  # one rank: plain fit, mpi4py not even imported
