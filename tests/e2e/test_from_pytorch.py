"""The "From PyTorch or Keras" commands of docs/guide.md: a PyTorch-trained CNN exported to ONNX, imported,
predicted with Monte-Carlo dropout, and exported back."""
import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

for module, extra in (("torch", "torch"), ("onnx", "onnx"), ("onnxscript", "test"), ("sklearn", "digits")):
    pytest.importorskip(module, reason=f"needs {module} (pip install 'dropcore[{extra}]')")

import dropcore  # noqa: E402
from dropcore import cli  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "torch_to_onnx.py"


@pytest.mark.slow
def test_a_pytorch_cnn_comes_in_and_goes_out(tmp_path, capsys):
    done = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path / "net.onnx"), "--epochs", "5"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    labels = ast.literal_eval(done.stdout.strip().splitlines()[-1].split("(labels ")[1][:-1])  # as printed
    assert cli.main(["import", str(tmp_path / "net.onnx"), str(tmp_path / "net.dropcore")]) == 0
    assert "2 Dropout layers" in capsys.readouterr().out
    x = np.load(tmp_path / "net-digits.npy")
    assert x.shape == (16, 8, 8, 1)
    model = dropcore.load_model(tmp_path / "net.dropcore")
    assert (model.predict(x).argmax(1) == labels).mean() >= 0.75  # a trained network, not a scrambled one
    mean, std = dropcore.Predictor(model).predict(x, mc_samples=20, seed=0)
    again, _ = dropcore.Predictor(model).predict(x, mc_samples=20, seed=0)
    np.testing.assert_array_equal(mean, again)
    assert std.max() > 0.01
    assert cli.main(["predict", str(tmp_path / "net.dropcore"), str(tmp_path / "net-digits.npy"), "--mc-samples",
                     "20", "--seed", "0"]) == 0
    assert "std (MC)" in capsys.readouterr().out
    assert cli.main(["export", str(tmp_path / "net.dropcore"), str(tmp_path / "back.onnx")]) == 0
    assert (tmp_path / "back.onnx").stat().st_size > 0
