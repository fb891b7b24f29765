"""Exceptions raised by dropcore, so callers can catch them precisely."""
import time


class NumericalError(FloatingPointError):
    """Training produced a non-finite loss or gradient; the weights are left as they were before that batch."""


class ModelFileError(ValueError):
    """A model file is truncated, corrupted, of an unknown version or otherwise not a dropcore model."""


class WorkspaceLimitError(MemoryError):
    """A batch would need more workspace memory than the configured limit."""


class NotCompiledError(ValueError, RuntimeError):
    """``fit``, ``evaluate`` or ``train_on_batch`` on a model not compiled yet. A ValueError, as Keras raises, and
    a RuntimeError, as dropcore raised before."""


class DeadlineExceeded(TimeoutError):
    """A prediction passed its ``deadline`` (a ``time.monotonic()`` value) and stopped between passes or batches:
    a server answers 503 instead of holding a worker. Nothing is left half-written; the call just has no result."""


def check_deadline(deadline, when):
    """Raise :class:`DeadlineExceeded` (saying ``when``) if ``deadline`` (``time.monotonic()``; None: none) passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded(f"predict: the deadline passed {when}")
