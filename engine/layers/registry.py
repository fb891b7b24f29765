"""The layer registry: the one list of layer classes that model files, JSON model descriptions and the docs read.

A layer class registers itself where it is defined (``@register``); nothing else names it. Serialization builds
only registered classes (an allow-list: loading never imports what a file names), and the zoo's JSON descriptions
accept exactly the same classes.
"""

#: class name -> layer class, in registration order
LAYERS = {}


def register(cls):
    """Class decorator: make ``cls`` loadable by name from model files and JSON descriptions."""
    name = cls.__name__
    if LAYERS.get(name, cls) is not cls:
        raise ValueError(f"two layer classes are named {name!r}: {LAYERS[name]!r} and {cls!r}")
    LAYERS[name] = cls
    return cls


def names():
    """The registered layer class names, sorted."""
    return tuple(sorted(LAYERS))
