"""Exceptions raised by the data loaders."""


class DataError(ValueError):
    """A data file (or a directory of them) is missing, truncated or malformed.

    The message always names the file and says what was wrong and what was expected, e.g.
    ``"t10k-images-idx3-ubyte.gz: header says 10000x28x28 = 7840000 bytes of data, file has 5000"``.
    It subclasses :class:`ValueError` so callers that already catch ``ValueError`` keep working.
    """


class UnsafePickleError(DataError):
    """A pickled data file asked for a Python object outside the small allow-list of safe types.

    Raised by the restricted unpickler used for the CIFAR-10 python batches *before* the object is looked up, so
    nothing named in the file is imported or called.
    """
