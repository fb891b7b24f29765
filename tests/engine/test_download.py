"""Tests for the data set caches and download=True (dropcore.data.cache, dropcore.data.download).

Nothing here leaves the machine: every file is made by the test and served by a ThreadingHTTPServer on 127.0.0.1
(port 0, stopped by the fixture's finalizer); SOURCES is replaced for every test by entries pointing at a closed
local port, and a test that downloads points the entries it needs at that server, with the digests of the files
it serves. The caches (DROPCORE_DATA, HOME, KERAS_HOME) are directories in tmp_path.
"""
import functools
import gzip
import hashlib
import http.server
import importlib.util
import io
import os
import pickle
import re
import struct
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from dropcore.data import DataError, load_cifar10, load_fashion_mnist, load_mnist
from dropcore.data import cache, download
from dropcore.data.download import Source

OFFICIAL_SOURCES = dict(download.SOURCES)
TIMEOUT = 5.0  # for the fetches that must succeed; the timeout test uses a far shorter one
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


# ----------------------------------------------------------------------------------------------------- the server
class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the directory it is given, records each path asked for, and has two misbehaving paths."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        if self.path == "/slow":  # never answers: the client must time out
            self.server.release.wait(TIMEOUT)
            return
        if self.path == "/short":  # announces 1000 bytes, sends 10, hangs up
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
            return
        super().do_GET()


class Server:
    def __init__(self, root):
        self.root = root
        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
        )
        self.httpd.requests = self.requests = []
        self.httpd.release = threading.Event()
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def publish(self, name, data):
        """Serve ``data`` as ``name``; return its ``Source`` (URL and SHA-256)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return Source(self.url(name), sha256(data))

    def stop(self):
        self.httpd.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(TIMEOUT)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Every SOURCES entry points at a closed local port, and no proxy is used: no test can reach further."""
    dead = {name: Source(f"http://127.0.0.1:9/unpatched/{name}", "0" * 64) for name in OFFICIAL_SOURCES}
    monkeypatch.setattr(download, "SOURCES", dead)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(var, "*")


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    srv = Server(root)
    yield srv
    srv.stop()


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty caches in tmp_path: ``ours`` (DROPCORE_DATA) and ``keras`` (HOME/.keras/datasets, KERAS_HOME unset)."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "dropcore-data"))
    return {"ours": tmp_path / "dropcore-data", "keras": home / ".keras" / "datasets"}


# ------------------------------------------------------------------------------------------------------- the files
def sha256(data):
    return hashlib.sha256(data).hexdigest()


def mnist_arrays(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


def mnist_npz(seed=0):
    """A tiny mnist.npz in Keras's layout (x_train, y_train, x_test, y_test, uint8); returns (bytes, arrays)."""
    (x_train, y_train), (x_test, y_test) = mnist_arrays(4, seed), mnist_arrays(3, seed + 1)
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), arrays


def idx_gz(array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return gzip.compress(header + array.tobytes())


def fashion_files(seed=0):
    """The four Fashion-MNIST .gz files (tiny); returns ({name: bytes}, {kind: (images, labels)})."""
    files, arrays = {}, {}
    for kind, prefix, n in (("train", "train", 5), ("test", "t10k", 2)):
        images, labels = arrays[kind] = mnist_arrays(n, seed + n)
        files[f"{prefix}-images-idx3-ubyte.gz"] = idx_gz(images)
        files[f"{prefix}-labels-idx1-ubyte.gz"] = idx_gz(labels)
    return files, arrays


def cifar_batches(seed=0):
    """CIFAR-10 python batches (pickled dicts, as the official ones); returns ({stem: bytes}, {kind: (x, y)})."""
    rng = np.random.default_rng(seed)
    files, parts = {}, {"train": [], "test": []}
    for stem in CIFAR_TRAIN + ["test_batch"]:
        pixels, labels = rng.integers(0, 256, (2, 3072), dtype=np.uint8), rng.integers(0, 10, 2)
        files[stem] = pickle.dumps({b"batch_label": stem.encode(), b"labels": labels.tolist(), b"data": pixels})
        parts["test" if stem == "test_batch" else "train"].append((pixels, labels))
    expected = {}
    for kind, pairs in parts.items():
        pixels = np.concatenate([p for p, _ in pairs])
        expected[kind] = (pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1) / 255.0,
                          np.concatenate([lab for _, lab in pairs]))
    return files, expected


def tarball(members):
    """A .tar.gz of ``{name: bytes}``; a value of ``("symlink", target)`` makes a symbolic link."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def cifar_tarball(seed=0, extra=None):
    files, expected = cifar_batches(seed)
    members = {f"cifar-10-batches-py/{stem}": data for stem, data in files.items()}
    members["cifar-10-batches-py/batches.meta"] = pickle.dumps({b"label_names": [b"airplane"]})
    members.update(extra or {})
    return tarball(members), expected


def files_under(directory):
    return sorted(str(p.relative_to(directory)) for p in Path(directory).rglob("*") if not p.is_dir())


def assert_names(exc_info, *fragments):
    msg = str(exc_info.value)
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in message {msg!r}"


def check_mnist(result, arrays, kind):
    x, y = result
    assert x.dtype == np.float32 and x.shape == arrays[f"x_{kind}"].shape + (1,)
    np.testing.assert_allclose(x[..., 0], arrays[f"x_{kind}"] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, arrays[f"y_{kind}"])
    assert y.dtype == np.int64


# ---------------------------------------------------------------------------------------------------- downloading
def test_mnist_download_verifies_writes_and_reuses(server, caches, monkeypatch):
    data, arrays = mnist_npz()
    monkeypatch.setitem(download.SOURCES, "mnist.npz", server.publish("mnist.npz", data))
    check_mnist(load_mnist(download=True), arrays, "test")
    assert server.requests == ["/mnist.npz"]
    assert files_under(caches["ours"]) == ["mnist.npz"]  # no temporary file left beside it
    assert (caches["ours"] / "mnist.npz").read_bytes() == data
    check_mnist(load_mnist(kind="train"), arrays, "train")  # from the cache: no request, download not needed
    check_mnist(load_mnist(download=True), arrays, "test")
    assert server.requests == ["/mnist.npz"]


def test_fashion_mnist_download_fetches_what_kind_needs(server, caches, monkeypatch):
    files, arrays = fashion_files()
    for name, data in files.items():
        monkeypatch.setitem(download.SOURCES, f"fashion-mnist/{name}", server.publish(f"fashion/{name}", data))
    x, y = load_fashion_mnist(download=True)
    np.testing.assert_allclose(x[..., 0], arrays["test"][0] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(y, arrays["test"][1])
    assert sorted(server.requests) == ["/fashion/t10k-images-idx3-ubyte.gz", "/fashion/t10k-labels-idx1-ubyte.gz"]
    os.remove(caches["ours"] / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")  # a partial cache: only what lacks
    x, y = load_fashion_mnist(kind="test", download=True)
    assert server.requests[2:] == ["/fashion/t10k-labels-idx1-ubyte.gz"]
    x, y = load_fashion_mnist(kind="train", download=True)
    np.testing.assert_array_equal(y, arrays["train"][1])
    assert len(server.requests) == 5
    assert files_under(caches["ours"]) == sorted(f"fashion-mnist/{name}" for name in files)
    load_fashion_mnist(kind="train")
    load_fashion_mnist(kind="test", download=True)
    assert len(server.requests) == 5


def test_cifar10_download_extracts_into_the_cache(server, caches, monkeypatch):
    data, expected = cifar_tarball()
    monkeypatch.setitem(download.SOURCES, "cifar-10-python.tar.gz", server.publish("cifar.tar.gz", data))
    x, y = load_cifar10(download=True)
    assert x.shape == (10, 32, 32, 3) and x.dtype == np.float32
    np.testing.assert_allclose(x, expected["train"][0], rtol=1e-6)
    np.testing.assert_array_equal(y, expected["train"][1])
    assert server.requests == ["/cifar.tar.gz"]
    # only the extracted batches stay: no tarball, no temporary directory
    assert files_under(caches["ours"]) == sorted(
        f"cifar-10-batches-py/{stem}" for stem in CIFAR_TRAIN + ["test_batch", "batches.meta"]
    )
    assert os.listdir(caches["ours"]) == ["cifar-10-batches-py"]
    x, y = load_cifar10(kind="test", download=True)
    np.testing.assert_array_equal(y, expected["test"][1])
    assert server.requests == ["/cifar.tar.gz"]


def test_wrong_digest_names_both_and_leaves_nothing(server, caches, monkeypatch):
    data, _ = mnist_npz()
    url, served = server.publish("mnist.npz", data)
    wrong = sha256(b"the official file")
    monkeypatch.setitem(download.SOURCES, "mnist.npz", Source(url, wrong))
    with pytest.raises(DataError) as exc:
        load_mnist(download=True)
    assert_names(exc, url, "SHA-256 mismatch", f"expected {wrong}", f"received {served}")
    assert files_under(caches["ours"]) == []
    tar, _ = cifar_tarball()
    url, served = server.publish("cifar.tar.gz", tar)
    monkeypatch.setitem(download.SOURCES, "cifar-10-python.tar.gz", Source(url, wrong.upper()))
    with pytest.raises(DataError) as exc:
        load_cifar10(download=True)
    assert_names(exc, url, f"expected {wrong}", f"received {served}")
    assert files_under(caches["ours"]) == [] and os.listdir(caches["ours"]) == []


def test_http_error_names_the_url(server, caches, monkeypatch):
    missing = server.url("nowhere/mnist.npz")
    monkeypatch.setitem(download.SOURCES, "mnist.npz", Source(missing, "a" * 64))
    with pytest.raises(DataError) as exc:
        load_mnist(download=True)
    assert_names(exc, missing, "HTTP error 404")
    assert files_under(caches["ours"]) == []


def test_timeout_and_short_read(server, tmp_path):
    dest = tmp_path / "out" / "file.bin"
    with pytest.raises(DataError) as exc:
        download.fetch(server.url("slow"), dest, "a" * 64, progress=False, timeout=0.2)
    assert_names(exc, server.url("slow"), "timed out", "0.2 s")
    with pytest.raises(DataError) as exc:
        download.fetch(server.url("short"), dest, "a" * 64, progress=False, timeout=TIMEOUT)
    assert_names(exc, server.url("short"), "closed after 10 of the 1000 bytes")
    assert os.listdir(dest.parent) == []  # neither the file nor its temporary


def test_unreachable_server_and_bad_arguments(tmp_path):
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError) as exc:
        download.fetch("http://127.0.0.1:9/x", dest, "a" * 64, progress=False, timeout=TIMEOUT)
    assert_names(exc, "http://127.0.0.1:9/x", "download failed")
    with pytest.raises(DataError) as exc:
        download.fetch("nonsense", dest, "a" * 64, progress=False)
    assert_names(exc, "nonsense", "not a URL")
    with pytest.raises(ValueError, match="64 hex digits"):
        download.fetch("http://127.0.0.1:9/x", dest, "abc")
    assert os.listdir(tmp_path) == []


def test_fetch_replaces_atomically_and_shows_progress(server, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    dest = tmp_path / "out" / "file.bin"
    dest.write_bytes(b"old")
    payload = bytes(range(256)) * 300
    url, digest = server.publish("file.bin", payload)
    with pytest.raises(DataError):
        download.fetch(url, dest, sha256(b"other"), progress=False, timeout=TIMEOUT)
    assert dest.read_bytes() == b"old"  # a failed download leaves the previous file as it was
    assert capsys.readouterr().err == ""
    assert download.fetch(url, dest, digest.upper(), progress=True, timeout=TIMEOUT) == str(dest)
    assert dest.read_bytes() == payload and os.listdir(dest.parent) == ["file.bin"]
    err = capsys.readouterr().err
    assert "file.bin" in err and "75.0k" in err  # tqdm's bar: the name and the size (76,800 bytes in KiB)


# ------------------------------------------------------------------------------------------------- finding caches
def test_keras_cache_is_used_without_downloading(caches):
    data, arrays = mnist_npz(seed=3)
    keras = caches["keras"]
    keras.mkdir(parents=True)
    (keras / "mnist.npz").write_bytes(data)
    fashion, fashion_arrays = fashion_files(seed=4)
    (keras / "fashion-mnist").mkdir()
    for name, blob in fashion.items():
        (keras / "fashion-mnist" / name).write_bytes(blob)
    batches, expected = cifar_batches(seed=5)
    target = keras / "cifar-10-batches-py-target" / "cifar-10-batches-py"  # where Keras 3 extracts it
    target.mkdir(parents=True)
    for stem, blob in batches.items():
        (target / stem).write_bytes(blob)
    # SOURCES point at a closed port: any download attempt would fail
    check_mnist(load_mnist(kind="train", download=True), arrays, "train")
    np.testing.assert_array_equal(load_fashion_mnist(kind="train")[1], fashion_arrays["train"][1])
    np.testing.assert_array_equal(load_cifar10(kind="test")[1], expected["test"][1])
    assert not caches["ours"].exists()


def test_keras_home_and_older_keras_layout(tmp_path, caches, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert cache.keras_cache_dir() == str(tmp_path / "kh" / "datasets")
    batches, expected = cifar_batches(seed=6)
    target = tmp_path / "kh" / "datasets" / "cifar-10-batches-py"  # Keras 2 / tf.keras extracted it here
    target.mkdir(parents=True)
    for stem, blob in batches.items():
        (target / stem).write_bytes(blob)
    np.testing.assert_array_equal(load_cifar10()[1], expected["train"][1])


def test_dropcore_cache_comes_first(caches):
    for key, seed in (("keras", 1), ("ours", 2)):
        caches[key].mkdir(parents=True)
        (caches[key] / "mnist.npz").write_bytes(mnist_npz(seed)[0])
    check_mnist(load_mnist(), mnist_npz(2)[1], "test")


def test_cache_directories(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv(cache.ENV_VAR, raising=False)
    assert cache.cache_dir() == str(tmp_path / ".dropcore" / "datasets")
    assert cache.keras_cache_dir() == str(tmp_path / ".keras" / "datasets")
    monkeypatch.setenv(cache.ENV_VAR, str(tmp_path / "elsewhere"))
    assert cache.roots() == (str(tmp_path / "elsewhere"), str(tmp_path / ".keras" / "datasets"))


@pytest.mark.parametrize(
    "load, what",
    [(load_mnist, "mnist.npz"), (load_fashion_mnist, "fashion-mnist"), (load_cifar10, "cifar-10-batches-py")],
    ids=["mnist", "fashion-mnist", "cifar10"],
)
def test_no_cache_and_no_download_says_where_it_looked(caches, load, what):
    with pytest.raises(DataError) as exc:
        load()
    assert_names(exc, "not found", str(caches["ours"] / what), str(caches["keras"]), "download=True",
                 cache.ENV_VAR, "path")
    assert not caches["ours"].exists()


def test_explicit_path_is_read_as_before(tmp_path):
    with pytest.raises(DataError, match="no such directory"):
        load_mnist(tmp_path / "missing", download=True)
    with pytest.raises(DataError, match="no such directory"):
        load_cifar10(tmp_path / "missing", download=True)
    with pytest.raises(ValueError, match="kind"):
        load_fashion_mnist(kind="validation", download=True)


# ------------------------------------------------------------------------------------------------------- tarballs
@pytest.mark.parametrize(
    "member, why",
    [("../evil", "'..'"), ("cifar-10-batches-py/../../evil", "'..'"), ("/tmp/evil-absolute", "absolute path"),
     ("cifar-10-batches-py/link", "link")],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink"],
)
def test_unsafe_tarball_is_refused(server, caches, tmp_path, monkeypatch, member, why):
    value = ("symlink", "/etc/passwd") if member.endswith("link") else b"pwned"
    data, _ = cifar_tarball(extra={member: value})
    url, digest = server.publish("cifar.tar.gz", data)
    monkeypatch.setitem(download.SOURCES, "cifar-10-python.tar.gz", Source(url, digest))
    with pytest.raises(DataError) as exc:
        load_cifar10(download=True)
    assert_names(exc, url, "refusing to extract", repr(member), why)
    assert files_under(caches["ours"]) == [] and os.listdir(caches["ours"]) == []
    assert not (tmp_path / "evil").exists() and not (caches["ours"].parent / "evil").exists()


def test_corrupt_tarball_and_missing_directory(server, caches, monkeypatch):
    url, digest = server.publish("cifar.tar.gz", b"not a tar archive at all")
    monkeypatch.setitem(download.SOURCES, "cifar-10-python.tar.gz", Source(url, digest))
    with pytest.raises(DataError) as exc:
        load_cifar10(download=True)
    assert_names(exc, url, "cannot extract the tar archive")
    url, digest = server.publish("other.tar.gz", tarball({"readme.txt": b"hello"}))
    monkeypatch.setitem(download.SOURCES, "cifar-10-python.tar.gz", Source(url, digest))
    with pytest.raises(DataError) as exc:
        load_cifar10(download=True)
    assert_names(exc, url, "no cifar-10-batches-py/ directory")
    assert os.listdir(caches["ours"]) == []


# --------------------------------------------------------------------------------------------- the official files
def test_sources_are_the_official_files_keras_uses():
    fashion = {f"fashion-mnist/{p}-{w}-ubyte.gz" for p in ("train", "t10k") for w in ("images-idx3", "labels-idx1")}
    assert set(OFFICIAL_SOURCES) == {"mnist.npz", "cifar-10-python.tar.gz"} | fashion
    for name, (url, digest) in OFFICIAL_SOURCES.items():
        assert url.startswith("https://") and url.endswith(name.split("/")[-1]), name
        assert re.fullmatch("[0-9a-f]{64}", digest), name
    spec = importlib.util.find_spec("keras")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("keras is not installed: its dataset sources cannot be compared")
    datasets = Path(list(spec.submodule_search_locations)[0]) / "src" / "datasets"
    keras_base = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
    mnist_src = (datasets / "mnist.py").read_text()
    fashion_src = (datasets / "fashion_mnist.py").read_text()
    cifar_src = (datasets / "cifar10.py").read_text()
    assert keras_base in mnist_src and OFFICIAL_SOURCES["mnist.npz"].url == keras_base + "mnist.npz"
    assert OFFICIAL_SOURCES["mnist.npz"].sha256 in mnist_src
    assert OFFICIAL_SOURCES["cifar-10-python.tar.gz"].url in cifar_src
    assert OFFICIAL_SOURCES["cifar-10-python.tar.gz"].sha256 in cifar_src
    assert keras_base in fashion_src
    for name in fashion:
        file_name = name.split("/")[1]
        assert f'"{file_name}"' in fashion_src and OFFICIAL_SOURCES[name].url == keras_base + file_name
