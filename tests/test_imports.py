"""The package's imports point down its layers, with no cycle."""

from __future__ import annotations

import ast
import pathlib

import keras_ppo

PACKAGE = pathlib.Path(keras_ppo.__file__).parent

# Lowest first. A module may import from its own layer or any lower one.
LAYERS = (
    ("keras_ppo.core", "keras_ppo.config", "keras_ppo.compat", "keras_ppo.files"),
    ("keras_ppo.envs",),
    ("keras_ppo.agent",),
    ("keras_ppo.rollout",),
    ("keras_ppo.distribute", "keras_ppo.io"),
    ("keras_ppo.callbacks",),
    ("keras_ppo.cli", "keras_ppo.registration"),
)


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, pathlib.Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(path: pathlib.Path, known: dict) -> set[str]:
    """keras_ppo modules `path` imports anywhere (lazy imports included);
    `from package import name` counts as importing the module `name` where
    one exists."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in known else node.module)
    return {name for name in found if name in known}


def layer_of(name: str) -> int:
    if name == "keras_ppo":
        # The public face, beside the CLI on top.
        return len(LAYERS) - 1
    for index, prefixes in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no layer of tests/test_imports.py")


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def test_every_module_has_a_layer():
    for name in modules():
        if name != "keras_ppo":
            layer_of(name)


def test_imports_point_down_the_layers():
    upward = [
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        for target in targets
        if layer_of(target) > layer_of(name)
    ]
    assert upward == []


def test_the_core_imports_nothing_above_it():
    for name, targets in import_graph().items():
        if name.startswith("keras_ppo.core"):
            assert all(t.startswith("keras_ppo.core") for t in targets), name


def find_cycle(graph):
    """A list of modules forming a cycle in `graph`, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state:
                cycle = visit(target, path + [target])
                if cycle:
                    return cycle
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node, [node])
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_a_lazy_import_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None
