"""The package's import graph: no circle, and no module importing a layer above its own.

Lazy imports inside functions count. A new module must be given a layer here,
which is also the package map the README's Architecture section shows.
"""

from __future__ import annotations

import ast
from pathlib import Path

STACK = Path(__file__).resolve().parents[2] / "stack"

# Lowest first: a module may import its own layer and the layers below it.
LAYERS: list[tuple[str, ...]] = [
    (
        "stack.errors",
        "stack.settings",
        "stack.signals",
        "stack.compat",
        "stack.rates",
        "stack.redis_url",
        "stack.envfile",
    ),
    (
        "stack.connection",
        "stack.arguments",
        "stack.queues",
        "stack.retry",
        "stack.ratelimit",
        "stack.redelivery",
        "stack.deadletter",
        "stack.redis_command",
        "stack.metrics.recorder",
        "stack.result_backend",
        "stack.jsonlog",
        "stack.app_finder",
        "stack.discovery",
    ),
    ("stack.context",),
    (
        "stack.task",
        "stack.submit",
        "stack.publish",
        "stack.task_status",
        "stack.poison",
        "stack.direct",
    ),
    ("stack.tasks", "stack.beat"),
    ("stack.app_factory", "stack.metrics"),
    ("stack.celery_app", "stack.preflight", "stack.checks"),
    ("stack.harness", "stack.launcher", "stack.api", "stack.loadtest", "stack.scaffold"),
    ("stack.cli", "stack.pytest_plugin", "stack.__main__", "stack.flower"),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(STACK.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """The layer of the longest matching prefix (``stack.metrics.hooks`` -> ``stack.metrics``)."""
    best: tuple[int, int] | None = None
    for index, names in enumerate(LAYERS):
        for name in names:
            matches = module == name or module.startswith(name + ".")
            if matches and (best is None or len(name) > best[0]):
                best = (len(name), index)
    assert best is not None, f"{module} has no layer: add it to LAYERS in {__file__}"
    return best[1]


def import_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in STACK.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("stack.")}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("stack"):
                module = node.module or ""
                for alias in node.names:
                    full = f"{module}.{alias.name}"
                    deps.add(full if full in modules else module)
        graph[name] = {d for d in deps if d in modules and d != name and d != "stack"}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_circle():
    assert cycles(import_graph()) == []


def test_no_module_imports_a_layer_above_its_own():
    upward = [
        f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
        for src, deps in sorted(import_graph().items())
        for dst in sorted(deps)
        if layer_of(dst) > layer_of(src)
    ]
    assert upward == []


def test_no_module_is_over_400_lines():
    long = {p.name: n for p in STACK.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
