"""The package's files import each other without circles, read statically from their module-level imports (an
import inside a function runs after every module loaded, and cannot make one)."""
import ast
import pathlib

import dropcore
import dropcore.kernels

ENGINE = pathlib.Path(dropcore.__file__).resolve().parent
KERNELS = pathlib.Path(dropcore.kernels.__file__).resolve().parent  # the top-level kernels/ of the repository


def _modules():
    """``{module name: path}`` of every file of the package (``dropcore.kernels`` lives in ``kernels/``)."""
    out = {}
    for root, prefix in ((ENGINE, ("dropcore",)), (KERNELS, ("dropcore", "kernels"))):
        for path in root.rglob("*.py"):
            if root == ENGINE and KERNELS in path.resolve().parents:  # a link to kernels/ in a checkout
                continue
            parts = prefix + path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name, path, modules):
    """The package's modules that ``name`` imports at module level."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # ``from . import x``: the module x, else the package itself
                found.add(f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def _circles(graph):
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_circles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert len(graph) > 100 and "dropcore.kernels.contract" in graph["dropcore.ops"]  # it reads what it should
    assert _circles(graph) == []


def test_a_circle_is_found():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
