"""Models: the functional ``Model(inputs, outputs)`` and ``Sequential``, with compile / fit / evaluate / predict.

Modes are explicit: ``model(x)`` and ``predict``/``evaluate`` run in inference (dropout is the identity, batch
normalization uses its moving statistics); ``fit`` and ``train_on_batch`` run in training mode.
"""
import numpy as np

from .allocator import tune_for_training
from . import losses as losses_mod
from . import metrics as metrics_mod
from . import optimizers as optimizers_mod
from . import workspace
from .data.batches import SourceBatches, is_source, sample_weights
from .errors import NotCompiledError, NumericalError
from .fitting import run_epochs, training_batches
from .graph import _toposort, describe, lower_training, plan_graph
from .inference import Inference, random_seed
from .layers.base import INFERENCE, Context, Layer, SymbolicTensor, unique_name
from .layers.base import Input as make_input
from .ops import default_name, get_ops
from .saving import save_model
from .validation import as_float32_batch, check_float, check_int, invalid




def _engine_call(kernels):
    """Thread pools held for one engine call on kernel set ``kernels`` (``kernels/threads.py``)."""
    from .kernels.threads import engine_call

    return engine_call(kernels)


class Model:
    """A graph of layers from one input to one output, built with the functional API::

        x = dropcore.layers.Input((32, 32, 3))
        h = Conv2D(16, 3, activation="relu")(x)
        y = Add()([h, Conv2D(16, 3, padding="same")(h)])
        model = dropcore.Model(x, Dense(10, activation="softmax")(Flatten()(y)))
    """

    #: the class a model file names (docs/model-format.md); declared, not inherited: see ``saving.save_model``
    FILE_CLASS = "Model"

    def __init__(self, inputs=None, outputs=None, name=None):
        self.name = name or unique_name(type(self).__name__)
        self._ops_name = None  # the default kernel set (dropcore.ops.default_name), resolved on use
        self.optimizer = None
        self.loss = None
        self.metric = None
        self.stop_training = False
        self._seed = random_seed()
        self._calls = 0  # eager training calls so far: each draws new dropout masks
        self._inference_path = None  # ((graph, kernels), Inference): see _inference
        self._graph = None
        self._plan = None
        self._inputs = None
        self._outputs = None
        self._layers = []
        if inputs is not None or outputs is not None:
            self._set_graph(inputs, outputs)

    # --- graph ----------------------------------------------------------------------------------------------
    def _set_graph(self, inputs, outputs):
        if isinstance(inputs, (list, tuple)):
            if len(inputs) != 1:
                raise ValueError(f"Model '{self.name}': exactly one input is supported, received {len(inputs)}")
            inputs = inputs[0]
        if isinstance(outputs, (list, tuple)):
            if len(outputs) != 1:
                raise ValueError(f"Model '{self.name}': exactly one output is supported, received {len(outputs)}")
            outputs = outputs[0]
        if not isinstance(inputs, SymbolicTensor) or inputs.layer is not None:
            raise TypeError(f"Model '{self.name}': `inputs` must come from dropcore.layers.Input; received {inputs!r}")
        if not isinstance(outputs, SymbolicTensor):
            raise TypeError(f"Model '{self.name}': `outputs` must be the result of calling layers on the input; "
                            f"received {outputs!r}")
        self._graph = plan_graph(inputs, outputs)
        self._plan = lower_training(self._graph)
        self._inputs, self._outputs = inputs, outputs
        self._layers = [t.layer for t in _toposort(outputs) if t.layer is not None]
        for i, layer in enumerate(self._layers):
            layer.stream = i
        shapes = {t.id: t.shape for t in _toposort(outputs)}
        self._workspace = {mode: workspace.per_sample_bytes(self._plan, shapes, mode) for mode in (False, True)}
        self._trainable = [(la, n) for la in self._layers for n in la.trainable_names]
        self._state = [(la, n) for la in self._layers for n in la.weights if n not in la.trainable_names]

    def _sample_bytes(self, training):
        return self._workspace[training]

    @property
    def layers(self):
        return list(self._layers)

    @property
    def input(self):
        """The model's input, a symbolic tensor (its ``shape``, ``name``, ``id``), as Keras's ``model.input``;
        ``None`` before the model is built."""
        return self._inputs

    @property
    def output(self):
        """The model's output, a symbolic tensor, as Keras's ``model.output``; ``None`` before it is built."""
        return self._outputs

    @property
    def graph(self):
        """The planned layer graph (``dropcore.graph``: the layers in topological order, unfused), or ``None``."""
        return self._graph

    @property
    def plan(self):
        """The training plan the executor runs (the graph lowered with ``fusion.TRAINING``), or ``None``."""
        return self._plan

    @property
    def seed(self):
        """The seed the model's dropout masks derive from (set by ``fit(seed=)`` and saved in the model file)."""
        return self._seed

    def get_layer(self, name=None, index=None):
        """A layer by ``name`` or by ``index`` in :attr:`layers` (one of the two), as Keras's ``get_layer``."""
        if (name is None) == (index is None):
            raise ValueError(f"Model '{self.name}'.get_layer: provide either a layer name or a layer index, not "
                             f"{'both' if name is not None else 'neither'}. Received: name={name!r}, index={index!r}")
        if index is not None:
            index = check_int(index, "index", 0, f"Model '{self.name}'.get_layer")
            if index >= len(self._layers):
                raise ValueError(f"Model '{self.name}'.get_layer: asked for the layer at index {index}, but the model "
                                 f"has {len(self._layers)} layers")
            return self._layers[index]
        for layer in self._layers:
            if layer.name == name:
                return layer
        raise ValueError(f"Model '{self.name}'.get_layer: no layer named {name!r}; the layers are "
                         f"{[la.name for la in self._layers]}")

    @property
    def input_shape(self):
        return None if self._inputs is None else (None,) + self._inputs.shape

    @property
    def output_shape(self):
        return None if self._outputs is None else (None,) + self._outputs.shape

    @property
    def ops(self):
        """The kernel set in use: "cython" (the default where the compiled kernels are built), "numba" (the default
        without them) or "reference"."""
        return default_name() if self._ops_name is None else self._ops_name

    @property
    def kernel_set(self):
        """The kernel set itself (``dropcore.ops.get_ops(model.ops)``: one function per op of the kernel contract),
        resolved on use, so that building a model compiles and imports nothing."""
        return get_ops(self.ops)

    def set_ops(self, name):
        """Run this model on another kernel set ("cython", "numba" or "reference")."""
        self._ops_name = get_ops(name).name
        return self

    def _inference(self):
        """The model's :class:`~dropcore.inference.Inference`: what ``predict``, ``evaluate`` and validation in
        ``fit`` run, on this graph and kernel set (a new one when either changes; its programs read the weights by
        reference, so training between two predictions needs no recompiling)."""
        key = (self._graph, self.ops)
        if self._inference_path is None or self._inference_path[0] != key:
            self._inference_path = (key, Inference(self._graph, self._plan, self._inputs.shape, self._layers,
                                                   self.ops))
        return self._inference_path[1]

    def _inference_program(self, mc=False, logits=False):
        """The compiled inference program predictions run (``Inference.program``), or ``None`` (the executor)."""
        return None if self._graph is None else self._inference().program(mc, logits)

    @property
    def inference_engine(self):
        """What runs this model's inference: "cython-program" (the compiled program on the Cython kernels) or
        "executor" (the training plan in inference mode, on the model's kernel set)."""
        return "executor" if self._inference_program() is None else "cython-program"

    def _infer(self, x, batch_size, ctx=INFERENCE, logits=False):
        """Outputs for checked ``x`` in inference mode (dropout active where ``ctx.dropout``), in batches."""
        return self._inference().outputs(x, batch_size, ctx, logits)

    def _ensure_built(self, x):
        """Build lazily (Sequential without an Input) from a data batch."""
        if self._plan is None:
            self.build(x.shape[1:])

    def build(self, input_shape):
        raise ValueError(f"Model '{self.name}' has no graph: create it with Model(inputs, outputs)")

    def check_input(self, x, arg="x"):
        """``x`` as a float32 batch of this model's input shape (building a Sequential without an Input), or a clear
        error naming ``arg``: the check every entry point makes (``predict``, ``fit``, the Predictor, the batching
        queue's callers)."""
        x = as_float32_batch(x, arg, where=f"Model '{self.name}'")
        self._ensure_built(x)
        if x.shape[1:] != self._inputs.shape:
            expected = ", ".join(map(str, self._inputs.shape))
            raise ValueError(
                f"Model '{self.name}': `{arg}` has shape {x.shape}; expected (batch, {expected}) "
                f"({len(self._inputs.shape) + 1} dimensions, channels last)"
            )
        return x

    # --- weights --------------------------------------------------------------------------------------------
    def get_weights(self):
        """Every layer's weights, in layer order and Keras's order within a layer (copies)."""
        return [w for la in self._layers for w in la.get_weights()]

    def set_weights(self, weights):
        """Set weights from a list in the order :meth:`get_weights` returns."""
        weights = list(weights)
        expected = sum(len(la.weights) for la in self._layers)
        if len(weights) != expected:
            raise ValueError(f"Model '{self.name}' expects {expected} weight arrays, received {len(weights)}")
        i = 0
        for la in self._layers:
            n = len(la.weights)
            la.set_weights(weights[i:i + n])
            i += n

    @property
    def trainable_weights(self):
        """The trainable weight arrays, in the order the optimizer updates them (Keras's ``trainable_weights``)."""
        return [la.weights[n] for la, n in self._trainable]

    def count_params(self):
        return sum(la.count_params() for la in self._layers)

    # --- inference ------------------------------------------------------------------------------------------
    def __call__(self, x, training=False):
        """Run the model on a batch; ``training=True`` drops units and uses batch statistics."""
        if isinstance(x, SymbolicTensor):
            raise TypeError("calling a Model on a symbolic tensor (nesting models) is not supported")
        x = self.check_input(x)
        workspace.check(self, len(x), bool(training), None if training else self._inference_program())
        if not training:
            return self._infer(x, max(1, len(x)))
        # Each call draws new masks, as Keras does (a hand-written Monte-Carlo loop over model(x, training=True)).
        self._calls += 1
        ctx = Context(training=True, dropout=True, seed=(self._seed + 0x9E3779B9 * self._calls) & 0xFFFFFFFF,
                      step=self._step())
        with _engine_call(self.kernel_set.name):
            y, _ = self._plan.forward(self.kernel_set, x, ctx)
        return y

    def _step(self):
        return self.optimizer.iterations if self.optimizer is not None else 0

    def predict(self, x, batch_size=None, verbose=0, mc_samples=None, seed=None):
        """Outputs for ``x`` in inference mode, in batches of ``batch_size`` (default 256).

        With ``mc_samples=N``, Monte-Carlo dropout: dropout stays active (batch normalization stays on its moving
        statistics), and ``(mean, std)`` over the N passes is returned; the same ``seed`` gives the same result.

        Where the Cython kernels are built, predictions on the default kernels run the model's compiled inference
        program (as :class:`dropcore.Predictor` does), Monte-Carlo dropout included: the same outputs as the
        executor within float tolerance.
        """
        x = self.check_input(x)
        batch_size = 256 if batch_size is None else check_int(batch_size, "batch_size", 1, "predict")
        workspace.check(self, min(batch_size, len(x)), False, self._inference_program(mc=mc_samples is not None))
        return self._inference().predict(x, batch_size, mc_samples, seed)

    # --- training -------------------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None):
        """Choose the optimizer (name or instance), the loss (name or instance) and metrics (["accuracy"])."""
        if loss is None:
            raise invalid("loss", "a loss name or a dropcore.losses.Loss", loss, f"Model '{self.name}'.compile")
        self.optimizer = optimizers_mod.get(optimizer)
        self.loss = losses_mod.get(loss)
        if metrics is None:
            metrics = []
        if isinstance(metrics, str):
            metrics = [metrics]
        if len(metrics) > 1:
            raise invalid("metrics", "None or ['accuracy']", metrics, f"Model '{self.name}'.compile")
        self.metric = metrics_mod.resolve(metrics[0], self.loss) if metrics else None
        return self

    def _require_compiled(self, what):
        if self.loss is None:
            raise NotCompiledError(f"Model '{self.name}' must be compiled before {what}: call model.compile(...)")

    @property
    def fuses_loss(self):
        """Whether training computes the loss from the logits with the final softmax/sigmoid fused into it (the
        compiled loss is one of ``losses`` that fuses with the model's last activation)."""
        return (not self.loss.from_logits) and self.loss.fuses_with is not None and \
            self.loss.fuses_with == self._plan.head

    def _outputs_as_probabilities(self, out, logits):
        if not logits:
            return out
        head = self.loss.fuses_with
        return self.kernel_set.softmax(out) if head == "softmax" else self.kernel_set.sigmoid(out)

    def _check_xy(self, x, y, arg_x="x", arg_y="y"):
        x = self.check_input(x, arg_x)
        y_arr = np.asarray(y)
        if y_arr.ndim == 0 or len(y_arr) != len(x):
            raise ValueError(f"Model '{self.name}': `{arg_x}` and `{arg_y}` must have the same number of samples; "
                             f"received {len(x)} and {'a scalar' if y_arr.ndim == 0 else len(y_arr)}")
        y_arr = self.loss.check_targets(y_arr, (len(x),) + self._outputs.shape)
        return x, y_arr

    def _train_batch(self, x, y, w=None, dp=None):
        """One optimizer step; ``w``: per-sample loss weights (Keras's ``sum_over_batch_size``: the weighted losses
        summed and divided by the batch size). ``dp``: data-parallel hooks (``dropcore.distributed.training``): this
        rank trains on its part of the global batch ``x`` and the gradients are summed over the ranks."""
        tune_for_training()  # once per process: large arrays from the heap (dropcore.allocator)
        ops, plan = self.kernel_set, self._plan
        fused = self.fuses_loss
        logits = fused or self.loss.from_logits
        total, row = len(x), 0
        if dp is not None:
            row, hi = dp.shard(total)
            x, y, w = x[row:hi], y[row:hi], None if w is None else w[row:hi]
        saved = self._snapshot(la.weights[n] for la, n in self._state)  # moving statistics change in forward
        ctx = Context(training=True, dropout=True, seed=self._seed, step=self.optimizer.iterations, row=row)
        out, tape = plan.forward(ops, x, ctx, keep_backprop=True, logits=fused)
        loss_vec, dout = self.loss.per_sample(ops, out, y, logits)
        if w is not None:
            loss_vec = loss_vec * w
            dout *= w.reshape((-1,) + (1,) * (dout.ndim - 1))
        metric = None
        if dp is None:
            loss = float(np.mean(loss_vec))
            if not np.isfinite(loss):
                self._restore(saved)
                raise NumericalError(f"non-finite loss ({loss})")
        dout *= np.float32(1.0 / total)  # the global batch's size: the ranks' gradients sum to the batch's
        plan.backward(tape, dout, ops)
        params = [la.weights[n] for la, n in self._trainable]
        grads = [la.grads[n] for la, n in self._trainable]
        if dp is not None:  # checked after the sum, so that every rank raises (or not) together
            if self.metric is not None:
                metric = float(np.sum(self.metric[1](y, self._outputs_as_probabilities(out, logits))))
            grads, loss_sum, metric_sum = dp.allreduce(grads, float(np.sum(loss_vec)), metric or 0.0)
            loss, metric = loss_sum / total, None if metric is None else metric_sum
            if not np.isfinite(loss):
                self._restore(saved)
                raise NumericalError(f"non-finite loss ({loss})")
        for (la, n), g in zip(self._trainable, grads):
            if not np.isfinite(g).all():  # exact, and 4x faster than a float64 sum on mnist's 9216 x 128
                self._restore(saved)
                raise NumericalError(f"non-finite gradient for weight '{n}' of {la.label}")
        # A finite gradient can still overflow a weight (a huge learning rate): keep what the update touches.
        had_state = bool(self.optimizer.state)
        saved += self._snapshot(params + self.optimizer.get_state())
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is detected and reported just below
            self.optimizer.apply(params, grads)
            for la, n in self._trainable:
                if n in la.constraints:
                    la.constraints[n](la.weights[n])
        for (la, n), p in zip(self._trainable, params):
            if not np.isfinite(p).all():
                self._restore(saved)
                self.optimizer.iterations -= 1
                if not had_state:
                    self.optimizer.state = []
                raise NumericalError(f"the update made weight '{n}' of {la.label} non-finite (learning rate "
                                     f"{self.optimizer.learning_rate:g})")
        if self.metric is not None and dp is None:
            metric = float(np.sum(self.metric[1](y, self._outputs_as_probabilities(out, logits))))
        return loss * total, metric

    def _snapshot(self, arrays):
        """Copies of ``arrays`` in buffers reused from step to step (no allocation on the training path)."""
        buffers = self.__dict__.setdefault("_snapshot_buffers", {})
        saved = []
        for a in arrays:
            b = buffers.get(id(a))
            if b is None or b.shape != a.shape:
                b = buffers[id(a)] = np.empty_like(a)
            np.copyto(b, a)
            saved.append((a, b))
        return saved

    @staticmethod
    def _restore(saved):
        for arr, copy in saved:
            np.copyto(arr, copy)

    def train_on_batch(self, x, y, return_dict=False):
        """One optimizer step on one batch; returns the loss (and accuracy) measured during that step."""
        self._require_compiled("train_on_batch")
        x, y = self._check_xy(x, y)
        workspace.check(self, len(x), True)
        with _engine_call(self.kernel_set.name):
            loss_sum, metric_sum = self._train_batch(x, y)
        return self._format(loss_sum / len(x), None if metric_sum is None else metric_sum / len(x), return_dict)

    def _format(self, loss, metric, return_dict):
        if return_dict:
            return {"loss": loss, **({"accuracy": metric} if metric is not None else {})}
        return loss if metric is None else [loss, metric]

    def fit(self, x, y=None, batch_size=32, epochs=1, validation_split=0.0, validation_data=None, shuffle=True,
            seed=None, verbose=1, callbacks=None, class_weight=None, sample_weight=None, initial_epoch=0,
            steps_per_epoch=None, comm=None):
        """Train from epoch ``initial_epoch`` to ``epochs`` over ``(x, y)``; returns a :class:`History`.

        ``x`` is an array with targets ``y``, or a data source yielding ``(x, y)`` or ``(x, y, sample_weight)``
        batches: a generator, an iterable, or a ``keras.utils.PyDataset``-style sequence (``dropcore.data.batches``);
        ``steps_per_epoch`` batches an epoch (a generator read over several epochs needs it).
        ``validation_split`` holds out the *last* fraction of the data (before shuffling), as Keras does.
        ``class_weight`` (``{class: weight}``) and ``sample_weight`` (one per sample) weight each sample's loss.
        ``seed`` fixes the shuffling and the dropout masks (``None``: a fresh seed); with ``initial_epoch`` (a resumed
        run) the epochs shuffle as they would have in one uninterrupted run. ``verbose``: 0 silent, 1 a progress bar
        per epoch, 2 one line per epoch.

        ``comm``: data-parallel training over the ranks of a :class:`dropcore.distributed.Comm` (e.g.
        ``dropcore.distributed.MPIComm()`` under ``mpiexec -n N``): every rank calls ``fit`` with the same data and
        seed, each trains on its share of every global batch of ``batch_size`` samples and the gradients are summed;
        only rank 0 runs the callbacks and shows progress (``docs/distributed.md``).
        """
        self._require_compiled("fit")
        where = f"Model '{self.name}'.fit"
        batch_size = check_int(batch_size, "batch_size", 1, where)
        epochs = check_int(epochs, "epochs", 0, where)
        initial_epoch = check_int(initial_epoch, "initial_epoch", 0, where)
        validation_split = check_float(validation_split, "validation_split", 0.0, 1.0, high_open=True, where=where)
        if verbose not in (0, 1, 2):
            raise invalid("verbose", "0, 1 or 2", verbose, where)
        if steps_per_epoch is not None:
            steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", 1, where)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise invalid("validation_data", "a tuple (x_val, y_val)", type(validation_data).__name__, where)
            val = self._check_xy(*validation_data, arg_x="validation_data[0]", arg_y="validation_data[1]")
        else:
            val = None
        self._seed = random_seed() if seed is None else check_int(seed, "seed", 0, where)
        dp = None
        if comm is not None:
            from .distributed.training import data_parallel

            dp = data_parallel(comm, self, where)
        if dp is not None:
            self._seed = dp.start(self._seed)  # rank 0's seed: the same shuffled batches everywhere
            verbose = verbose if dp.is_root else 0
        rng = np.random.default_rng(self._seed)
        batches, val = training_batches(self, x, y, batch_size, shuffle, rng, val, validation_split, class_weight,
                                        sample_weight, steps_per_epoch, epochs - initial_epoch, where)
        return run_epochs(self, batches, val, callbacks, dp, initial_epoch, epochs, verbose, batch_size, where)

    def _evaluate_arrays(self, x, y, batch_size, w=None):
        return self._evaluate_batches(((x[i:i + batch_size], y[i:i + batch_size],
                                        None if w is None else w[i:i + batch_size])
                                       for i in range(0, len(x), batch_size)), batch_size)

    def _evaluate_batches(self, batches, batch_size):
        """Loss (weighted where a batch has weights) and accuracy over ``(x, y, w)`` batches, in inference."""
        fused = self.fuses_loss
        logits = fused or self.loss.from_logits
        loss_sum = metric_sum = 0.0
        n = 0
        for xb, yb, wb in batches:
            out = self._infer(xb, batch_size, logits=fused)
            losses = self.loss.per_sample(self.kernel_set, out, yb, logits)[0]
            loss_sum += float(np.sum(losses if wb is None else losses * wb))
            if self.metric is not None:
                metric_sum += float(np.sum(self.metric[1](yb, self._outputs_as_probabilities(out, logits))))
            n += len(xb)
        res = {"loss": loss_sum / n}
        if self.metric is not None:
            res["accuracy"] = metric_sum / n
        return res

    def evaluate(self, x, y=None, batch_size=None, verbose=0, return_dict=False, sample_weight=None, steps=None):
        """Loss (and accuracy) in inference mode: a float, ``[loss, accuracy]`` or a dict.

        ``x``: an array with targets ``y`` (``sample_weight``: one weight per sample), or a data source of
        ``(x, y[, sample_weight])`` batches, as for :meth:`fit` (``steps``: at most that many batches).
        """
        self._require_compiled("evaluate")
        where = f"Model '{self.name}'.evaluate"
        batch_size = 256 if batch_size is None else check_int(batch_size, "batch_size", 1, "evaluate")
        if is_source(x):
            if y is not None or sample_weight is not None:
                raise ValueError(f"{where}: `y` and `sample_weight` cannot be given with a data source `x` "
                                 f"({type(x).__name__}); its batches carry (x, y[, sample_weight])")
            steps = None if steps is None else check_int(steps, "steps", 1, where)
            source = SourceBatches(x, steps, self._check_xy, where)
            with _engine_call(self.kernel_set.name):
                res = self._evaluate_batches(source.epoch(), batch_size)
        else:
            if y is None:
                raise ValueError(f"{where}: `y` is required when `x` is an array; received y=None")
            x, y = self._check_xy(x, y)
            w = sample_weights(y, sample_weight, None, where)
            workspace.check(self, min(batch_size, len(x)), False, self._inference_program(logits=self.fuses_loss))
            with _engine_call(self.kernel_set.name):
                res = self._evaluate_arrays(x, y, batch_size, w)
        if verbose:
            print(" - ".join(f"{k}: {v:.4f}" for k, v in res.items()))
        return self._format(res["loss"], res.get("accuracy"), return_dict)

    def save(self, path, include_optimizer=True):
        """Write the model to one file (docs/model-format.md); read it back with ``dropcore.load_model(path)``."""
        save_model(self, path, include_optimizer=include_optimizer)

    # --- description ----------------------------------------------------------------------------------------
    def summary(self, print_fn=print):
        """Print a Keras-style table of layers, output shapes and parameter counts, then the fused plan."""
        if self._plan is None:
            print_fn(f"Model '{self.name}' is not built yet (no input shape)")
            return
        rows = [("Layer (type)", "Output Shape", "Param #")]
        shapes = {t.layer.name: t.shape for t in _toposort(self._outputs) if t.layer is not None}
        for la in self._layers:
            rows.append((f"{la.name} ({type(la).__name__})", str((None,) + tuple(shapes[la.name])),
                         f"{la.count_params():,}"))
        widths = [max(len(r[i]) for r in rows) + 2 for i in range(3)]
        line = "-" * sum(widths)
        print_fn(f'Model: "{self.name}"')
        print_fn(line)
        for i, r in enumerate(rows):
            print_fn("".join(c.ljust(w) for c, w in zip(r, widths)))
            print_fn("=" * sum(widths) if i == 0 else line if i == len(rows) - 1 else "")
        trainable = sum(la.weights[n].size for la, n in self._trainable)
        print_fn(f"Total params: {self.count_params():,}")
        print_fn(f"Trainable params: {trainable:,}")
        print_fn(f"Non-trainable params: {self.count_params() - trainable:,}")
        print_fn("Execution plan: " + " -> ".join(describe(self._plan)))


class Sequential(Model):
    """A linear stack of layers: ``Sequential([Input((28, 28, 1)), Conv2D(32, 3, activation="relu"), ...])``.

    Without an ``Input`` first, the model is built from the first batch it sees.
    """

    #: the class a model file names (docs/model-format.md); declared, not inherited: see ``saving.save_model``
    FILE_CLASS = "Sequential"

    def __init__(self, layers=None, name=None):
        super().__init__(name=name)
        self._stack = []
        self._input_tensor = None
        for layer in layers or []:
            self.add(layer)

    def add(self, layer):
        if isinstance(layer, SymbolicTensor) and layer.layer is None:
            if self._input_tensor is not None or self._stack:
                raise ValueError(f"Sequential '{self.name}': an Input can only be the first element")
            self._input_tensor = layer
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential '{self.name}': expected a dropcore layer or Input, received {layer!r}")
        if layer.n_inputs != 1:
            raise ValueError(f"Sequential '{self.name}': {layer.label} takes several inputs; use the functional API")
        self._stack.append(layer)
        self._plan = None
        if self._input_tensor is not None:
            self.build(self._input_tensor.shape)

    def build(self, input_shape):
        if not self._stack:
            raise ValueError(f"Sequential '{self.name}' has no layers")
        inputs = self._input_tensor if self._input_tensor is not None else make_input(tuple(input_shape))
        t = inputs
        for layer in self._stack:
            t = layer(t)
        self._set_graph(inputs, t)
