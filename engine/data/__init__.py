"""Data loaders: MNIST / Fashion-MNIST (IDX or Keras npz), CIFAR-10 (binary or python), CSV, scikit-learn digits.

Everything is read from local files. Image loaders return ``x`` float32 in [0, 1], channels-last ``(N, H, W, C)``,
and ``y`` int64. Malformed, truncated or missing files raise :class:`DataError` (a ``ValueError``) naming the file,
what was wrong and what was expected.

``load_mnist``, ``load_fashion_mnist`` and ``load_cifar10`` called without a path look for the data set in
dropcore's cache (``$DROPCORE_DATA``, else ``~/.dropcore/datasets``), then in Keras's (``~/.keras/datasets``, or
``$KERAS_HOME/datasets``); only with ``download=True`` do they fetch the official files, SHA-256 checked and written
atomically, into dropcore's cache (:mod:`dropcore.data.cache`, :mod:`dropcore.data.download`). Nothing else in
dropcore reaches the network. ``load_fashion_mnist`` reads the same file names and format as ``load_mnist``.
"""
from .cifar import load_cifar10
from .digits import load_digits
from .errors import DataError, UnsafePickleError
from .idx import load_idx
from .mnist import load_fashion_mnist, load_mnist, load_mnist_npz
from .split import stratified_kfold, train_test_split
from .tabular import load_csv

__all__ = [
    "DataError",
    "UnsafePickleError",
    "load_cifar10",
    "load_csv",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "load_mnist",
    "load_mnist_npz",
    "stratified_kfold",
    "train_test_split",
]
