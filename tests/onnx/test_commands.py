"""The ``dropcore export`` / ``dropcore import`` commands, through the CLI's own entry point."""

import numpy as np
import pytest

pytest.importorskip("onnx", reason="the ONNX converters need onnx (pip install 'dropcore[onnx]')")
ort = pytest.importorskip("onnxruntime", reason="running ONNX models needs onnxruntime (dropcore[onnx])")

import dropcore  # noqa: E402
import dropcore.zoo  # noqa: E402
from dropcore import cli  # noqa: E402


def run(*argv):
    return cli.main([str(a) for a in argv])


def test_export_then_import(tmp_path, capsys):
    model = dropcore.zoo.build("mnist_cnn", (12, 12, 1), 4)
    model.save(tmp_path / "m.dropcore")
    assert run("export", tmp_path / "m.dropcore", tmp_path / "m.onnx", "--opset", "18", "--mc-dropout") == 0
    assert "opset 18" in capsys.readouterr().out
    x = np.random.default_rng(0).random((5, 12, 12, 1), dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(["output"], {"input": x, "training_mode": np.array(False)})[0]
    np.testing.assert_allclose(got, model.predict(x), rtol=0, atol=1e-4)

    assert run("import", tmp_path / "m.onnx", tmp_path / "back.dropcore") == 0
    assert "2 Dropout layers" in capsys.readouterr().out
    back = dropcore.load_model(tmp_path / "back.dropcore")
    np.testing.assert_allclose(back.predict(x), model.predict(x), rtol=0, atol=1e-5)
    mean, std = dropcore.Predictor(back).predict(x, mc_samples=4, seed=0)
    assert std.max() > 0


def test_import_warns_when_the_graph_has_no_dropout(tmp_path, capsys):
    """An eval-mode export (as PyTorch's default) has no Dropout: the import says Monte-Carlo dropout will be
    refused and how to export with it; the model itself converts and predicts."""
    model = dropcore.zoo.build("mnist_cnn", (12, 12, 1), 4, dropout=0.0)
    model.save(tmp_path / "m.dropcore")
    assert run("export", tmp_path / "m.dropcore", tmp_path / "m.onnx") == 0
    capsys.readouterr()
    assert run("import", tmp_path / "m.onnx", tmp_path / "back.dropcore") == 0
    out = capsys.readouterr()
    assert "Dropout layer" not in out.out
    assert out.err.startswith("warning:") and "TrainingMode.PRESERVE" in out.err and "--mc-samples" in out.err
    x = np.random.default_rng(0).random((3, 12, 12, 1), dtype=np.float32)
    np.testing.assert_allclose(dropcore.load_model(tmp_path / "back.dropcore").predict(x), model.predict(x), atol=1e-5)


def test_failures_are_reported_with_status_1_and_write_nothing(tmp_path, capsys):
    (tmp_path / "bad.onnx").write_bytes(b"not onnx at all")
    assert run("import", tmp_path / "bad.onnx", tmp_path / "out.dropcore") == 1
    err = capsys.readouterr().err
    assert err.startswith("dropcore import: error:") and "bad.onnx" in err
    assert not (tmp_path / "out.dropcore").exists()
    assert run("import", tmp_path / "missing.onnx", tmp_path / "out.dropcore") == 1
    assert "missing.onnx" in capsys.readouterr().err
    model = dropcore.zoo.build("mlp", (4,), 2)
    model.save(tmp_path / "m.dropcore")
    assert run("export", tmp_path / "m.dropcore", tmp_path / "m.onnx", "--opset", "7") == 1
    assert "opset" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
