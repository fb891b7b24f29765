"""A training run killed with SIGKILL in the middle of an epoch resumes with ``dropcore train --resume DIR`` from
its last checkpoint and ends with weights bit-identical to the uninterrupted run with the same seed."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import dropcore

pytest.importorskip("sklearn", reason="scikit-learn is not installed: the run trains on its bundled digits")
TRAIN = ["train", "--epochs", "6", "--batch-size", "4", "--seed", "3", "--quiet", "--lr-schedule", "step"]


def _dropcore(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dropcore", *map(str, args)], capture_output=True, text=True,
                          timeout=600, **kw)


def test_a_killed_run_resumes_bit_for_bit(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    done = _dropcore(*TRAIN, "--out", whole)
    assert done.returncode == 0, done.stderr
    proc = subprocess.Popen([sys.executable, "-m", "dropcore", *TRAIN, "--out", str(cut)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Killed as soon as two epochs or more are done (a later epoch deletes the older checkpoints, so any of them
    # counts), without a sleep: a loaded machine only moves the kill to a later epoch.
    deadline = time.monotonic() + 300
    while not [p for p in cut.glob("checkpoint-*.dropcore") if int(p.stem.split("-")[1]) >= 2]:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and not (cut / "model.dropcore").exists()
    resumed = _dropcore("train", "--resume", cut)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resuming" in resumed.stdout
    a, b = dropcore.load_model(whole / "model.dropcore"), dropcore.load_model(cut / "model.dropcore")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    history = json.loads((cut / "history.json").read_text())
    assert history["epoch"] == list(range(6))
    assert history == json.loads((whole / "history.json").read_text())
    assert not list(cut.glob("checkpoint-*"))  # the run is over: model.dropcore holds the last epoch


def test_resume_says_what_is_missing(tmp_path):
    out = _dropcore("train", "--resume", tmp_path)
    assert out.returncode == 1 and "no train.json there" in out.stderr
    finished = tmp_path / "done"
    assert _dropcore("train", "--epochs", "1", "--quiet", "--out", finished).returncode == 0
    out = _dropcore("train", "--resume", finished)
    assert out.returncode == 1 and "the run already finished" in out.stderr
    os.remove(finished / "run.json")  # as if killed in its first epoch: no checkpoint, no result
    os.remove(finished / "model.dropcore")
    out = _dropcore("train", "--resume", finished)
    assert out.returncode == 1 and "no checkpoint yet" in out.stderr
