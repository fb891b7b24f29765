"""Inference programs: a plan compiled into kernel calls gives what the plan gives on the Numba kernels, fuses
what it may, follows a model's training, and declines what it cannot run (the executor then runs the plan)."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import dropcore
from dropcore.layers import (Activation, Add, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten,
                             Input, MaxPooling2D, ReLU, SpatialDropout2D)
from dropcore.inference import predict_outputs
from dropcore.ops import get_ops
from dropcore.program import compile_program

pytest.importorskip("dropcore.kernels.cython_ops", reason="the Cython kernels are not built (no compiler)")
from dropcore.kernels import cython_ops  # noqa: E402

# A convolution and the max pooling after it: one fused kernel with the AVX-512 kernels, else the two.
FUSED = ["conv2d+max_pool2d"] if cython_ops.HAVE_FAST_GEMM else ["conv2d", "max_pool2d"]


def _build(layers, seed=0):
    dropcore.set_random_seed(seed)
    model = dropcore.Sequential(layers)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def _on_numba(model, x):
    """The model's outputs through its plan on the Numba kernels (Model.predict itself runs a program)."""
    return predict_outputs(model._plan, get_ops("numba"), x, 256)


def _x(model, n, seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + model.input_shape[1:]).astype(np.float32)


MODELS = {  # name -> (layers, the program's steps)
    "mnist-like": ([Input((14, 14, 1)), Conv2D(8, 3, activation="relu"), Conv2D(16, 3, activation="relu"),
                    MaxPooling2D(2), Dropout(0.25), Flatten(), Dense(32, activation="relu"), Dropout(0.5),
                    Dense(10, activation="softmax")],
                   ["conv2d", *FUSED, "reshape", "dense", "dense", "softmax"]),
    "lenet-like": ([Input((16, 16, 1)), Conv2D(6, 5, padding="same", activation="relu"), MaxPooling2D(2),
                    Conv2D(16, 5, activation="relu"), MaxPooling2D(2), Flatten(), Dense(20, activation="relu"),
                    Dense(10, activation="softmax")],
                   [*FUSED, *FUSED, "reshape", "dense", "dense", "softmax"]),
    # Layers the fused kernels leave alone: a pool with padding, batch normalization, a stand-alone ReLU, sigmoid.
    "assorted": ([Input((12, 12, 2)), Conv2D(8, 3, activation="relu"), BatchNormalization(), MaxPooling2D(2),
                  SpatialDropout2D(0.2), Conv2D(6, 3, padding="same", strides=2), ReLU(),
                  AveragePooling2D(2, padding="same"), MaxPooling2D(2, strides=1, padding="same"), Flatten(),
                  Dense(16), Activation("relu"), Dropout(0.5), Dense(3, activation="sigmoid")],
                 ["conv2d", "batch_norm", "max_pool2d", "conv2d", "avg_pool2d", "max_pool2d", "reshape",
                  "dense", "dense"]),  # the sigmoid in the last dense kernel's output pass
    # Dense on a rank-3 input acts on the last axis; a softmax Activation layer; a Dense's ReLU kept by a Dropout.
    "sequence": ([Input((5, 7)), Dense(9), Dropout(0.3), Dense(4, activation="relu"), Activation("softmax")],
                 ["reshape", "dense", "reshape", "reshape", "dense", "reshape", "softmax"]),
}


@pytest.mark.parametrize("name", MODELS)
def test_program_equals_model_predict(name):
    layers, steps = MODELS[name]
    model = _build(layers)
    p = dropcore.Predictor(model)
    program = p._inference.program()
    assert program is not None and program.steps == steps
    x = _x(model, 23)
    for batch_size in (None, 5, 1):
        np.testing.assert_allclose(p.predict(x, batch_size=batch_size), _on_numba(model, x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(x, batch_size=7), _on_numba(model, x), rtol=1e-4, atol=1e-5)


def test_relu_moved_into_dropout_goes_back_into_the_dense_kernel():
    model = _build([Input((6,)), Dense(8, activation="relu"), Dropout(0.5), Dense(2)])
    assert dropcore.Predictor(model)._inference.program().steps == ["dense", "dense"]


def _branches(seed=0):
    dropcore.set_random_seed(seed)
    inp = Input((6, 6, 2))
    h = Conv2D(4, 3, padding="same", activation="relu")(inp)
    y = Add()([h, Conv2D(4, 3, padding="same")(h), Conv2D(4, 1)(h)])
    out = Dense(3, activation="softmax")(Flatten()(Dropout(0.4)(ReLU()(y))))
    model = dropcore.Model(inp, out)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


@pytest.mark.parametrize("layers, steps", [
    ([Input((6,)), Dense(4, activation="tanh")], ["dense"]),  # tanh: in the kernel's output pass
    ([Input((4, 4, 1)), Conv2D(2, 3, activation="tanh"), Flatten(), Dense(2)], ["conv2d", "reshape", "dense"]),
    ([Input((5,)), Activation("linear"), Dropout(0.5)], []),  # nothing but identities: the input is copied
])
def test_every_graph_compiles_tanh_and_identities_included(layers, steps):
    model = _build(layers)
    p = dropcore.Predictor(model)
    assert p.engine == "cython-program" and p._inference.program().steps == steps
    x = _x(model, 7)
    np.testing.assert_allclose(p.predict(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)


def test_branches_compile_and_match_the_executor():
    """A residual graph (one value read by three steps, an Add of three) runs as a program: the layers without a
    bound kernel of their own (Add) lower to theirs, and a ReLU with several readers stays a step."""
    model = _branches()
    p = dropcore.Predictor(model)
    assert p._inference.program().steps == ["conv2d", "conv2d", "conv2d", "add", "relu", "reshape", "dense", "softmax"]
    x = _x(model, 9)
    for batch_size in (None, 4, 1):
        np.testing.assert_allclose(p.predict(x, batch_size=batch_size), _on_numba(model, x), rtol=1e-4,
                                   atol=1e-5)


class Scale(dropcore.layers.Layer):
    """A layer with no lowering of its own: programs run its forward."""

    def forward(self, ops, x, ctx):
        return x * np.float32(2), lambda dy: dy * np.float32(2)


class Multiply(dropcore.layers.Layer):
    n_inputs = None

    def output_shape_for(self, input_shapes):
        return tuple(input_shapes[0])

    def forward(self, ops, xs, ctx):
        return xs[0] * xs[1], lambda dy: [dy * xs[1], dy * xs[0]]


def test_a_layer_without_a_lowering_runs_its_forward_in_the_program():
    dropcore.set_random_seed(0)
    inp = Input((5,))
    a = Dense(4, activation="relu")(inp)
    out = Dense(2)(Multiply()([Scale()(a), Dense(4)(inp)]))
    model = dropcore.Model(inp, out)
    p = dropcore.Predictor(model)
    assert p._inference.program().steps == ["dense", "scale", "dense", "multiply", "dense"]
    x = _x(model, 6)
    np.testing.assert_allclose(p.predict(x, batch_size=4), _on_numba(model, x), rtol=1e-5, atol=1e-6)


def test_a_dropout_between_a_convolution_and_its_pooling_does_not_stop_the_fusion():
    """Dropout is no step in inference, so the pooling after it still runs inside the convolution's kernel; with
    Monte-Carlo dropout it is a step, and the two run apart."""
    model = _build([Input((10, 10, 2)), Conv2D(16, 3, activation="relu"), Dropout(0.3), MaxPooling2D(2), Flatten(),
                    Dense(3)])
    p = dropcore.Predictor(model)
    assert p._inference.program().steps == [*FUSED, "reshape", "dense"]
    assert p._inference.program(mc=True).steps == ["conv2d", "dropout", "max_pool2d", "reshape", "dense"]
    x = _x(model, 5)
    np.testing.assert_allclose(p.predict(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["mnist-like", "assorted", "branches"])
def test_monte_carlo_dropout_runs_on_the_program_and_draws_the_executors_masks(name):
    """MC dropout in the Predictor and in Model.predict runs the MC program (no Numba): each pass draws the masks
    the executor draws for the same seed and pass, so mean and std agree with the plan on the Numba kernels."""
    model = _branches() if name == "branches" else _build(MODELS[name][0])
    p = dropcore.Predictor(model)
    assert "dropout" in p._inference.program(mc=True).steps and "dropout" not in p._inference.program().steps
    x = _x(model, 11)
    expected = predict_outputs(model._plan, get_ops("numba"), x, 4, mc_samples=5, seed=3)
    for got in (p.predict(x, batch_size=4, mc_samples=5, seed=3),
                model.predict(x, batch_size=4, mc_samples=5, seed=3)):
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)
    assert float(expected[1].max()) > 0.01  # the passes really differ


def test_evaluate_and_validation_run_the_logits_program():
    """evaluate (and validation in fit) run the program without its final softmax, the loss fused with it: the
    same loss and accuracy as the executor's inference on the Numba kernels."""
    model = _build(MODELS["mnist-like"][0])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _x(model, 30), np.random.default_rng(4).integers(0, 10, 30)
    logits_program = model._inference_program(logits=True)
    assert logits_program.steps == ["conv2d", *FUSED, "reshape", "dense", "dense"]
    loss, acc = model.evaluate(x, y, batch_size=8)
    probs = _on_numba(model, x)
    expected = float(np.mean(-np.log(probs[np.arange(30), y])))
    np.testing.assert_allclose(loss, expected, rtol=1e-4)
    assert acc == float(np.mean(probs.argmax(1) == y))
    history = model.fit(x[:20], y[:20], validation_data=(x, y), epochs=1, verbose=0, batch_size=10)
    assert model._inference_program(logits=True) is logits_program  # compiled once, weights read by reference
    np.testing.assert_allclose(history.history["val_loss"][0], model.evaluate(x, y)[0], rtol=1e-6)


def test_model_call_in_inference_runs_the_program():
    model = _build(MODELS["sequence"][0])
    x = _x(model, 6)
    np.testing.assert_allclose(model(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)
    assert model.inference_engine == "cython-program"
    assert model.set_ops("reference").inference_engine == "executor"


def test_threads_with_different_batch_sizes_keep_their_own_buffers():
    layers, _ = MODELS["mnist-like"]
    model = _build(layers)
    p = dropcore.Predictor(model)
    xs = [_x(model, n, seed=n) for n in (1, 3, 8, 17, 2, 9) * 4]
    expected = [_on_numba(model, x) for x in xs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(p.predict, xs, timeout=120))
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-5)


def test_model_predict_runs_a_program_that_follows_training():
    """Model.predict compiles its program once; weights (and batch normalization's statistics) change in place
    while the model trains, and the next prediction sees them without recompiling."""
    layers, _ = MODELS["assorted"]
    model = _build(layers)
    x = _x(model, 16)
    y = np.random.default_rng(2).integers(0, 3, 16)
    np.testing.assert_allclose(model.predict(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)
    program = model._inference_program()
    assert program is not None
    before = model.predict(x)
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    after = model.predict(x)
    assert model._inference_program() is program
    assert not np.allclose(after, before)
    np.testing.assert_allclose(after, _on_numba(model, x), rtol=1e-4, atol=1e-5)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    np.testing.assert_allclose(model.predict(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)


def test_a_winograd_layer_written_in_place_between_predictions_is_seen():
    """A trainable model's program keeps each 3x3 layer's Winograd transform while its weights stay the same, and
    makes it again when they change: by training, and by a write into ``layer.weights`` that no optimizer saw."""
    from dropcore.kernels import geometry

    dropcore.set_random_seed(4)
    conv = Conv2D(64, 3, padding="same")
    model = dropcore.Sequential([Input((8, 8, 32)), conv, Flatten(), Dense(3)])
    assert geometry.winograd_pays((3, 3, 32, 64), (1, 1), True)  # the layer runs on Winograd where the target has it
    x = _x(model, 2)
    first = model.predict(x)
    np.testing.assert_array_equal(model.predict(x), first)  # the kept transform: the same bits
    kept = conv.weights["kernel"][0, 0, 0, 0].copy()
    conv.weights["kernel"][0, 0, 0, 0] += 1.0  # one weight, in place
    changed = model.predict(x)
    np.testing.assert_allclose(changed, _on_numba(model, x), rtol=1e-4, atol=1e-5)
    assert not np.allclose(changed, first)
    conv.weights["kernel"][0, 0, 0, 0] = kept
    np.testing.assert_array_equal(model.predict(x), first)


def test_model_predict_on_the_reference_kernels_runs_the_plan():
    layers, _ = MODELS["mnist-like"]
    model = _build(layers).set_ops("reference")
    assert model._inference_program() is None
    x = _x(model, 3)
    np.testing.assert_allclose(model.predict(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)


def test_buffers_kept_per_thread_for_two_batch_sizes_and_never_a_huge_set(monkeypatch):
    from dropcore import program as program_mod

    layers, _ = MODELS["mnist-like"]
    model = _build(layers)
    p = dropcore.Predictor(model)
    x = _x(model, 10)
    p.predict(x, batch_size=4)  # batches of 4, 4 and 2
    kept = p._inference.program()._local.buffers
    assert sorted(kept) == [2, 4]
    first = kept[4][0]
    p.predict(x, batch_size=4)
    assert p._inference.program()._local.buffers[4][0] is first  # reused, not reallocated
    p.predict(x[:3])
    assert sorted(p._inference.program()._local.buffers) == [2, 3]  # the least recently used size went
    monkeypatch.setattr(program_mod, "KEEP_BYTES", 1000)
    np.testing.assert_allclose(p.predict(x), _on_numba(model, x), rtol=1e-4, atol=1e-5)
    assert 10 not in p._inference.program()._local.buffers  # too large to keep


def _unshared(program):
    """``program`` with a buffer of its own for every step (no memory shared between steps)."""
    from dropcore.kernels.alignment import aligned_empty

    def own(bound):
        buffers = [None if run is None or i == program._last else aligned_empty(shape)
                   for i, (run, shape) in enumerate(bound)]
        return buffers, [b for b in buffers if b is not None]
    program._shared_buffers = own
    return program


def _inception(seed=0):
    """Branches of different lengths joined (a concatenation, a residual Add), a pool between: values live across
    several steps, so the shared buffers' lifetimes matter."""
    from dropcore.layers import Concatenate

    dropcore.set_random_seed(seed)
    inp = Input((8, 8, 3))
    h = Conv2D(6, 3, padding="same", activation="relu")(inp)
    a = Conv2D(4, 1)(h)
    b = Conv2D(4, 3, padding="same", activation="relu")(Conv2D(5, 1, activation="relu")(h))
    c = Conv2D(4, 1)(AveragePooling2D(3, strides=1, padding="same")(h))
    y = Add()([Conv2D(12, 1)(h), Concatenate()([a, b, c])])
    out = Dense(4, activation="softmax")(Flatten()(MaxPooling2D(2)(ReLU()(y))))
    model = dropcore.Model(inp, out)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    return model


def test_steps_share_buffers_without_overwriting_a_value_still_read():
    model = _inception()
    shared = compile_program(model._graph, model.input_shape[1:])
    alone = _unshared(compile_program(model._graph, model.input_shape[1:]))
    bound = shared._bind(3)
    buffers, blocks = shared._shared_buffers(bound)
    assert len(blocks) < sum(b is not None for b in buffers)  # memory is shared
    x = _x(model, 11)
    out_shared, out_alone = (np.empty((11, 4), np.float32) for _ in range(2))
    shared.run(x, out_shared)
    alone.run(x, out_alone)
    np.testing.assert_array_equal(out_shared, out_alone)
    np.testing.assert_allclose(out_shared, _on_numba(model, x), rtol=1e-4, atol=1e-5)
    # no step writes a block that holds one of its inputs, or a value a later step still reads
    owner = {}
    for i, (_, ins, slot, _, _) in enumerate(shared._wiring):
        for j in ins:
            assert j not in owner or shared._last_reader[owner[j]] >= i
        if buffers[i] is not None:
            for j in ins:
                if j in owner and buffers[owner[j]] is not None:
                    assert not np.shares_memory(buffers[i], buffers[owner[j]])
        owner[slot] = owner.get(ins[0], None) if shared._views[i] else i


def test_a_large_batch_runs_in_tiles_with_the_bits_of_the_whole(monkeypatch):
    """Past ``TILE_BYTES`` of buffers a batch goes through in tiles of rows; every kernel gives a row the same bits
    in any batch, so the answer is the whole batch's, exactly, and the deadline is checked between tiles."""
    from dropcore import program as program_mod

    model = _inception()
    program = compile_program(model._graph, model.input_shape[1:])
    x = _x(model, 40)
    whole = np.empty((40, 4), np.float32)
    program.run(x, whole)
    assert program.tile_rows(40) == 40  # 40 rows' buffers are far below the default budget
    monkeypatch.setattr(program_mod, "TILE_BYTES", 8 * program.buffer_bytes)
    monkeypatch.setattr(program_mod, "MIN_TILE", 2)
    assert program.tile_rows(40) == 8 and program.tile_rows(8) == 8
    calls = []
    run = program.run
    monkeypatch.setattr(program, "run", lambda xs, out, ctx: calls.append(len(xs)) or run(xs, out, ctx))
    np.testing.assert_array_equal(program.predict(x, 256), whole)
    assert calls == [8] * 5
    calls.clear()
    np.testing.assert_array_equal(program.predict(x, 5), whole)  # a batch smaller than the tile: the batch
    assert calls == [5] * 8
    monkeypatch.setattr(program, "weight_bytes", 8 * program.buffer_bytes)  # weights read again by each tile
    assert program.tile_rows(40) == 40
