"""No import loops in `prunekit` and `tecogan_plugin`: the modules of each package form one downward
order. Every import counts, module-level or inside a function (a function-local import that only
breaks a loop is still a loop), as does `importlib.import_module("a.literal.name")`; only imports
under `if TYPE_CHECKING:` (never executed) are left out. The implicit import of a parent package
is not an edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _module_names(package: Path) -> dict[str, Path]:
    names = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _innermost(name: str, modules: dict[str, Path]) -> str | None:
    """The package's own module that importing `name` runs last (`a.b.func` -> `a.b`)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _imported(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The package's modules `module` imports -> the line of the first such import."""
    found: dict[str, int] = {}
    here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]

    def add(name: str, line: int) -> None:
        target = _innermost(name, modules)
        if target is not None and target != module:
            found.setdefault(target, line)

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                add(f"{base}.{alias.name}", node.lineno)  # `from pkg import submodule` imports the submodule
        elif (isinstance(node, ast.Call) and ast.unparse(node.func) in ("importlib.import_module", "import_module")
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            add(node.args[0].value, node.lineno)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
    return found


def import_graph(package: Path) -> dict[str, dict[str, int]]:
    modules = _module_names(package)
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str]:
    """One import cycle as [a, b, ..., a], or [] when the graph is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, {})):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = walk(nxt)
                if cycle:
                    return cycle
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = walk(start)
            if cycle:
                return cycle
    return []


def _describe(graph: dict[str, dict[str, int]], cycle: list[str]) -> str:
    return " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(cycle, cycle[1:])) + f" -> {cycle[-1]}"


@pytest.mark.parametrize("package", ["prunekit", "tecogan_plugin"])
def test_package_has_no_import_cycle(package: str) -> None:
    graph = import_graph(ROOT / package)
    assert len(graph) > 10  # the package was found and read
    cycle = find_cycle(graph)
    assert not cycle, f"import cycle: {_describe(graph, cycle)}"


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root / "pkg"


def test_cycle_through_a_function_local_import_is_found(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "def f():\n    from pkg.high import g\n    return g()\n",
        "pkg/high.py": "from pkg import low\n\ndef g():\n    return 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/leaf.py": "from ..low import f\n",
    })
    graph = import_graph(package)
    assert graph["pkg.sub.leaf"] == {"pkg.low": 1}  # relative import resolved
    cycle = find_cycle(graph)
    assert cycle in (["pkg.high", "pkg.low", "pkg.high"], ["pkg.low", "pkg.high", "pkg.low"])
    assert "line 2" in _describe(graph, cycle)


def test_import_module_literal_counts_and_type_checking_does_not(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import importlib\n\ndef load():\n    return importlib.import_module('pkg.b')\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.c import C\n",
        "pkg/c.py": "from pkg.a import load\n",
    })
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.b": 4} and graph["pkg.b"] == {}
    assert find_cycle(graph) == []
    (package / "b.py").write_text("import pkg.c\n")
    assert find_cycle(import_graph(package)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]


def test_plan_module_and_function_are_one_object() -> None:
    """`import prunekit.plan as m` gives the module, which is also the `pk.plan(...)` function."""
    import inspect
    import sys

    import prunekit as pk
    import prunekit.plan as m

    assert m is sys.modules["prunekit.plan"] and m is pk.plan
    assert m.Plan is pk.Plan and callable(m)
    assert list(inspect.signature(pk.plan).parameters)[:3] == ["model", "graph", "strategy"]
