"""pytest-benchmark configuration for ``pytest bench/`` (kept apart from the default run: testpaths=tests)."""
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `pytest bench/` from anywhere: make the `bench` package importable
    sys.path.insert(0, str(REPO))


@pytest.fixture(scope="session", autouse=True)
def _blas_single_thread():
    """Numba kernels call BLAS from every prange thread: hold BLAS to one thread, as the engine does."""
    from dropcore.kernels.config import blas_single_thread

    with blas_single_thread():
        yield
