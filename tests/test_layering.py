"""The layers point one way (sr_models <- comparisons <- ui / app.py) and no module imports itself back.

The import graph is read from the source (ast), with module-level and function-level imports alike: a
circle hidden inside a function still ties two modules together.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sr_models", "comparisons", "ui")
LAYER = {"sr_models": 0, "comparisons": 1, "ui": 2, "app": 2}  # a module may import its own layer or lower ones


def project_modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the project's packages, and app.py."""
    modules = {"app": ROOT / "app.py"} if (ROOT / "app.py").exists() else {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name ``module`` imports, anywhere in its file; ``from a import b`` gives ``a.b`` and ``a``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (a name that is not a module counts as its module)."""
    modules = project_modules()
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle (a -> b -> ... -> a), or None: a depth-first search for a back edge."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_graph_reader_sees_function_level_and_relative_imports(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text("def f():\n    from sr_models.registry import load_model\n\nfrom .cards import read_card\n")
    assert {"sr_models.registry.load_model", "sr_models.cards.read_card"} <= imported_names("sr_models.x", path)


def test_the_circle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_import_circle_in_the_project():
    graph = import_graph()
    assert {"sr_models.registry", "sr_models.hub", "sr_models.training.cli"} <= set(graph)  # the walk sees them
    circle = find_circle(graph)
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_layers_point_one_way():
    """sr_models never imports comparisons, ui or the app; comparisons never imports ui or the app."""
    offenders = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if LAYER[target.split(".")[0]] > LAYER[module.split(".")[0]]
    ]
    assert offenders == []


@pytest.mark.slow
def test_importing_every_sr_models_module_loads_nothing_from_the_upper_layers():
    code = (
        "import importlib, pkgutil, sys, sr_models\n"
        "for m in pkgutil.walk_packages(sr_models.__path__, 'sr_models.'): importlib.import_module(m.name)\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in ('comparisons', 'ui', 'app')], sys.modules.keys()\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
