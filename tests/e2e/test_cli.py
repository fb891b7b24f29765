"""The ``dropcore`` command, run as ``python -m dropcore ...`` subprocesses on small data (scikit-learn's digits,
CSV files and arrays written here), checking exit codes, messages and the files written."""
import csv
import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import dropcore
from dropcore import cli
from dropcore.cli import info as cli_info
from dropcore.data import load_digits

REPO = Path(__file__).resolve().parents[2]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def run(*args, cwd=None):
    """Run the command; return (exit status, stdout, stderr)."""
    proc = subprocess.run([sys.executable, "-m", "dropcore", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return proc.returncode, proc.stdout, proc.stderr


def run_in_terminal(*args):
    """Run the command with its stdout on a pseudo-terminal, as at a shell: (exit status, what it printed there)."""
    import fcntl
    import pty
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # 24 rows of 120 columns
    proc = subprocess.Popen([sys.executable, "-m", "dropcore", *map(str, args)], stdout=slave,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=300), b"".join(chunks).decode(errors="replace")


def ok(*args, cwd=None):
    code, out, err = run(*args, cwd=cwd)
    assert code == 0, f"dropcore {' '.join(map(str, args))} exited {code}\nstdout:\n{out}\nstderr:\n{err}"
    return out


def assert_png(path):
    """A real PNG: the signature, an IHDR chunk with a sensible size, and matplotlib can decode it."""
    data = Path(path).read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert 200 <= width <= 4000 and 200 <= height <= 4000
    import matplotlib.image

    img = matplotlib.image.imread(path)
    assert img.shape[:2] == (height, width) and img.std() > 0  # not a blank canvas


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training run with --out, shared by the evaluate and predict tests."""
    out = tmp_path_factory.mktemp("run") / "digits"
    stdout = ok("train", "--epochs", 2, "--limit", 400, "--batch-size", 32, "--seed", 1, "--quiet", "--out", out)
    return out, stdout


def test_train_writes_model_history_and_curves(trained):
    out, stdout = trained
    assert "Epoch 1/2 - loss:" in stdout and "Epoch 2/2 - loss:" in stdout  # --quiet: one line per epoch
    assert "it/s" not in stdout and "batch/s" not in stdout  # and no progress bar
    assert {p.name for p in out.iterdir()} == {"model.dropcore", "history.json", "history.csv", "curves.png",
                                               "run.json", "train.json"}  # train.json: the options, for --resume
    hist = json.loads((out / "history.json").read_text())
    assert hist["epoch"] == [0, 1]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(hist[key]) == 2 and all(np.isfinite(hist[key]))
    assert 0 <= hist["val_accuracy"][-1] <= 1 and hist["loss"][1] < hist["loss"][0]
    with open(out / "history.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["val_loss"]) for r in rows] == hist["val_loss"]
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["samples"] == 400 and run_info["input_shape"] == [8, 8, 1] and run_info["seed"] == 1
    assert run_info["final"]["val_accuracy"] == hist["val_accuracy"][-1]
    assert_png(out / "curves.png")
    model = dropcore.load_model(out / "model.dropcore")
    assert model.input_shape == (None, 8, 8, 1) and model.output_shape == (None, 10)


def test_train_shows_a_progress_bar_and_uses_the_options(tmp_path):
    desc = tmp_path / "net.json"
    desc.write_text(json.dumps({"name": "small", "layers": [
        {"class_name": "Flatten"}, {"class_name": "Dense", "config": {"units": 16, "activation": "relu"}},
        {"class_name": "Dropout", "config": {"rate": 0.5}},
        {"class_name": "Dense", "config": {"units": 10, "activation": "softmax"}}]}))
    code, out = run_in_terminal("train", "--model", desc, "--epochs", 3, "--limit", 200, "--optimizer", "sgd",
                                "--lr", 0.05, "--momentum", 0.9, "--dropout", 0, "--lr-schedule", "step",
                                "--patience", 5, "--out", tmp_path / "o")
    assert code == 0, out
    assert "Training small on 200 samples" in out and "SGD lr=0.05" in out
    assert "Epoch 3/3" in out and "batch/s" in out  # the tqdm bar, on a terminal
    assert "dropout" not in out.split("Training")[0]  # --dropout 0 removed the Dropout layer (summary)
    assert len(json.loads((tmp_path / "o" / "history.json").read_text())["loss"]) == 3


def test_train_piped_prints_one_line_per_epoch(tmp_path):
    """Into a pipe or a log file the bar's frames would pile up: one line per epoch instead, without --quiet."""
    out = ok("train", "--model", "mlp", "--epochs", 3, "--limit", 200, "--out", tmp_path / "o")
    assert "batch/s" not in out and "\r" not in out
    epochs = [line for line in out.splitlines() if line.startswith("Epoch ")]
    assert [line.split(" - ")[0] for line in epochs] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all("loss: " in line and "val_accuracy: " in line for line in epochs)


def test_train_on_a_csv_table_with_mlp(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "t.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["f1", "f2", "f3", "kind"])
        for i in range(60):
            label = ("red", "green", "blue")[i % 3]
            w.writerow([f"{v:.3f}" for v in rng.normal(i % 3, 0.3, 3)] + [label])
    out = ok("train", "--data", path, "--label-column", "kind", "--model", "mlp", "--epochs", 5, "--quiet",
             "--validation-split", 0, "--out", tmp_path / "o")
    assert "on 60 samples" in out and "3; 3 classes" in out
    meta = json.loads((tmp_path / "o" / "run.json").read_text())["data"]
    assert meta["format"] == "csv" and meta["classes"] == ["blue", "green", "red"]
    code, _, err = run("train", "--data", path, "--epochs", 1)
    assert code == 1 and "--model mnist_cnn takes images" in err and "use --model mlp" in err


def test_train_on_mnist_files(mnist_dir, tmp_path):
    out = ok("train", "--data", mnist_dir, "--kind", "test", "--limit", 200, "--epochs", 1, "--quiet")
    assert "on 200 samples of" in out and "(28, 28, 1; 10 classes)" in out
    code, _, err = run("train", "--data", mnist_dir, "--limit", 200, "--epochs", 1)
    assert code == 1 and "missing MNIST train images" in err and "pass --kind test" in err


def test_evaluate_matches_the_model_in_process(trained, tmp_path):
    out, _ = trained
    stdout = ok("evaluate", out / "model.dropcore", "--limit", 300, "--output", tmp_path / "e.json")
    res = json.loads((tmp_path / "e.json").read_text())
    assert res["samples"] == 300 and f"accuracy: {res['accuracy']:.4f}" in stdout
    x, y = load_digits()
    loss, acc = dropcore.load_model(out / "model.dropcore").evaluate(x[:300], y[:300])
    assert res["accuracy"] == pytest.approx(acc) and res["loss"] == pytest.approx(loss, rel=1e-5)


def test_evaluate_on_the_samples_after_skip(trained, tmp_path):
    out, _ = trained
    ok("evaluate", out / "model.dropcore", "--skip", 1500, "--limit", 200, "--output", tmp_path / "e.json")
    res = json.loads((tmp_path / "e.json").read_text())
    x, y = load_digits()
    _, acc = dropcore.load_model(out / "model.dropcore").evaluate(x[1500:1700], y[1500:1700])
    assert res["samples"] == 200 and res["accuracy"] == pytest.approx(acc)  # samples 1500..1699
    code, _, err = run("evaluate", out / "model.dropcore", "--skip", 5000)
    assert code == 1 and "--skip 5000 leaves no samples: the data has 1797" in err


def test_predict_arrays_and_images(trained, tmp_path):
    out, _ = trained
    x, _ = load_digits()
    np.save(tmp_path / "batch.npy", x[:4])
    np.save(tmp_path / "one.npy", x[10])
    import matplotlib.image

    matplotlib.image.imsave(tmp_path / "digit.png", x[10, :, :, 0], cmap="gray", vmin=0, vmax=1)
    stdout = ok("predict", out / "model.dropcore", tmp_path / "batch.npy", tmp_path / "one.npy",
                tmp_path / "digit.png", "--output", tmp_path / "p.csv")
    with open(tmp_path / "p.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and rows[0]["input"].endswith("batch.npy[0]") and rows[5]["input"].endswith("digit.png")
    probs = np.array([[float(r[f"p{k}"]) for k in range(10)] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert [int(r["class"]) for r in rows] == list(probs.argmax(axis=1))
    expected = dropcore.load_model(out / "model.dropcore").predict(np.concatenate([x[:4], x[10:11]]))
    np.testing.assert_allclose(probs[:5], expected, atol=1e-6)
    np.testing.assert_allclose(probs[5], probs[4], atol=0.02)  # the PNG of x[10] (8-bit grey levels)
    assert "class  probability" in stdout


def test_predict_monte_carlo_dropout_is_seeded(trained, tmp_path, capsys):
    out, _ = trained
    x, _ = load_digits()
    np.save(tmp_path / "b.npy", x[:3])
    runs = []
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        args = ["predict", out / "model.dropcore", tmp_path / "b.npy", "--mc-samples", 8, "--seed", seed,
                "--output", tmp_path / f"{name}.json"]
        if name == "a":
            assert "std (MC)" in ok(*args)
        else:  # the same command in this process (cheaper than another interpreter)
            assert cli.main([str(a) for a in args]) == 0
        runs.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert runs[0] == runs[1] and runs[0] != runs[2]
    preds = runs[0]["predictions"]
    assert runs[0]["mc_samples"] == 8 and len(preds) == 3
    assert all(p["std"] > 0 and len(p["stds"]) == 10 for p in preds)  # dropout was active
    mean, std = dropcore.load_model(out / "model.dropcore").predict(x[:3], mc_samples=8, seed=7)
    np.testing.assert_allclose([p["probabilities"] for p in preds], mean, atol=1e-6)


def test_experiment_dropout_writes_table_json_and_curves(tmp_path):
    stdout = ok("experiment", "dropout", "--variants", "none,conv+dense", "--epochs", 2, "--limit", 300, "--quiet",
                "--seeds", 2, "--out", tmp_path / "exp")
    res = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert [r["variant"] for r in res["runs"]] == ["none", "conv+dense"] * 2
    assert [r["seed"] for r in res["runs"]] == [0, 0, 1, 1] and res["seeds"] == [0, 1]
    assert res["n_train"] + res["n_val"] == 300 and res["seed"] == 0
    assert "Paired against none" in stdout
    for r in res["runs"]:
        assert r["gap"] == pytest.approx(r["train_accuracy"] - r["val_accuracy"])
        assert f"{r['val_accuracy']:.4f}" in stdout
    assert "train acc" in stdout and "gap" in stdout
    assert_png(tmp_path / "exp" / "curves.png")


def test_experiment_dropout_kinds(tmp_path):
    stdout = ok("experiment", "dropout", "--kinds", "none,gaussian,maxpool", "--placement", "conv+dense",
                "--epochs", 1, "--limit", 200, "--quiet", "--seeds", 1, "--out", tmp_path / "kinds")
    res = json.loads((tmp_path / "kinds" / "results.json").read_text())
    assert [r["label"] for r in res["runs"]] == ["none", "gaussian", "maxpool"]
    assert [r["placement"] for r in res["runs"]] == [["dense"], ["conv", "dense"], ["conv", "dense"]]
    assert res["placement"] == ["conv", "dense"] and stdout.splitlines()[0].startswith("Dropout experiment (kinds")
    assert all(f"{r['val_accuracy']:.4f}" in stdout for r in res["runs"]) and "\nkind " in stdout
    assert_png(tmp_path / "kinds" / "curves.png")


def test_experiment_uncertainty(tmp_path):
    out = tmp_path / "unc"
    stdout = ok("experiment", "uncertainty", "--epochs", 1, "--limit", 300, "--mc-samples", "1,4", "--rotation", 20,
                "--noise", 0, "--quiet", "--seeds", 2, "--out", out)
    res = json.loads((out / "results.json").read_text())
    assert [r["seed"] for r in res["runs"]] == [0, 1] and res["n_test"] == 60
    for run in res["runs"]:  # every seed's scores
        assert list(run["datasets"]) == ["held-out", "rotated 20°"]
        assert list(run["datasets"]["held-out"]["methods"]) == ["deterministic", "mc-1", "mc-4"]
    ece = res["summary"]["datasets"]["rotated 20°"]["methods"]["mc-4"]["measures"]["ece"]
    assert f"{ece['mean']:.3f} ± {ece['half_width']:.3f}" in stdout and "AUROC" in stdout
    assert "Paired against deterministic" in stdout
    assert_png(out / "reliability.png")
    assert dropcore.load_model(out / "model.dropcore").input_shape == (None, 8, 8, 1)


def test_experiment_kfold_on_bundled_and_csv_data(tmp_path, capsys):
    stdout = ok("experiment", "kfold", "--dataset", "iris", "--folds", 3, "--epochs", 3, "--out", tmp_path)
    res = json.loads((tmp_path / "kfold.json").read_text())
    accs = [f["accuracy"] for f in res["folds"]]
    assert len(accs) == 3 and sum(f["n_test"] for f in res["folds"]) == 150
    assert res["mean_accuracy"] == pytest.approx(np.mean(accs)) and res["std_accuracy"] == pytest.approx(np.std(accs))
    assert f"mean {res['mean_accuracy']:.4f}" in stdout and stdout.count("  fold ") == 3
    table = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    table.write_text("a,b,y\n" + "".join(f"{rng.normal(i % 2):.3f},{rng.normal():.3f},{i % 2}\n" for i in range(40)))
    assert cli.main(["experiment", "kfold", "--data", str(table), "--folds", "4", "--epochs", "2"]) == 0
    stdout = capsys.readouterr().out
    assert "4-fold cross-validation of the dropout MLP on" in stdout and stdout.count("  fold ") == 4


def test_info(capsys):
    out = ok("info")
    assert "numpy" in out and np.__version__ in out and "numba" in out
    assert cli.main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert isinstance(info, dict) and np.__version__ in json.dumps(info)
    # the compiled target in use (None on the Numba kernels) and the targets the CPU runs, best first
    assert f"isa: {info['isa']}" in out and info["cpu_isas"][-1] == "generic"
    assert info["isa"] in info["cpu_isas"] if info["cython_kernels"] else info["isa"] is None


def test_bench_forwards_or_explains():
    code, out, err = run("bench", "--help")
    if (REPO / "bench" / "__main__.py").is_file():
        assert code == 0 and "usage" in out.lower()
    else:
        assert code == 1 and "bench/ directory" in err


def test_bench_forwards_every_argument(tmp_path, monkeypatch, capfd):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "__main__.py").write_text("import sys\nprint('ARGS', sys.argv[1:])\nsys.exit(3)\n")
    monkeypatch.setattr(cli_info, "_bench_root", lambda: tmp_path)
    assert cli.main(["bench", "--quick", "-k", "conv"]) == 3
    assert "ARGS ['--quick', '-k', 'conv']" in capfd.readouterr().out
    monkeypatch.setattr(cli_info, "_bench_root", lambda: None)
    assert cli.main(["bench"]) == 1
    assert "only a source checkout has" in capfd.readouterr().err


@pytest.mark.parametrize("args, code, message", [
    (["train", "--epochs", "0"], 2, "argument --epochs: expected an integer >= 1, received '0'"),
    (["train", "--dropout", "1.5"], 2, "argument --dropout: expected a number in [0.0, 1.0), received '1.5'"),
    (["frobnicate"], 2, "invalid choice: 'frobnicate'"),
    (["train", "--data", "/nonexistent/dir"], 1, "--data /nonexistent/dir: no such file or directory"),
])
def test_bad_arguments_subprocess(args, code, message):
    got, out, err = run(*args)
    assert got == code and message in err, err


@pytest.mark.parametrize("args, message", [
    (["train", "--format", "mnist"], "--format mnist needs --data PATH"),
    (["train", "--model", "resnet50"], "--model 'resnet50': expected one of mnist_cnn"),
    (["train", "--model", "lenet5"], "expected images of at least 12x12 pixels"),
    (["experiment", "dropout", "--variants", "none,input"], "Received: variants='input'"),
    (["experiment", "dropout", "--kinds", "dropout", "--variants", "none"], "pass either --kinds"),
    (["experiment", "dropout", "--kinds", "dropout,dropconnect"], "(not 'dropconnect'). Received: kinds='dropout,dropconnect'"),
    (["experiment", "dropout", "--kinds", "spatial", "--placement", "dense"], "with --kinds it must include conv"),
    (["experiment", "dropout", "--kinds", "spatial", "--model", "mlp"], "pass a CNN --model"),
    (["experiment", "dropout", "--placement", "conv+dense"], "--placement goes with --kinds"),
    (["predict", "NOTAMODEL", "x.npy", "--chunk-size", "64"], "--chunk-size cuts the input into Dask tasks"),
    (["serve", "NOTAMODEL", "--max-batch", "8", "--inexact-batching"],
     "--max-batch, --inexact-batching: only with --batching"),
    (["experiment", "uncertainty", "--format", "csv", "--data", "t.csv"], "needs images; t.csv holds feature rows"),
    (["predict", "MISSING.dropcore", "x.npy"], "MISSING.dropcore: no such model file"),
    (["evaluate", "NOTAMODEL"], "cannot load model file"),
    (["experiment", "kfold", "--data", "t.csv", "--dataset", "iris"], "either --data FILE.csv or --dataset"),
])
def test_bad_arguments_in_process(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "NOTAMODEL").write_text("hello")
    (tmp_path / "t.csv").write_text("a,b\n1,0\n2,1\n")
    assert cli.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"dropcore {args[0]}") and message in err, err


def test_predict_input_errors(trained, tmp_path, capsys):
    out, _ = trained
    model = str(out / "model.dropcore")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 5, 5, 1), np.float32))
    np.save(tmp_path / "right.npy", np.zeros((2, 8, 8, 1), np.float32))
    cases = [([tmp_path / "missing.npy"], "missing.npy: no such input file"),
             ([tmp_path / "wrong.npy"], "array of shape (2, 5, 5, 1); the model expects (N, 8, 8, 1)"),
             ([tmp_path / "right.npy", "--seed", "3"], "--seed only applies to Monte-Carlo dropout"),
             ([tmp_path / "right.npy", "--output", tmp_path / "p.txt"], "p.txt: expected a .csv or .json file name")]
    for extra, message in cases:
        assert cli.main(["predict", model, *map(str, extra)]) == 1
        assert message in capsys.readouterr().err
