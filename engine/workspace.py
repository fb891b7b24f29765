"""Workspace estimates, so an oversized batch fails with a clear error instead of an out-of-memory crash.

The limit is process-wide: :func:`set_workspace_limit` (bytes, or ``None`` for no limit), or the environment
variable ``DROPCORE_WORKSPACE_LIMIT`` read at import (bytes, with an optional K/M/G suffix). Default: 8 GiB.
"""
import os

import numpy as np

from .errors import WorkspaceLimitError

_SUFFIX = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def _parse(text):
    text = text.strip().upper().rstrip("B").rstrip("I")
    unit = text[-1] if text and text[-1] in _SUFFIX else ""
    number = text[:-1] if unit else text
    try:
        value = float(number) * _SUFFIX[unit]
    except ValueError:
        raise ValueError(f"Invalid value for `DROPCORE_WORKSPACE_LIMIT`: expected bytes like 2G or 512M. "
                         f"Received: DROPCORE_WORKSPACE_LIMIT={os.environ.get('DROPCORE_WORKSPACE_LIMIT')!r}") from None
    return int(value)


_limit = _parse(os.environ["DROPCORE_WORKSPACE_LIMIT"]) if os.environ.get("DROPCORE_WORKSPACE_LIMIT") else 8 * 2**30


def set_workspace_limit(nbytes):
    """Set the largest workspace one batch may need (``None``: unlimited). Returns the previous limit."""
    global _limit
    if nbytes is not None and (isinstance(nbytes, bool) or not isinstance(nbytes, (int, np.integer)) or nbytes < 1):
        raise ValueError(f"Invalid value for `nbytes`: expected a positive int or None. Received: nbytes={nbytes!r}")
    previous, _limit = _limit, None if nbytes is None else int(nbytes)
    return previous


def get_workspace_limit():
    return _limit


def per_sample_bytes(plan, shapes, training):
    """Bytes one sample needs: every activation kept for the backward (and its gradient) in training, the largest
    input+output pair in inference, plus the largest scratch a layer needs (``Layer.workspace_bytes``: a
    convolution's im2col panel)."""
    sizes = {tid: int(np.prod(shape)) * 4 for tid, shape in shapes.items()}
    scratch = 0
    steps = []
    for step in plan.steps:
        out = sizes.get(step.output, 0)
        inp = sum(sizes.get(t, 0) for t in step.inputs)
        steps.append(inp + out)
        if step.output in shapes:
            scratch = max(scratch, step.layer.workspace_bytes(shapes[step.output]))
    if training:
        return 2 * sum(sizes.values()) + scratch
    return max(steps, default=0) + scratch


def check(model, batch, training, program=None):
    """Raise WorkspaceLimitError when a batch of ``batch`` samples would exceed the limit. ``program``: the compiled
    inference program that will run the batch (its buffers, :attr:`dropcore.program.Program.sample_bytes`), else
    the estimate from the model's training plan (:func:`per_sample_bytes`)."""
    if _limit is None:
        return
    need = batch * (program.sample_bytes if program is not None else model._sample_bytes(training))
    if need > _limit:
        per = need // batch
        raise WorkspaceLimitError(
            f"Model '{model.name}': a batch of {batch} samples needs about {need / 2**20:.1f} MiB of workspace "
            f"({per / 2**10:.1f} KiB per sample), over the limit of {_limit / 2**20:.1f} MiB; use a batch_size of at "
            f"most {max(1, _limit // max(per, 1))} or raise the limit with dropcore.set_workspace_limit(nbytes)"
        )
