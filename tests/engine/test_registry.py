"""The layer registry and what rests on it: one registration per layer that model files, JSON descriptions and the
package read; options checked against what a layer takes; the executor and the program ask layers, not classes."""
import ast
import pathlib
import re

import numpy as np
import pytest

import dropcore
from dropcore import layers, serialization, zoo
from dropcore.compiled_paths import EXAMPLES
from dropcore.graph import Step
from dropcore.layers.registry import LAYERS, register

ENGINE = pathlib.Path(dropcore.__file__).parent
DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"


def _default(cls):
    """An instance with its required constructor arguments filled in: the first example of the compiled-paths
    table (``dropcore.compiled_paths.EXAMPLES``, which has one for every registered layer)."""
    return cls(**next(e.kwargs for e in EXAMPLES if e.cls == cls.__name__))


def test_the_package_the_model_file_and_the_descriptions_read_one_registry():
    assert set(LAYERS) >= {"Conv2D", "Dense", "GlobalAveragePooling2D", "GlobalMaxPooling2D"}
    for name, cls in LAYERS.items():
        assert getattr(layers, name) is cls and name in layers.__all__
    # descriptions are Sequential: no layer of several inputs
    assert zoo.LAYER_CLASSES == tuple(sorted(n for n in LAYERS if n not in ("Add", "Concatenate")))
    assert serialization.LAYERS is LAYERS


@pytest.mark.parametrize("doc, names", [("model-format.md", sorted(LAYERS)), ("cli.md", zoo.LAYER_CLASSES)])
def test_the_docs_list_the_registered_layers(doc, names):
    """docs/model-format.md names every layer a model file may hold; docs/cli.md every one a description may."""
    # membership, not one exact string: a layer added in its alphabetical place or a list rewrapped still passes
    text = (DOCS / doc).read_text()
    if doc == "cli.md":
        text = text[text.index("Allowed classes"):text.index("nothing else a file names is looked up")]
    missing = [n for n in names if not re.search(rf"(?<![\w`]){n}(?![\w`])" if doc == "cli.md" else f"`{n}`", text)]
    assert not missing, f"docs/{doc} does not name the registered layer(s) {missing}"


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_registered_layer_rebuilds_exactly_from_its_config(name):
    layer = _default(LAYERS[name])
    entry = serialization.layer_to_config(layer)
    rebuilt = serialization.from_config(entry, LAYERS, "layer", "test")
    assert type(rebuilt) is type(layer) and rebuilt.get_config() == layer.get_config()


def test_a_second_class_of_the_same_name_is_refused():
    with pytest.raises(ValueError, match="two layer classes are named 'Dense'"):
        register(type("Dense", (layers.Layer,), {}))


def test_an_unregistered_layer_cannot_be_saved(tmp_path):
    class Custom(layers.Layer):
        pass

    model = dropcore.Sequential([layers.Input((3,)), Custom()])
    with pytest.raises(ValueError, match="cannot save layer <Custom"):
        model.save(tmp_path / "m.dropcore")


def test_an_option_a_layer_does_not_take_names_the_layer_and_the_option():
    step = Step(layers.MaxPooling2D(2, name="mp"), (0,), 1)
    with pytest.raises(ValueError, match=r"layer 'mp' \(MaxPooling2D\) takes no option 'relu'; it takes none"):
        step.set_option("relu", True)
    step = Step(layers.Dense(2, name="d"), (0,), 1)
    with pytest.raises(ValueError, match=r"layer 'd' \(Dense\) takes no option 'activaton'; it takes 'activation'"):
        step.set_option("activaton", "relu")
    with pytest.raises(TypeError, match="unexpected keyword argument 'need_dx'"):  # forward takes no **kwargs
        step.layer.forward(dropcore.ops.get_ops("reference"), np.zeros((1, 2)), layers.Context(), need_dx=False)


@pytest.mark.parametrize("module", ["graph.py", "fusion.py", "program.py", "workspace.py", "serialization.py",
                                    "lowering.py", "model.py", "predictor.py"])
def test_the_executor_and_the_program_never_name_a_concrete_layer(module):
    """They import no layer module but ``base`` and ``registry`` and call ``isinstance`` on no layer class."""
    tree = ast.parse((ENGINE / module).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("layers"):
            assert node.module in ("layers.base", "layers.registry"), f"{module} imports {node.module}"
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance":
            named = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)}
            assert not named & set(LAYERS), f"{module}: isinstance on {named & set(LAYERS)}"
