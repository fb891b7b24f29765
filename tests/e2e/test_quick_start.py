"""The README's first command on a fresh clone: examples/mnist_cnn.py with no MNIST beside the project trains on
scikit-learn's bundled digits and says so (with MNIST there, tests/e2e/test_mnist.py covers the real run)."""
import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist_cnn.py"


def test_without_mnist_the_quick_start_trains_on_the_bundled_digits(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sklearn", reason="scikit-learn is not installed (pip install -e '.[digits]')")
    spec = importlib.util.spec_from_file_location("quick_start", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    monkeypatch.setattr(example, "DEFAULT_DIR", tmp_path / "no-mnist-here")
    acc = example.main(["--epochs", "3"])
    out = capsys.readouterr().out
    assert "No MNIST files in" in out and "training on scikit-learn's 1797 8x8 digits instead" in out
    assert acc > 0.8  # 397 held-out 8x8 digits after 3 epochs
    with pytest.raises(ValueError, match="no such directory"):  # a directory given on purpose must hold MNIST
        example.main([str(tmp_path / "no-mnist-here"), "--epochs", "1"])
