"""ml's subpackages import one another in one direction only: shared bases sit upstream of what
uses them, so the import graph between subpackages has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ML = Path(__file__).resolve().parents[2] / "ml"


def _unit(module: str) -> str | None:
    """The subpackage (or top-level module) of ml that a dotted module name belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "ml" and len(parts) > 1 else None


def _imported_modules(tree: ast.AST) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            # `from ml import synthetic` names a subpackage.
            if node.module == "ml":
                names += [f"ml.{alias.name}" for alias in node.names]
    return names


def import_graph() -> dict[str, set[str]]:
    """Subpackage -> the other subpackages its modules import (lazy imports included)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(ML.rglob("*.py")):
        relative = path.relative_to(ML.parent).with_suffix("")
        source = _unit(".".join(relative.parts))
        if source is None or source == "__init__":
            continue
        targets = graph.setdefault(source, set())
        for name in _imported_modules(ast.parse(path.read_text(encoding="utf-8"))):
            target = _unit(name)
            if target is not None and target != source:
                targets.add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path that starts and ends at the same node, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_the_subpackages_of_ml_import_one_another_without_a_cycle() -> None:
    graph = import_graph()
    assert {"relsim", "captioning", "train", "search", "vlm"} <= set(graph)
    assert find_cycle(graph) is None, find_cycle(graph)


def test_the_training_loop_knows_no_model() -> None:
    assert import_graph()["train"] <= {"callbacks"}


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
