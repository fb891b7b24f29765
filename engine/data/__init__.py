"""Data loaders: MNIST / Fashion-MNIST (IDX or Keras npz), CIFAR-10 (binary or python), CSV, scikit-learn digits.

Everything is read from local files; nothing is ever downloaded. Image loaders return ``x`` float32 in [0, 1],
channels-last ``(N, H, W, C)``, and ``y`` int64. Malformed, truncated or missing files raise :class:`DataError`
(a ``ValueError``) naming the file, what was wrong and what was expected.

``load_fashion_mnist`` is an alias of :func:`load_mnist`: Fashion-MNIST uses the same file names and format.
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
