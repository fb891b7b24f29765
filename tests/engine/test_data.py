"""Tests for dropcore.data: every file is written here in tmp_path, plus the real MNIST test set when present."""
import gzip
import os
import pickle
import shlex
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from dropcore.data import (
    DataError,
    UnsafePickleError,
    load_cifar10,
    load_csv,
    load_digits,
    load_fashion_mnist,
    load_idx,
    load_mnist,
    load_mnist_npz,
    stratified_kfold,
    train_test_split,
)

MNIST_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "mnist"
MNIST_TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
needs_mnist = pytest.mark.skipif(
    not all((MNIST_DIR / f).is_file() for f in MNIST_TEST_FILES),
    reason=f"real MNIST test files not found in {MNIST_DIR.resolve()} (expected {', '.join(MNIST_TEST_FILES)})",
)

IDX_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}


# ----------------------------------------------------------------------------------------------------------- writers
def idx_bytes(arr):
    """Encode ``arr`` in the IDX layout: 00 00 type ndim, big-endian uint32 dims, big-endian data."""
    arr = np.asarray(arr)
    header = bytes([0, 0, IDX_CODES[arr.dtype], arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write(path, data, gz=False):
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def write_mnist_dir(directory, kind, n, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    prefix = "t10k" if kind == "test" else "train"
    suffix = ".gz" if gz else ""
    write(directory / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
    write(directory / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
    return images, labels


def cifar_arrays(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8), rng.integers(0, 10, size=n).astype(np.int64)


def write_cifar_bin(path, pixels, labels):
    records = np.concatenate([labels.astype(np.uint8)[:, None], pixels], axis=1)
    path.write_bytes(records.tobytes())


def cifar_pickle(pixels, labels, protocol=pickle.HIGHEST_PROTOCOL):
    batch = {
        b"batch_label": b"synthetic batch",
        b"labels": [int(v) for v in labels],
        b"data": pixels,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    return pickle.dumps(batch, protocol=protocol)


def make_cifar(directory, fmt, sizes=(2, 3, 1, 2, 2), n_test=3, protocol=pickle.HIGHEST_PROTOCOL):
    """Write a full synthetic CIFAR-10 directory; return {kind: (pixels, labels)} in file order."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    batches = {"train": [(f"data_batch_{i + 1}", n) for i, n in enumerate(sizes)], "test": [("test_batch", n_test)]}
    for kind, specs in batches.items():
        parts = []
        for j, (stem, n) in enumerate(specs):
            pixels, labels = cifar_arrays(n, seed=100 * len(kind) + j)
            if fmt == "bin":
                write_cifar_bin(directory / (stem + ".bin"), pixels, labels)
            else:
                (directory / stem).write_bytes(cifar_pickle(pixels, labels, protocol))
            parts.append((pixels, labels))
        out[kind] = (np.concatenate([p for p, _ in parts]), np.concatenate([lab for _, lab in parts]))
    return out


def expected_cifar_x(pixels):
    return pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).astype(np.float32) / 255.0


def assert_names(exc_info, *fragments):
    msg = str(exc_info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message {msg!r}"


# ----------------------------------------------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("dtype", list(IDX_CODES), ids=[str(d) for d in IDX_CODES])
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)], ids=["1d", "2d", "3d"])
def test_idx_round_trip(tmp_path, gz, dtype, shape):
    rng = np.random.default_rng(1)
    if dtype.kind == "f":
        arr = rng.standard_normal(shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        arr = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
    path = write(tmp_path / "array.idx", idx_bytes(arr), gz)
    got = load_idx(path)
    assert got.dtype == dtype and got.dtype.isnative
    assert got.shape == shape
    np.testing.assert_array_equal(got, arr)
    got[...] = 0  # the result is a writable copy


def test_idx_compression_detected_by_content_not_name(tmp_path):
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    gz_named_raw = write(tmp_path / "raw-but-named.gz", idx_bytes(arr), gz=False)
    raw_named_gz = write(tmp_path / "gz-but-named-raw", idx_bytes(arr), gz=True)
    np.testing.assert_array_equal(load_idx(gz_named_raw), arr)
    np.testing.assert_array_equal(load_idx(raw_named_gz), arr)
    np.testing.assert_array_equal(load_idx(str(raw_named_gz)), arr)


def test_idx_magic_numbers_for_mnist_layouts(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    images = np.zeros((2, 28, 28), dtype=np.uint8)
    assert idx_bytes(labels)[:4] == b"\x00\x00\x08\x01"
    assert idx_bytes(images)[:4] == b"\x00\x00\x08\x03"
    assert load_idx(write(tmp_path / "l", idx_bytes(labels))).shape == (10,)
    assert load_idx(write(tmp_path / "i", idx_bytes(images))).shape == (2, 28, 28)


# ------------------------------------------------------------------------------------------------------- real MNIST
@needs_mnist
def test_real_mnist_test_set():
    x, y = load_mnist(MNIST_DIR, kind="test")
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.float32
    assert y.shape == (10000,) and y.dtype == np.int64
    assert 0.0 <= x.min() and x.max() == 1.0
    assert set(np.unique(y).tolist()) == set(range(10))
    assert y[0] == 7
    # the published per-class counts of the MNIST test set
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@needs_mnist
def test_real_mnist_raw_idx():
    images = load_idx(MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = load_idx(MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.uint8 and labels[0] == 7


@needs_mnist
def test_real_mnist_truncated_copy(tmp_path):
    for name in MNIST_TEST_FILES:
        data = (MNIST_DIR / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2] if "images" in name else data)
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, kind="test")
    assert_names(exc, "t10k-images-idx3-ubyte.gz", "truncated gzip")


# ---------------------------------------------------------------------------------------------- synthetic MNIST
@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize("kind", ["train", "test"])
def test_load_mnist_synthetic(tmp_path, gz, kind):
    images, labels = write_mnist_dir(tmp_path, kind, n=5, gz=gz)
    x, y = load_mnist(tmp_path, kind=kind)
    assert x.shape == (5, 28, 28, 1) and x.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype == np.int64


def test_fashion_mnist_reads_the_mnist_files(tmp_path):
    # A function of its own since it learnt to find its files in the caches (test_download.py); given a path, it
    # reads the same file names and format as load_mnist, with the same results.
    _, labels = write_mnist_dir(tmp_path, "test", n=3)
    np.testing.assert_array_equal(load_fashion_mnist(tmp_path)[1], labels)
    for kind in ("test", "train"):
        write_mnist_dir(tmp_path, kind, n=4, seed=5)
        for got, want in zip(load_fashion_mnist(tmp_path, kind=kind), load_mnist(tmp_path, kind=kind)):
            np.testing.assert_array_equal(got, want)


def test_load_mnist_rejects_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        load_mnist(tmp_path, kind="validation")


def test_load_mnist_missing_file(tmp_path):
    write_mnist_dir(tmp_path, "test", n=3)
    os.remove(tmp_path / "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, kind="test")
    assert_names(exc, str(tmp_path), "t10k-labels-idx1-ubyte", "t10k-labels-idx1-ubyte.gz")
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path, kind="train")
    assert_names(exc, "train-images-idx3-ubyte")
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path / "nowhere")
    assert_names(exc, "nowhere", "no such directory")


def test_load_mnist_count_and_layout_mismatch(tmp_path):
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros((4, 28, 28), np.uint8)))
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(3, np.uint8)))
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path)
    assert_names(exc, "4 images", "3 labels")
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros((4, 2), np.uint8)))
    with pytest.raises(DataError) as exc:
        load_mnist(tmp_path)
    assert_names(exc, "t10k-labels-idx1-ubyte", "0x00000801")


# --------------------------------------------------------------------------------------------------- corrupt files
def test_truncated_gzip(tmp_path):
    data = gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32)))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(data[: len(data) - 20])
    with pytest.raises(DataError) as exc:
        load_idx(path)
    assert_names(exc, "t10k-labels-idx1-ubyte.gz", "truncated gzip")


def test_corrupt_gzip_body(tmp_path):
    data = bytearray(gzip.compress(idx_bytes(np.arange(1000, dtype=np.int32))))
    data[-8] ^= 0xFF  # CRC mismatch
    path = write(tmp_path / "bad.gz", bytes(data))
    with pytest.raises(DataError) as exc:
        load_idx(path)
    assert_names(exc, "bad.gz", "gzip")


def test_multi_member_gzip_and_trailing_garbage(tmp_path):
    data = idx_bytes(np.arange(50, dtype=np.float64))
    path = write(tmp_path / "multi.gz", gzip.compress(data[:30]) + gzip.compress(data[30:]))
    np.testing.assert_array_equal(load_idx(path), np.arange(50, dtype=np.float64))
    path = write(tmp_path / "garbage.gz", gzip.compress(data) + b"junk")
    with pytest.raises(DataError) as exc:
        load_idx(path)
    assert_names(exc, "garbage.gz", "trailing garbage")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_truncated_body(tmp_path, gz):
    full = idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))
    path = write(tmp_path / "t10k-images-idx3-ubyte.gz", full[: 16 + 5000], gz)
    with pytest.raises(DataError) as exc:
        load_idx(path)
    assert_names(exc, "t10k-images-idx3-ubyte.gz", "header says 10x28x28 = 7840 bytes of data", "file has 5000")


def test_trailing_bytes_and_wide_types(tmp_path):
    path = write(tmp_path / "extra.idx", idx_bytes(np.zeros((2, 3), dtype=np.int32)) + b"\x00" * 4)
    with pytest.raises(DataError) as exc:
        load_idx(path)
    assert_names(exc, "extra.idx", "2x3", "24 bytes", "file has 28", "trailing")


@pytest.mark.parametrize(
    "content, expect",
    [
        (b"\x12\x34\x08\x01" + struct.pack(">I", 1) + b"\x00", "bad magic number 0x12340801"),
        (b"\x00\x00\x07\x01" + struct.pack(">I", 1) + b"\x00", "unknown IDX type byte 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
        (b"\x00\x00\x08\x03" + struct.pack(">I", 10), "header is 16 bytes"),
        (b"\x00\x00", "shorter than the 4-byte IDX magic"),
        (b"PK\x03\x04 not an idx file", "bad magic number"),
    ],
    ids=["bad-magic", "bad-type", "zero-dims", "short-header", "tiny", "zip"],
)
def test_malformed_headers(tmp_path, content, expect):
    path = write(tmp_path / "broken-idx1-ubyte", content)
    with pytest.raises(DataError) as exc:
        load_idx(path)
    assert_names(exc, "broken-idx1-ubyte", expect)


def test_empty_and_missing_files(tmp_path):
    empty = write(tmp_path / "empty-idx1-ubyte", b"")
    with pytest.raises(DataError) as exc:
        load_idx(empty)
    assert_names(exc, "empty-idx1-ubyte", "empty")
    empty_gz = write(tmp_path / "empty.gz", b"", gz=True)
    with pytest.raises(DataError) as exc:
        load_idx(empty_gz)
    assert_names(exc, "empty.gz", "0 bytes")
    with pytest.raises(DataError) as exc:
        load_idx(tmp_path / "absent")
    assert_names(exc, "absent", "no such file")
    assert issubclass(DataError, ValueError)


# ------------------------------------------------------------------------------------------------------ MNIST npz
def test_load_mnist_npz(tmp_path):
    rng = np.random.default_rng(3)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 6, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (4, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 4, dtype=np.uint8),
    }
    path = tmp_path / "mnist.npz"
    np.savez_compressed(path, **arrays)
    for kind in ("train", "test"):
        x, y = load_mnist_npz(path, kind)
        assert x.shape == (len(arrays[f"y_{kind}"]), 28, 28, 1) and x.dtype == np.float32
        np.testing.assert_allclose(x[..., 0], arrays[f"x_{kind}"] / 255.0, rtol=1e-6)
        assert y.dtype == np.int64 and np.array_equal(y, arrays[f"y_{kind}"])
    np.testing.assert_array_equal(load_mnist(path, "test")[1], arrays["y_test"])


def test_load_mnist_npz_errors(tmp_path):
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_test=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(DataError) as exc:
        load_mnist_npz(partial, "test")
    assert_names(exc, "partial.npz", "y_test")
    objects = tmp_path / "objects.npz"
    np.savez(objects, x_test=np.array([object(), 1], dtype=object), y_test=np.zeros(2, np.uint8))
    with pytest.raises(DataError) as exc:
        load_mnist_npz(objects, "test")
    assert_names(exc, "objects.npz")
    garbage = write(tmp_path / "garbage.npz", b"this is not a zip archive")
    with pytest.raises(DataError) as exc:
        load_mnist_npz(garbage, "test")
    assert_names(exc, "garbage.npz")


# ------------------------------------------------------------------------------------------------------------ CIFAR
@pytest.mark.parametrize("kind", ["train", "test"])
def test_cifar10_binary(tmp_path, kind):
    expected = make_cifar(tmp_path, "bin")
    x, y = load_cifar10(tmp_path, kind=kind)
    pixels, labels = expected[kind]
    assert x.shape == (len(labels), 32, 32, 3) and x.dtype == np.float32 and x.flags.c_contiguous
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x, expected_cifar_x(pixels), rtol=1e-6)
    # channel layout: record byte 1 + c*1024 + h*32 + w is pixel (h, w) of channel c
    assert x[0, 2, 5, 1] == pytest.approx(pixels[0, 1 * 1024 + 2 * 32 + 5] / 255.0)
    assert x.min() >= 0.0 and x.max() <= 1.0


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_cifar10_python(tmp_path, protocol):
    expected = make_cifar(tmp_path / "cifar-10-batches-py", "py", protocol=protocol)
    for kind in ("train", "test"):
        x, y = load_cifar10(tmp_path, kind=kind)  # parent directory: the subdirectory is found
        pixels, labels = expected[kind]
        np.testing.assert_array_equal(y, labels)
        np.testing.assert_allclose(x, expected_cifar_x(pixels), rtol=1e-6)


def test_cifar10_python_old_numpy_module_names(tmp_path):
    pixels, labels = cifar_arrays(3, seed=9)
    data = cifar_pickle(pixels, labels, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in data
    (tmp_path / "test_batch").write_bytes(data)
    x, y = load_cifar10(tmp_path, kind="test")
    np.testing.assert_array_equal(y, labels)
    np.testing.assert_allclose(x, expected_cifar_x(pixels), rtol=1e-6)


def test_cifar10_prefers_binary(tmp_path):
    make_cifar(tmp_path, "py")
    expected = make_cifar(tmp_path, "bin", n_test=5)
    np.testing.assert_array_equal(load_cifar10(tmp_path, "test")[1], expected["test"][1])


def test_cifar10_wrong_record_size(tmp_path):
    make_cifar(tmp_path, "bin")
    path = tmp_path / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="test")
    assert_names(exc, "test_batch.bin", "3073-byte records", "2 full records")


def test_cifar10_bad_label(tmp_path):
    pixels, labels = cifar_arrays(2, seed=1)
    labels[1] = 42
    write_cifar_bin(tmp_path / "test_batch.bin", pixels, labels)
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="test")
    assert_names(exc, "test_batch.bin", "label 42", "0..9")


def test_cifar10_missing_and_empty(tmp_path):
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="train")
    assert_names(exc, str(tmp_path), "data_batch_1.bin", "data_batch_5")
    make_cifar(tmp_path, "bin")
    os.remove(tmp_path / "data_batch_3.bin")
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="train")
    assert_names(exc, "missing data_batch_3.bin")
    (tmp_path / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="test")
    assert_names(exc, "test_batch.bin", "empty")


def test_cifar10_python_malformed(tmp_path):
    (tmp_path / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="test")
    assert_names(exc, "test_batch", "expected a dict")
    pixels, labels = cifar_arrays(2, seed=2)
    (tmp_path / "test_batch").write_bytes(cifar_pickle(pixels, labels)[:-30])
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="test")
    assert_names(exc, "test_batch", "not a valid pickle")
    (tmp_path / "test_batch").write_bytes(pickle.dumps({b"data": pixels[:, :100], b"labels": [0, 1]}))
    with pytest.raises(DataError) as exc:
        load_cifar10(tmp_path, kind="test")
    assert_names(exc, "test_batch", "(N, 3072)")


class _Reduce:
    """An object that pickles as ``func(*args)``; unpickling it would call ``func``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _touch_command(marker):
    return f"touch {shlex.quote(str(marker))}"


def _py2_style_eval(marker):
    """A hand-written protocol-0 pickle as Python 2 would spell it: ``__builtin__.eval(<code>)``."""
    code = f"open({str(marker)!r}, 'w').close()"
    return b"c__builtin__\neval\n(V" + code.encode() + b"\ntR."


@pytest.mark.parametrize(
    "make",
    [
        lambda m: pickle.dumps(_Reduce(os.system, _touch_command(m)), protocol=2),
        lambda m: pickle.dumps(_Reduce(eval, f"open({str(m)!r}, 'w').close()")),
        lambda m: pickle.dumps(_Reduce(__import__, "os")),
        lambda m: pickle.dumps(
            {b"data": np.zeros((1, 3072), np.uint8), b"labels": _Reduce(os.system, _touch_command(m))}
        ),
        _py2_style_eval,
    ],
    ids=["os.system", "builtins.eval", "builtins.__import__", "nested-in-batch", "py2-__builtin__.eval"],
)
def test_cifar10_malicious_pickle_refused(tmp_path, make):
    marker = tmp_path / "pwned"
    data_dir = tmp_path / "cifar"
    data_dir.mkdir()
    (data_dir / "test_batch").write_bytes(make(marker))
    with pytest.raises(UnsafePickleError) as exc:
        load_cifar10(data_dir, kind="test")
    assert_names(exc, "test_batch", "refusing to unpickle")
    assert not marker.exists(), "the pickle's payload was executed"
    assert isinstance(exc.value, DataError)


# -------------------------------------------------------------------------------------------------------------- CSV
def test_csv_with_header(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,label\n1,2,0\n3.5,-4,2\n\n5,6e1,1\n")
    x, y, classes = load_csv(path)
    assert x.dtype == np.float32 and x.shape == (3, 2)
    np.testing.assert_allclose(x, [[1, 2], [3.5, -4], [5, 60]])
    assert classes == [0, 1, 2] and y.tolist() == [0, 2, 1] and y.dtype == np.int64


def test_csv_without_header(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,10\n3,4,2\n5,6,10\n")
    x, y, classes = load_csv(path, header="infer")
    assert x.shape == (3, 2)
    assert classes == [2, 10] and y.tolist() == [1, 0, 1]  # numeric labels sort numerically
    x2, y2, _ = load_csv(path, header=False)
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    x3, _, _ = load_csv(path, header=True)
    assert x3.shape == (2, 2)


def test_csv_header_inferred_from_label_only(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("0,1,target\n1,2,0\n3,4,1\n")
    x, y, classes = load_csv(path)
    assert x.shape == (2, 2) and classes == [0, 1]


def test_csv_string_labels_and_named_column(tmp_path):
    path = tmp_path / "iris.tsv"
    path.write_text(
        "species\tsepal_len\tsepal_wid\n"
        "setosa\t5.1\t3.5\n"
        "virginica\t6.3\t3.3\n"
        "versicolor\t5.9\t3.0\n"
        "setosa\t4.9\t3.0\n"
    )
    x, y, classes = load_csv(path, label_column="species", delimiter="\t")
    assert classes == ["setosa", "versicolor", "virginica"]
    assert y.tolist() == [0, 2, 1, 0]
    np.testing.assert_allclose(x[:, 0], [5.1, 6.3, 5.9, 4.9], rtol=1e-6)
    x0, y0, classes0 = load_csv(path, label_column=0, delimiter="\t")
    np.testing.assert_array_equal(x0, x)
    assert classes0 == classes and y0.tolist() == y.tolist()
    with pytest.raises(DataError) as exc:
        load_csv(path, label_column="petal", delimiter="\t")
    assert_names(exc, "iris.tsv", "petal", "sepal_len")
    with pytest.raises(ValueError, match="header"):
        load_csv(path, label_column="species", header=False, delimiter="\t")


def test_csv_quoted_fields_and_bom(tmp_path):
    path = tmp_path / "q.csv"
    path.write_bytes('\ufeffx,y,"the, label"\n1,2,"cat, big"\n3,4,dog\n'.encode("utf-8"))
    x, y, classes = load_csv(path, label_column="the, label")
    assert classes == ["cat, big", "dog"] and y.tolist() == [0, 1]


def test_csv_ragged_row(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,label\n1,2,0\n3,4\n")
    with pytest.raises(DataError) as exc:
        load_csv(path)
    assert_names(exc, "ragged.csv", "line 3", "2 columns", "expected 3")


def test_csv_non_numeric_feature(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("a,b,label\n1,2,0\n3,oops,1\n")
    with pytest.raises(DataError) as exc:
        load_csv(path)
    assert_names(exc, "bad.csv", "row 2", "line 3", "column 2", "'b'", "'oops'")
    path.write_text("a,b,label\n1,,0\n")
    with pytest.raises(DataError) as exc:
        load_csv(path)
    assert_names(exc, "bad.csv", "row 1", "column 2", "empty")


def test_csv_empty_and_header_only(tmp_path):
    for name, text, expect in [
        ("empty.csv", "", "empty"),
        ("blank.csv", "\n\n", "no rows"),
        ("header.csv", "a,b,label\n", "only a header"),
        ("one-column.csv", "1\n2\n", "at least one feature column"),
    ]:
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(DataError) as exc:
            load_csv(path, header=True if name == "header.csv" else "infer")
        assert_names(exc, name, expect)
    with pytest.raises(DataError) as exc:
        load_csv(tmp_path / "missing.csv")
    assert_names(exc, "missing.csv", "no such file")


# ----------------------------------------------------------------------------------------------------------- digits
def test_load_digits():
    pytest.importorskip("sklearn", reason="scikit-learn is optional (dropcore[digits])")
    x, y = load_digits()
    assert x.shape == (1797, 8, 8, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == 1.0
    assert y.shape == (1797,) and y.dtype == np.int64 and set(y.tolist()) == set(range(10))


def test_load_digits_without_sklearn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install scikit-learn.*dropcore\[digits\]"):
        load_digits()


# ------------------------------------------------------------------------------------------------------------ split
def _labelled(n=103, classes=(0, 1, 2), weights=(0.6, 0.3, 0.1)):
    rng = np.random.default_rng(11)
    y = rng.choice(np.array(classes), size=n, p=np.array(weights))
    x = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    return x, y


@pytest.mark.parametrize("stratify", [False, True])
def test_train_test_split_partition(stratify):
    x, y = _labelled()
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=0.25, seed=3, stratify=stratify)
    assert len(x_te) == len(y_te) == round(0.25 * len(y)) and len(x_tr) + len(x_te) == len(x)
    ids = np.concatenate([x_tr[:, 0], x_te[:, 0]]) // 2
    assert sorted(ids.astype(int).tolist()) == list(range(len(y)))  # every sample exactly once
    np.testing.assert_array_equal(y_tr, y[(x_tr[:, 0] // 2).astype(int)])  # x and y stay paired
    np.testing.assert_array_equal(y_te, y[(x_te[:, 0] // 2).astype(int)])
    again = train_test_split(x, y, test_size=0.25, seed=3, stratify=stratify)
    for a, b in zip((x_tr, x_te, y_tr, y_te), again):
        np.testing.assert_array_equal(a, b)
    other = train_test_split(x, y, test_size=0.25, seed=4, stratify=stratify)
    assert not np.array_equal(other[1], x_te)


def test_train_test_split_stratified_proportions():
    x, y = _labelled(n=400, weights=(0.7, 0.2, 0.1))
    _, _, y_tr, y_te = train_test_split(x, y, test_size=0.2, seed=0, stratify=True)
    full = np.bincount(y, minlength=3)
    test = np.bincount(y_te, minlength=3)
    assert np.all(np.abs(test - full * 0.2) <= 1)
    assert len(y_te) == 80
    _, x_te, _, _ = train_test_split(x, y, test_size=17, seed=0, stratify=True)
    assert len(x_te) == 17


def test_train_test_split_bad_arguments():
    x, y = _labelled(n=10)
    with pytest.raises(ValueError):
        train_test_split(x, y, test_size=1.5)
    with pytest.raises(ValueError):
        train_test_split(x, y, test_size=10)
    with pytest.raises(ValueError):
        train_test_split(x[:5], y)


def test_stratified_kfold_properties():
    _, y = _labelled(n=103)
    k = 5
    folds = list(stratified_kfold(y, k=k, seed=7))
    assert len(folds) == k
    seen = np.zeros(len(y), dtype=int)
    full = np.bincount(y, minlength=3)
    sizes = []
    for train_idx, test_idx in folds:
        assert train_idx.dtype == np.int64 and test_idx.dtype == np.int64
        assert np.intersect1d(train_idx, test_idx).size == 0
        assert np.union1d(train_idx, test_idx).tolist() == list(range(len(y)))
        seen[test_idx] += 1
        counts = np.bincount(y[test_idx], minlength=3)
        assert np.all(np.abs(counts - full / k) < 1)  # each class within one of its exact share
        sizes.append(len(test_idx))
    assert np.all(seen == 1)  # every sample in exactly one test fold
    assert max(sizes) - min(sizes) <= 1
    again = list(stratified_kfold(y, k=k, seed=7))
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    other = list(stratified_kfold(y, k=k, seed=8))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_stratified_kfold_string_labels_and_errors():
    y = np.array(["cat", "dog"] * 6 + ["eel"])
    with pytest.warns(UserWarning, match="fewer than k"):
        folds = list(stratified_kfold(y, k=3, seed=0))
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(len(y)))
    with pytest.raises(ValueError):
        list(stratified_kfold(y, k=1))
    with pytest.raises(ValueError):
        list(stratified_kfold(y, k=len(y) + 1))
