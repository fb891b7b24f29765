"""The fenced ``bash`` and ``python`` blocks of the project's Markdown, and how the docs test runs them.

A block runs as written unless HTML comments right above its opening fence say otherwise, one per comment:

- ``<!-- docs-test: skip (why) -->``: not run; the test lists it with the reason. For what cannot run in a
  temporary checkout: ``pip install``, a remote scheduler's address, a command that runs for an hour.
- ``<!-- docs-test: replace OLD => NEW -->``: run with OLD replaced by NEW (each must occur), e.g. a smaller
  ``--epochs`` for an experiment the docs show at full size. Listed too.
- ``<!-- docs-test: env NAME=VALUE ... -->``: run with these environment variables.
- ``<!-- docs-test: timeout SECONDS -->``: the block's deadline (default ``DEFAULT_TIMEOUT``).
- ``<!-- docs-test: file NAME -->``: a program the docs name (``train.py``): written to NAME, run by a later block.
- ``<!-- docs-test: status N -->``: the exit status the block must end with (default 0), for a documented error.

A ``bash`` block whose first command is ``dropcore serve`` starts a server: it runs in the background, the next
block waits for its port, and it is stopped (SIGTERM) when the document ends. Its port, wherever the document
names it (``--port P``, ``127.0.0.1:P``), becomes a free one.
"""
import dataclasses
import os
import re
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = (REPO / ".." / "shared").resolve()
DEFAULT_TIMEOUT = 600  # against a hang; a block takes seconds to a minute on 2 quiet cores
RUN_LANGS = ("bash", "python")
FENCE = re.compile(r"^(`{3,})\s*([\w+-]*)\s*$")
DIRECTIVE = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->\s*$")
SERVE = re.compile(r"^\s*dropcore serve\b")


def documents():
    """The Markdown whose blocks are run: the README, CONTRIBUTING.md and every page of docs/."""
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


@dataclasses.dataclass
class Block:
    """One fenced block: its language, code, first line (1-based, the fence) and what the comments above it say."""
    doc: str
    line: int
    lang: str
    code: str
    skip: str = None
    replace: list = dataclasses.field(default_factory=list)
    env: dict = dataclasses.field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    file: str = None
    status: int = 0

    @property
    def where(self):
        return f"{self.doc}:{self.line}"

    @property
    def runs(self):
        return self.lang in RUN_LANGS and self.skip is None

    @property
    def serves(self):
        first = next((ln for ln in self.code.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
        return self.lang == "bash" and bool(SERVE.match(first))

    def script(self):
        """The code the test runs: the block with its replacements made."""
        code = self.code
        for old, new in self.replace:
            code = code.replace(old, new)
        return code


def _directive(block, text, where):
    word, _, rest = text.partition(" ")
    rest = rest.strip()
    if word == "skip":
        match = re.fullmatch(r"\((.+)\)", rest)
        if not match:
            raise ValueError(f"{where}: `skip` needs its reason in parentheses, e.g. skip (pip install); got {text!r}")
        block.skip = match.group(1)
    elif word == "replace":
        old, sep, new = rest.partition(" => ")
        if not sep or not old:
            raise ValueError(f"{where}: `replace` takes OLD => NEW; got {text!r}")
        block.replace.append((old, new))
    elif word == "env":
        for item in shlex.split(rest):
            name, sep, value = item.partition("=")
            if not sep or not name:
                raise ValueError(f"{where}: `env` takes NAME=VALUE pairs; got {item!r}")
            block.env[name] = value
    elif word == "timeout":
        block.timeout = float(rest)
    elif word == "status":
        block.status = int(rest)
    elif word == "file":
        if not rest or "/" in rest:
            raise ValueError(f"{where}: `file` takes a file name in the document's directory; got {text!r}")
        block.file = rest
    else:
        raise ValueError(f"{where}: unknown docs-test directive {word!r} in {text!r}; expected skip, replace, env, "
                         f"timeout, file or status")


def parse(path):
    """Every fenced block of one Markdown file, in order, with the directives of the comments right above it."""
    name = path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, lang, start = match.group(1), match.group(2), i
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == fence), None)
        if end is None:
            raise ValueError(f"{name}:{i + 1}: fence {fence}{lang} is never closed")
        block = Block(name, start + 1, lang, "\n".join(lines[start + 1:end]) + "\n")
        j = start - 1
        comments = []
        while j >= 0 and DIRECTIVE.match(lines[j]):
            comments.insert(0, (j, DIRECTIVE.match(lines[j]).group(1)))
            j -= 1
        for j, text in comments:
            _directive(block, text, f"{name}:{j + 1}")
        if comments and block.lang not in RUN_LANGS:
            raise ValueError(f"{block.where}: docs-test directives above a {lang or 'plain'} block, which never runs")
        for old, _ in block.replace:
            if old not in block.code:
                raise ValueError(f"{block.where}: `replace {old} => ...`: {old!r} is not in the block")
        blocks.append(block)
        i = end + 1
    return blocks


def make_checkout(root):
    """A directory that looks like a fresh clone with ../shared beside it: root/checkout links to the repository's
    tracked top-level entries (examples/, bench/, ...) and root/shared to the real ../shared. Returns the clone."""
    clone = root / "checkout"  # not "dropcore": a script beside it would import it as a namespace package
    clone.mkdir(parents=True)
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for top in sorted({line.split("/", 1)[0] for line in tracked.splitlines() if line}):
        if (REPO / top).exists():
            (clone / top).symlink_to(REPO / top)
    (root / "shared").symlink_to(SHARED)
    return clone


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(block):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.update(MPLBACKEND="Agg", PYTHONUNBUFFERED="1", **block.env)
    return env


class DocRun:
    """Runs one document's blocks in order in ``clone``; servers started by a block live until ``close()``."""

    def __init__(self, clone, scratch):
        self.clone, self.scratch = clone, scratch
        self.servers = []  # (block, Popen, log path)
        self.ports = {}    # a port the document names -> the free port it runs on
        self.log = []      # (block, wall seconds, CPU seconds of its processes) of every block run

    def _script(self, block):
        code = block.script()
        for port, free in self.ports.items():
            code = re.sub(rf"(127\.0\.0\.1:|localhost:|--port[ =]){port}\b", rf"\g<1>{free}", code)
        return code

    def _command(self, block, code):
        path = self.scratch / f"block-{block.line}.{'sh' if block.lang == 'bash' else 'py'}"
        if block.lang == "bash":
            path.write_text("set -eo pipefail\n" + code)
            return ["bash", str(path)]
        path.write_text(code)
        return [sys.executable, str(path)]

    def run(self, block):
        if block.file:
            (self.clone / block.file).write_text(self._script(block))
            return
        if block.serves:
            port = int((re.search(r"--port[ =](\d+)", block.code) or [None, 8000])[1])
            self.ports.setdefault(port, free_port())
        code = self._script(block)
        cmd = self._command(block, code)
        started, cpu = time.monotonic(), _children_cpu()
        if block.serves:
            self._serve(block, cmd, self.ports[port])
        else:
            try:
                proc = subprocess.Popen(cmd, cwd=self.clone, env=environment(block), stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=True)
                out, _ = proc.communicate(timeout=block.timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)
                out, _ = proc.communicate()
                raise AssertionError(f"{block.where}: still running after its deadline of {block.timeout:.0f} s:\n"
                                     f"{code}\n--- output ---\n{_tail(out)}") from None
            if proc.returncode != block.status:
                raise AssertionError(f"{block.where}: exit status {proc.returncode} (expected {block.status}):\n"
                                     f"{code}\n--- output ---\n{_tail(out)}")
        self.log.append((block, time.monotonic() - started, _children_cpu() - cpu))

    def _serve(self, block, cmd, port):
        log = self.scratch / f"server-{block.line}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, cwd=self.clone, env=environment(block), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.servers.append((block, proc, log))
        deadline = time.monotonic() + block.timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"{block.where}: the server exited ({proc.returncode}) before listening on "
                                     f"{port}:\n{_tail(log.read_text())}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    return
            time.sleep(0.2)
        raise AssertionError(f"{block.where}: no server on port {port} after {block.timeout:.0f} s:\n"
                             f"{_tail(log.read_text())}")

    def close(self):
        """Stops the servers the document started; fails if one had died or does not stop on SIGTERM."""
        problems = []
        for block, proc, log in self.servers:
            if proc.poll() is not None:
                problems.append(f"{block.where}: the server had exited ({proc.returncode}) before the document "
                                f"ended:\n{_tail(log.read_text())}")
                continue
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                _kill(proc)
                problems.append(f"{block.where}: the server did not stop within 60 s of SIGTERM")
        self.servers = []
        if problems:
            raise AssertionError("\n".join(problems))


def _children_cpu():
    """CPU seconds (user + system) of the finished child processes so far: what a block cost, whatever the load
    (a loaded machine stretches the wall time, not this)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _tail(text, lines=60):
    return "\n".join((text or "").splitlines()[-lines:])


def main(argv):
    """``python tests/docs/docblocks.py README.md docs/cli.md ...``: run documents' blocks as the docs test does,
    saying each block's outcome as it goes (for writing docs; the test is ``tests/docs/test_docs_run.py``)."""
    import tempfile

    for name in argv or [p.relative_to(REPO).as_posix() for p in documents()]:
        with tempfile.TemporaryDirectory(prefix="docs-") as tmp:
            root = Path(tmp)
            (root / "blocks").mkdir()
            run = DocRun(make_checkout(root), root / "blocks")
            try:
                for block in parse(REPO / name):
                    if block.lang not in RUN_LANGS:
                        continue
                    if block.skip is not None:
                        print(f"{block.where}: skipped ({block.skip})", flush=True)
                        continue
                    run.run(block)
                    if run.log and run.log[-1][0] is block:
                        _, wall, cpu = run.log[-1]
                        print(f"{block.where}: ok, {wall:.1f} s ({cpu:.1f} s of CPU)", flush=True)
            except AssertionError as exc:
                print(exc, flush=True)
            finally:
                run.close()


if __name__ == "__main__":
    main(sys.argv[1:])
