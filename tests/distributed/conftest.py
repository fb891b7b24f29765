"""One local Dask cluster of two worker processes, one thread each, for every Dask test (as CI runs them)."""
import pytest


@pytest.fixture(scope="session")
def client():
    distributed = pytest.importorskip("distributed", reason="Dask tests need dask.distributed: pip install "
                                                            "'dropcore[dask]'")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as c:
        yield c
