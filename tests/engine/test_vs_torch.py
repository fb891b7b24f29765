"""The model against PyTorch: forward outputs and SGD steps of small random models must match."""
import numpy as np
import pytest

import dropcore
from dropcore.layers import (Add, AveragePooling2D, BatchNormalization, Conv2D, Dense, Flatten, Input, MaxPooling2D,
                             ReLU)

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")
F = torch.nn.functional


def _t(a):
    return torch.tensor(np.asarray(a), dtype=torch.float32)


def _conv(x, layer, params):
    """PyTorch conv for a dropcore Conv2D, with TensorFlow's asymmetric 'same' padding done explicitly."""
    w, b = params[layer.name]
    if layer.padding == "same":
        from dropcore.kernels.geometry import window_2d

        _, _, (pt, pb), (pl, pr) = window_2d(x.shape[2], x.shape[3], layer.kernel_size, layer.strides, "same")
        x = F.pad(x, (pl, pr, pt, pb))
    y = F.conv2d(x, w.permute(3, 2, 0, 1), b, stride=layer.strides)
    return y


def _build(ops):
    dropcore.set_random_seed(0)
    x = Input((9, 9, 3))
    c1 = Conv2D(6, 3, padding="same", activation="relu", name="c1")
    c2 = Conv2D(6, 3, strides=2, padding="same", name="c2")
    bn = BatchNormalization(name="bn")
    c3 = Conv2D(6, 1, name="c3")
    d1 = Dense(7, activation="relu", name="d1")
    d2 = Dense(4, activation="softmax", name="d2")
    h = c1(x)
    r = Add()([h, c3(h)])
    h = MaxPooling2D(2, strides=1, name="mp")(ReLU()(bn(c2(r))))
    h = AveragePooling2D(2, padding="same", name="ap")(h)
    out = d2(d1(Flatten()(h)))
    model = dropcore.Model(x, out).set_ops(ops)
    # make biases and BN affine weights non-trivial
    rng = np.random.default_rng(1)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32) if w.ndim == 1 and i % 2 == 1 else w
                       for i, w in enumerate(model.get_weights())])
    return model


def _torch_forward(model, x, params, training):
    layers = {la.name: la for la in model.layers}
    t = _t(x).permute(0, 3, 1, 2)
    h = F.relu(_conv(t, layers["c1"], params))
    r = h + _conv(h, layers["c3"], params)
    g, b, mm, mv = params["bn"]
    h = F.batch_norm(_conv(r, layers["c2"], params), mm, mv, g, b, training=training, momentum=0.01, eps=1e-3)
    h = F.max_pool2d(F.relu(h), 2, stride=1)
    # TF 'same' average pooling divides by the non-padded count: pad, sum-pool and divide by a pooled mask
    hp = F.pad(h, (0, h.shape[3] % 2, 0, h.shape[2] % 2))
    ones = F.pad(torch.ones_like(h[:1, :1]), (0, h.shape[3] % 2, 0, h.shape[2] % 2))
    h = F.avg_pool2d(hp, 2) / F.avg_pool2d(ones, 2)
    h = h.permute(0, 2, 3, 1).reshape(len(x), -1)  # flatten in channels-last order, as Keras
    w1, b1 = params["d1"]
    w2, b2 = params["d2"]
    return F.linear(F.relu(F.linear(h, w1.T, b1)), w2.T, b2)  # logits


def _torch_params(model, requires_grad):
    params = {}
    for la in model.layers:
        if la.weights:
            params[la.name] = [_t(w).requires_grad_(requires_grad and n in la.trainable_names)
                               for n, w in la.weights.items()]
    return params


@pytest.mark.parametrize("ops", ["numba", "reference"])
def test_forward_matches_pytorch(ops):
    model = _build(ops)
    x = np.random.default_rng(2).normal(size=(5, 9, 9, 3)).astype(np.float32)
    expected = F.softmax(_torch_forward(model, x, _torch_params(model, False), training=False), dim=1)
    np.testing.assert_allclose(model.predict(x), expected.detach().numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("ops", ["numba", "reference"])
def test_sgd_steps_match_pytorch(ops):
    model = _build(ops)
    rng = np.random.default_rng(3)
    xs = [rng.normal(size=(8, 9, 9, 3)).astype(np.float32) for _ in range(2)]
    ys = [rng.integers(0, 4, 8) for _ in range(2)]
    params = _torch_params(model, True)
    flat = [p for ps in params.values() for p in ps if p.requires_grad]
    opt = torch.optim.SGD(flat, lr=0.1, momentum=0.9)
    model.compile(dropcore.optimizers.SGD(0.1, momentum=0.9), "sparse_categorical_crossentropy")
    for x, y in zip(xs, ys):
        opt.zero_grad()
        loss_t = F.cross_entropy(_torch_forward(model, x, params, training=True), torch.tensor(y))
        loss_t.backward()
        opt.step()
        loss = model.train_on_batch(x, y)
        assert loss == pytest.approx(loss_t.item(), rel=1e-4)
    by_name = {la.name: la for la in model.layers}
    for name, ps in params.items():
        for (wname, ours), theirs in zip(by_name[name].weights.items(), ps):
            if wname in ("moving_mean", "moving_variance"):
                continue  # checked against torch's running stats in the test below (torch keeps unbiased var)
            np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-3, atol=1e-5, err_msg=f"{name}/{wname}")


def test_batchnorm_moving_statistics_follow_keras():
    """Moving mean/variance: m * moving + (1 - m) * batch statistic (biased variance)."""
    bn = BatchNormalization(momentum=0.9)
    x = np.random.default_rng(4).normal(2.0, 3.0, size=(16, 3, 3, 5)).astype(np.float32)
    model = dropcore.Sequential([Input((3, 3, 5)), bn])
    model(x, training=True)
    mean, var = x.reshape(-1, 5).mean(0), x.reshape(-1, 5).var(0)
    np.testing.assert_allclose(bn.weights["moving_mean"], 0.1 * mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.weights["moving_variance"], 0.9 + 0.1 * var, rtol=1e-5)
    tx = _t(x).permute(0, 3, 1, 2)
    rm, rv = torch.zeros(5), torch.ones(5)
    F.batch_norm(tx, rm, rv, training=True, momentum=0.1, eps=1e-3)
    n = x.size // 5
    np.testing.assert_allclose(bn.weights["moving_mean"], rm.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.weights["moving_variance"] - 0.9, (rv.numpy() - 0.9) * (n - 1) / n, rtol=1e-4)
