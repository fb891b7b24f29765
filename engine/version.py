"""dropcore's version, in a module of its own: the modules that write it into files and answers (``saving``, ``io``,
``info``, the server) import it from here, not from the package, whose ``__init__`` imports them (an import circle
otherwise, which only worked because ``__init__`` set the version before its imports)."""
__version__ = "0.1.0"
