"""The table of each layer's compiled paths (``dropcore.compiled_paths``): it covers every registered layer, it sees
NumPy work where there is some and none where the kernels do it all, and ``docs/layers.md`` holds it as it is now."""
import pathlib

import numpy as np
import pytest

from dropcore import compiled_paths
from dropcore.compiled_paths import EXAMPLES, Example, paths
from dropcore.layers import Layer
from dropcore.layers.registry import LAYERS, register

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "layers.md"


def test_every_registered_layer_has_an_example():
    missing = sorted(set(LAYERS) - {e.cls for e in EXAMPLES})
    assert not missing, f"add an Example for {missing} to dropcore/compiled_paths.py EXAMPLES"


def test_docs_layers_holds_the_table_as_the_code_is():
    text = DOC.read_text()
    table = text.split(compiled_paths.BEGIN, 1)[1].split(compiled_paths.END, 1)[0]
    assert table.strip() == compiled_paths.markdown().strip(), (
        "docs/layers.md is out of date: run `python -m dropcore.compiled_paths docs/layers.md`")


@pytest.fixture
def numpy_layer():
    """A layer of this test's own that doubles its input in NumPy in both directions (unregistered afterwards)."""

    @register
    class TimesTwoInNumpy(Layer):
        def output_shape_for(self, input_shape):
            return tuple(input_shape)

        def forward(self, ops, x, ctx):
            return np.multiply(x, np.float32(2)), lambda dy: dy * np.float32(2)

        def get_config(self):
            return {"name": self.name}

    yield "TimesTwoInNumpy"
    del LAYERS["TimesTwoInNumpy"]


def test_numpy_work_in_a_layer_is_seen_on_every_path(numpy_layer):
    found = paths(Example("times two", numpy_layer, {}, ((4, 4, 2),)))
    assert found == {"training": "NumPy (multiply)", "inference": "NumPy (multiply)", "monte_carlo": "as inference"}


def test_a_layer_on_kernels_reads_compiled_and_a_reshape_a_view():
    conv = paths(Example("conv", "Conv2D", dict(filters=2, kernel_size=3), ((5, 5, 3),)))
    assert conv == {"training": "compiled", "inference": "compiled", "monte_carlo": "as inference"}
    flat = paths(Example("flatten", "Flatten", {}, ((5, 5, 3),)))
    assert flat["training"] == "view" and flat["inference"] == "view"


def test_a_dropout_layer_is_the_identity_in_inference_and_runs_in_monte_carlo():
    found = paths(Example("dropout", "Dropout", dict(rate=0.5), ((4, 4, 2),)))
    assert found == {"training": "compiled", "inference": "identity", "monte_carlo": "compiled"}
