"""Helpers for checking kernels and layers: central finite differences in float64."""
import numpy as np


def numerical_gradient(f, x, eps=1e-6):
    """Central-difference gradient of the scalar function ``f`` at the float64 array ``x`` (``x`` is restored)."""
    x = np.asarray(x)
    if x.dtype != np.float64:
        raise TypeError(f"numerical_gradient needs float64 input, got {x.dtype}")
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def check_gradient(f, analytic, x, rtol=1e-5, atol=1e-7, eps=1e-6):
    """Assert that ``analytic`` (the gradient of ``f`` w.r.t. ``x``) matches central differences.

    ``f`` takes no arguments and reads ``x`` (which is perturbed in place), returning a scalar.
    """
    numeric = numerical_gradient(f, x, eps=eps)
    np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol)
    return numeric


def assert_weight_gradients(model, x, r, expected, rtol=1e-3, atol=1e-6):
    """Backpropagate ``sum(model(x) * r)`` through the executor on the Numba kernels in inference mode (dropout
    off) and compare each weight's gradient with ``expected`` (``{(layer name, weight name): array}``, e.g.
    PyTorch's), each a real gradient rather than zeros on both sides."""
    from .layers.base import Context
    from .ops import get_ops

    _, tape = model.plan.forward(get_ops("numba"), x, Context(), keep_backprop=True)
    model.plan.backward(tape, r, get_ops("numba"))
    for (name, w), grad in expected.items():
        np.testing.assert_allclose(model.get_layer(name).grads[w], grad, rtol=rtol, atol=atol, err_msg=f"{name}.{w}")
        assert np.abs(grad).max() > 1e-4, f"{name}.{w}: the expected gradient is zero"


def assert_predictor_matches(path, model, x, mc_samples=4, seed=7, rtol=1e-4, atol=1e-6):
    """A :class:`dropcore.Predictor` on the model file ``path`` gives ``model``'s executor outputs (Numba kernels),
    plain and with ``mc_samples`` Monte-Carlo dropout passes of ``seed``."""
    from .inference import predict_outputs
    from .ops import get_ops
    from .predictor import Predictor

    predictor, ops = Predictor(path), get_ops("numba")
    np.testing.assert_allclose(predictor.predict(x), predict_outputs(model.plan, ops, x, 256), rtol=rtol, atol=atol)
    for a, b in zip(predictor.predict(x, mc_samples=mc_samples, seed=seed),
                    predict_outputs(model.plan, ops, x, 256, mc_samples=mc_samples, seed=seed)):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def assert_mc_same_at_any_batch_size(model, x, reference, batch_sizes, mc_samples, seed, rtol=1e-5, atol=1e-6):
    """Monte-Carlo predictions of ``model`` at each of ``batch_sizes`` (its ``predict``, a :class:`Predictor` on it
    and the executor on the Numba kernels) all equal ``reference`` (``(mean, std)``)."""
    from .inference import predict_outputs
    from .ops import get_ops
    from .predictor import Predictor

    predictor = Predictor(model)
    for batch_size in batch_sizes:
        for got in (model.predict(x, batch_size=batch_size, mc_samples=mc_samples, seed=seed),
                    predictor.predict(x, batch_size=batch_size, mc_samples=mc_samples, seed=seed),
                    predict_outputs(model.plan, get_ops("numba"), x, batch_size, mc_samples=mc_samples, seed=seed)):
            for g, r in zip(got, reference):
                np.testing.assert_allclose(g, r, rtol=rtol, atol=atol)


def assert_trains_like_reference(make, x, y, steps=3, seed=11):
    """Two models from ``make()``, one on the default kernels and one on the reference ones, take ``steps``
    training steps on ``(x, y)`` with the same dropout masks: the same losses and weights, every weight trained
    (the gradient reached it). Returns the first model."""
    fast, ref = make(), make().set_ops("reference")
    fast._seed = ref._seed = seed  # the same dropout masks (fit(seed=...) sets this)
    before = fast.get_weights()
    for _ in range(steps):
        np.testing.assert_allclose(fast.train_on_batch(x, y)[0], ref.train_on_batch(x, y)[0], rtol=1e-4)
    for a, b, w0 in zip(fast.get_weights(), ref.get_weights(), before):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
        assert not np.array_equal(a, w0), "a weight did not train: no gradient reached it"
    return fast


def assert_round_trips(model, x, path):
    """``model.predict`` (its inference program, batches of 5) gives the executor's outputs on the Numba kernels;
    saved to ``path`` and loaded back, the model has the same layers (classes, configs, dropout streams), and a
    :class:`dropcore.Predictor` on the file gives its outputs (:func:`assert_predictor_matches`)."""
    from .io import load_model
    from .inference import predict_outputs
    from .ops import get_ops

    np.testing.assert_allclose(model.predict(x, batch_size=5), predict_outputs(model.plan, get_ops("numba"), x, 256),
                               rtol=1e-5, atol=1e-6)
    model.save(path)
    for a, b in zip(model.layers, load_model(path).layers):
        assert type(a) is type(b) and a.get_config() == b.get_config() and a.stream == b.stream
    assert_predictor_matches(path, model, x)


def assert_mc_runs_its_forward(model, x, kind, count, batch_sizes=(1, 3, 7, 256), mc_samples=5, seed=3):
    """The Monte-Carlo program of ``model`` runs ``count`` steps ``kind`` (a layer's own forward), its predictions
    vary (the masks or the noise are on) and agree everywhere at any of ``batch_sizes``
    (:func:`assert_mc_same_at_any_batch_size` against the executor on the Numba kernels)."""
    from .inference import predict_outputs
    from .ops import get_ops

    assert model._inference_program(mc=True).steps.count(kind) == count
    reference = predict_outputs(model.plan, get_ops("numba"), x, 256, mc_samples=mc_samples, seed=seed)
    assert reference[1].max() > 1e-4, "the Monte-Carlo predictions do not vary"
    assert_mc_same_at_any_batch_size(model, x, reference, batch_sizes, mc_samples, seed)


def striped_images(n, side, background, stripe, seed=0):
    """``(x, y)``: ``n`` single-channel ``side x side`` images of three classes (``y = i % 3``) told apart by which
    third of the columns is brighter: uniform noise up to ``background`` plus ``stripe`` on the class's columns.
    Small data the experiments' tests train on."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    x = rng.random((n, side, side, 1), dtype=np.float32) * np.float32(background)
    width = side // 3
    for i, c in enumerate(y):
        x[i, :, c * width:c * width + 3, 0] += np.float32(stripe)
    return x, y
