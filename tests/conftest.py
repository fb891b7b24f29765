"""Shared fixtures: where the MNIST files live, and small deterministic data."""
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MNIST_DIR = (REPO / ".." / "shared" / "data" / "mnist").resolve()
# Keras 3, which the Keras-style API is compared with, on PyTorch (its default backend, TensorFlow, is not installed)
os.environ.setdefault("KERAS_BACKEND", "torch")


@pytest.fixture
def mnist_dir():
    """The official MNIST test files beside the project; tests that need them skip with the reason when absent."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists():
        pytest.skip(f"MNIST files not found in {MNIST_DIR} (the project's ../shared/data/mnist)")
    return MNIST_DIR


def pytest_report_header(config):
    """Which compiled targets this run can test, and which claims it leaves untested (another CPU's)."""
    from dropcore.kernels import isa

    return isa.coverage()
