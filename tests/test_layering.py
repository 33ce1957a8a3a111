"""The house rules for imports, read from the source (ast): who may import whom.

- No product module imports the development tools (`devtools`), at any level.
- Apps import one way: instances -> brokers -> teams -> catalog_portal -> telemetry (an app imports only apps after
  it).
- Module-level imports form no cycle (a service that enqueues a task imports the task inside the function).
- `brokers/osb/` imports no Django and no app: only the standard library, httpx and itself.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import ROOT

# Each app may import only the apps after it.
LAYERS = ["instances", "brokers", "teams", "catalog_portal", "telemetry"]
PRODUCT = set(LAYERS)
DEV = "devtools"


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (or name in it)
    line: int
    top_level: bool  # at module level (not inside a function, and not only for type checkers)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_files() -> Iterator[Path]:
    for package in sorted(PRODUCT):
        yield from sorted((ROOT / package).rglob("*.py"))


def _deferred(node: ast.AST) -> bool:
    """Imports under `node` do not run when the module is imported: in a function, or for type checkers only."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
        return True
    if isinstance(node, ast.If):
        test = node.test
        return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
            isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    return False


def imports_of(path: Path) -> list[Import]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, top_level: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.extend(Import(name, alias.name, child.lineno, top_level) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    found.append(Import(name, f"{base}.{alias.name}" if alias.name != "*" else base, child.lineno,
                                        top_level))
            else:
                visit(child, top_level and not _deferred(child))

    visit(ast.parse(path.read_text(), filename=str(path)), True)
    return found


def all_imports() -> list[Import]:
    return [imp for path in product_files() for imp in imports_of(path)]


def app_of(module: str) -> str:
    return module.split(".", 1)[0]


def known_module(target: str, modules: set[str]) -> str | None:
    """The product module `target` names (`a.b.name` may be the name `name` in module `a.b`)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def test_no_product_module_imports_the_development_tools() -> None:
    offending = [f"{imp.module}:{imp.line} imports {imp.target}" for imp in all_imports()
                 if app_of(imp.target) == DEV]
    assert offending == []


def test_apps_import_one_way() -> None:
    offending = []
    for imp in all_imports():
        source, target = app_of(imp.module), app_of(imp.target)
        if target in PRODUCT and target != source and LAYERS.index(target) < LAYERS.index(source):
            offending.append(f"{imp.module}:{imp.line} imports {imp.target} ({source} may not import {target})")
    assert offending == []


def test_module_level_imports_form_no_cycle() -> None:
    modules = {module_name(path) for path in product_files()}
    graph: dict[str, set[str]] = {module: set() for module in modules}
    for imp in all_imports():
        target = known_module(imp.target, modules)
        if imp.top_level and target is not None and target != imp.module:
            graph[imp.module].add(target)
            # Importing `a.b.c` runs `a/__init__` and `a/b/__init__` first.
            parent = target.rpartition(".")[0]
            while parent:
                if parent in modules and parent != imp.module and not imp.module.startswith(parent + "."):
                    graph[imp.module].add(parent)
                parent = parent.rpartition(".")[0]
    cycles = _cycles(graph)
    assert cycles == [], "\n".join(" -> ".join([*cycle, cycle[0]]) for cycle in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10000))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_the_osb_client_is_a_library_without_django() -> None:
    allowed = set(sys.stdlib_module_names) | {"httpx"}
    offending = []
    for path in sorted((ROOT / "brokers" / "osb").rglob("*.py")):
        for imp in imports_of(path):
            root = app_of(imp.target)
            if not (imp.target.startswith("brokers.osb") or root in allowed):
                offending.append(f"{imp.module}:{imp.line} imports {imp.target}")
    assert offending == []


def test_the_checks_can_see_a_violation(tmp_path: Path) -> None:
    """The analysis finds what it looks for: a relative import, a function-level one, a cycle."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]
    sample = ROOT / "brokers" / "osb" / "client.py"
    targets = {imp.target for imp in imports_of(sample)}
    assert "brokers.osb.errors.OSBError" in targets and "httpx" in targets
    inner = {imp.target for imp in imports_of(ROOT / "instances" / "services" / "instances.py") if not imp.top_level}
    assert "instances.tasks.operation_step" in inner  # enqueued from a function: the task calls the service
