"""The import graph, read from the source with `ast` (imports inside functions included):
each top-level package imports only the packages below it, and no modules import in a
circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first: a package may import itself and anything before it, never anything after.
LAYERS = ("ml", "core", "curation", "captions", "training", "evaluation", "config")
DJANGO_APPS = ("core", "curation", "captions", "training", "evaluation", "config")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(packages: tuple[str, ...]) -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in packages
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every module name an import statement in the file names (module or package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            yield origin
            # `from training import services` names the module training.services.
            yield from (f"{origin}.{alias.name}" for alias in node.names)


def _graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    modules = _modules(packages)
    return {
        name: {target for target in _imported(name, path) if target in modules} - {name}
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle of the graph, as the path that closes it, or [] when there is none."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        trail: list[str] = []
        on_trail: set[str] = set()
        stack = [(start, iter(sorted(graph[start])))]
        trail.append(start)
        on_trail.add(start)
        while stack:
            node, following = stack[-1]
            step = next(following, None)
            if step is None:
                stack.pop()
                trail.pop()
                on_trail.discard(node)
                done.add(node)
            elif step in on_trail:
                return [*trail[trail.index(step) :], step]
            elif step not in done:
                stack.append((step, iter(sorted(graph[step]))))
                trail.append(step)
                on_trail.add(step)
    return []


def test_each_package_imports_only_the_packages_below_it() -> None:
    rank = {package: position for position, package in enumerate(LAYERS)}
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in _graph(LAYERS).items()
        for target in targets
        if rank[target.split(".")[0]] > rank[module.split(".")[0]]
    )
    assert not wrong, (
        "imports against the layer order " + " < ".join(LAYERS) + ":\n" + "\n".join(wrong)
    )


def test_the_packages_import_each_other_in_no_circle() -> None:
    packages: dict[str, set[str]] = {package: set() for package in LAYERS}
    for module, targets in _graph(LAYERS).items():
        packages[module.split(".")[0]] |= {target.split(".")[0] for target in targets}
    for package, targets in packages.items():
        targets.discard(package)
    assert _cycle(packages) == []


def test_no_modules_of_the_django_apps_import_each_other_in_a_circle() -> None:
    cycle = _cycle(_graph(DJANGO_APPS))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_circle_through_a_function_level_import(
    tmp_path: Path,
) -> None:
    # The shape this test exists for: services -> tasks -> execution -> services, the first
    # step inside a function.
    graph = {
        "training.services": {"training.tasks"},
        "training.tasks": {"training.execution"},
        "training.execution": {"training.services"},
        "training.models": set(),
    }
    assert _cycle(graph) == [
        "training.execution",
        "training.services",
        "training.tasks",
        "training.execution",
    ]
    source = tmp_path / "pkg" / "services.py"
    source.parent.mkdir()
    source.write_text("def send():\n    from pkg.tasks import run\n    from . import models\n")
    imported = set(_imported("pkg.services", source))
    assert {"pkg.tasks", "pkg.tasks.run", "pkg", "pkg.models"} <= imported
