"""Which of orch's loop helpers (``orchestrator.loop``) a job's entry file calls, read from
its source, never run; and what that means for the spec's ``precision`` (core/precision.py).

Only the entry file is read: a helper called from another module of the job is not seen
(then orch's bf16 autocast wraps a loop whose own helper also enters it: the same dtype,
so nothing changes).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.core import precision
from orchestrator.load.files import MAX_ENTRY_SOURCE

if TYPE_CHECKING:
    from orchestrator.core.spec import JobSpec

LOOP_MODULE = "orchestrator.loop"


def entry_file(entrypoint: str, working_dir: str | Path) -> Path | None:
    """The file an entrypoint's function is in: ``FILE.py`` in working_dir, or the module
    ``package.module`` as a file of working_dir; None when it is not there (an installed package)."""
    target = entrypoint.rsplit(":", 1)[0]
    root = Path(working_dir)
    if target.endswith(".py"):
        candidates = [root / target]
    else:
        module = root.joinpath(*target.split("."))
        candidates = [module.with_suffix(".py"), module / "__init__.py"]
    return next((path for path in candidates if path.is_file()), None)


def helpers_used(source: str | bytes) -> frozenset[str]:
    """The names of ``orchestrator.loop`` a module's source refers to (``from orchestrator.loop
    import autocast``, ``orch_loop.grad_scaler(...)`` after ``from orchestrator import loop as
    orch_loop``, ``orchestrator.loop.precision()``); empty when it does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return frozenset()
    aliases, used = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == LOOP_MODULE:
            used.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "orchestrator":
            aliases.update(alias.asname or alias.name for alias in node.names if alias.name == "loop")
        elif isinstance(node, ast.Import):
            aliases.update(alias.asname for alias in node.names if alias.name == LOOP_MODULE and alias.asname)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and (_name(node.value) in aliases or _name(node.value) == LOOP_MODULE):
            used.add(node.attr)
    return frozenset(used)


def _name(node: ast.AST) -> str | None:
    """``a.b.c`` as text for a chain of names, else None."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _name(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def entry_helpers(entrypoint: str, working_dir: str | Path) -> frozenset[str] | None:
    """The helpers the entry file calls; None when there is no file to read (or it is too large)."""
    path = entry_file(entrypoint, working_dir)
    if path is None or path.stat().st_size > MAX_ENTRY_SOURCE:
        return None
    return helpers_used(path.read_bytes())


def precision_warnings(spec: JobSpec | Mapping[str, Any]) -> list[str]:
    """`orch validate`'s warnings about ``precision``: fp16 or bf16 the loop would not get.
    ``spec``: a valid spec, or its JSON (as `orch submit` has it)."""
    fields = spec if isinstance(spec, Mapping) else spec.model_dump(mode="json")
    helpers = entry_helpers(fields["entrypoint"], fields["working_dir"])
    if helpers is None:
        return []
    entry = fields["entrypoint"].rsplit(":", 1)[0]
    found = precision.warning(fields["framework"], fields["precision"], helpers, entry)
    return [found] if found else []
