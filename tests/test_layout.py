"""The package's shape: stages as folders, imports only downwards, no cycles, small modules, no string readings."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "alexnet"

#: Layers from the bottom up.  A module may import from its own layer or a lower one, never a higher one.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("alexnet", "alexnet.paper", "alexnet.published", "alexnet.errors"),
    ("alexnet.config", "alexnet.runtime", "alexnet.locks"),
    ("alexnet.data",),
    ("alexnet.net",),
    ("alexnet.inference",),
    ("alexnet.weights",),
    ("alexnet.training",),
    ("alexnet.probes",),
    ("alexnet.experiments", "alexnet.demo"),
    ("alexnet.commands", "alexnet.cli", "alexnet.__main__"),
)
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    best = None
    for level, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (level, len(prefix))
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def imports(path: Path, *, top_level_only: bool) -> set[str]:
    """The alexnet modules ``path`` imports (``from alexnet.x import y`` counts y when it is a module)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("alexnet"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (SRC.parent / Path(*sub.split("."))).with_suffix(".py").is_file() or (
                    SRC.parent / Path(*sub.split("."))).is_dir()
                found.add(sub if is_module else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("alexnet")}
    return found


MODULES = {module_name(p): p for p in SRC.rglob("*.py")}


def test_every_module_lies_in_a_layer_and_imports_only_downwards() -> None:
    wrong = []
    for name, path in MODULES.items():
        for target in imports(path, top_level_only=False):
            if layer_of(target) > layer_of(name):
                wrong.append(f"{name} (layer {layer_of(name)}) imports {target} (layer {layer_of(target)})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {name: {t for t in imports(path, top_level_only=True) if t in MODULES and t != name}
             for name, path in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_the_stages_are_folders() -> None:
    for stage in ("data", "net", "training", "inference", "probes", "experiments", "commands"):
        assert (SRC / stage / "__init__.py").is_file(), stage


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_too_long(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_code_asks_the_reading_object_never_its_name() -> None:
    pattern = re.compile(r"""reading\s*[=!]=|[=!]=\s*["']code2012["']""")
    hits = [f"{p.relative_to(SRC)}:{i}: {line.strip()}" for p in SRC.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, "\n".join(hits)


def test_every_test_named_in_the_docs_exists() -> None:
    """docs/fidelity.md names, per row, the tests that pin a choice, docs/testing.md and docs/mutants/ the tests
    that kill mutants: each named test must exist."""
    root = SRC.parents[1]
    docs = [root / "docs" / name for name in ("fidelity.md", "testing.md")]
    docs += sorted((root / "docs" / "mutants").glob("*.md"))
    text = "\n".join(path.read_text() for path in docs)
    missing = []
    for line in text.splitlines():
        # `tests/x.py::a`, `::b` names a and b in x.py; the next `tests/...` cell starts another file
        for cell, more in re.findall(r"`(tests/[^`]+)`((?:[^`]|`::\w+`)*)", line):
            path, _, first = cell.partition("::")
            names = ([first] if first else []) + re.findall(r"`::(\w+)`", more)
            source = (root / path).read_text() if (root / path).is_file() else ""
            if not source:
                missing.append(path)
            missing += [f"{path}::{n}" for n in names if f"def {n}(" not in source]
    assert not missing, missing


def test_the_mutation_score_table_is_recomputed_from_its_committed_file() -> None:
    """docs/testing.md's Score table is tools/mutation_score.py's table of docs/results/mutation.json, and each
    module's counts add up to the mutants run."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("mutation_score", ROOT / "tools" / "mutation_score.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    doc = json.loads((ROOT / "docs" / "results" / "mutation.json").read_text())
    for module, c in doc["modules"].items():
        assert c["killed_by_mutmut"] + c["killed_later"] + c["equivalent"] + c["left"] + c["not_run"] == \
            c["mutants"], module
    assert tool.table(doc) in (ROOT / "docs" / "testing.md").read_text(), \
        "docs/testing.md's Score table is stale: python tools/mutation_score.py --table"
