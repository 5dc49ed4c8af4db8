"""The codebase keeps its shape: no undefined or unused names, modules of one job each
within the sizes STYLE.md sets, and imports that point one way down the architecture."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "actorq"

MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 80

# Each part of the package and its layer: a module may import from its own part and
# from parts of a lower layer, never from a higher one or from another part of its
# own layer (the actors know each other only through the wire).
LAYERS = {
    "errors": 0, "wire": 0,
    "tasks": 1,
    "storage": 2, "metrics": 2,
    "node": 3,
    "broker": 4, "scheduler": 4, "worker": 4, "client": 4,
    "http": 5, "demo": 5,
    "cli": 6,
    "testing": 7, "__init__": 7, "__main__": 7,
}


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path, path.relative_to(PACKAGE)


def _part(rel: Path) -> str:
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def test_ruff_finds_no_undefined_or_unused_names():
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent))
    assert ruff, "ruff is part of the test extra; bin/test installs it"
    out = subprocess.run([ruff, "check", "actorq", "benchmarks", "tests"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_modules_classes_and_functions_stay_within_their_sizes():
    too_big = []
    for path, rel in _modules():
        text = path.read_text()
        lines = text.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            too_big.append(f"{rel}: {lines} lines")
        for node in ast.walk(ast.parse(text)):
            size = getattr(node, "end_lineno", 0) - getattr(node, "lineno", 0) + 1
            if isinstance(node, ast.ClassDef) and size > MAX_CLASS_LINES:
                too_big.append(f"{rel}: class {node.name} {size} lines")
            if (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
                    and size > MAX_FUNCTION_LINES and not _only_dispatches(node)):
                too_big.append(f"{rel}: {node.name}() {size} lines")
    assert not too_big, "over the sizes in STYLE.md: " + "; ".join(too_big)


def _only_dispatches(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function that is one `match` over message types (after at most a few setup
    lines) may be longer: its length is the protocol's, not a second job."""
    return any(isinstance(s, ast.Match) for s in fn.body) and len(fn.body) <= 4


def test_imports_point_one_way_down_the_architecture():
    wrong = []
    for path, rel in _modules():
        here = _part(rel)
        assert here in LAYERS, f"{rel}: add its part {here!r} to LAYERS"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
                if node.module == "actorq":
                    names = [f"actorq.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] != "actorq" or len(parts) < 2:
                    continue
                there = parts[1]
                if there != here and LAYERS.get(there, 99) >= LAYERS[here]:
                    wrong.append(f"{rel} imports {name}")
    assert not wrong, "imports that point up or sideways: " + "; ".join(wrong)


def test_every_part_is_a_package_a_reader_can_find_by_name():
    # dispatch, leases, retries, cron, recovery and persistence, by folder and file
    for where in ["broker/state/dispatch.py", "broker/state/table.py", "tasks/retry.py",
                  "tasks/cron.py", "broker/state/recovery.py", "storage/sqlite.py",
                  "storage/journal.py", "wire/protocol.py", "worker/supervisor.py",
                  "client/sync.py", "client/aio.py", "node/config.py", "http/gateway.py"]:
        assert (PACKAGE / where).is_file(), where
