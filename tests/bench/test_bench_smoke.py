"""Smoke test of the benchmark suite: the runner's plumbing with tiny repeats, and the peers' faithfulness.

The ONNX and PyTorch peers must compute what the dropcore model computes for the same weights, or the benchmark
compares different work. Speed itself is never asserted here.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `bench` lives at the repo root, beside the installed packages
    sys.path.insert(0, str(REPO))

from bench import __main__ as cli  # noqa: E402
from bench import cases, machine, models, peers_onnx, peers_torch, profile, runner  # noqa: E402


@pytest.mark.parametrize("name", list(models.MODELS))
def test_torch_peer_matches_dropcore(name):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'dropcore[torch]')")
    model = models.build(name, seed=3)
    x, _ = models.batch(name, 5, seed=4)
    np.testing.assert_allclose(peers_torch.TorchPeer(model, 0.01, 0.9).predict(x), model.predict(x), atol=1e-4)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_onnx_peer_matches_dropcore(name):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (pip install 'dropcore[onnx]')")
    pytest.importorskip("onnx", reason="onnx is not installed (pip install 'dropcore[onnx]')")
    model = models.build(name, seed=3)
    x, _ = models.batch(name, 5, seed=4)
    np.testing.assert_allclose(peers_onnx.OnnxPeer(model, 1).predict(x), model.predict(x), atol=1e-4)


def test_torch_training_step_matches_dropcore_without_dropout():
    """Same loss and same updated weights after one SGD-momentum step (dropout rates set to 0 on both sides)."""
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install 'dropcore[torch]')")
    model = models.build("lenet5", seed=1)  # lenet5 has no dropout: both sides do exactly the same step
    peer = peers_torch.TorchPeer(model, models.LEARNING_RATE, models.MOMENTUM)
    x, y = models.batch("lenet5", 8, seed=2)
    for _ in range(2):  # the second step exercises the momentum buffers
        assert peer.train_step(x, y) == pytest.approx(model.train_on_batch(x, y), abs=1e-5)
    x2, _ = models.batch("lenet5", 4, seed=5)
    np.testing.assert_allclose(peer.predict(x2), model.predict(x2), atol=1e-4)


def test_models_have_the_specified_architectures():
    counts = {name: models.build(name).count_params() for name in models.MODELS}
    # mnist_cnn: 320 + 18,496 + 9216*128+128 + 1,290; cifar_cnn: 1,792 + 36,928 + 2304*256+256 + 2,570
    assert counts == {"mnist_cnn": 1_199_882, "cifar_cnn": 631_370, "lenet5": 61_706}
    with pytest.raises(ValueError, match="Received: model='vgg'"):
        models.build("vgg")


def test_kernel_cases_cover_each_step_and_agree_with_the_reference():
    mnist = cases.model_cases("mnist_cnn", n=2)
    funcs = [c.func for c in mnist]
    assert funcs == ["conv2d", "conv2d_max_pool", "dropout", "dense", "relu_dropout", "dense",
                     "sparse_softmax_cross_entropy", "dense_backward", "relu_dropout_backward", "dense_backward",
                     "dropout_backward", "conv2d_max_pool_backward", "conv2d_backward"]
    # the first conv skips its input gradient
    assert "need_dx=False" in mnist[-1].id and "need_dx=False" not in mnist[-2].id
    sets = cases.kernel_sets()
    for c in mnist:
        want, got = _outputs(c.bind(sets["reference"])()), _outputs(c.bind(sets["numba"])())
        assert len(want) == len(got) > 0
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-4)


def _outputs(out):
    return [o for o in (out if isinstance(out, tuple) else (out,)) if o is not None]


def test_profile_accounts_for_every_step():
    model = models.build("lenet5")
    x, y = models.batch("lenet5", 4)
    rows, total = profile.profile_training(model, x, y, repeats=2, warmup=1)
    names = [r["step"] for r in rows]
    assert len(names) == len(model._plan.steps) + 3 and names[-3].startswith("loss")
    assert all(r["forward_s"] > 0 for r in rows[:2]) and rows[0]["backward_s"] > 0
    assert sum(r["forward_s"] + r["backward_s"] for r in rows) == pytest.approx(total, rel=1e-6)
    assert "forward" not in vars(model.layers[0]) and "apply" not in vars(model.optimizer)  # wrappers removed
    assert "| **total step** |" in profile.format_rows(rows, total)
    # lenet5's first layer: Conv2D(6, 5, padding="same") on 28x28x1, batch 4; its backward skips dx
    conv_flops = 2.0 * 4 * 28 * 28 * 5 * 5 * 1 * 6
    assert rows[0]["forward_flops"] == conv_flops and rows[0]["backward_flops"] == conv_flops
    flatten = next(r for r in rows if "Flatten" in r["step"])
    assert flatten["forward_bytes"] == flatten["backward_bytes"] == 0  # a view moves nothing
    table = profile.format_rows(rows, total, {"gemm_flops": 1e11, "copy_bytes": 1e10})
    assert "| GFLOP/s | of GEMM | GB/s | of copy |" in table.splitlines()[0]


def test_profile_takes_layers_of_several_inputs():
    # a residual Add and a Concatenate: their bytes count every input, and no FLOPs
    import dropcore
    from dropcore.layers import Add, Concatenate, Conv2D, Dense, GlobalAveragePooling2D, Input

    inp = Input((6, 6, 2))
    a = Conv2D(2, 3, padding="same")(inp)
    h = Concatenate()([Add()([a, inp]), a])
    model = dropcore.Model(inp, Dense(3)(GlobalAveragePooling2D()(h)))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).random((4, 6, 6, 2), dtype=np.float32)
    rows, total = profile.profile_training(model, x, np.arange(4) % 3, repeats=1, warmup=1)
    by_kind = {k: next(r for r in rows if f"({k})" in r["step"]) for k in ("Add", "Concatenate")}
    size = 4 * 6 * 6 * 2
    assert by_kind["Add"]["forward_bytes"] == 4.0 * 3 * size and by_kind["Add"]["forward_flops"] == 0
    assert by_kind["Concatenate"]["forward_bytes"] == 4.0 * 4 * size


def test_ceilings_are_measured():
    from bench import ceilings

    got = ceilings.measure()
    assert got["gemm_flops"] > 1e8 and got["copy_bytes"] > 1e8


def test_runner_end_to_end_with_tiny_repeats(tmp_path, capsys):
    out_json, out_md, out_png = tmp_path / "r.json", tmp_path / "r.md", tmp_path / "r.png"
    code = cli.main(["--models", "lenet5", "--quick", "--repeats", "1", "--threads", "1", "--kernels", "--json",
                     str(out_json), "--markdown", str(out_md), "--png", str(out_png)])
    assert code == 0
    report = json.loads(out_json.read_text())
    res = report["results"]["lenet5"]
    for key in ("train32", "train128", "infer256", "latency1"):
        assert res["dropcore"][key] > 0 and res["reference"][key] > 0
    assert report["machine"]["threads"] == 1 and report["settings"]["repeats"] == 1
    kernels = {r["kernel"]: r for r in report["kernels"]}
    assert len(kernels) == len(cases.all_cases(["lenet5"], 32))
    for row in kernels.values():
        assert row["reference_ms"] > 0 and row["numba_ms"] > 0
        assert row["speedup"] == pytest.approx(row["reference_ms"] / row["numba_ms"])
    assert report["ratios"]["lenet5"]["dropcore"]["reference"]["train128"] == pytest.approx(
        res["dropcore"]["train128"] / res["reference"]["train128"])
    printed = capsys.readouterr().out
    assert "| lenet5 | dropcore |" in printed and "cold start, dropcore.Predictor" in printed
    assert "| inference @256 >= 1.2x ONNX Runtime | lenet5 | dropcore |" in out_md.read_text()
    if report["engines"]["dropcore-cython"]:
        assert res["dropcore-cython"]["train128"] is None and res["dropcore-cython"]["infer256"] > 0
    if report["engines"]["onnxruntime"]:
        assert res["onnxruntime"]["train128"] is None and res["onnxruntime"]["infer256"] > 0
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not out_png.exists()
    else:
        assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv,message", [(["--models", "vgg"], "subset of mnist_cnn"),
                                          (["--repeats", "0"], "positive int")])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        cli.parser().parse_args(argv)
    assert message in capsys.readouterr().err


def test_markdown_rewrite_keeps_the_hand_written_analysis(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("old table\n" + runner.KEEP_MARKER + "\n## Gaps\nwhy\n")
    report = {"machine": machine.info(1), "settings": {"repeats": 1}, "results": {}, "ratios": {}, "targets": [],
              "cold_start": {"predictor": None, "load_model": None}}
    runner.write_markdown(report, "python -m bench", str(path))
    text = path.read_text()
    assert "old table" not in text and "Command: `python -m bench`" in text
    assert text.endswith(runner.KEEP_MARKER + "\n## Gaps\nwhy\n")


def test_markdown_keeps_one_table_per_cpu(tmp_path):
    """A rewrite replaces the table of the CPU (and dropcore target) it measured and keeps other CPUs' tables."""
    path = tmp_path / "RESULTS.md"
    other = runner.SECTION_START.format("Some CPU (Zen 5), avx512 kernels") + "\nZen 5 table\n" + runner.SECTION_END
    path.write_text(other + "\n" + runner.KEEP_MARKER + "\nkept\n")
    info = machine.info(1)
    assert info["cpu"] in machine.section(info) and info["cpu_isas"][-1] == "generic"
    report = {"machine": info, "settings": {"repeats": 1}, "results": {}, "ratios": {}, "targets": [],
              "cold_start": {"predictor": None, "load_model": None}}
    for command in ("python -m bench --first", "python -m bench --second"):
        runner.write_markdown(report, command, str(path))
    text = path.read_text()
    assert "--first" not in text and text.count("--second") == 1  # this CPU's table replaced
    assert text.index("--second") < text.index("Zen 5 table") < text.index(runner.KEEP_MARKER)  # the other kept
    assert f"## {machine.section(info)}" in text and text.endswith(runner.KEEP_MARKER + "\nkept\n")


@pytest.mark.parametrize("family, model, core", [(25, 1, "Zen 3"), (25, 0x11, "Zen 4"), (26, 2, "Zen 5"),
                                                 (23, 0x31, "Zen 2"), (6, 85, None)])
def test_amd_cores_are_named_from_family_and_model(family, model, core):
    assert machine.amd_core(family, model) == core


def test_targets_compare_in_the_right_direction():
    results = {"mnist_cnn": {"dropcore": {}, "torch": {}, "reference": {}, "onnxruntime": {}}}
    rat = {"mnist_cnn": {"dropcore": {"torch": {"train128": 2.1}, "reference": {"train128": 3.0},
                                      "onnxruntime": {"infer256": 1.1, "latency1": 0.8}}}}
    status = {t["target"]: t["met"] for t in runner.targets(results, rat)}
    assert status == {"training @128 >= 2x PyTorch CPU": True, "training @128 >= 4x NumPy reference": False,
                      "inference @256 >= 1.2x ONNX Runtime": False, "latency @1 <= 0.9x ONNX Runtime's": True}


def test_scaling_sweep_and_step_efficiency_with_tiny_repeats():
    """The thread-count sweep and the inference steps' efficiency run each count in processes of their own and
    report every step of the program (speed itself is never asserted)."""
    from bench import scaling

    if not runner._engines_available()["dropcore-cython"]:
        pytest.skip("the Cython kernels are not built: the Predictor's program is what the efficiency times")
    rows = scaling.sweep(["lenet5"], [1, 2], [None], ["dropcore-cython"], 1, 1, 2, 1, lambda m: None)
    assert [(r["threads"], r["engine"]) for r in rows] == [(1, "dropcore-cython"), (2, "dropcore-cython")]
    assert all(r["infer256"] > 0 and r["latency1"] > 0 and r["isa"] == "best" for r in rows)
    eff = scaling.efficiency(["lenet5"], [2], 1, lambda m: None)
    steps = [s for s, _ in eff["lenet5"]["256"]["1"]]
    import dropcore

    assert [s.split(". ", 1)[1] for s in steps] == [
        s for s in dropcore.Predictor(models.build("lenet5"))._inference.program().steps if s != "reshape"]
    text = scaling.efficiency_text(eff)
    assert "**lenet5 @256**" in text and "| efficiency at 2 |" in text
    assert "| best | 2 | lenet5 | dropcore-cython |" in scaling.sweep_text(rows)


@pytest.mark.parametrize("argv,expected", [(["--threads", "1,2,8"], [1, 2, 8]), (["--threads", "4"], [4])])
def test_cli_takes_thread_lists(argv, expected):
    assert cli.parser().parse_args(argv).threads == expected


def test_cli_takes_instruction_sets_and_refuses_others(capsys):
    assert cli.parser().parse_args(["--isa", "avx2,avx512"]).isa == ["avx2", "avx512"]
    with pytest.raises(SystemExit):
        cli.parser().parse_args(["--isa", "neon"])
    assert "subset of avx512,avx2,generic" in capsys.readouterr().err
