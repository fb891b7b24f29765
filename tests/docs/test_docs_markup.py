"""The docs' fenced blocks parse for the docs test: directives known and well formed, and no command hides in a
plain block where the test would not see it."""
import re

import pytest

from .docblocks import documents, parse

# a shell prompt, or a command line (not a command's error message, "dropcore train: error: ...")
COMMAND = re.compile(r"^(\$ |(dropcore|python3?|pip|mpiexec|curl) (?![\w-]+: ))")


@pytest.mark.parametrize("doc", documents(), ids=lambda p: p.name)
def test_every_block_parses_and_every_command_block_is_marked_as_one(doc):
    if not doc.exists():
        pytest.fail(f"{doc} is missing")
    for block in parse(doc):
        if block.lang:  # bash and python run; text, json, ... are shown only
            continue
        first = next((ln for ln in block.code.splitlines() if ln.strip()), "")
        assert not COMMAND.match(first), (
            f"{block.where}: a {block.lang or 'plain'} block that starts with a command ({first!r}): make it a "
            f"```bash block (its output in a plain block after it), so the docs test runs it")


def test_a_directive_without_its_reason_or_with_a_missing_text_is_refused(tmp_path, monkeypatch):
    from . import docblocks

    monkeypatch.setattr(docblocks, "REPO", tmp_path)
    page = tmp_path / "page.md"
    page.write_text("<!-- docs-test: skip -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="page.md:1: `skip` needs its reason"):
        parse(page)
    page.write_text("<!-- docs-test: replace --epochs 9 => --epochs 1 -->\n```bash\nls --epochs 10\n```\n")
    with pytest.raises(ValueError, match="'--epochs 9' is not in the block"):
        parse(page)
    page.write_text("<!-- docs-test: skipp (typo) -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="unknown docs-test directive 'skipp'"):
        parse(page)
    page.write_text("<!-- docs-test: skip (output) -->\n```\n$ ls\n```\n")
    with pytest.raises(ValueError, match="above a plain block, which never runs"):
        parse(page)
    page.write_text("<!-- docs-test: replace 10 => 1 -->\n<!-- docs-test: env A=1 -->\n```bash\nx 10\n```\n")
    [block] = parse(page)
    assert block.script() == "x 1\n" and block.env == {"A": "1"} and block.runs
