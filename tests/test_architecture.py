"""The layers of docs/architecture.md, enforced: every import of ``namesrv_redis`` points down.

The table in docs/architecture.md gives each folder (and each loose module) of the package a
rank; these tests read it and the package's imports (module-level and function-level, not
those under ``if TYPE_CHECKING:``) and fail on an import that points up or sideways, on an
import circle between modules or between folders, and on a folder or loose module the table
does not name."""

from __future__ import annotations

import ast
import re
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "namesrv_redis"
DOC = ROOT / "docs" / "architecture.md"
ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`([^`]+)`\s*\|")
MAX_LOOSE_MODULES = 2


def layer_ranks() -> dict[str, int]:
    """Unit (``namesrv_redis`` for the root, ``namesrv_redis.<folder or module>``) -> rank."""
    ranks: dict[str, int] = {}
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            name = m.group(2).removesuffix("/").removesuffix(".py")
            unit = "namesrv_redis" if name == "__init__" else f"namesrv_redis.{name}"
            ranks[unit] = int(m.group(1))
    return ranks


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


class _Imports(ast.NodeVisitor):
    """Every ``namesrv_redis`` module one module imports, wherever the import statement is."""

    def __init__(self, module: str, is_package: bool, known: Iterable[str]) -> None:
        self.module, self.is_package, self.known = module, is_package, set(known)
        self.found: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _resolve(self, dotted: str) -> str | None:
        parts = dotted.split(".")
        while parts:
            candidate = ".".join(parts)
            if candidate in self.known:
                return candidate
            parts.pop()
        return None

    def _add(self, dotted: str) -> None:
        target = self._resolve(dotted)
        if target is not None and target != self.module:
            self.found.add(target)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == "namesrv_redis":
                self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.module.split(".")
            if not self.is_package:
                base.pop()
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, node.module] if node.module else base)
        else:
            source = node.module or ""
        if source.split(".")[0] != "namesrv_redis":
            return
        for alias in node.names:  # ``from pkg import module`` imports that module
            self._add(f"{source}.{alias.name}")


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph = {}
    for module, path in known.items():
        visitor = _Imports(module, path.name == "__init__.py", known)
        visitor.visit(ast.parse(path.read_text(), str(path)))
        graph[module] = visitor.found
    return graph


def unit_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return found


def unit_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    units: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        units[unit_of(module)] |= {unit_of(t) for t in targets} - {unit_of(module)}
    return dict(units)


def test_every_folder_and_loose_module_has_a_rank() -> None:
    ranks = layer_ranks()
    units = {unit_of(m) for m in modules()}
    assert units - ranks.keys() == set(), "add these to the table in docs/architecture.md"
    assert ranks.keys() - units == set(), "docs/architecture.md names what does not exist"


def test_at_most_two_loose_modules() -> None:
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert len(loose) <= MAX_LOOSE_MODULES, loose


def test_imports_point_down() -> None:
    ranks = layer_ranks()
    wrong = [
        f"{module} (rank {ranks[unit_of(module)]}) imports {target} (rank {ranks[unit_of(target)]})"
        for module, targets in import_graph().items()
        for target in targets
        if unit_of(target) != unit_of(module) and ranks[unit_of(target)] >= ranks[unit_of(module)]
    ]
    assert wrong == []


def test_no_circles_between_modules_or_folders() -> None:
    graph = import_graph()
    assert circles(graph) == []
    assert circles(unit_graph(graph)) == []


def test_store_imports_nothing_above_it() -> None:
    above = {"domain", "remoting", "http", "process", "admin", "sim", "testing", "bench", "cli"}
    store = {m: t for m, t in import_graph().items() if unit_of(m) == "namesrv_redis.store"}
    assert store, "no store modules found"
    assert [
        (m, t) for m, targets in store.items() for t in targets if t.split(".")[1] in above
    ] == []


@pytest.mark.parametrize("init", sorted(PACKAGE.glob("*/__init__.py")), ids=lambda p: p.parent.name)
def test_each_folder_opens_with_what_it_holds(init: Path) -> None:
    doc = ast.get_docstring(ast.parse(init.read_text()))
    assert doc, f"{init.relative_to(ROOT)} needs a docstring saying what the folder holds"
    assert len(doc.splitlines()[0]) > 20


def test_the_checker_sees_circles_and_upward_imports() -> None:
    """The graph code itself: a circle and an import that points up are found."""
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": set()}
    assert circles(graph) == [["a.x", "a.y", "a.z"]]
    assert circles({"p": {"q"}, "q": set()}) == []
    visitor = _Imports("namesrv_redis.store.keys", False, ["namesrv_redis.domain.rebuild"])
    visitor.visit(
        ast.parse(
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from namesrv_redis.domain import ignored\n"
            "def f():\n    from namesrv_redis.domain.rebuild import X\n"
        )
    )
    assert visitor.found == {"namesrv_redis.domain.rebuild"}
