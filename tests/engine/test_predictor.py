"""Predictor: inference on the Cython kernels, equal to Model.predict, isolated from the model, thread-safe."""
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dropcore
from dropcore.inference import predict_outputs
from dropcore.ops import get_ops
from dropcore.layers import (AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, Input,
                             MaxPooling2D)

pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")


def _model(seed=0):
    dropcore.set_random_seed(seed)
    model = dropcore.Sequential([
        Input((12, 12, 2)), Conv2D(8, 3, activation="relu"), BatchNormalization(), MaxPooling2D(2),
        Dropout(0.25), Conv2D(6, 3, padding="same", strides=2, activation="relu"), AveragePooling2D(2, padding="same"),
        Flatten(), Dense(16, activation="relu"), Dropout(0.5), Dense(4, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    return rng.random((n, 12, 12, 2), dtype=np.float32), rng.integers(0, 4, n)


@pytest.fixture(scope="module")
def trained():
    model = _model()
    x, y = _data()
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    return model


def _on_numba(model, x):
    """The model's outputs through its plan on the Numba kernels (Model.predict itself runs a program too)."""
    return predict_outputs(model._plan, get_ops("numba"), x, 256)


def test_predict_equals_model_predict(trained):
    x, _ = _data(23, seed=2)
    p = dropcore.Predictor(trained)
    assert p.kernels == "cython"
    expected = _on_numba(trained, x)
    np.testing.assert_allclose(p.predict(x), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p.predict(x, batch_size=5), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(p.predict(x[:1]), expected[:1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(trained.predict(x), expected, rtol=1e-4, atol=1e-5)


def test_mc_dropout_equals_model_predict(trained):
    x, _ = _data(9, seed=3)
    p = dropcore.Predictor(trained)
    mean, std = p.predict(x, mc_samples=6, seed=42)
    ref_mean, ref_std = trained.predict(x, mc_samples=6, seed=42)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(std, ref_std, rtol=1e-4, atol=1e-5)
    assert std.max() > 0  # dropout really was active
    # Masks index elements within a batch (as Model.predict does), so batching is part of the draw.
    np.testing.assert_allclose(p.predict(x, mc_samples=3, seed=1, batch_size=4)[0],
                               trained.predict(x, mc_samples=3, seed=1, batch_size=4)[0], rtol=1e-4, atol=1e-5)


def test_pieces_scored_from_their_row_are_the_rows_of_the_whole(trained, monkeypatch):
    x, _ = _data(13, seed=4)
    for engine in ("cython-program", "executor"):
        p = dropcore.Predictor(trained)
        if engine == "executor":
            # as without the Cython kernels: no program, the plan on Numba
            monkeypatch.setattr(p._inference, "_programs", {(False, False): None, (True, False): None})
            monkeypatch.setattr(p._inference, "kernels", "numba")
        assert p.engine == engine
        mean, std = p.predict(x, mc_samples=4, seed=5, batch_size=4)
        for start, stop in ((0, 4), (4, 8), (8, 13)):  # cut at batches: BLAS builds give rows by batch
            piece = p.predict(x[start:stop], mc_samples=4, seed=5, batch_size=4, row=start)
            np.testing.assert_array_equal(piece[0], mean[start:stop])
            np.testing.assert_array_equal(piece[1], std[start:stop])
        assert not np.array_equal(p.predict(x[4:8], mc_samples=4, seed=5)[0], mean[4:8])  # row 0: other masks


def test_predictor_is_isolated_from_later_training():
    model = _model(5)
    x, y = _data()
    p = dropcore.Predictor(model)
    before = p.predict(x)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert not np.allclose(model.predict(x), before)  # the model did change...
    np.testing.assert_array_equal(p.predict(x), before)  # ...the predictor did not


def test_same_validation_messages_as_model_predict(trained):
    p = dropcore.Predictor(trained)
    x, _ = _data(3)
    for kwargs, arg in [({"batch_size": 0}, "batch_size"), ({"mc_samples": 0}, "mc_samples"),
                        ({"mc_samples": 2, "seed": -1}, "seed")]:
        with pytest.raises(ValueError, match=f"Invalid value for `{arg}`") as got:
            p.predict(x, **kwargs)
        with pytest.raises(ValueError) as want:
            trained.predict(x, **kwargs)
        assert str(got.value) == str(want.value)
    with pytest.raises(ValueError, match=r"has shape \(3, 5, 5, 2\)"):
        p.predict(np.zeros((3, 5, 5, 2), np.float32))


def test_rejects_what_is_not_a_model():
    with pytest.raises(TypeError, match="expected a dropcore Model, a model file path or its bytes, received int"):
        dropcore.Predictor(3)


def test_loads_a_saved_model_file(trained, tmp_path):
    path = tmp_path / "m.dropcore"
    dropcore.save_model(trained, path)
    x, _ = _data(7, seed=4)
    np.testing.assert_allclose(dropcore.Predictor(str(path)).predict(x), _on_numba(trained, x), rtol=1e-4,
                               atol=1e-5)


def test_shared_between_threads_gives_serial_answers(trained):
    p = dropcore.Predictor(trained)
    rng = np.random.default_rng(9)
    jobs = [(rng.random((int(n), 12, 12, 2), dtype=np.float32), i % 3 == 0) for i, n in
            enumerate(rng.integers(1, 40, 48))]

    def run(job):
        x, mc = job
        return p.predict(x, mc_samples=3, seed=7) if mc else p.predict(x, batch_size=16)

    serial = [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        threaded = list(pool.map(run, jobs, timeout=120))
    for a, b in zip(serial, threaded):
        for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
            np.testing.assert_array_equal(u, v)


def test_using_a_predictor_never_imports_numba(tmp_path):
    code = textwrap.dedent("""
        import sys
        import numpy as np
        import dropcore
        from dropcore.layers import Input, Conv2D, MaxPooling2D, Dropout, Flatten, Dense
        m = dropcore.Sequential([Input((8, 8, 1)), Conv2D(4, 3, activation="relu"), MaxPooling2D(2),
                                 Dropout(0.5), Flatten(), Dense(3, activation="softmax")])
        p = dropcore.Predictor(m)
        y = p.predict(np.ones((2, 8, 8, 1), np.float32))
        mean, std = p.predict(np.ones((2, 8, 8, 1), np.float32), mc_samples=2, seed=1)
        assert y.shape == (2, 3) and mean.shape == (2, 3)
        assert dropcore.info()["inference_kernels"] == "cython"
        print("numba" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_info_reports_the_active_kernels():
    got = dropcore.info()
    assert got["cython_kernels"] is True and got["cython_error"] is None
    assert got["inference_kernels"] == "cython"
    assert got["dropcore"] == dropcore.__version__ and got["openmp_threads"] >= 1
    from dropcore.kernels import blas

    assert got["own_gemm"] is blas.HAVE_FAST_GEMM  # the Numba kernels use the same GEMM


def test_missing_cython_kernels_warn_once(monkeypatch):
    info_mod = sys.modules["dropcore.info"]
    monkeypatch.setattr(info_mod, "cython_status", lambda: (False, "ImportError: no module _cy_gemm"))
    monkeypatch.setattr(info_mod, "_warned", False)
    with pytest.warns(info_mod.NoCythonKernelsWarning, match="not built.*Numba"):
        assert info_mod.warn_if_no_cython() is False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert info_mod.warn_if_no_cython() is False  # the second time: no warning
    assert dropcore.info.__module__ == "dropcore.info"
