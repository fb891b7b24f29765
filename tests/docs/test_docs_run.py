"""Every documented command runs, in order, on a fresh checkout (issue: docs that run).

Each document's ``bash`` and ``python`` blocks run in order in a temporary directory laid out as a clone with
``../shared`` beside it, one directory per document, each block with a deadline; servers are started and stopped.
What is not run as written (skipped, or run smaller) is marked in the Markdown and listed at the end of the session.
"""
import time

import pytest

from . import conftest
from .docblocks import SHARED, DocRun, documents, make_checkout, parse

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_the_documented_commands_run_in_order(doc, tmp_path):
    if not (SHARED / "data" / "mnist").is_dir():
        pytest.skip(f"the docs run on the MNIST files in {SHARED / 'data' / 'mnist'} (../shared beside the clone)")
    blocks = parse(doc)
    clone = make_checkout(tmp_path)
    scratch = tmp_path / "blocks"
    scratch.mkdir()
    run = DocRun(clone, scratch)
    started = time.monotonic()
    try:
        for block in blocks:
            if block.lang not in ("bash", "python"):
                continue
            if block.skip is not None:
                conftest.NOT_AS_WRITTEN.append(f"{block.where} skipped: {block.skip}")
                continue
            for old, new in block.replace:
                conftest.NOT_AS_WRITTEN.append(f"{block.where} ran with {old!r} => {new!r}")
            run.run(block)
    finally:
        run.close()
    conftest.TIMES.append((doc.name, time.monotonic() - started, sum(cpu for _, _, cpu in run.log), run.log))
