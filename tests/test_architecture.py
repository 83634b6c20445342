"""The package's shape, checked: an acyclic import graph (of files and of subpackages),
layer boundaries, tests that mirror the subpackages, and modules of a readable size.

The import graph is read from the source (every ``import`` statement, also inside
functions, except under ``if TYPE_CHECKING:``), so a lazy import counts: it still runs.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import codeact_kernel

PACKAGE = Path(codeact_kernel.__file__).resolve().parent
ROOT = PACKAGE.name
TESTS = Path(__file__).resolve().parent
MAX_LINES = 600
LOWER = ("sandbox", "kernel_side", "errors")
HIGHER = ("agent", "terminal", "notebook")
FRONT_ENDS = ("terminal", "notebook")
# Imported by nothing at import time: the kernelspec launcher starts with every kernel.
HEAVY = ("jupyter_client", "zmq", "litellm")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)  # the body runs only under a type checker
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(name: str) -> set[str]:
    """The package's modules that ``name`` imports at run time."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            # `from pkg import module` imports the module; `from module import name` the module.
            targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: imported_modules(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle as a path that ends where it starts, or [] when there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return []


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_reader_sees_lazy_imports_and_skips_type_checking() -> None:
    # The loop imports the trace writer at the top and sub-agents refer to the loop only
    # for types: the reader must see the first and not the second.
    assert "codeact_kernel.trace.notebook" in GRAPH["codeact_kernel.agent.loop"]
    assert "codeact_kernel.agent.loop" not in GRAPH["codeact_kernel.agent.managed"]
    # codeact_kernel.agent resolves Agent lazily, inside __getattr__: still an edge.
    assert "codeact_kernel.agent.loop" in GRAPH["codeact_kernel.agent"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_import_graph_has_no_cycles() -> None:
    cycle = find_cycle(GRAPH)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_subpackages_import_each_other_in_one_direction() -> None:
    # Files in no cycle can still make their folders import each other (the trace writer
    # once took the agent's step record while the agent wrote traces): a newcomer then
    # cannot read the package from its bottom layer up.
    layers: dict[str, set[str]] = {}
    for source, targets in GRAPH.items():
        layers.setdefault(layer(source), set()).update(
            layer(t) for t in targets if layer(t) != layer(source))
    cycle = find_cycle(layers)
    assert not cycle, "subpackages that import each other: " + " -> ".join(cycle)


def test_lower_layers_import_no_higher_ones() -> None:
    wrong = sorted(f"{source} imports {target}" for source, targets in GRAPH.items()
                   if layer(source) in LOWER for target in targets if layer(target) in HIGHER)
    assert not wrong, wrong


def test_front_ends_are_imported_only_by_themselves() -> None:
    # The package's %load_ext hook is the one way in from below.
    wrong = sorted(f"{source} imports {target}" for source, targets in GRAPH.items()
                   for target in targets if layer(target) in FRONT_ENDS
                   and layer(source) != layer(target) and source != ROOT)
    assert not wrong, wrong


def test_kernel_side_imports_nothing_of_the_package() -> None:
    # Its files run inside the kernel, where codeact_kernel cannot be imported.
    for name, path in MODULES.items():
        if layer(name) != "kernel_side":
            continue
        for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            absolute = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if not node.level else [])
            assert not [m for m in absolute if m.split(".")[0] == ROOT], (name, absolute)
            assert not (isinstance(node, ast.ImportFrom) and node.level), (
                f"{name} line {node.lineno}: a relative import outside TYPE_CHECKING")


# The review kernel's re-signing relay exists to speak ZMQ; the launcher imports it only
# when it runs one (--review), which the last case below checks.
SPEAKS_ZMQ = {f"{ROOT}.sandbox.relay"}


@pytest.mark.parametrize("module", sorted(
    [m for m in MODULES if layer(m) == "sandbox" and m not in SPEAKS_ZMQ]
    + [f"{ROOT}.launcher"]))
def test_the_sandbox_and_launcher_import_no_heavy_library(module: str) -> None:
    code = (f"import json, sys\nimport {module}\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == [], f"{module} imports them at import time"


def test_every_subpackage_has_its_tests_folder() -> None:
    subpackages = sorted(p.name for p in PACKAGE.iterdir()
                         if (p / "__init__.py").exists() and p.name != "__pycache__")
    assert "kernel_side" in subpackages and "agent" in subpackages
    missing = [name for name in subpackages
               if not any((TESTS / name).glob("test_*.py"))]
    assert not missing, f"no tests/<name>/test_*.py for: {missing}"


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines())
             for name, path in MODULES.items()}
    too_long = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not too_long, too_long


def test_only_the_relay_is_exempt_and_the_launcher_imports_it_lazily() -> None:
    assert SPEAKS_ZMQ <= set(MODULES)
    launcher = MODULES[f"{ROOT}.sandbox.launcher"].read_text(encoding="utf-8")
    top = [n for n in ast.parse(launcher).body if isinstance(n, ast.Import | ast.ImportFrom)]
    assert not [n for n in top if isinstance(n, ast.ImportFrom) and n.module == "relay"]
