"""The package's floors, read from its imports (deferred ones included): each layer imports
only the layers below it, the model and delivery never import OpenTelemetry, nothing
imports the testing distribution, and no import circle exists."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "doow_otel"

# lowest first: a module may import its own layer and the layers before it
LAYERS = ["foundation", "model", "delivery", "otel", "serverless", "tracker", "facade"]
FOUNDATION = {"doow_otel.errors", "doow_otel._version"}
FACADE = {"doow_otel", "doow_otel.cli"}
WITHOUT_OPENTELEMETRY = {"foundation", "model", "delivery"}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str:
    if module in FOUNDATION:
        return "foundation"
    if module in FACADE:
        return "facade"
    return module.split(".")[1]


def imports(module: str) -> set[str]:
    """Every module `module` imports, at the top or inside a function."""
    found: set[str] = set()
    tree = ast.parse(MODULES[module].read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            # `from doow_otel.x import y`: y may be a module of its own
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in MODULES
            )
    return found


def internal(module: str) -> set[str]:
    return {name for name in imports(module) if name in MODULES and name != module}


def test_every_module_is_in_a_known_layer() -> None:
    assert {layer(m) for m in MODULES} <= set(LAYERS)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_its_layer_and_those_below(module: str) -> None:
    own = LAYERS.index(layer(module))
    above = {name for name in internal(module) if LAYERS.index(layer(name)) > own}
    assert not above, f"{module} ({layer(module)}) imports from a layer above: {sorted(above)}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if layer(m) in WITHOUT_OPENTELEMETRY))
def test_the_model_and_delivery_never_import_opentelemetry(module: str) -> None:
    otel = sorted(name for name in imports(module) if name.split(".")[0] == "opentelemetry")
    assert not otel, f"{module} imports {otel}"


def test_the_runtime_never_imports_the_testing_distribution() -> None:
    offenders = {
        module: sorted(n for n in imports(module) if n.split(".")[0] == "doow_otel_testing")
        for module in MODULES
    }
    assert not {m: names for m, names in offenders.items() if names}


def test_no_import_circle() -> None:
    graph = {module: internal(module) for module in MODULES}
    # a package imports its own submodules to re-export them: that is not a circle
    for module, names in graph.items():
        graph[module] = {n for n in names if not n.startswith(module + ".")}
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for name in sorted(graph[module]):
            if state.get(name) == 1:
                circles.append(path[path.index(name) :] + [name])
            elif name not in state:
                visit(name, [*path, name])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, circles
