"""The rooms of the package and what each may import (DESIGN.md "Layout"), read from every
module's imports (ast), and the pure core loaded without Ray."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / "orchestrator"
PURE = ("orchestrator.core.spec", "orchestrator.core.hardware", "orchestrator.core.snapshot",
        "orchestrator.core.placement", "orchestrator.core.auto", "orchestrator.core.allocator",
        "orchestrator.core.simulate")

# Rooms (and the two top-level modules) -> the rooms they may import besides their own.
MAY_IMPORT = {
    "core": set(),
    "load": {"core"},
    "adapters": {"core"},
    "control": {"core", "load", "adapters"},
    "runners": {"core", "load", "adapters", "loop"},
    "client": {"core", "load", "adapters"},
    "cli": {"client", "core", "load"},
    "loop": {"core"},
    "__init__": set(),  # names load on first use, by module path (importlib), never at import
}
# What the pure core may use: the standard library's pure parts and pydantic (its models).
CORE_OUTSIDE = {"__future__", "bisect", "collections", "dataclasses", "difflib", "enum", "functools", "heapq",
                "itertools", "json", "math", "numbers", "posixpath", "pathlib", "re", "typing", "pydantic"}
CORE_CLOCK = {("orchestrator.core.simulate", "time")}  # the report's wall_s: how long the replay took


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def _imports(tree: ast.Module) -> set[str]:
    """Every module an import statement names, inside functions too; `from pkg import mod` names pkg.mod."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module.startswith("orchestrator"):
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module)
    return names


def _room(module: str) -> str | None:
    """The room of an orchestrator module; None for the package itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def _orch_edges(modules: dict[str, ast.Module]) -> set[tuple[str, str]]:
    """(module, module it imports) within orchestrator; `from orchestrator.core import hardware`
    counts as importing orchestrator.core.hardware."""
    edges = set()
    for module, tree in modules.items():
        for name in _imports(tree):
            if name.startswith("orchestrator."):
                target = name if name in modules else name.rpartition(".")[0]
                edges.add((module, target))
    return edges


def test_each_room_imports_only_what_it_may():
    modules = _modules()
    broken = sorted(f"{a} imports {b}" for a, b in _orch_edges(modules)
                    if _room(b) not in {_room(a), None} and _room(b) not in MAY_IMPORT[_room(a) or "__init__"])
    assert broken == []


def test_the_core_is_pure():
    modules = _modules()
    impure = sorted(f"{module} imports {name}" for module, tree in modules.items() if _room(module) == "core"
                    for name in _imports(tree) if not name.startswith("orchestrator")
                    and name.split(".")[0] not in CORE_OUTSIDE and (module, name) not in CORE_CLOCK)
    reads_environ = sorted(module for module, tree in modules.items() if _room(module) == "core"
                           for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "environ")
    assert impure == [] and reads_environ == []


def test_no_cycles_between_rooms():
    rooms: dict[str, set[str]] = {}
    for a, b in _orch_edges(_modules()):
        if _room(a) and _room(b) and _room(a) != _room(b):
            rooms.setdefault(_room(a), set()).add(_room(b))

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(step == goal or (step not in seen and reaches(step, goal, seen | {step}))
                   for step in rooms.get(start, ()))

    assert sorted(room for room in rooms if reaches(room, room, {room})) == []


def test_every_room_says_what_it_may_import():
    silent = [str(path.relative_to(REPO)) for path in PACKAGE.glob("*/__init__.py")
              if "import" not in (ast.get_docstring(ast.parse(path.read_text())) or "")]
    assert silent == []


def test_importing_orchestrator_leaves_the_environment_alone():
    code = "import os; before = dict(os.environ); import orchestrator; print(dict(os.environ) == before)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_pure_modules_do_not_import_ray():
    code = (f"import sys; import {', '.join(PURE)}; "
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
