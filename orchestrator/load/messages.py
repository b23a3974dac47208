"""Problems users can act on: ``FILE:LINE:COL: FIELD.PATH: message`` lines, where each field
was written (``Report``), and the ``SpecError`` that carries them. pydantic's errors are put in
these words by ``validation.py``: this module imports no pydantic, so a client that only reads
a spec and checks its files (`orch submit`) does not load it."""

from __future__ import annotations

import re
from typing import Any

import yaml

from orchestrator.core.errors import SpecError

# Problems listed in one error; a hostile file can have 50,000 duplicate keys.
MAX_PROBLEMS = 50

FieldPath = tuple  # a field path as pydantic spells it: ("resources", "workers"), ("sweep", "space", "lr")

OPTION = "--set "


def printable(error: SpecError) -> SpecError:
    """The same error with control characters escaped and at most MAX_PROBLEMS lines.

    A problem quotes what the user wrote (keys, values, file names): an escape
    sequence there must not reach the terminal, and a newline must not split a
    problem in two.
    """
    problems = [_escape(problem) for problem in error.problems]
    details = [{k: _escape(v) if isinstance(v, str) else v for k, v in found.items()}
               for found in error.details or ()][:MAX_PROBLEMS] or None
    if len(problems) > MAX_PROBLEMS:
        hidden = len(problems) - MAX_PROBLEMS
        problems = problems[:MAX_PROBLEMS] + [f"... and {hidden} more problems; fix the ones above first"]
    if problems == error.problems and details == error.details:
        return error
    return SpecError(problems, error.source and _escape(error.source), details)


def problem_objects(error: SpecError) -> list[dict[str, Any]]:
    """``error``'s problems as ``{file, line, column, field, message}``: as the loader told them
    apart, else read back from the lines (a position and a message, no field)."""
    if error.details:
        return error.details
    return [_located(problem, error.source) for problem in error.problems]


def _located(problem: str, source: str | None) -> dict[str, Any]:
    rest = problem[len(source) + 1:] if source and problem.startswith(f"{source}:") else None
    if rest is None:
        return {"file": source, "line": None, "column": None, "field": None, "message": problem}
    match = re.match(r"(\d+):(\d+): (.*)", rest, re.S)
    if match:
        return {"file": source, "line": int(match.group(1)), "column": int(match.group(2)), "field": None,
                "message": match.group(3)}
    return {"file": source, "line": None, "column": None, "field": None, "message": rest.removeprefix(" ")}


def _place(where: str) -> dict[str, Any]:
    """``FILE:LINE:COL`` (or a bare ``FILE``, or ``--set KEY=VALUE``) as file, line and column."""
    match = re.fullmatch(r"(.*):(\d+):(\d+)", where, re.S)
    if match and not where.startswith(OPTION):
        return {"file": match.group(1), "line": int(match.group(2)), "column": int(match.group(3))}
    return {"file": where, "line": None, "column": None}


def field_name(path: FieldPath) -> str:
    """A field path as problems write it: ``resources.workers``, ``env[0]``."""
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _escape(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def mark_error(source: str, mark: yaml.Mark | None, message: str) -> SpecError:
    return SpecError([f"{position(source, mark) if mark else source}: {message}"], source)


def position(source: str, mark: yaml.Mark) -> str:
    if source.startswith(OPTION):
        return source  # a --set option is one short line: naming it is enough
    return f"{source}:{mark.line + 1}:{mark.column + 1}"


def field_line(where: str, path: FieldPath, message: str) -> str:
    dotted = field_name(path)
    return f"{where}: {dotted}: {message}" if dotted else f"{where}: {message}"


class Report:
    """Where each key and value was written, the problems found, and the fields they cover."""

    def __init__(self) -> None:
        # path -> (key's place, value's): "FILE:LINE:COL" or (source, yaml mark) to format later
        self.positions: dict[FieldPath, tuple[Any, Any]] = {}
        self.found: list[tuple[str, str, dict[str, Any]]] = []  # (where, line, the line's parts)
        self.paths: set[FieldPath] = set()

    def add(self, where: str, path: FieldPath, message: str, covers: bool = True) -> None:
        parts = {**_place(where), "field": field_name(path) or None, "message": message}
        self.found.append((where, field_line(where, path, message), parts))
        if covers and path:  # a problem with the whole document hides nothing else
            self.paths.add(path)

    def at(self, path: FieldPath, message: str, key: bool = False, place: FieldPath | None = None) -> None:
        """Report a problem with ``path``, placed at its key or value (or at ``place``'s value)."""
        self.add(self.where(path if place is None else place, key), path, message)

    def where(self, path: FieldPath, key: bool = False) -> str:
        """Position of ``path``'s key or value, else of its nearest written ancestor."""
        size = max(n for n in range(len(path) + 1) if path[:n] in self.positions)
        key_where, value_where = self.positions[path[:size]]
        place = (key and size == len(path) and key_where) or value_where
        return place if isinstance(place, str) else position(*place)

    @property
    def problems(self) -> list[str]:
        """In file order, then those of ``--set`` options."""
        return [line for _, line, _ in self._ordered()]

    @property
    def details(self) -> list[dict[str, Any]]:
        """``problems`` as ``{file, line, column, field, message}``, in the same order."""
        return [parts for _, _, parts in self._ordered()]

    def _ordered(self) -> list[tuple[str, str, dict[str, Any]]]:
        return sorted(self.found, key=lambda found: _file_order(found[0]))

    def to_json(self) -> dict[str, list]:
        """The problems found and the fields they cover, for ``take`` on the other side of a request."""
        return {"found": [list(found) for found in self.found], "covers": [list(path) for path in self.paths]}

    def take(self, sent: dict[str, list]) -> None:
        """Add the problems of another report of the same text (``to_json``'s form)."""
        self.found += [(where, line, parts) for where, line, parts in sent["found"]]
        self.paths |= {tuple(path) for path in sent["covers"]}

    def covers(self, path: FieldPath) -> bool:
        return any(path[: len(done)] == done for done in self.paths)

    def touches(self, path: FieldPath) -> bool:
        """Whether a problem was reported at ``path``, inside it, or above it."""
        return any(path[: len(done)] == done or done[: len(path)] == path for done in self.paths)


def _file_order(where: str) -> tuple[int, int, int]:
    match = re.search(r":(\d+):(\d+)$", where)
    return (0, int(match.group(1)), int(match.group(2))) if match else (1, 0, 0)
