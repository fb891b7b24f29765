"""Where the loaders look for a data set when given no path, and how ``download=True`` fills dropcore's cache.

Two caches are searched, in this order:

* dropcore's: ``$DROPCORE_DATA`` if that variable is set, else ``~/.dropcore/datasets``. Downloads go here, laid out
  as Keras lays out its own: ``mnist.npz``, ``fashion-mnist/*.gz``, ``cifar-10-batches-py/``.
* Keras's, where ``keras.utils.get_file`` stores what ``keras.datasets.*.load_data()`` downloaded:
  ``$KERAS_HOME/datasets`` if ``KERAS_HOME`` is set, else ``~/.keras/datasets`` (Keras 3's rules, including its
  ``/tmp/.keras`` fallback), so files fetched for the Keras tutorials are reused and never downloaded twice.

Files are fetched with :func:`dropcore.data.download.fetch` from :data:`dropcore.data.download.SOURCES`.
"""
import gzip
import os
import shutil
import tarfile
import tempfile
import zlib

from . import download
from .errors import DataError

ENV_VAR = "DROPCORE_DATA"


def cache_dir():
    """dropcore's data set cache: ``$DROPCORE_DATA`` if set (and not empty), else ``~/.dropcore/datasets``."""
    configured = os.environ.get(ENV_VAR)
    if configured:
        return os.path.abspath(os.path.expanduser(configured))
    return os.path.join(os.path.expanduser("~"), ".dropcore", "datasets")


def keras_cache_dir():
    """Where Keras 3's ``get_file`` keeps data sets: ``<keras home>/datasets``.

    As in keras/src/backend/config.py: the Keras home is ``$KERAS_HOME`` when that variable is set, else
    ``~/.keras`` (``/tmp/.keras`` when the home directory is not writable); and as in ``get_file``, a Keras home that
    is not writable is replaced by ``/tmp/.keras``.
    """
    tmp = "/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir()
    home = os.environ.get("KERAS_HOME")
    if home is None:
        user = os.path.expanduser("~")
        home = os.path.join(user if os.access(user, os.W_OK) else tmp, ".keras")
    home = os.path.expanduser(home)
    if os.path.isdir(home) and not os.access(home, os.W_OK):
        home = os.path.join(tmp, ".keras")
    return os.path.join(home, "datasets")


def roots():
    """The caches searched, in order: ``(cache_dir(), keras_cache_dir())``."""
    return cache_dir(), keras_cache_dir()


def not_found(what, looked):
    """The :class:`DataError` for a data set in neither cache: where it looked and how to get the files."""
    return DataError(
        f"{what} not found: looked in {', '.join(looked)}; pass download=True to fetch the official files into "
        f"{cache_dir()} (set {ENV_VAR} to choose another directory), or pass the path of a copy you have"
    )


def fetch_source(name, progress=True):
    """Download :data:`~dropcore.data.download.SOURCES` entry ``name`` into dropcore's cache; return its path."""
    url, sha256 = download.SOURCES[name]
    return download.fetch(url, os.path.join(cache_dir(), *name.split("/")), sha256, progress=progress)


def fetch_archive(name, member_dir, progress=True):
    """Download the tarball ``SOURCES[name]``, extract it safely, move its ``member_dir`` into dropcore's cache.

    The tarball is fetched and extracted in a temporary directory inside the cache, which is removed afterwards
    whatever happens; the extracted files are then renamed one by one into ``<cache>/<member_dir>``, each rename
    atomic. Returns that directory.
    """
    url, sha256 = download.SOURCES[name]
    root = cache_dir()
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".{name}.", suffix=download.TMP_SUFFIX, dir=root)
    try:
        archive = download.fetch(url, os.path.join(work, name), sha256, progress=progress)
        extracted = os.path.join(work, "extracted")
        extract_tar(archive, extracted, label=url)
        source = os.path.join(extracted, member_dir)
        if not os.path.isdir(source):
            raise DataError(f"{url}: the archive has no {member_dir}/ directory, expected the data set's files in it")
        target = os.path.join(root, member_dir)
        os.makedirs(target, exist_ok=True)
        for entry in os.listdir(source):
            if os.path.isfile(os.path.join(source, entry)):
                os.replace(os.path.join(source, entry), os.path.join(target, entry))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def extract_tar(archive, dest, label=None):
    """Extract the tar archive ``archive`` (any compression) into the directory ``dest``, refusing unsafe members.

    Every member is checked before anything is written: an absolute name, a ``..`` component, a link, a device or
    anything else that is not a plain file or directory raises :class:`DataError` naming it. Extraction then also
    uses tarfile's ``"data"`` filter where this Python has it (3.12, and 3.9.17 / 3.10.12 / 3.11.4 onwards).
    ``label`` (e.g. the URL) names the archive in messages; default its path.
    """
    label = label or os.fspath(archive)
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, label)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # pragma: no cover - Pythons without extraction filters; the members were checked above
                tar.extractall(dest, members=members)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:  # FilterError is a TarError
        raise DataError(f"{label}: cannot extract the tar archive ({type(exc).__name__}: {exc})") from None


def _check_member(member, label):
    name = member.name
    normal = name.replace("\\", "/")
    if normal.startswith("/") or (len(normal) > 1 and normal[1] == ":"):
        why = "it is an absolute path"
    elif ".." in normal.split("/"):
        why = "it contains '..'"
    elif not (member.isfile() or member.isdir()):
        why = "it is a link or a special file, not a plain file or directory"
    else:
        return
    raise DataError(f"{label}: refusing to extract member {name!r}: {why}, which could write outside the target "
                    "directory")
