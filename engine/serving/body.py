"""Reading a request body from the WSGI server: every way a client can send a bad one becomes a :class:`BadRequest`.

What can go wrong, and where it is caught: a Content-Length that is no number or over ``max_body_bytes`` (checked
before reading); a body that ends before its Content-Length (the read comes back short); one that stops arriving (a
socket timeout of ``body_timeout_s``, set on gunicorn's socket while the body is read); a chunked body the server
cannot decode (gunicorn raises its ``ParseException`` subclasses, werkzeug's development server an ``OSError``).
Anything else raised while reading is a bug and stays a 500.
"""
from .payloads import BadRequest

try:  # gunicorn's errors for a malformed chunked body (InvalidChunkSize, ChunkMissingTerminator, ...)
    from gunicorn.http.errors import ParseException as _ServerParseError
except ImportError:  # another WSGI server: its read errors are OSErrors (werkzeug's dechunking raises those)
    _ServerParseError = ()


def read_body(environ, limits):
    """The request body of ``environ`` as bytes, within ``limits`` (``max_body_bytes``, ``body_timeout_s``)."""
    limit = limits.max_body_bytes
    length = environ.get("CONTENT_LENGTH")
    if length:
        try:
            length = int(length)
        except ValueError:
            raise BadRequest(f"Content-Length {length!r} is not a number") from None
        if length < 0:  # (gunicorn refuses these itself; another server may not)
            raise BadRequest(f"Content-Length {length} is negative; expected the body's size in bytes")
    sock = environ.get("gunicorn.socket")
    previous = None if sock is None else sock.gettimeout()
    if sock is not None:  # each recv waits at most this long: a client that stops sending cannot hold the thread
        sock.settimeout(limits.body_timeout_s)
    try:
        return _read(environ["wsgi.input"], length, limit)
    except TimeoutError:  # (socket.timeout): nothing arrived for body_timeout_s
        raise BadRequest(f"the request body stopped arriving: nothing for {limits.body_timeout_s:g} s "
                         f"(body_timeout_s)", 408) from None
    except _ServerParseError as exc:  # the server could not decode the chunked transfer coding
        raise BadRequest(f"the chunked request body is malformed: {exc}") from None
    except OSError as exc:  # the connection failed mid-body (gunicorn's NoMoreData on a chunked body cut short,
        # a reset), or werkzeug's dechunking refused a chunk
        raise BadRequest(f"the request body could not be read: {exc}") from None
    finally:
        if sock is not None:
            sock.settimeout(previous)


def _read(stream, length, limit):
    if length:
        if length > limit:
            _drain(stream, length, limit)
            raise BadRequest(f"the request body has {length} bytes; at most {limit} (max_body_bytes)", 413)
        body = stream.read(length)
        if len(body) < length:  # the client closed its side before sending what it declared
            raise BadRequest(f"the request body ended after {len(body)} bytes; its Content-Length declared "
                             f"{length}")
        return body
    body = stream.read(limit + 1)  # no length (chunked): read one byte past the limit to know
    if len(body) > limit:
        raise BadRequest(f"the request body has more than {limit} bytes (max_body_bytes)", 413)
    return body


def _drain(stream, length, limit):
    """Read and drop the body of a refused request when it is at most twice ``limit``: the connection then stays
    usable for the client's next request (gunicorn drains only 64 KiB itself, then closes the connection after
    answering). A larger body is left unread, and gunicorn closes the connection."""
    if length > 2 * limit:
        return
    while length > 0:
        chunk = stream.read(min(length, 1 << 16))
        if not chunk:
            return
        length -= len(chunk)
