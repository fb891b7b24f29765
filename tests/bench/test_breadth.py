"""The breadth models (bench/breadth.py): each imports from its PyTorch export and computes what ONNX Runtime and
PyTorch compute on the same file and module; the inference fusions fire on them; the table's plumbing works on
tiny repeats. Speed itself is never asserted here."""
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `bench` lives at the repo root, beside the installed packages
    sys.path.insert(0, str(REPO))

pytest.importorskip("torch", reason="the breadth models are defined in PyTorch (pip install 'dropcore[torch]')")
pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'dropcore[onnx]')")

from bench import __main__ as cli  # noqa: E402
from bench import breadth, breadth_bench  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return str(tmp_path_factory.mktemp("breadth"))


@pytest.mark.parametrize("name", list(breadth.MODELS))
def test_import_matches_onnxruntime_and_torch(name, folder):
    from dropcore.onnx import load

    model = load(breadth.onnx_path(name, folder=folder))
    assert model.input_shape[1:] == breadth.MODELS[name][1]
    ort = breadth.OnnxBreadthPeer.__new__(breadth.OnnxBreadthPeer)  # a session on the test's own file
    import onnxruntime

    ort.session = onnxruntime.InferenceSession(breadth.onnx_path(name, folder=folder),
                                               providers=["CPUExecutionProvider"])
    torch_peer = breadth.TorchBreadthPeer(name)
    for n in (1, 5):
        x, _ = breadth.batch(name, n, seed=n)
        got = model.predict(x)
        assert got.shape == (n, breadth.NUM_CLASSES)
        np.testing.assert_allclose(got, ort.predict(ort.layout(x)), rtol=0, atol=1e-5)
        np.testing.assert_allclose(got, torch_peer.predict(x), rtol=0, atol=1e-5)


def test_the_fusions_fire_on_the_breadth_models(folder):
    from dropcore.onnx import load

    pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
    vgg = load(breadth.onnx_path("vgg_bn", folder=folder))._inference_program()
    assert "batch_norm" not in vgg.steps and sum("+batch_norm" in s for s in vgg.steps) == 6  # 5 convs, 1 dense
    resnet = load(breadth.onnx_path("resnet8", folder=folder))._inference_program()
    assert "batch_norm" not in resnet.steps and "add" not in resnet.steps
    assert sum(s.endswith("+add+relu") for s in resnet.steps) == 3
    mobilenet = load(breadth.onnx_path("mobilenet", folder=folder))._inference_program()
    # the stem, then 4 depthwise-separable blocks of a depthwise and a pointwise conv, each with its batch norm
    assert "batch_norm" not in mobilenet.steps and sum("+batch_norm" in s for s in mobilenet.steps) == 9


def test_torch_and_dropcore_take_the_same_training_step():
    """LeNet-5 (no batch norm, no dropout): the same loss over two SGD-momentum steps from the same weights."""
    model = breadth.dropcore_model("lenet5_tanh")
    peer = breadth.TorchBreadthPeer("lenet5_tanh")
    x, y = breadth.batch("lenet5_tanh", 8, seed=3)
    for _ in range(2):
        assert peer.train_step(x, y) == pytest.approx(model.train_on_batch(x, y), abs=1e-5)
    np.testing.assert_allclose(peer.predict(x), model.predict(x), atol=1e-5)


def test_measure_engine_and_the_table_on_tiny_repeats():
    results = {}
    for engine in breadth_bench.ENGINES:
        results[engine] = breadth_bench.measure_engine("lenet5_tanh", engine, 1, 1, 1, 2)
        assert results[engine]["latency1"] > 0 and results[engine]["infer64"] > 0
    assert results["onnxruntime"]["train64"] is None and results["torch"]["train64"] > 0
    assert isinstance(results["dropcore"]["uncompiled"], list)
    report = {"results": {"lenet5_tanh": results, "resnet8": results}}
    report["ratios"] = breadth_bench.ratios(report["results"])
    r = report["ratios"]["lenet5_tanh"]
    assert r["latency1"] == pytest.approx(results["dropcore"]["latency1"] / results["onnxruntime"]["latency1"])
    assert r["train64"] == pytest.approx(results["dropcore"]["train64"] / results["torch"]["train64"])
    assert report["ratios"]["geomean"]["infer64"] == pytest.approx(r["infer64"])  # two equal rows
    text = breadth_bench.markdown(report)
    assert "| **geomean** |" in text and "latency, dropcore / ORT" in text and "without a compiled kernel" in text


def test_geomean_of_ratios():
    results = {m: {"dropcore": {"latency1": a, "infer64": b, "train64": c},
                   "onnxruntime": {"latency1": 1.0, "infer64": 1.0}, "torch": {"train64": 1.0}}
               for m, (a, b, c) in {"a": (2.0, 0.5, 4.0), "b": (0.5, 2.0, 1.0)}.items()}
    geo = breadth_bench.ratios(results)["geomean"]
    assert geo == pytest.approx({"latency1": 1.0, "infer64": 1.0, "train64": 2.0})


def test_cli_takes_breadth_models_apart_from_the_reference_models(capsys):
    assert cli.parser().parse_args(["--models", "resnet8,mobilenet"]).models == ["resnet8", "mobilenet"]
    assert cli.parser().parse_args(["--breadth"]).breadth
    with pytest.raises(SystemExit):
        cli.main(["--models", "resnet8,mnist_cnn"])
    assert "table of their own" in capsys.readouterr().err


def test_cli_rounds_and_markdown_for_the_breadth_table(monkeypatch, tmp_path, capsys):
    # each engine runs in --rounds processes, alternating order; latency keeps the best (least), the rest the most
    calls = []

    def worker(argv, threads, env=None):
        calls.append(argv[2])
        k = calls.count(argv[2])
        return {"latency1": 1.0 / k, "infer64": 10.0 * k, "train64": None if argv[2] == "onnxruntime" else 5.0,
                **({"steps": ["conv2d"], "uncompiled": []} if argv[2] == "dropcore" else {})}

    monkeypatch.setattr(breadth_bench, "_run_worker", worker)
    md = tmp_path / "b.md"
    assert cli.main(["--models", "resnet8", "--rounds", "3", "--repeats", "1", "--markdown", str(md)]) == 0
    assert calls == list(breadth_bench.ENGINES) + list(breadth_bench.ENGINES[::-1]) + list(breadth_bench.ENGINES)
    assert "| resnet8 | dropcore | 0.333 | 30 |" in md.read_text()
    with pytest.raises(SystemExit):
        cli.main(["--models", "lenet5", "--rounds", "2"])
    assert "only the breadth table" in capsys.readouterr().err


def test_a_failing_engine_leaves_the_rest_of_the_table(monkeypatch):
    def worker(argv, threads, env=None):
        if argv[2] == "torch":
            raise RuntimeError("benchmark worker failed:\nTraceback ...\nImportError: no torch here")
        return {"latency1": 1.0, "infer64": 10.0, "train64": None if argv[2] == "onnxruntime" else 5.0,
                **({"steps": ["conv2d"], "uncompiled": []} if argv[2] == "dropcore" else {})}

    monkeypatch.setattr(breadth_bench, "_run_worker", worker)
    res = breadth_bench.measure_model("resnet8", 1, 1, 1, 1, 2)
    assert res["torch"] == {"latency1": None, "infer64": None, "train64": None, "error": "ImportError: no torch here"}
    assert res["dropcore"]["infer64"] == 10.0 and res["onnxruntime"]["latency1"] == 1.0
    report = {"results": {"resnet8": res}, "ratios": breadth_bench.ratios({"resnet8": res})}
    assert report["ratios"]["resnet8"]["train64"] is None and report["ratios"]["resnet8"]["infer64"] == 1.0
    assert "- resnet8, torch: failed (ImportError: no torch here)" in breadth_bench.markdown(report)


def test_unfolded_runs_the_programs_without_the_folds(monkeypatch):
    from dropcore import fusion

    monkeypatch.setattr(fusion, "INFERENCE", fusion.INFERENCE)  # the worker's switch is process-wide: restored after
    seen = []
    monkeypatch.setattr(breadth_bench, "_run_worker", lambda argv, threads, env=None: seen.append(env) or {
        "latency1": 1.0, "infer64": 1.0, "train64": 1.0})
    breadth_bench.measure_model("resnet8", 1, 1, 1, 1, 1, unfolded=True)
    assert seen and all(e == {breadth_bench.UNFOLDED_ENV: "1"} for e in seen)
    monkeypatch.setenv(breadth_bench.UNFOLDED_ENV, "1")
    steps = breadth_bench.measure_engine("resnet8", "dropcore", 1, 1, 1, 2)["steps"]
    assert "batch_norm" in steps and "add" in steps
