"""The checks of a job spec that need its files and the submitter's environment: working_dir,
a ``FILE.py:FUNC`` entrypoint, paths that must not leave working_dir, ``from_env`` variables."""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from orchestrator.core.spec_words import SUBMITTER_ENV_PATTERN
from orchestrator.core.suggest import did_you_mean
from orchestrator.load.messages import FieldPath, Report


# Paths read from working_dir when relative (spec.check_source, spec.check_input).
_SOURCES = (("init_from",), ("predict", "model"), ("predict", "input"))


def check_files(data: dict, base_dir: Path, report: Report) -> Path | None:
    """The resolved working_dir, after checking it, a FILE.py entrypoint inside it,
    and that relative checkpoint and input paths do not leave it through a symlink."""
    raw = data.get("working_dir", ".")
    if not isinstance(raw, str) or report.covers(("working_dir",)):
        return None  # already reported (the wrong type, a NUL byte, ...)
    base = base_dir.resolve()
    folder = (base / raw).resolve()
    if not folder.is_dir():
        report.at(("working_dir",), f"{raw!r} is not an existing folder (looked at {folder})")
        return None
    problem = _working_dir_problem(raw, base, folder)
    if problem:
        report.at(("working_dir",), problem)
        return None
    entry = data.get("entrypoint")
    if isinstance(entry, str) and not report.covers(("entrypoint",)) and re.match(r"[^:]+\.py:", entry):
        name, func = entry.rsplit(":", 1)
        problem = _entry_file_problem(name, folder) or _entry_function_problem(name, folder / name, func)
        if problem:
            report.at(("entrypoint",), problem)
    for path in _SOURCES:
        value = _get(data, path)
        if isinstance(value, str) and not report.covers(path):
            problem = _source_problem(value, folder)
            if problem:
                report.at(path, problem)
    return folder


def _working_dir_problem(raw: str, base: Path, folder: Path) -> str | None:
    """Why the folder ``raw`` names must not be shipped, if it must not."""
    if folder == Path(folder.anchor):
        return f"{raw!r} is the filesystem root ({folder}); point working_dir at the job's own folder"
    try:
        home = Path.home().resolve()
    except (RuntimeError, KeyError, OSError):  # no HOME and no passwd entry
        home = None
    if home and home.is_relative_to(folder):
        what = "your home folder" if home == folder else f"{folder}, which holds your home folder ({home})"
        return (f"{raw!r} is {what}: shipping it would upload your keys and credentials to the cluster; "
                "point working_dir at the job's own folder")
    if not PurePosixPath(raw).is_absolute():
        link = _escaping_link(base, raw)
        if link:
            return (f"{raw!r} goes through the symlink {link[0]} -> {link[1]}, which leads out of the folder "
                    f"holding the link; write the folder's real path ({folder}) if you mean to ship it")
    return None


def _escaping_link(base: Path, raw: str) -> tuple[Path, Path] | None:
    """The first symlink on the way from ``base`` along ``raw`` that leads out of its own folder."""
    current = base
    for part in PurePosixPath(raw).parts:
        if part == ".":
            continue
        if part == "..":
            current = current.parent
            continue
        step = current / part
        if step.is_symlink():
            target = step.resolve()
            if not target.is_relative_to(current):
                return step, target
            current = target
        else:
            current = step
    return None


def _source_problem(value: str, folder: Path) -> str | None:
    """A relative checkpoint or input path that exists but leads out of working_dir."""
    relative = PurePosixPath(value)
    if value.startswith("job:") or re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value) or relative.is_absolute():
        return None  # another job, a URI or an absolute path: checked where it is read
    if ".." in relative.parts:
        return None  # reported by the spec's own check
    target = folder / relative
    if os.path.lexists(target) and not target.resolve().is_relative_to(folder):
        return (f"{value!r} leads outside working_dir ({folder}) through a symlink (to {target.resolve()}); "
                "write the real path instead")
    return None


def _get(data: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def check_environ(data: dict, environ: Mapping[str, str], report: Report) -> None:
    """Every ``{from_env: VAR}`` entry of env names a variable the submitter has set."""
    env = data.get("env")
    if not isinstance(env, dict):
        return
    for name, entry in env.items():
        path = ("env", name, "from_env")
        if not isinstance(entry, dict) or report.touches(("env", name)):
            continue  # fix the entry first
        variable = entry.get("from_env")
        if isinstance(variable, str) and re.fullmatch(SUBMITTER_ENV_PATTERN, variable) and variable not in environ:
            kind = "secret " if entry.get("secret") is True else ""
            report.at(path, f"{variable} is not set in your environment; export it before submitting "
                            f"(orch reads the {kind}value of {name} from the submitter's environment)")


MAX_ENTRY_SOURCE = 2 * 1024 * 1024  # larger entry files are not read at validation


def _entry_function_problem(name: str, path: Path, func: str) -> str | None:
    """An entry file that defines no top-level ``func`` (read, never run); None when it does,
    or when it cannot tell (a star import, a file too large to read here)."""
    if path.stat().st_size > MAX_ENTRY_SOURCE:
        return None
    try:
        tree = ast.parse(path.read_bytes(), filename=name)
    except (SyntaxError, ValueError) as error:
        return f"{name!r} does not parse: line {getattr(error, 'lineno', '?')}: {getattr(error, 'msg', error)}"
    defined: set[str] = set()
    # Anywhere in the file, not only at top level: `try: from fast import loop / except: def loop`.
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            if any(alias.name == "*" for alias in node.names):
                return None
            defined.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
    if "__getattr__" in defined:
        return None  # a module __getattr__ may make any name
    if func in defined:
        return None
    return f"{name!r} defines no top-level {func!r}{did_you_mean(func, sorted(defined))}"


def _entry_file_problem(name: str, folder: Path) -> str | None:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts:
        return f"{name!r} must be a path inside working_dir ({folder}), without '..'"
    target = (folder / relative).resolve()
    if not target.is_relative_to(folder):
        return (f"{name!r} leads outside working_dir ({folder}) through a symlink (to {target}); "
                "copy the file into working_dir or set working_dir to its folder")
    if not target.is_file():
        return f"file {name!r} not found in working_dir ({folder})"
    return None
