"""Docs that cannot rot: every runnable example in the README and docs/ runs against a
real node, and the configuration reference names every config key.

Runnable examples are fenced blocks marked:

- `pycon`: a Python session, run with doctest (each output must match);
- `python run`: Python run as it is (it must not raise; it may assert);
- `sh run`: `$ command` lines, each run with the shell from the project root; lines
  after a command are its expected output, where `...` stands for any text.

The examples name the default addresses (`tcp://127.0.0.1:5555`, `127.0.0.1:8080`);
here they are pointed at a node of the test's own on free ports, and `bin/actorq` and
`bin/chaos` at this interpreter's `python -m actorq` and `-m benchmarks.chaos` (what
they run once .venv exists).
A document's blocks share one namespace, in order, as a reader would type them.
"""

from __future__ import annotations

import doctest
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest

from actorq.node import config
from actorq.testing import ROOT, NodeProcess

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```\s*$", re.M | re.S)
COMMAND_TIMEOUT_S = 60

DEMO_NODE = """
[broker]
bind = "tcp://127.0.0.1:*"
worker_bind = "tcp://127.0.0.1:*"
[http]
bind = "127.0.0.1:0"
[[pools]]
name = "default"
workers = 2
tasks = ["actorq.demo"]
"""


@dataclass
class Block:
    kind: str  # "pycon", "python", "sh"
    text: str
    line: int  # where its text starts in the document


def runnable_blocks(path: Path) -> list[Block]:
    text = path.read_text()
    out = []
    for m in FENCE.finditer(text):
        words = m.group(1).split()
        line = text.count("\n", 0, m.start(2)) + 1
        if words[:1] == ["pycon"]:
            out.append(Block("pycon", m.group(2), line))
        elif len(words) > 1 and words[1] == "run" and words[0] in ("python", "sh"):
            out.append(Block(words[0], m.group(2), line))
    return out


@pytest.fixture(scope="module")
def demo_node(tmp_path_factory):
    node = NodeProcess(DEMO_NODE, tmp_path_factory.mktemp("docs"), "demo")
    yield node
    leaked = node.cleanup()
    assert not leaked, f"processes outlived a graceful stop: {leaked}"


def localize(text: str, node: NodeProcess) -> str:
    return (text.replace("tcp://127.0.0.1:5555", node.broker)
                .replace("tcp://127.0.0.1:5556", node.worker_bind)
                .replace("127.0.0.1:8080", node.info["http"]))


def run_pycon(block: Block, where: str, namespace: dict) -> None:
    test = doctest.DocTestParser().get_doctest(block.text, namespace, where, where,
                                               block.line - 1)
    out = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test, out=out.write, clear_globs=False)
    namespace.update(test.globs)  # a DocTest runs in a copy; later blocks see its names
    assert not runner.failures, out.getvalue()


def run_shell(block: Block, where: str, env: dict[str, str]) -> None:
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    assert steps, f"{where}: a `sh run` block without a `$ command` line"
    for command, expected in steps:
        for script, module in (("bin/actorq ", "actorq"), ("bin/chaos ", "benchmarks.chaos")):
            if command.startswith(script):
                command = f"{shlex.quote(sys.executable)} -m {module} {command[len(script):]}"
        done = subprocess.run(command, shell=True, cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT_S)
        assert done.returncode == 0, f"{where}: `{command}` exited {done.returncode}:\n" \
                                     f"{done.stdout}{done.stderr}"
        want = "\n".join(expected).strip()
        if want:
            pattern = ".*".join(re.escape(part) for part in want.split("..."))
            assert re.fullmatch(pattern, done.stdout.strip(), re.S), \
                f"{where}: `{command}` printed:\n{done.stdout}\nexpected:\n{want}"


@pytest.mark.parametrize("doc", [d for d in DOCS if runnable_blocks(d)],
                         ids=lambda d: str(d.relative_to(ROOT)))
def test_runnable_examples_work(doc: Path, demo_node: NodeProcess, tmp_path, monkeypatch):
    # Given a real node on free ports, and temporary files kept inside this test
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = dict(os.environ, ACTORQ_BROKER=demo_node.broker, TMPDIR=str(tmp_path),
               PYTHONPATH=str(ROOT))
    namespace: dict = {"__name__": "__docs__"}
    try:
        # When every runnable block of the document runs in order
        for block in runnable_blocks(doc):
            where = f"{doc.relative_to(ROOT)}:{block.line}"
            text = localize(block.text, demo_node)
            if block.kind == "pycon":
                run_pycon(Block("pycon", text, block.line), where, namespace)
            elif block.kind == "python":
                exec(compile(text, where, "exec"), namespace)  # noqa: S102 (our own docs)
            else:
                run_shell(Block("sh", text, block.line), where, env)
    finally:
        for value in namespace.values():
            close = getattr(value, "close", None)
            if type(value).__name__ == "Client" and callable(close):
                close(close_timeout=1.0)
    # Then each did what the document says (checked block by block above)


def test_the_configuration_reference_names_every_key():
    text = (ROOT / "docs" / "configuration.md").read_text()
    sections = {"[node]": config.NodeConfig, "[broker]": config.BrokerConfig,
                "[storage]": config.StorageConfig, "[http]": config.HttpConfig,
                "[[pools]]": config.PoolConfig, "[[cron]]": config.CronConfig,
                "[security]": config.SecurityConfig}
    missing = []
    for header, struct in sections.items():
        start = text.index(f"## `{header}`")
        end = text.find("\n## ", start + 1)
        section = text[start:end if end > 0 else None]
        for field in msgspec.structs.fields(struct):
            if f"`{field.name}`" not in section:
                missing.append(f"{header} {field.name}")
    assert not missing, f"docs/configuration.md does not document: {missing}"
